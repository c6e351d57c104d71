"""Invariant: any bytes given to a decoder of the post-quantum ratchet's fields (a chunk area,
chunks taken in by a live PQ ratchet, a stored PQ ratchet, a stored session, a capabilities
body, a hello) give a value or RemoteProtocolError, nothing else; a PQ session or a classical
one that offered the upgrade, opening them as a payload, gives a Message or DecryptionFailed /
RemoteProtocolError, and a failure leaves its state unchanged (docs/protocol.md §13).

Run: python fuzz/fuzz_pqratchet.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import contextlib
import sys

from backchannel.client.invite import Hello, decode_capabilities
from backchannel.protocol.e2e.chunks import decode_chunks
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.pqratchet import PqRatchet
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.protocol.message import Message
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz pq ratchet")
_ALICE, _BOB = IdentityKeyPair.generate(_RNG), IdentityKeyPair.generate(_RNG)
_PREKEYS = PrekeySecrets.generate(_RNG, one_time_count=1)
_BUNDLE = PrekeyBundle.decode(_PREKEYS.bundle(_BOB, 1).encode())
_INITIATOR = Session.initiate(_ALICE, _BUNDLE, _RNG, pq=True)
_RESPONDER, _, _ = Session.respond(
    _BOB, _PREKEYS, _INITIATOR.seal(1, b"seed", 0, _RNG).payload, _RNG
)
_TO_INITIATOR = _RESPONDER.seal(1, b"n" * 200, 1, _RNG).payload
_INITIATOR.open(_TO_INITIATOR, _RNG)  # now it holds half of the responder's objects
_STATE = _INITIATOR.encode()
_PAYLOAD = _RESPONDER.seal(1, b"n" * 200, 2, _RNG).payload
_PQ = _INITIATOR.post_quantum
assert _PQ is not None
_PQ_STATE = _PQ.encode()
_AREA = _PQ.copy().fill(600)
# A classical session that offered the upgrade: a PQ payload may start its ratchet.
_CLASSICAL = Session.initiate(_ALICE, _BUNDLE, _RNG)
_CLASSICAL_RESPONDER, _, _ = Session.respond(
    _BOB, _PREKEYS, _CLASSICAL.seal(1, b"seed", 0, _RNG).payload, _RNG
)
_CLASSICAL.open(_CLASSICAL_RESPONDER.seal(1, b"yo", 1, _RNG).payload, _RNG)
_CLASSICAL.offer_post_quantum()
_OFFERED_STATE = _CLASSICAL.encode()
_CLASSICAL_RESPONDER.start_post_quantum(_RNG)
_UPGRADE = _CLASSICAL_RESPONDER.seal(1, b"first with PQ", 2, _RNG).payload

SEEDS = [_AREA, _PQ_STATE, _STATE, _OFFERED_STATE, _PAYLOAD, _UPGRADE, b"\x01", b"\x00"]


def _decoders(data: bytes) -> None:
    for decode in (decode_capabilities, Hello.decode, Session.decode):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)
    try:
        restored = PqRatchet.decode(data)
    except RemoteProtocolError:
        pass
    else:
        assert PqRatchet.decode(restored.encode()).encode() == restored.encode()
    try:
        chunks = decode_chunks(data)
    except RemoteProtocolError:
        return
    taking = _PQ.copy()
    with contextlib.suppress(RemoteProtocolError):
        taking.receive(taking.send_epoch, chunks, _RNG)


def _open(state: bytes, data: bytes) -> None:
    session = Session.decode(state)
    try:
        opened = session.open_with_position(data, _RNG)
    except (DecryptionFailed, RemoteProtocolError):
        assert session.encode() == state
    else:
        assert isinstance(opened.message, Message)


def test_one_input(data: bytes) -> None:
    _decoders(data)
    _open(_STATE, data)
    _open(_OFFERED_STATE, data)


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""Invariant: any bytes opened by a live session, or offered to start one, give a Message or
a typed error (DecryptionFailed, or RemoteProtocolError and its DuplicateMessage / ForkedChain /
TooFarAhead), in either payload version, and a failure leaves the session state unchanged.

Run: python fuzz/fuzz_payload.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.protocol.message import Message
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz payload")
_ALICE, _BOB = IdentityKeyPair.generate(_RNG), IdentityKeyPair.generate(_RNG)
_PREKEYS = PrekeySecrets.generate(_RNG, one_time_count=1)
_INITIATOR = Session.initiate(_ALICE, _PREKEYS.bundle(_BOB, 1), _RNG)
_FIRST = _INITIATOR.seal(1, b"seed", 0, _RNG)
_SECOND = _INITIATOR.seal(1, b"second", 1, _RNG)
_SESSION, _, _ = Session.respond(_BOB, _PREKEYS, _FIRST.payload, _RNG)
_STATE = _SESSION.encode()
_REPLY = _SESSION.seal(1, b"reply", 2, _RNG)
_RATCHET_ONLY = Session.decode(_INITIATOR.encode())
_RATCHET_ONLY.open(_REPLY.payload, _RNG)
_THIRD = _RATCHET_ONLY.seal(1, b"third", 3, _RNG)  # type 0x04
# 0.1's payloads (v1 bodies): its frozen golden vectors.
_V1 = json.loads(
    (Path(__file__).resolve().parent.parent / "tests/vectors/golden_v1.json").read_text()
)
SEEDS = [
    _FIRST.payload,
    _SECOND.payload,
    _THIRD.payload,
    *(bytes.fromhex(m["payload"]) for m in _V1["messages"][:3]),
]


def test_one_input(data: bytes) -> None:
    session = Session.decode(_STATE)
    try:
        opened = session.open_with_position(data, _RNG)
    except (DecryptionFailed, RemoteProtocolError):
        assert session.encode() == _STATE
    else:
        assert isinstance(opened.message, Message)
    try:
        _, message, _ = Session.respond(_BOB, _PREKEYS, data, _RNG)
    except (DecryptionFailed, RemoteProtocolError):
        return
    assert isinstance(message, Message)


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

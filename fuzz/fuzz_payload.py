"""Invariant: any bytes opened by a live session either decrypt (never, in practice) or raise
DecryptionFailed or RemoteProtocolError, and a failure leaves the session state unchanged.

Run: python fuzz/fuzz_payload.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import contextlib
import sys

from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz payload")
_ALICE, _BOB = IdentityKeyPair.generate(_RNG), IdentityKeyPair.generate(_RNG)
_PREKEYS = PrekeySecrets.generate(_RNG, one_time_count=1)
_FIRST = Session.initiate(_ALICE, _PREKEYS.bundle(_BOB, 1), _RNG).seal(1, b"seed", 0, _RNG)
_SESSION, _, _ = Session.respond(_BOB, _PREKEYS, _FIRST.payload, _RNG)
_STATE = _SESSION.encode()
SEEDS = [_FIRST.payload]


def test_one_input(data: bytes) -> None:
    session = Session.decode(_STATE)
    try:
        session.open(data, _RNG)
    except (DecryptionFailed, RemoteProtocolError):
        assert session.encode() == _STATE
    with contextlib.suppress(DecryptionFailed, RemoteProtocolError):
        Session.respond(_BOB, _PREKEYS, data, _RNG)


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

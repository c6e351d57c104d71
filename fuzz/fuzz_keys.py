"""Invariant: any bytes given to the identity, prekey-bundle, prekey-secrets and
session-state decoders give a value or RemoteProtocolError; nothing else escapes.

Run: python fuzz/fuzz_keys.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.testing import SeededRng

_DECODERS = (PublicIdentity.decode, PrekeyBundle.decode, PrekeySecrets.decode, Session.decode)
_RNG = SeededRng("fuzz keys")
_ID = IdentityKeyPair.generate(_RNG)
_PREKEYS = PrekeySecrets.generate(_RNG, one_time_count=1)
SEEDS = [
    b"\x00" + _ID.public.encode(),
    b"\x01" + _PREKEYS.bundle(_ID, 1).encode(),
    b"\x02" + _PREKEYS.encode(),
]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    decode = _DECODERS[data[0] % len(_DECODERS)]
    try:
        decode(data[1:])
    except RemoteProtocolError:
        return


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

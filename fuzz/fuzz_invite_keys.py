"""Invariant: any bytes after the capabilities byte of a version 3 invite (the relays'
forwarding keys, client/invite.py) either decode to an invite whose keys re-encode to the
same code, or raise InviteRefused; nothing else escapes, and a decoded key is one key per
relay at most.

Run: python fuzz/fuzz_invite_keys.py [corpus dir] (atheris, libFuzzer flags accepted).
The input replaces the key mask and keys of a signed invite with one and two relays; the
signature is made over the fuzzed body, so the parser, not the signature, is what is tried.
"""

from __future__ import annotations

import base64
import sys

from backchannel.client.errors import InviteRefused
from backchannel.client.invite import CAPABILITY_PQ_RATCHET, Invite, RelayAddress
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz invite keys")
_ID = IdentityKeyPair.generate(_RNG)
_BUNDLE = PrekeySecrets.generate(_RNG, one_time_count=1).bundle(_ID, 1)
_KEY = RelayKeyPair(b"\x01" * KEY_SEED_SIZE).public
_RELAYS = (RelayAddress("ws://127.0.0.1:8470/", b"\x01" * 16, b"\x02" * 32),
           RelayAddress("ws://127.0.0.1:8471/", b"\x03" * 16, b"\x04" * 32))
_HEAD = Invite(b"\x05" * 16, 2**62, "w", _RELAYS, _BUNDLE,
               capabilities=CAPABILITY_PQ_RATCHET)._body()
# Version 3: the byte after the magic.
_HEAD = _HEAD[:3] + b"\x03" + _HEAD[4:]
SEEDS = [b"\x01" + _KEY.to_bytes(), b"\x03" + _KEY.to_bytes() * 2, b"\x00", b"\x02"]


def test_one_input(data: bytes) -> None:
    body = _HEAD + data
    signature = _ID.sign(b"Backchannel invite v1" + body)
    code = "BC1-" + base64.urlsafe_b64encode(body + signature).decode().rstrip("=")
    try:
        invite = Invite.from_code(code, 0)
    except InviteRefused:
        return
    assert len(invite.relay_keys) <= len(invite.relays)
    assert any(invite.relay_keys)
    assert invite.to_code() == code


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Invariant: any bytes after the capabilities byte of a version 4 invite (the relays'
identity pins, client/invite.py) either decode to an invite whose pins re-encode to the
same code, or raise InviteRefused; nothing else escapes, and a decoded invite has one pin
per relay at most and no keys.

Run: python fuzz/fuzz_invite_pins.py [corpus dir] (atheris, libFuzzer flags accepted).
The input replaces the pin mask and pins of a signed invite with two relays; the
signature is made over the fuzzed body, so the parser, not the signature, is what is tried.
"""

from __future__ import annotations

import base64
import sys

from backchannel.client.errors import InviteRefused
from backchannel.client.invite import CAPABILITY_PQ_RATCHET, Invite, RelayAddress
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz invite pins")
_ID = IdentityKeyPair.generate(_RNG)
_BUNDLE = PrekeySecrets.generate(_RNG, one_time_count=1).bundle(_ID, 1)
_RELAYS = (RelayAddress("ws://127.0.0.1:8470/", b"\x01" * 16, b"\x02" * 32),
           RelayAddress("ws://127.0.0.1:8471/", b"\x03" * 16, b"\x04" * 32))
_HEAD = Invite(b"\x05" * 16, 2**62, "w", _RELAYS, _BUNDLE,
               capabilities=CAPABILITY_PQ_RATCHET)._body()
# Version 4: the byte after the magic.
_HEAD = _HEAD[:3] + b"\x04" + _HEAD[4:]
SEEDS = [b"\x01" + b"\x11" * 32, b"\x03" + b"\x22" * 64, b"\x02" + b"\x33" * 32, b"\x00"]


def test_one_input(data: bytes) -> None:
    body = _HEAD + data
    signature = _ID.sign(b"Backchannel invite v1" + body)
    code = "BC1-" + base64.urlsafe_b64encode(body + signature).decode().rstrip("=")
    try:
        invite = Invite.from_code(code, 0)
    except InviteRefused:
        return
    assert len(invite.relay_pins) <= len(invite.relays)
    assert any(invite.relay_pins) and not invite.relay_keys
    assert invite.to_code() == code


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

"""Invariant: any input to the invite-code, hello, move, receipt and agreed-record-file parsers
gives a value or that parser's typed error (InviteRefused, RemoteProtocolError, or
RecordFileError); nothing else escapes; and a decoded name or relay URL never contains a
character the text policy refuses, and every relay URL is wss:// or ws:// to loopback
(protocol/text.py).

Run: python fuzz/fuzz_client_parsers.py [corpus dir] (atheris, libFuzzer flags accepted).
The first byte of an input chooses the parser; the rest is its input.
"""

from __future__ import annotations

import sys

from backchannel.client.errors import InviteRefused
from backchannel.client.invite import Hello, Invite, Move, RelayAddress
from backchannel.client.receipts import receipt_body, receipt_ids
from backchannel.dialogue import verify_record_file
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.text import check_relay_url, first_refused
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz client parsers")
_ID = IdentityKeyPair.generate(_RNG)
_PREKEYS = PrekeySecrets.generate(_RNG, one_time_count=1)
_RELAYS = (RelayAddress("ws://127.0.0.1:8470/", b"\x01" * 16, b"\x02" * 32),)
_CODE = (
    Invite(b"\x03" * 16, 2**62, "washington", _RELAYS, _PREKEYS.bundle(_ID, 1))
    .signed(_ID)
    .to_code()
)
SEEDS = [
    b"\x00" + _CODE.encode(),
    b"\x01" + Hello("beijing", _RELAYS).encode(),
    b"\x02" + Move(_RELAYS).encode(),
    # Past the checks: a name with ESC[2J and a plain ws:// relay on the network.
    b"\x01" + Hello("a\x1b[2J", _RELAYS).encode(),
    b"\x02" + Move((RelayAddress("ws://relay.example/", b"\x01" * 16, b"\x02" * 32),)).encode(),
    b"\x03" + receipt_body(["04" * 16, "05" * 16]),
    b"\x04-----BEGIN BACKCHANNEL AGREED RECORD-----\n",
]


def _check_text(name: str | None, relays: tuple[RelayAddress, ...]) -> None:
    assert name is None or first_refused(name) is None, repr(name)
    for relay in relays:
        check_relay_url(relay.url)  # raises if a refused URL got through


def test_one_input(data: bytes) -> None:
    if not data:
        return
    which, rest = data[0] % 5, data[1:]
    try:
        if which == 0:
            invite = Invite.from_code(rest.decode("utf-8", errors="replace"), now_ms=0)
            _check_text(invite.name, invite.relays)
        elif which == 1:
            hello = Hello.decode(rest)
            assert hello.encode() == rest
            _check_text(hello.name, hello.relays)
        elif which == 2:
            move = Move.decode(rest)
            assert move.encode() == rest
            _check_text(None, move.relays)
        elif which == 3:
            receipt_ids(rest)
        else:
            verify_record_file(rest)
    except (InviteRefused, RemoteProtocolError):
        return


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

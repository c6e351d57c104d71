"""Invariant: any bytes decode to an Envelope that re-encodes to the same bytes, or raise
RemoteProtocolError; nothing else escapes. The relay's header check
(`envelope_mailbox_id`) accepts exactly the bytes that decode, with the same mailbox id.

Run: python fuzz/fuzz_envelope.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.protocol.envelope import Envelope, envelope_mailbox_id
from backchannel.protocol.errors import RemoteProtocolError

SEEDS = [Envelope(b"\x03" * 16, b"\x00" * 1007).encode()]


def test_one_input(data: bytes) -> None:
    try:
        envelope = Envelope.decode(data)
    except RemoteProtocolError:
        try:
            envelope_mailbox_id(data)
        except RemoteProtocolError:
            return
        raise AssertionError("the header check accepted bytes that do not decode") from None
    assert envelope.encode() == data
    assert envelope_mailbox_id(data) == envelope.mailbox_id


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

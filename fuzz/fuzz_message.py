"""Invariant: any bytes decode to a Message that re-encodes to the same bytes, or raise
RemoteProtocolError; nothing else escapes.

Run: python fuzz/fuzz_message.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.message import MAX_RECEIVED_BODY_SIZE, Message

SEEDS = [
    Message(b"\x01" * 16, 7, b"\x02" * 32, 1_700_000_000_000, 1, b"hello").encode(),
    # The largest body a receiver accepts (0.1's type 0x02); one byte more is refused.
    Message(b"\x03" * 16, 1, b"\x00" * 32, 0, 1, b"x" * MAX_RECEIVED_BODY_SIZE).encode(),
]


def test_one_input(data: bytes) -> None:
    try:
        message = Message.decode(data)
    except RemoteProtocolError:
        return
    assert message.encode() == data


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

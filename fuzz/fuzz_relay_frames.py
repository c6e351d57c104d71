"""Invariant: any bytes decode to a relay request or response that re-encodes to the same
bytes, or raise RemoteProtocolError; nothing else escapes.

Run: python fuzz/fuzz_relay_frames.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.relayframes import (
    Ack,
    Create,
    Deliver,
    Delivery,
    Error,
    Fetch,
    Fetched,
    Ping,
    Send,
    Stored,
    StoredItem,
    Subscribe,
    decode_request,
    decode_response,
    encode,
)

_ID = b"\x07" * 16
_TOKEN = b"\x09" * 32
SEEDS = [
    encode(Create(1, _ID, b"\x01" * 32, b"\x02" * 32)),
    encode(Send(2, _ID, _TOKEN, b"\x01" + _ID + b"\x00" * 1007)),
    encode(Subscribe(3, _ID, _TOKEN)),
    encode(Fetch(4, _ID, _TOKEN, 5, 10)),
    encode(Ack(5, _ID, _TOKEN, (1, 2, 3))),
    encode(Ping(6)),
    encode(Stored((StoredItem(2, 1), StoredItem(3, 2)))),
    encode(Deliver(_ID, (Delivery(1, b"ab"), Delivery(2, b"cd")))),
    encode(Fetched(4, (Delivery(9, b"x"),), True)),
    encode(Error(7, 10, "no such mailbox")),
]


def test_one_input(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        try:
            frame = decode(data)
        except RemoteProtocolError:
            continue
        assert encode(frame) == data


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""Invariant: any bytes given to `decode_direction` (a slot status record read from the
state, `client/state/slotstatus.py`) give a DirectionStatus that encodes back to exactly
those bytes, with a failure line of at most MAX_LINE bytes, or a RemoteProtocolError;
nothing else escapes.

Run: python fuzz/fuzz_slot_status.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.client.state.slotstatus import MAX_LINE, DirectionStatus, decode_direction
from backchannel.protocol.errors import RemoteProtocolError

SEEDS = [
    DirectionStatus("00" * 16, "ws://127.0.0.1:8000/", 2, 1_700_000_000_000).encode(),
    DirectionStatus("ab" * 16, "wss://relay.example/", 0, 0, "slots: failed", 1).encode(),
    b"", b"\x01", b"\x02\x00\x00",
]


def test_one_input(data: bytes) -> None:
    try:
        record = decode_direction(data)
    except RemoteProtocolError:
        return
    assert record.encode() == data
    assert len(record.failure.encode()) <= MAX_LINE


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

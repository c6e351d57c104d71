"""Invariant: any bytes decode to a relay request or response that re-encodes to the same
bytes and whose every number is within its bound (seqs 1..2^63-1, after_seq below 2^63,
counts and limits within the batch bounds, a SEND_BATCH within its count and bytes, each
BATCH_STORED outcome either stored with a seq or refused with a code), or raise FrameError;
nothing else escapes.

Run: python fuzz/fuzz_relay_frames.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.protocol.relayframes import (
    MAX_ACK_SEQS,
    MAX_BATCH_ITEMS,
    MAX_SEND_BATCH,
    MAX_SEND_BATCH_BYTES,
    MAX_SEQ,
    Ack,
    BatchResult,
    BatchStored,
    Create,
    Deliver,
    Delivery,
    Error,
    Fetch,
    Fetched,
    FrameError,
    Ping,
    Request,
    Response,
    Send,
    SendBatch,
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
    # The edges of the bounds, one bit flip away from out of bounds.
    encode(Fetch(8, _ID, _TOKEN, MAX_SEQ, MAX_BATCH_ITEMS)),
    encode(Ack(9, _ID, _TOKEN, (MAX_SEQ, 1))),
    encode(Stored((StoredItem(0xFFFF_FFFF, MAX_SEQ),))),
    encode(SendBatch(10, _ID, _TOKEN, (b"\x01" + _ID + b"\x00" * 1007, b"", b"xy"))),
    encode(SendBatch(11, _ID, _TOKEN, (b"",) * MAX_SEND_BATCH)),
    encode(BatchStored(10, (BatchResult(0, MAX_SEQ), BatchResult(0xFFFF, 0)))),
]


def _seqs(frame: Request | Response) -> list[int]:
    match frame:
        case Ack(seqs=seqs):
            return list(seqs)
        case Stored(items=items):
            return [item.seq for item in items]
        case BatchStored(results=results):
            return [r.seq for r in results if r.code == 0]
        case Fetched(deliveries=items) | Deliver(deliveries=items):
            return [d.seq for d in items]
    return []


def _in_bounds(frame: Request | Response) -> bool:
    if not all(1 <= s <= MAX_SEQ for s in _seqs(frame)):
        return False
    match frame:
        case Fetch(after_seq=after, limit=limit):
            return 0 <= after <= MAX_SEQ and 1 <= limit <= MAX_BATCH_ITEMS
        case Ack(seqs=seqs):
            return 1 <= len(seqs) <= MAX_ACK_SEQS
        case Stored(items=items):
            return 1 <= len(items) <= MAX_BATCH_ITEMS
        case Fetched(deliveries=items) | Deliver(deliveries=items):
            return len(items) <= MAX_BATCH_ITEMS
        case Error(code=code):
            return code >= 1
        case SendBatch(envelopes=envelopes):
            return (1 <= len(envelopes) <= MAX_SEND_BATCH
                    and sum(map(len, envelopes)) <= MAX_SEND_BATCH_BYTES)
        case BatchStored(results=results):
            return (1 <= len(results) <= MAX_SEND_BATCH
                    and all((r.code == 0) != (r.seq == 0) for r in results))
    return True


def test_one_input(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        try:
            frame = decode(data)  # type: ignore[operator]
        except FrameError:
            continue
        assert encode(frame) == data
        assert _in_bounds(frame), frame


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""Every numeric field of every relay frame, both directions, at its extremes.

For each field the frame is written byte by byte (bypassing the dataclasses) with the
values 0, the field's bounds and one past them, 2^63 - 1, 2^63 and 2^64 - 1 (those that fit
its wire width). The decoder must accept exactly the values within the bound and refuse
the others with `FrameError` MALFORMED, carrying the request id when the frame has one
and it was readable; the dataclass must accept and refuse the same values (and anything
wider than the wire), so a frame that encodes always decodes (review 2026-12 §2b).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from backchannel.protocol import relayframes as rf
from backchannel.protocol.envelope import MAX_ENVELOPE_SIZE
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.relayframes import (
    MAX_ACK_SEQS,
    MAX_BATCH_ITEMS,
    MAX_SEQ,
    ErrorCode,
    FrameError,
    FrameKind,
    decode_request,
    decode_response,
    encode,
)

RID = 0x0102_0304
MID = b"\x07" * 16
TOK = b"\x09" * 32
KID = b"\x05" * rf.FORWARD_KEY_ID_SIZE
DEST = "ws://127.0.0.1:8470/"
U64_MAX = 2**64 - 1
EXTREMES = (0, 1, 2**16 - 1, 2**16, 2**32 - 1, 2**32, MAX_SEQ, MAX_SEQ + 1, U64_MAX)
WIDTH = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFF_FFFF, 8: U64_MAX}


def u(value: int, width: int) -> bytes:
    return value.to_bytes(width, "big")


def head(kind: FrameKind) -> bytes:
    return bytes((rf.RELAY_PROTOCOL_VERSION, kind))


def items(count: int, seq: int = 1, size: int = 1) -> bytes:
    """`count` deliveries ``seq:u64 envelope:bytes32`` with increasing seqs."""
    return b"".join(u(seq + i, 8) + u(size, 4) + b"\x00" * size for i in range(count))


@dataclass(frozen=True)
class Field:
    """One numeric field: how to write a frame with it set to `v`, and its valid range."""

    name: str
    request: bool  # a request (client to relay) or a response / push
    width: int
    lo: int
    hi: int
    wire: Callable[[int], bytes]
    # Builds the dataclass with the field set to `v` (None: the field has no own value).
    build: Callable[[int], object] | None
    rid: int | None  # the request id a refusal carries (None: the frame has none)


def _requests() -> list[Field]:
    def req(kind: FrameKind, body: bytes, rid: int = RID) -> bytes:
        return head(kind) + u(rid, 4) + body

    fetch = MID + TOK
    return [
        *(Field(f"{kind.name}.request_id", True, 4, 0, 2**32 - 1,
                lambda v, k=kind, b=body: req(k, b, v), None, None)
          for kind, body in ((FrameKind.CREATE, MID + TOK + TOK),
                             (FrameKind.SEND, MID + TOK + u(0, 4)),
                             (FrameKind.SUBSCRIBE, MID + TOK), (FrameKind.FETCH,
                                                                fetch + u(0, 8) + u(1, 2)),
                             (FrameKind.ACK, MID + TOK + u(1, 2) + u(1, 8)),
                             (FrameKind.DELETE, MID + TOK), (FrameKind.PING, b""),
                             (FrameKind.FORWARD, KID + u(1, 2) + b"a" + u(0, 4)),
                             (FrameKind.SEALED_SEND, KID + u(0, 4)),
                             (FrameKind.SEND_BATCH, MID + TOK + u(1, 2) + u(0, 4)))),
        Field("SendBatch.count", True, 2, 1, rf.MAX_SEND_BATCH,
              lambda v: req(FrameKind.SEND_BATCH, MID + TOK + u(v, 2) + u(0, 4) * min(v, 300)),
              lambda v: rf.SendBatch(RID, MID, TOK, (b"",) * min(v, 300)), RID),
        Field("SendBatch.envelope_length", True, 4, 0, rf.MAX_SEND_BATCH_BYTES,
              lambda v: req(FrameKind.SEND_BATCH, MID + TOK + u(1, 2) + u(v, 4)
                            + b"\x00" * min(v, rf.MAX_SEND_BATCH_BYTES)),
              lambda v: rf.SendBatch(RID, MID, TOK, (b"\x00" * min(v, 70_000),)), RID),
        Field("Forward.destination_length", True, 2, 1, rf.MAX_DESTINATION_SIZE,
              lambda v: req(FrameKind.FORWARD, KID + u(v, 2) + b"a" * min(v, 300) + u(0, 4)),
              lambda v: rf.Forward(RID, KID, "a" * min(v, 300), b""), RID),
        Field("Forward.sealed_length", True, 4, 0, rf.MAX_SEALED_SEND_SIZE,
              lambda v: req(FrameKind.FORWARD, KID + u(1, 2) + b"a" + u(v, 4)
                            + b"\x00" * min(v, rf.MAX_SEALED_SEND_SIZE)),
              lambda v: rf.Forward(RID, KID, DEST, b"\x00" * min(v, 70_000)), RID),
        Field("SealedSend.sealed_length", True, 4, 0, rf.MAX_SEALED_SEND_SIZE,
              lambda v: req(FrameKind.SEALED_SEND, KID + u(v, 4)
                            + b"\x00" * min(v, rf.MAX_SEALED_SEND_SIZE)),
              lambda v: rf.SealedSend(RID, KID, b"\x00" * min(v, 70_000)), RID),
        Field("Send.envelope_length", True, 4, 0, MAX_ENVELOPE_SIZE,
              # At most MAX_ENVELOPE_SIZE bytes follow, so the frame stays within the frame
              # size and it is the length prefix that is refused, after the request id.
              lambda v: req(FrameKind.SEND, MID + TOK + u(v, 4)
                            + b"\x00" * min(v, MAX_ENVELOPE_SIZE)),
              lambda v: rf.Send(RID, MID, TOK, b"\x00" * min(v, 70_000)), RID),
        Field("Fetch.after_seq", True, 8, 0, MAX_SEQ,
              lambda v: req(FrameKind.FETCH, fetch + u(v, 8) + u(1, 2)),
              lambda v: rf.Fetch(RID, MID, TOK, v, 1), RID),
        Field("Fetch.limit", True, 2, 1, MAX_BATCH_ITEMS,
              lambda v: req(FrameKind.FETCH, fetch + u(0, 8) + u(v, 2)),
              lambda v: rf.Fetch(RID, MID, TOK, 0, v), RID),
        Field("Ack.count", True, 2, 1, MAX_ACK_SEQS,
              lambda v: req(FrameKind.ACK, MID + TOK + u(v, 2)
                            + b"".join(u(i + 1, 8) for i in range(min(v, 300)))),
              lambda v: rf.Ack(RID, MID, TOK, tuple(range(1, min(v, 300) + 1))), RID),
        Field("Ack.seq", True, 8, 1, MAX_SEQ,
              lambda v: req(FrameKind.ACK, MID + TOK + u(2, 2) + u(1, 8) + u(v, 8)),
              lambda v: rf.Ack(RID, MID, TOK, (1, v)), RID),
    ]


def _responses() -> list[Field]:
    def with_rid(kind: FrameKind, body: bytes, rid: int = RID) -> bytes:
        return head(kind) + u(rid, 4) + body

    fetched = FrameKind.FETCHED
    simple = ((FrameKind.CREATED, b"", rf.Created), (FrameKind.DELETED, b"", rf.Deleted),
              (FrameKind.PONG, b"", rf.Pong))
    return [
        *(Field(f"{kind.name}.request_id", False, 4, 0, 2**32 - 1,
                lambda v, k=kind, b=body: with_rid(k, b, v), lambda v, c=cls: c(v), None)
          for kind, body, cls in simple),
        Field("SEALED_RESULT.request_id", False, 4, 0, 2**32 - 1,
              lambda v: with_rid(FrameKind.SEALED_RESULT, b"\x00" * rf.SEALED_REPLY_SIZE, v),
              lambda v: rf.SealedResult(v, b"\x00" * rf.SEALED_REPLY_SIZE), None),
        Field("SUBSCRIBED.request_id", False, 4, 0, 2**32 - 1,
              lambda v: with_rid(FrameKind.SUBSCRIBED, u(0, 4), v),
              lambda v: rf.Subscribed(v, 0), None),
        Field("Subscribed.pending", False, 4, 0, rf.MAX_PENDING,
              lambda v: with_rid(FrameKind.SUBSCRIBED, u(v, 4)),
              lambda v: rf.Subscribed(RID, v), RID),
        Field("Stored.count", False, 2, 1, MAX_BATCH_ITEMS,
              lambda v: head(FrameKind.STORED) + u(v, 2)
              + b"".join(u(i, 4) + u(i + 1, 8) for i in range(min(v, 300))),
              lambda v: rf.Stored(tuple(rf.StoredItem(i, i + 1) for i in range(min(v, 300)))),
              None),
        Field("Stored.request_id", False, 4, 0, 2**32 - 1,
              lambda v: head(FrameKind.STORED) + u(1, 2) + u(v, 4) + u(1, 8),
              lambda v: rf.StoredItem(v, 1), None),
        Field("Stored.seq", False, 8, 1, MAX_SEQ,
              lambda v: head(FrameKind.STORED) + u(1, 2) + u(RID, 4) + u(v, 8),
              lambda v: rf.StoredItem(RID, v), None),
        Field("BATCH_STORED.request_id", False, 4, 0, 2**32 - 1,
              lambda v: with_rid(FrameKind.BATCH_STORED, u(1, 2) + u(0, 2) + u(1, 8), v),
              lambda v: rf.BatchStored(v, (rf.BatchResult(0, 1),)), None),
        Field("BatchStored.count", False, 2, 1, rf.MAX_SEND_BATCH,
              lambda v: with_rid(FrameKind.BATCH_STORED, u(v, 2)
                                 + (u(0, 2) + u(1, 8)) * min(v, 300)),
              lambda v: rf.BatchStored(RID, (rf.BatchResult(0, 1),) * min(v, 300)), RID),
        Field("BatchStored.seq", False, 8, 1, MAX_SEQ,
              lambda v: with_rid(FrameKind.BATCH_STORED, u(1, 2) + u(0, 2) + u(v, 8)),
              lambda v: rf.BatchResult(0, v), RID),
        Field("BatchStored.code", False, 2, 1, rf.MAX_ERROR_CODE,
              lambda v: with_rid(FrameKind.BATCH_STORED, u(1, 2) + u(v, 2) + u(0, 8)),
              lambda v: rf.BatchResult(v, 0), RID),
        Field("FETCHED.request_id", False, 4, 0, 2**32 - 1,
              lambda v: with_rid(fetched, u(0, 1) + u(0, 2), v),
              lambda v: rf.Fetched(v, (), False), None),
        Field("Fetched.more", False, 1, 0, 1,
              lambda v: with_rid(fetched, u(v, 1) + u(0, 2)), None, RID),
        Field("Fetched.count", False, 2, 0, MAX_BATCH_ITEMS,
              lambda v: with_rid(fetched, u(0, 1) + u(v, 2) + items(min(v, 300))),
              lambda v: rf.Fetched(RID, tuple(rf.Delivery(i + 1, b"\x00")
                                              for i in range(min(v, 300))), False), RID),
        Field("Fetched.seq", False, 8, 1, MAX_SEQ,
              lambda v: with_rid(fetched, u(0, 1) + u(1, 2) + items(1, v)),
              lambda v: rf.Delivery(v, b""), RID),
        Field("Fetched.envelope_length", False, 4, 0, MAX_ENVELOPE_SIZE,
              lambda v: with_rid(fetched, u(0, 1) + u(1, 2) + u(1, 8) + u(v, 4)
                                 + b"\x00" * min(v, 70_000)),
              lambda v: rf.Delivery(1, b"\x00" * min(v, 70_000)), RID),
        Field("Acked.request_id", False, 4, 0, 2**32 - 1,
              lambda v: with_rid(FrameKind.ACKED, u(0, 2), v),
              lambda v: rf.Acked(v, 0), None),
        Field("Acked.removed", False, 2, 0, MAX_ACK_SEQS,
              lambda v: with_rid(FrameKind.ACKED, u(v, 2)), lambda v: rf.Acked(RID, v), RID),
        Field("Deliver.count", False, 2, 1, MAX_BATCH_ITEMS,
              lambda v: head(FrameKind.DELIVER) + MID + u(v, 2) + items(min(v, 300)),
              lambda v: rf.Deliver(MID, tuple(rf.Delivery(i + 1, b"\x00")
                                              for i in range(min(v, 300)))), None),
        Field("Deliver.seq", False, 8, 1, MAX_SEQ,
              lambda v: head(FrameKind.DELIVER) + MID + u(1, 2) + items(1, v),
              lambda v: rf.Deliver(MID, (rf.Delivery(v, b"x"),)), None),
        Field("Deliver.envelope_length", False, 4, 0, MAX_ENVELOPE_SIZE,
              lambda v: head(FrameKind.DELIVER) + MID + u(1, 2) + u(1, 8) + u(v, 4)
              + b"\x00" * min(v, 70_000),
              lambda v: rf.Deliver(MID, (rf.Delivery(1, b"\x00" * min(v, 70_000)),)), None),
        Field("ERROR.request_id", False, 4, 0, 2**32 - 1,
              lambda v: with_rid(FrameKind.ERROR, u(1, 2) + u(0, 2), v),
              lambda v: rf.Error(v, 1, ""), None),
        Field("Error.code", False, 2, 1, rf.MAX_ERROR_CODE,
              lambda v: with_rid(FrameKind.ERROR, u(v, 2) + u(0, 2)),
              lambda v: rf.Error(RID, v, ""), RID),
        Field("Error.reason_length", False, 2, 0, rf.MAX_REASON_SIZE,
              lambda v: with_rid(FrameKind.ERROR, u(1, 2) + u(v, 2) + b"a" * min(v, 300)),
              lambda v: rf.Error(RID, 1, "a" * min(v, 300)), RID),
    ]


FIELDS = _requests() + _responses()


def _values(field: Field) -> list[int]:
    candidates = {*EXTREMES, field.lo, field.hi, field.hi + 1}
    if field.lo > 0:
        candidates.add(field.lo - 1)
    return sorted(v for v in candidates if v <= WIDTH[field.width])


@pytest.mark.parametrize("field", FIELDS, ids=[f.name for f in FIELDS])
def test_decoder_accepts_exactly_the_bounded_values(field: Field) -> None:
    decode = decode_request if field.request else decode_response
    for value in _values(field):
        data = field.wire(value)
        if field.lo <= value <= field.hi:
            frame = decode(data)  # type: ignore[operator]
            assert encode(frame) == data, (field.name, value)
            continue
        with pytest.raises(FrameError) as refused:
            decode(data)  # type: ignore[operator]
        assert refused.value.code == ErrorCode.MALFORMED, (field.name, value)
        assert refused.value.request_id == field.rid, (field.name, value)


@pytest.mark.parametrize("field", [f for f in FIELDS if f.build is not None],
                         ids=[f.name for f in FIELDS if f.build is not None])
def test_dataclasses_accept_exactly_the_bounded_values(field: Field) -> None:
    assert field.build is not None
    for value in sorted({-1, *_values(field), MAX_SEQ + 1, U64_MAX, U64_MAX + 1}):
        if field.width == 4 and "length" in field.name and value > 70_000:
            continue  # the builder caps the bytes it makes; the length prefix test covers it
        if "count" in field.name and value > 300:
            continue
        if value < 0 and ("length" in field.name or "count" in field.name):
            continue
        if field.lo <= value <= field.hi:
            frame = field.build(value)
            if isinstance(frame, rf.Request | rf.Response):
                assert encode(frame)
            continue
        with pytest.raises(LocalProtocolError):
            field.build(value)


def test_every_frame_kind_has_its_numeric_fields_covered() -> None:
    covered = {f.name.split(".")[0].upper() for f in FIELDS}
    assert {k.name for k in FrameKind} <= covered


def test_batch_bytes_are_bounded_within_the_frame_size() -> None:
    full = items(4, 1, MAX_ENVELOPE_SIZE)
    assert 4 * MAX_ENVELOPE_SIZE == rf.MAX_BATCH_BYTES
    for extra, ok in ((0, True), (1, False), (3000, False)):
        tail = u(5, 8) + u(extra, 4) + b"\x00" * extra
        fetched = head(FrameKind.FETCHED) + u(RID, 4) + u(0, 1) + u(5, 2) + full + tail
        deliver = head(FrameKind.DELIVER) + MID + u(5, 2) + full + tail
        assert len(fetched) <= rf.MAX_RESPONSE_FRAME_SIZE
        for data, rid in ((fetched, RID), (deliver, None)):
            if ok:
                assert encode(decode_response(data)) == data
                continue
            with pytest.raises(FrameError) as refused:
                decode_response(data)
            assert (refused.value.code, refused.value.request_id) == (ErrorCode.MALFORMED, rid)
    with pytest.raises(LocalProtocolError):
        full_batch = [rf.Delivery(i + 1, b"\x00" * MAX_ENVELOPE_SIZE) for i in range(4)]
        rf.Deliver(MID, (*full_batch, rf.Delivery(5, b"\x00")))


def test_oversize_and_foreign_version_frames_are_refused_before_the_id_is_read() -> None:
    oversize = head(FrameKind.SEND) + u(RID, 4) + b"\x00" * rf.MAX_REQUEST_FRAME_SIZE
    with pytest.raises(FrameError) as refused:
        decode_request(oversize)
    assert (refused.value.code, refused.value.request_id) == (ErrorCode.MALFORMED, None)
    with pytest.raises(FrameError) as foreign:
        decode_request(b"\x02" + bytes([FrameKind.PING]) + u(RID, 4))
    assert (foreign.value.code, foreign.value.request_id) == (ErrorCode.UNSUPPORTED_VERSION,
                                                              None)


def test_error_codes_the_client_does_not_know_are_kept_as_numbers() -> None:
    frame = decode_response(encode(rf.Error(9, 0xABCD, "new")))
    assert isinstance(frame, rf.Error) and frame.code == 0xABCD
    assert 0xABCD not in {int(c) for c in ErrorCode}

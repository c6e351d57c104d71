"""The batch forms of the relay protocol: SEND_BATCH and its BATCH_STORED answer.

Round trips, the decoder's bounds (count and bytes checked before anything is read past
them), and the connection rule that a batch is answered whole, one outcome per envelope.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.protocol import relayframes as rf
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.relayconn import (
    Answer,
    ClientConnection,
    RelayConnectionError,
    ServerConnection,
)
from backchannel.protocol.relayframes import (
    MAX_REQUEST_FRAME_SIZE,
    MAX_SEND_BATCH,
    MAX_SEND_BATCH_BYTES,
    BatchResult,
    BatchStored,
    ErrorCode,
    FrameError,
    SendBatch,
    decode_request,
    decode_response,
    encode,
)
from backchannel.protocol.wire import Writer

MID = b"\x01" * 16
TOK = b"\x03" * 32
u32 = st.integers(0, 2**32 - 1)
mid = st.binary(min_size=16, max_size=16)
tok = st.binary(min_size=32, max_size=32)
envelopes = st.lists(st.binary(max_size=2048), min_size=1, max_size=MAX_SEND_BATCH).map(tuple)
results = st.lists(
    st.one_of(st.builds(BatchResult, st.just(0), st.integers(1, rf.MAX_SEQ)),
              st.builds(BatchResult, st.integers(1, rf.MAX_ERROR_CODE), st.just(0))),
    min_size=1, max_size=MAX_SEND_BATCH).map(tuple)


@given(st.builds(SendBatch, u32, mid, tok, envelopes))
def test_send_batch_round_trips(frame: SendBatch) -> None:
    data = encode(frame)
    assert decode_request(data) == frame
    assert len(data) <= MAX_REQUEST_FRAME_SIZE


@given(st.builds(BatchStored, u32, results))
def test_batch_stored_round_trips(frame: BatchStored) -> None:
    assert decode_response(encode(frame)) == frame


def test_the_largest_batch_fits_the_request_frame_bound() -> None:
    size = MAX_SEND_BATCH_BYTES // MAX_SEND_BATCH
    frame = SendBatch(1, MID, TOK, (b"\x00" * size,) * MAX_SEND_BATCH)
    assert len(encode(frame)) <= MAX_REQUEST_FRAME_SIZE
    assert decode_request(encode(frame)) == frame


def _raw_batch(count: int, lengths: list[int], rid: int = 7) -> bytes:
    w = Writer().u8(rf.RELAY_PROTOCOL_VERSION).u8(rf.FrameKind.SEND_BATCH).u32(rid)
    w.fixed(MID, 16).fixed(TOK, 32).u16(count)
    for n in lengths:
        w.bytes32(b"\x00" * n)
    return w.getvalue()


@pytest.mark.parametrize("count", [0, MAX_SEND_BATCH + 1, 0xFFFF])
def test_a_batch_count_out_of_bounds_is_malformed_with_its_id(count: int) -> None:
    with pytest.raises(FrameError) as caught:
        decode_request(_raw_batch(count, [1]))
    assert caught.value.code is ErrorCode.MALFORMED and caught.value.request_id == 7


def test_a_batch_over_its_byte_bound_is_malformed() -> None:
    # Two envelopes that fit a frame but together pass MAX_SEND_BATCH_BYTES.
    half = MAX_SEND_BATCH_BYTES // 2 + 1
    with pytest.raises(FrameError) as caught:
        decode_request(_raw_batch(2, [half, half]))
    assert caught.value.code is ErrorCode.MALFORMED


@pytest.mark.parametrize("data", [_raw_batch(3, [1, 1]), _raw_batch(1, [4]) + b"\x00",
                                  _raw_batch(1, [4])[:-1]])
def test_a_batch_truncated_short_or_long_is_malformed(data: bytes) -> None:
    with pytest.raises(FrameError) as caught:
        decode_request(data)
    assert caught.value.code is ErrorCode.MALFORMED


def test_batch_values_check_their_bounds() -> None:
    with pytest.raises(LocalProtocolError):
        SendBatch(1, MID, TOK, ())
    with pytest.raises(LocalProtocolError):
        SendBatch(1, MID, TOK, (b"",) * (MAX_SEND_BATCH + 1))
    with pytest.raises(LocalProtocolError):
        BatchResult(0, 0)  # stored, but with no seq
    with pytest.raises(LocalProtocolError):
        BatchResult(int(ErrorCode.QUOTA_EXCEEDED), 5)  # refused, but with a seq
    with pytest.raises(LocalProtocolError):
        BatchStored(1, ())
    assert "x" * 8 not in repr(SendBatch(1, MID, TOK, (b"x" * 8,)))


@pytest.mark.parametrize("count", [0, MAX_SEND_BATCH + 1])
def test_a_batch_answer_count_out_of_bounds_is_malformed(count: int) -> None:
    w = Writer().u8(rf.RELAY_PROTOCOL_VERSION).u8(rf.FrameKind.BATCH_STORED).u32(9).u16(count)
    for _ in range(count):
        w.u16(0).u64(1)
    with pytest.raises(FrameError) as caught:
        decode_response(w.getvalue())
    assert caught.value.code is ErrorCode.MALFORMED


def test_a_batch_is_answered_whole_with_one_outcome_per_envelope() -> None:
    client, server = ClientConnection(), ServerConnection()
    rid, data = client.send_request(SendBatch(0, MID, TOK, (b"a", b"b")))
    assert isinstance(server.receive(data), SendBatch)
    answer = BatchStored(rid, (BatchResult(0, 1), BatchResult(int(ErrorCode.BAD_ENVELOPE), 0)))
    [event] = client.receive(server.reply(answer))
    assert isinstance(event, Answer) and event.frame == answer
    assert client.outstanding == 0 and server.outstanding == 0


def test_a_batch_answer_of_another_length_is_the_relays_fault_and_changes_nothing() -> None:
    client, server = ClientConnection(), ServerConnection()
    rid, data = client.send_request(SendBatch(0, MID, TOK, (b"a", b"b")))
    server.receive(data)
    short = encode(BatchStored(rid, (BatchResult(0, 1),)))
    with pytest.raises(RelayConnectionError):
        client.receive(short)
    assert client.is_outstanding(rid)
    # A Stored receipt does not answer a batch either.
    with pytest.raises(RelayConnectionError):
        client.receive(encode(rf.Stored((rf.StoredItem(rid, 1),))))
    assert client.is_outstanding(rid)

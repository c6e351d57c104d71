"""The relay frame codec: round trips, bounds, strictness, secrets out of repr."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.protocol import relayframes as rf
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.relayframes import (
    MAX_ACK_SEQS,
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    Ack,
    Acked,
    Create,
    Created,
    Delete,
    Deleted,
    Deliver,
    Delivery,
    Error,
    ErrorCode,
    Fetch,
    Fetched,
    FrameError,
    Ping,
    Pong,
    Send,
    Stored,
    StoredItem,
    Subscribe,
    Subscribed,
    decode_request,
    decode_response,
    encode,
    token_hash,
)

u32 = st.integers(0, 2**32 - 1)
seq = st.integers(1, rf.MAX_SEQ)
mid = st.binary(min_size=16, max_size=16)
tok = st.binary(min_size=32, max_size=32)
small_env = st.binary(max_size=2048)

requests = st.one_of(
    st.builds(Create, u32, mid, tok, tok),
    st.builds(Send, u32, mid, tok, small_env),
    st.builds(Subscribe, u32, mid, tok),
    st.builds(Fetch, u32, mid, tok, st.integers(0, rf.MAX_SEQ), st.integers(1, MAX_BATCH_ITEMS)),
    st.builds(Ack, u32, mid, tok, st.lists(seq, min_size=1, max_size=MAX_ACK_SEQS).map(tuple)),
    st.builds(Delete, u32, mid, tok),
    st.builds(Ping, u32),
)
deliveries = st.lists(st.builds(Delivery, seq, st.binary(max_size=512)), max_size=20).map(tuple)
responses = st.one_of(
    st.builds(Created, u32),
    st.builds(Stored, st.lists(st.builds(StoredItem, u32, seq), min_size=1,
                               max_size=MAX_BATCH_ITEMS).map(tuple)),
    st.builds(Subscribed, u32, u32),
    st.builds(Fetched, u32, deliveries, st.booleans()),
    st.builds(Acked, u32, st.integers(0, MAX_ACK_SEQS)),
    st.builds(Deleted, u32),
    st.builds(Pong, u32),
    st.builds(Deliver, mid, deliveries.filter(bool)),
    st.builds(Error, u32, st.integers(1, 0xFFFF), st.text(max_size=60)),
)


@given(requests)
def test_requests_round_trip(frame: rf.Request) -> None:
    assert decode_request(encode(frame)) == frame


@given(responses)
def test_responses_round_trip(frame: rf.Response) -> None:
    assert decode_response(encode(frame)) == frame


@given(requests, st.data())
def test_every_truncation_is_refused(frame: rf.Request, data: st.DataObject) -> None:
    raw = encode(frame)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(FrameError) as refused:
        decode_request(raw[:cut])
    assert refused.value.code in (ErrorCode.MALFORMED, ErrorCode.UNKNOWN_COMMAND)
    with pytest.raises(FrameError):
        decode_request(raw + b"\x00")


@given(st.binary(max_size=200))
def test_any_bytes_give_a_frame_or_remote_error(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda k, tail: bytes([1, k]) + tail, st.integers(0, 255),
                           st.binary(max_size=300))))
def test_any_bytes_decode_in_bounds_or_raise_frame_error_only(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        try:
            frame = decode(data)  # type: ignore[operator]
        except FrameError as exc:
            assert exc.code in (ErrorCode.MALFORMED, ErrorCode.UNKNOWN_COMMAND,
                                ErrorCode.UNSUPPORTED_VERSION)
            continue
        assert encode(frame) == data  # one encoding per value


def test_error_codes_and_request_ids_of_refusals() -> None:
    with pytest.raises(FrameError) as unknown:
        decode_request(b"\x01\x42\x00\x00\x01\x00")
    assert (unknown.value.code, unknown.value.request_id) == (ErrorCode.UNKNOWN_COMMAND, 256)
    with pytest.raises(FrameError) as version:
        decode_request(b"\x09\x07\x00\x00\x00\x01")
    assert version.value.code == ErrorCode.UNSUPPORTED_VERSION
    with pytest.raises(FrameError) as short:
        decode_request(encode(Ping(77))[:-1])
    assert short.value.code == ErrorCode.MALFORMED
    with pytest.raises(FrameError) as bad_ack:
        decode_request(b"\x01\x05\x00\x00\x00\x05" + b"\x00" * 48 + b"\x00\x00")
    assert (bad_ack.value.code, bad_ack.value.request_id) == (ErrorCode.MALFORMED, 5)


def test_bounds_are_enforced_both_ways() -> None:
    with pytest.raises(LocalProtocolError):
        Ack(1, b"\x00" * 16, b"\x00" * 32, tuple(range(1, MAX_ACK_SEQS + 2)))
    with pytest.raises(LocalProtocolError):
        Deliver(b"\x00" * 16, tuple(Delivery(i + 1, b"\x00" * 65536) for i in range(5)))
    assert MAX_BATCH_BYTES == 4 * 65536
    oversized = b"\x01\x02" + b"\x00" * rf.MAX_REQUEST_FRAME_SIZE
    with pytest.raises(FrameError):
        decode_request(oversized)
    with pytest.raises(LocalProtocolError):
        Fetch(1, b"\x00" * 16, b"\x00" * 32, 0, 0)


def test_tokens_and_envelopes_stay_out_of_repr() -> None:
    token = b"\xaa" * 32
    frames = [Send(1, b"\x00" * 16, token, b"\xbb" * 40), Subscribe(1, b"\x00" * 16, token),
              Ack(1, b"\x00" * 16, token, (1,)), Delete(1, b"\x00" * 16, token),
              Fetch(1, b"\x00" * 16, token)]
    for frame in frames:
        text = repr(frame)
        assert "aa" * 4 not in text and "\\xaa" not in text and "\\xbb" not in text


def test_token_hash_is_domain_separated_sha256() -> None:
    import hashlib

    token = bytes(range(32))
    assert token_hash(token) != hashlib.sha256(token).digest()
    assert len(token_hash(token)) == 32
    with pytest.raises(LocalProtocolError):
        token_hash(b"short")


def test_public_names_are_pinned() -> None:
    assert "decode_request" in rf.__all__ and "encode" in rf.__all__
    assert all(hasattr(rf, name) for name in rf.__all__)

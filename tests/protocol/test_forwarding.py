"""Private routing, sans I/O: the sealed send, the sealed answer, the published key, the
new frames and their reply kinds (docs/relay.md "Private routing")."""

from __future__ import annotations

import contextlib
import os

import pytest
from cryptography.hazmat.primitives import hpke
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.protocol import relayframes as rf
from backchannel.protocol.envelope import MAILBOX_ID_SIZE, MAX_ENVELOPE_SIZE
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.forwarding import (
    KEY_SEED_SIZE,
    ForgedReply,
    ForwardOutcome,
    InnerSend,
    RelayKeyPair,
    RelayPublicKey,
    SealError,
    open_reply,
    open_send,
    seal_bytes,
    seal_reply,
    seal_send,
)
from backchannel.protocol.relayconn import (
    Answer,
    ClientConnection,
    RelayConnectionError,
    RelayConnectionMisuse,
    ServerConnection,
)
from backchannel.protocol.relayframes import (
    FORWARD_KEY_ID_SIZE,
    MAX_DESTINATION_SIZE,
    MAX_SEALED_SEND_SIZE,
    REPLY_KEY_SIZE,
    SEALED_REPLY_SIZE,
    ErrorCode,
    Forward,
    FrameError,
    Pong,
    SealedResult,
    SealedSend,
    decode_request,
    decode_response,
    encode,
)

KEYS = RelayKeyPair(bytes(range(KEY_SEED_SIZE)))
OTHER = RelayKeyPair(bytes(KEY_SEED_SIZE))

u32 = st.integers(0, 2**32 - 1)
kid = st.binary(min_size=FORWARD_KEY_ID_SIZE, max_size=FORWARD_KEY_ID_SIZE)
sealed_bytes = st.binary(max_size=4096)
destination = st.text(min_size=1, max_size=64).filter(
    lambda t: len(t.encode("utf-8")) <= MAX_DESTINATION_SIZE)
inner_sends = st.builds(InnerSend, st.binary(min_size=16, max_size=16),
                        st.binary(min_size=32, max_size=32),
                        st.binary(min_size=32, max_size=32), st.binary(max_size=2048))


def test_sizes_agree_with_the_suite_and_the_layout() -> None:
    assert hpke.KEM.MLKEM768_X25519.enc_length() == rf.HPKE_ENC_SIZE
    largest = InnerSend(b"\x01" * MAILBOX_ID_SIZE, b"\x02" * 32, b"\x03" * REPLY_KEY_SIZE,
                        b"\x04" * MAX_ENVELOPE_SIZE)
    assert len(seal_send(KEYS.public, largest)) == MAX_SEALED_SEND_SIZE
    reply = seal_reply(b"\x05" * 32, ForwardOutcome(1, 0), b"\x06" * 12)
    assert len(reply) == SEALED_REPLY_SIZE
    frame = Forward(1, KEYS.public.key_id, "w" * MAX_DESTINATION_SIZE,
                    b"\x00" * MAX_SEALED_SEND_SIZE)
    assert len(encode(frame)) == rf.MAX_REQUEST_FRAME_SIZE


def test_a_key_follows_from_its_seed() -> None:
    again = RelayKeyPair(bytes(range(KEY_SEED_SIZE)))
    assert again.public == KEYS.public and again.public.key_id == KEYS.public.key_id
    assert KEYS.public.key_id != OTHER.public.key_id
    assert len(KEYS.public.fingerprint.split()) == 16
    assert "seed" not in repr(KEYS) and KEYS.seed.hex() not in repr(KEYS)
    with pytest.raises(LocalProtocolError):
        RelayKeyPair(b"short")


@settings(max_examples=30, deadline=None)
@given(inner_sends)
def test_a_sealed_send_opens_with_the_key_only(inner: InnerSend) -> None:
    sealed = seal_send(KEYS.public, inner)
    assert open_send(KEYS, KEYS.public.key_id, sealed) == inner
    assert inner.send_token not in sealed and inner.mailbox_id not in sealed
    with pytest.raises(SealError) as wrong:
        open_send(OTHER, OTHER.public.key_id, sealed)
    assert wrong.value.code == ErrorCode.UNKNOWN_KEY
    with pytest.raises(SealError) as named:  # the right key, another id
        open_send(KEYS, OTHER.public.key_id, sealed)
    assert named.value.code == ErrorCode.UNKNOWN_KEY


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 7))
def test_a_damaged_seal_does_not_open(position: int, bit: int) -> None:
    sealed = bytearray(seal_send(KEYS.public, InnerSend(b"\x01" * 16, b"\x02" * 32,
                                                        b"\x03" * 32, b"e" * 100)))
    sealed[position % len(sealed)] ^= 1 << bit
    with pytest.raises(SealError) as refused:
        open_send(KEYS, KEYS.public.key_id, bytes(sealed))
    assert refused.value.code == ErrorCode.UNKNOWN_KEY


def test_a_seal_of_something_else_than_a_deposit_is_malformed() -> None:
    forward = encode(Forward(1, KEYS.public.key_id, "ws://127.0.0.1:1/", b"x"))
    for inside in (forward, b"", b"\x00" * 84 + b"trailing"):
        with pytest.raises(SealError) as refused:
            open_send(KEYS, KEYS.public.key_id, seal_bytes(KEYS.public, inside))
        assert refused.value.code == ErrorCode.MALFORMED
    with pytest.raises(SealError):
        open_send(KEYS, KEYS.public.key_id, b"\x00" * (MAX_SEALED_SEND_SIZE + 1))


@given(st.integers(1, rf.MAX_SEQ), st.sampled_from([c for c in ErrorCode]))
def test_the_answer_opens_under_its_reply_key_only(seq: int, code: ErrorCode) -> None:
    key, other = os.urandom(32), os.urandom(32)
    for outcome in (ForwardOutcome(seq, 0), ForwardOutcome(0, code)):
        sealed = seal_reply(key, outcome, os.urandom(12))
        assert open_reply(key, sealed) == outcome
        assert open_reply(key, sealed).stored == (outcome.code == 0)
        with pytest.raises(ForgedReply):
            open_reply(other, sealed)
        flipped = bytes([sealed[0] ^ 1]) + sealed[1:]
        with pytest.raises(ForgedReply):
            open_reply(key, flipped)


@given(st.binary(max_size=80))
def test_any_answer_bytes_open_or_are_forged(data: bytes) -> None:
    with contextlib.suppress(ForgedReply):
        open_reply(b"\x07" * 32, data)
        raise AssertionError("random bytes opened")


def test_the_published_key_round_trips_and_is_strict() -> None:
    public = KEYS.public
    assert RelayPublicKey.from_bytes(public.to_bytes()) == public
    assert RelayPublicKey.from_text(public.to_text()) == public
    data = public.to_bytes()
    for bad in (data[:-1], data + b"\x00", b"\x02" + data[1:], data[:1] + b"\x00" * 8 + data[9:],
                data[:9] + b"\xff" * 1184 + data[-32:]):
        with pytest.raises(RemoteProtocolError):
            RelayPublicKey.from_bytes(bad)
    text = public.to_text()
    for bad_text in (text[:-1], text + "A", "*" + text[1:], text[:-1] + "é"):
        with pytest.raises(RemoteProtocolError):
            RelayPublicKey.from_text(bad_text)


@given(st.binary(max_size=1300))
def test_published_key_decoder_raises_only_its_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        assert RelayPublicKey.from_bytes(data).to_bytes() == data
    with contextlib.suppress(RemoteProtocolError):
        text = data.decode("latin-1")
        assert RelayPublicKey.from_text(text).to_text() == text


forwarding_requests = st.one_of(
    st.builds(Forward, u32, kid, destination, sealed_bytes),
    st.builds(SealedSend, u32, kid, sealed_bytes),
)


@given(forwarding_requests)
def test_new_requests_round_trip(frame: Forward | SealedSend) -> None:
    assert decode_request(encode(frame)) == frame


@given(u32, st.binary(min_size=SEALED_REPLY_SIZE, max_size=SEALED_REPLY_SIZE))
def test_sealed_result_round_trips(rid: int, sealed: bytes) -> None:
    frame = SealedResult(rid, sealed)
    assert decode_response(encode(frame)) == frame


@given(forwarding_requests, st.integers(1, 40))
def test_truncated_or_extended_new_requests_are_malformed(frame: Forward | SealedSend,
                                                          cut: int) -> None:
    data = encode(frame)
    for bad in (data[:-cut] if cut < len(data) - 6 else data[:6], data + b"\x00" * cut):
        with pytest.raises(FrameError) as refused:
            decode_request(bad)
        assert refused.value.code == ErrorCode.MALFORMED
        assert refused.value.request_id == frame.request_id


def test_sealed_result_of_another_size_is_malformed() -> None:
    good = encode(SealedResult(9, b"\x00" * SEALED_REPLY_SIZE))
    for bad in (good[:-1], good + b"\x00"):
        with pytest.raises(FrameError) as refused:
            decode_response(bad)
        assert refused.value.code == ErrorCode.MALFORMED
    for size in (SEALED_REPLY_SIZE - 1, SEALED_REPLY_SIZE + 1):
        with pytest.raises(LocalProtocolError):
            SealedResult(9, b"\x00" * size)


def test_the_new_frames_keep_secrets_out_of_repr() -> None:
    frame = Forward(1, b"\x01" * 8, "ws://127.0.0.1:1/", b"SECRET-SEALED")
    assert "SECRET" not in repr(frame)
    assert "SECRET" not in repr(SealedSend(1, b"\x01" * 8, b"SECRET-SEALED"))
    inner = InnerSend(b"\x01" * 16, b"S" * 32, b"R" * 32, b"E")
    assert "SSSS" not in repr(inner) and "RRRR" not in repr(inner)


def test_forward_and_sealed_send_are_answered_by_a_sealed_result() -> None:
    client, server = ClientConnection(), ServerConnection()
    rid, data = client.send_request(Forward(0, b"\x01" * 8, "ws://127.0.0.1:1/", b"s"))
    request = server.receive(data)
    assert isinstance(request, Forward)
    with pytest.raises(RelayConnectionMisuse):
        server.reply(Pong(rid))
    answer = server.reply(SealedResult(rid, b"\x00" * SEALED_REPLY_SIZE))
    [event] = client.receive(answer)
    assert isinstance(event, Answer) and isinstance(event.frame, SealedResult)
    rid, _ = client.send_request(SealedSend(0, b"\x01" * 8, b"s"))
    with pytest.raises(RelayConnectionError):
        client.receive(encode(Pong(rid)))
    assert client.is_outstanding(rid)  # the wrong answer was not taken in

"""Properties of the protocol core, checked by hypothesis."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import AEAD_TAG_SIZE, BODY_NONCE_SIZE
from backchannel.protocol.e2e.ratchet import SEALED_HEADER_SIZE, DuplicateMessage
from backchannel.protocol.e2e.session import PAYLOAD_RATCHET, SealedMessage, Session
from backchannel.protocol.envelope import BUCKETS, Envelope
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.protocol.message import Message
from backchannel.testing import SeededRng
from tests.protocol.conftest import make_pair

SIDES = ("alice", "bob")

ops = st.lists(
    st.one_of(
        st.tuples(st.just("seal"), st.sampled_from(SIDES), st.integers(0, 200)),
        st.tuples(st.just("deliver"), st.sampled_from(SIDES), st.integers(0, 10**6)),
        st.tuples(st.just("duplicate"), st.sampled_from(SIDES), st.integers(0, 10**6)),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_reorder_drop_duplicate_delivers_each_survivor_exactly_once(
    script: list[tuple[str, str, int]],
) -> None:
    pair = make_pair("interleavings")
    sessions = {"alice": pair.alice, "bob": pair.bob}
    # Per receiving side: (payload, body) in flight; and the bodies each side received.
    in_flight: dict[str, list[tuple[bytes, bytes]]] = {"alice": [], "bob": []}
    delivered: dict[str, list[tuple[bytes, bytes]]] = {"alice": [], "bob": []}
    received: dict[str, list[bytes]] = {"alice": [], "bob": []}
    positions: dict[bytes, tuple[bytes, int]] = {}
    counter = 0
    for op, side, n in script:
        other = "bob" if side == "alice" else "alice"
        if op == "seal":
            counter += 1
            body = f"{side} {counter} ".encode() + b"." * n
            sealed = sessions[side].seal(1, body, counter, pair.rng)
            in_flight[other].append((sealed.payload, body))
        elif op == "deliver" and in_flight[side]:
            payload, body = in_flight[side].pop(n % len(in_flight[side]))
            opened = sessions[side].open_with_position(payload, pair.rng)
            assert opened.message.body == body
            position = (opened.position.ratchet_key, opened.position.n)
            assert position not in positions.values()  # one message per position
            positions[payload] = position
            received[side].append(body)
            delivered[side].append((payload, body))
        elif op == "duplicate" and delivered[side]:
            payload, _ = delivered[side][n % len(delivered[side])]
            before = sessions[side].encode()
            with pytest.raises((DuplicateMessage, DecryptionFailed)) as caught:
                sessions[side].open(payload, pair.rng)
            if isinstance(caught.value, DuplicateMessage):  # a copy: the same position
                assert (caught.value.ratchet_key, caught.value.n) == positions[payload]
            assert sessions[side].encode() == before
    for side in SIDES:
        assert len(received[side]) == len(set(received[side]))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _body_parts(payload: bytes) -> tuple[bytes, bytes]:
    """(body nonce, body ciphertext without its tag) of a ratchet-only v2 payload."""
    assert payload[0] == PAYLOAD_RATCHET
    body = payload[1 + SEALED_HEADER_SIZE :]
    return body[:BODY_NONCE_SIZE], body[BODY_NONCE_SIZE:-AEAD_TAG_SIZE]


def _padded(sealed: SealedMessage) -> bytes:
    encoded = sealed.message.encode()
    capacity = len(sealed.payload) - 1 - SEALED_HEADER_SIZE - BODY_NONCE_SIZE - AEAD_TAG_SIZE
    return len(encoded).to_bytes(4, "big") + encoded + bytes(capacity - 4 - len(encoded))


same_length_texts = st.integers(1, 300).flatmap(
    lambda n: st.tuples(st.binary(min_size=n, max_size=n), st.binary(min_size=n, max_size=n))
)


@settings(max_examples=40, deadline=None)
@given(same_length_texts, st.booleans())
def test_a_forked_state_is_no_two_time_pad(texts: tuple[bytes, bytes], same_rng: bool) -> None:
    """The same Session restored twice, each sealing another plaintext under the same MK:
    the v2 bodies' ciphertexts are not XOR-related (even if both forks' random sources
    repeat, as a restored VM snapshot might), and with distinct sources the nonces differ."""
    pair = make_pair("fork")
    state = pair.alice.encode()
    fork_a, fork_b = Session.decode(state), Session.decode(state)
    rng_a = SeededRng("fork rng")
    rng_b = SeededRng("fork rng") if same_rng else SeededRng("another fork rng")
    text_a, text_b = texts
    if text_a == text_b:
        text_b = bytes([text_b[0] ^ 1]) + text_b[1:]
    sealed_a, sealed_b = fork_a.seal(1, text_a, 0, rng_a), fork_b.seal(1, text_b, 0, rng_b)
    nonce_a, ct_a = _body_parts(sealed_a.payload)
    nonce_b, ct_b = _body_parts(sealed_b.payload)
    assert len(ct_a) == len(ct_b)
    assert _xor(ct_a, ct_b) != _xor(_padded(sealed_a), _padded(sealed_b))
    assert (nonce_a == nonce_b) == same_rng
    # Both are authentic: the receiver opens one and reports the other at its position.
    opened = pair.bob.open_with_position(sealed_a.payload, pair.rng)
    with pytest.raises(DuplicateMessage) as caught:
        pair.bob.open(sealed_b.payload, pair.rng)
    assert (caught.value.ratchet_key, caught.value.n) == (
        opened.position.ratchet_key,
        opened.position.n,
    )


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_single_bit_flip_of_a_payload_is_rejected_and_state_unchanged() -> None:
    pair = make_pair("bit flips")
    payload = pair.alice.seal(1, b"do not alter", 0, pair.rng).payload
    before = pair.bob.encode()
    for bit in range(len(payload) * 8):
        with pytest.raises((DecryptionFailed, RemoteProtocolError)):
            pair.bob.open(_flip(payload, bit), pair.rng)
    assert pair.bob.encode() == before
    assert pair.bob.open(payload, pair.rng).body == b"do not alter"


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0))
def test_bit_flips_of_an_initiation_never_start_a_session(bit: int) -> None:
    rng = SeededRng("initiation flips")
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    payload = Session.initiate(alice, prekeys.bundle(bob, 1), rng).seal(1, b"x", 0, rng).payload
    with pytest.raises((DecryptionFailed, RemoteProtocolError)):
        Session.respond(bob, prekeys, _flip(payload, bit % (len(payload) * 8)), rng)


def test_envelope_version_flips_are_rejected() -> None:
    envelope = Envelope(b"\x01" * 16, b"\x00" * (BUCKETS[0] - 17)).encode()
    for bit in range(8):
        with pytest.raises(RemoteProtocolError):
            Envelope.decode(_flip(envelope, bit))


messages = st.builds(
    Message,
    st.binary(min_size=16, max_size=16),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 0xFFFF),
    st.binary(max_size=2000),
)


@given(messages)
def test_message_codec_round_trips(message: Message) -> None:
    assert Message.decode(message.encode()) == message


@given(st.binary(max_size=300))
def test_message_decoder_rejects_garbage_with_one_error_type(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        Message.decode(data)


@given(st.binary(max_size=2000))
def test_other_decoders_reject_garbage_with_one_error_type(data: bytes) -> None:
    for decode in (
        PublicIdentity.decode,
        PrekeyBundle.decode,
        PrekeySecrets.decode,
        Session.decode,
        Envelope.decode,
    ):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)


@given(st.sampled_from(BUCKETS), st.binary(min_size=16, max_size=16))
def test_envelope_round_trips(bucket: int, mailbox_id: bytes) -> None:
    envelope = Envelope(mailbox_id, (bytes(range(256)) * (bucket // 256))[: bucket - 17])
    assert Envelope.decode(envelope.encode()) == envelope


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=1200), st.integers(0, 10**6))
def test_truncated_or_extended_session_state_is_refused(junk: bytes, cut: int) -> None:
    state = make_pair("state").bob.encode()
    for damaged in (state[: cut % len(state)], state + junk[:1] if junk else state + b"\x00"):
        with pytest.raises(RemoteProtocolError):
            Session.decode(damaged)

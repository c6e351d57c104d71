"""Payload v2 (misuse-resistant bodies) beside payload v1, positions, forks and the strict
decoders: what docs/protocol.md §5, §6, §8 and §9 promise."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest

from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.ratchet import (
    SEALED_HEADER_SIZE,
    DuplicateMessage,
    Ratchet,
)
from backchannel.protocol.e2e.session import (
    MAX_INITIATION_BODY_SIZE,
    PAYLOAD_INITIATION,
    PAYLOAD_RATCHET,
    PAYLOAD_V1_INITIATION,
    PAYLOAD_V1_RATCHET,
    Session,
    starts_session,
)
from backchannel.protocol.envelope import BUCKETS, ENVELOPE_HEADER_SIZE
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.message import MAX_BODY_SIZE, MAX_RECEIVED_BODY_SIZE, Message
from backchannel.testing import SeededRng

from .conftest import Pair

ROOT = Path(__file__).resolve().parent.parent.parent
STATE_V1 = ROOT / "tests" / "vectors" / "state_v1.json"
SPEC = ROOT / "docs" / "protocol.md"
LARGEST_PAYLOAD = BUCKETS[-1] - ENVELOPE_HEADER_SIZE


# -- payload types ---------------------------------------------------------------------


def test_type_bytes_and_the_session_starting_ones() -> None:
    assert (PAYLOAD_V1_INITIATION, PAYLOAD_V1_RATCHET) == (0x01, 0x02)
    assert (PAYLOAD_INITIATION, PAYLOAD_RATCHET) == (0x03, 0x04)
    assert starts_session(b"\x03rest") and starts_session(b"\x01rest")
    assert starts_session(b"\x05rest")  # payload v3, with the post-quantum ratchet
    for payload in (b"", b"\x02", b"\x04", b"\x06", b"\x07", b"\x00"):
        assert not starts_session(payload)


def test_senders_produce_v2_only() -> None:
    rng = SeededRng("v2 only")
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    session = Session.initiate(alice, prekeys.bundle(bob, 1), rng)
    first = session.seal(1, b"hi", 0, rng).payload
    assert first[0] == PAYLOAD_INITIATION and starts_session(first)
    bob_session, _, _ = Session.respond(bob, prekeys, first, rng)
    assert bob_session.seal(1, b"yo", 0, rng).payload[0] == PAYLOAD_RATCHET


def test_unknown_payload_type_and_a_size_that_is_no_bucket_are_refused(pair: Pair) -> None:
    payload = pair.alice.seal(1, b"x", 0, pair.rng).payload
    with pytest.raises(RemoteProtocolError, match="unknown payload type"):
        pair.bob.open(b"\x07" + payload[1:], pair.rng)
    # 0x06 is known (payload v3) but this session has no post-quantum ratchet.
    with pytest.raises(RemoteProtocolError, match="post-quantum payload in a session"):
        pair.bob.open(b"\x06" + payload[1:], pair.rng)
    with pytest.raises(RemoteProtocolError, match="bucket"):
        pair.bob.open(payload[:-1], pair.rng)


# -- 0.1 states and payloads keep working -----------------------------------------------


def test_a_01_stored_state_opens_01_payloads_in_flight_and_continues_in_v2() -> None:
    fixture = json.loads(STATE_V1.read_text())
    rng = SeededRng("after the upgrade")
    alice = Session.decode(bytes.fromhex(fixture["alice_state"]))
    bob = Session.decode(bytes.fromhex(fixture["bob_state"]))
    to_bob = bytes.fromhex(fixture["to_bob"]["payload"])
    to_alice = bytes.fromhex(fixture["to_alice"]["payload"])
    assert (to_bob[0], to_alice[0]) == (PAYLOAD_V1_RATCHET, PAYLOAD_V1_RATCHET)
    assert bob.open(to_bob, rng).body == bytes.fromhex(fixture["to_bob"]["body"])
    assert alice.open(to_alice, rng).body == bytes.fromhex(fixture["to_alice"]["body"])
    reply = bob.seal(1, b"now in v2", 5, rng)
    assert reply.payload[0] == PAYLOAD_RATCHET
    assert alice.open(reply.payload, rng).body == b"now in v2"
    assert bob.open(alice.seal(1, b"both ways", 6, rng).payload, rng).body == b"both ways"
    assert Session.decode(bob.encode()).encode() == bob.encode()


# -- the true maxima --------------------------------------------------------------------


def test_stated_maxima_are_the_true_ones_and_the_spec_states_them() -> None:
    assert MAX_BODY_SIZE == 65347
    assert MAX_INITIATION_BODY_SIZE == 64131
    assert MAX_RECEIVED_BODY_SIZE == 65359
    spec = SPEC.read_text()
    for figure in ("65,347", "64,131", "64,135", "65,359"):
        assert figure in spec


def test_the_largest_ratchet_body_fits_and_one_more_byte_is_refused(pair: Pair) -> None:
    sealed = pair.alice.seal(1, b"x" * MAX_BODY_SIZE, 0, pair.rng)
    assert len(sealed.payload) == LARGEST_PAYLOAD
    assert pair.bob.open(sealed.payload, pair.rng).body == b"x" * MAX_BODY_SIZE
    before = pair.alice.encode()
    with pytest.raises(LocalProtocolError, match="too large"):
        pair.alice.seal(1, b"x" * (MAX_BODY_SIZE + 1), 0, pair.rng)
    assert pair.alice.encode() == before


def test_the_largest_initiating_body_fits_and_one_more_byte_is_refused() -> None:
    rng = SeededRng("largest initiation")
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    session = Session.initiate(alice, prekeys.bundle(bob, 1), rng)
    body = b"z" * MAX_INITIATION_BODY_SIZE
    sealed = session.seal(1, body, 0, rng)
    assert sealed.payload[0] == PAYLOAD_INITIATION and len(sealed.payload) == LARGEST_PAYLOAD
    assert Session.respond(bob, prekeys, sealed.payload, rng)[1].body == body
    before = session.encode()
    with pytest.raises(LocalProtocolError, match="too large"):
        session.seal(1, body + b"z", 0, rng)
    assert session.encode() == before


def test_without_a_one_time_prekey_four_more_bytes_fit() -> None:
    rng = SeededRng("largest initiation without opk")
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=0)
    session = Session.initiate(alice, prekeys.bundle(bob, None), rng)
    sealed = session.seal(1, b"z" * (MAX_INITIATION_BODY_SIZE + 4), 0, rng)
    assert len(sealed.payload) == LARGEST_PAYLOAD
    with pytest.raises(LocalProtocolError, match="too large"):
        session.seal(1, b"z" * (MAX_INITIATION_BODY_SIZE + 5), 0, rng)


# -- authentic but malformed plaintexts commit nothing ----------------------------------


def _raw_payload(pair: Pair, padded: bytes) -> bytes:
    """An authentic ratchet-only payload around any padded plaintext (a buggy sender)."""
    ratchet_part = pair.alice._ratchet.encrypt(padded, pair.alice.associated_data, pair.rng)
    return bytes((PAYLOAD_RATCHET,)) + ratchet_part


def _message(text: bytes) -> bytes:
    return Message(b"\x07" * 16, 9, b"\x00" * 32, 0, 1, text).encode()


def test_a_payload_in_a_larger_bucket_than_needed_is_refused_and_commits_nothing(
    pair: Pair,
) -> None:
    encoded = _message(b"small")
    capacity = BUCKETS[1] - ENVELOPE_HEADER_SIZE - 1 - SEALED_HEADER_SIZE - 12 - 16 - 4
    padded = struct.pack(">I", len(encoded)) + encoded + bytes(capacity - len(encoded))
    payload = _raw_payload(pair, padded)
    assert len(payload) + ENVELOPE_HEADER_SIZE == BUCKETS[1]
    before = pair.bob.encode()
    for _ in range(2):  # and again: still refused the same way, not a "duplicate"
        with pytest.raises(RemoteProtocolError, match="smallest bucket"):
            pair.bob.open(payload, pair.rng)
        assert pair.bob.encode() == before
    assert pair.bob.open(pair.alice.seal(1, b"next", 0, pair.rng).payload, pair.rng).body == b"next"


@pytest.mark.parametrize(
    "tail", [b"\x01", b"not a message"], ids=["non-zero padding", "bad message"]
)
def test_an_authentic_malformed_plaintext_commits_nothing(pair: Pair, tail: bytes) -> None:
    capacity = BUCKETS[0] - ENVELOPE_HEADER_SIZE - 1 - SEALED_HEADER_SIZE - 12 - 16 - 4
    if tail == b"\x01":
        encoded = _message(b"m")
        padded = struct.pack(">I", len(encoded)) + encoded + b"\x01"
    else:
        encoded = tail
        padded = struct.pack(">I", len(encoded)) + encoded
    padded += bytes(capacity + 4 - len(padded))
    payload = _raw_payload(pair, padded)
    before = pair.bob.encode()
    with pytest.raises(RemoteProtocolError):
        pair.bob.open(payload, pair.rng)
    assert pair.bob.encode() == before


# -- positions, copies and forks --------------------------------------------------------


def test_an_opened_message_says_where_it_sat_and_a_duplicate_says_the_same(pair: Pair) -> None:
    sealed = pair.alice.seal(1, b"once", 0, pair.rng)
    opened = pair.bob.open_with_position(sealed.payload, pair.rng)
    assert opened.message.body == b"once"
    alice_ratchet_key = pair.alice._ratchet.dhs.public_key().public_bytes_raw()
    assert opened.position.ratchet_key == alice_ratchet_key
    assert opened.position.n == pair.alice._ratchet.ns - 1
    assert opened.position.sealed_header == sealed.payload[1 : 1 + SEALED_HEADER_SIZE]
    with pytest.raises(DuplicateMessage) as caught:
        pair.bob.open(sealed.payload, pair.rng)
    assert (caught.value.ratchet_key, caught.value.n) == (alice_ratchet_key, opened.position.n)
    assert caught.value.position == opened.position
    assert str(caught.value) == "message was already received"


def test_a_fork_is_told_from_a_copy_by_its_sealed_header(pair: Pair) -> None:
    state = pair.alice.encode()
    fork_a, fork_b = Session.decode(state), Session.decode(state)
    first = fork_a.seal(1, b"from one process", 0, pair.rng)
    second = fork_b.seal(1, b"from another one", 0, pair.rng)
    opened = pair.bob.open_with_position(first.payload, pair.rng)
    with pytest.raises(DuplicateMessage) as fork:
        pair.bob.open(second.payload, pair.rng)
    assert (fork.value.ratchet_key, fork.value.n) == (
        opened.position.ratchet_key,
        opened.position.n,
    )
    assert fork.value.sealed_header != opened.position.sealed_header  # a fork
    # A relay's copy with its body altered keeps the sealed header: a copy, not a fork.
    tampered = first.payload[:-1] + bytes([first.payload[-1] ^ 1])
    with pytest.raises(DuplicateMessage) as copy:
        pair.bob.open(tampered, pair.rng)
    assert copy.value.sealed_header == opened.position.sealed_header


def test_the_first_message_has_a_position_too() -> None:
    rng = SeededRng("first position")
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    session = Session.initiate(alice, prekeys.bundle(bob, 1), rng)
    payload = session.seal(1, b"hi", 0, rng).payload
    bob_session, opened, _ = Session.respond_with_position(bob, prekeys, payload, rng)
    assert opened.position.n == 0 and opened.message.body == b"hi"
    with pytest.raises(DuplicateMessage):
        bob_session.open(payload, rng)


def test_a_later_payload_with_another_initiation_is_refused() -> None:
    rng = SeededRng("other initiation")
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=0)
    bundle = prekeys.bundle(bob, None)
    session = Session.initiate(alice, bundle, rng)
    first, second = (session.seal(1, b, 0, rng).payload for b in (b"1", b"2"))
    bob_session, _, _ = Session.respond(bob, prekeys, first, rng)
    other = Session.initiate(alice, bundle, rng).seal(1, b"x", 0, rng).payload
    size = 1 + 1212
    spliced = other[:size] + second[size:]
    before = bob_session.encode()
    with pytest.raises(RemoteProtocolError, match="different session"):
        bob_session.open(spliced, rng)
    assert bob_session.encode() == before
    assert bob_session.open(second, rng).body == b"2"


# -- strict state decoding and bundle verification --------------------------------------


def test_a_stored_key_field_of_another_length_than_0_or_32_is_refused(pair: Pair) -> None:
    ratchet = Ratchet.decode(pair.bob._ratchet.encode())
    ratchet.rk = b"12345"
    with pytest.raises(RemoteProtocolError, match="key field of 5 bytes"):
        Ratchet.decode(ratchet.encode())
    ratchet.rk = b""
    Ratchet.decode(ratchet.encode())  # absent is fine


def test_a_replaced_bundle_is_verified_again() -> None:
    rng = SeededRng("replace")
    alice, bob, mallory = (IdentityKeyPair.generate(rng) for _ in range(3))
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob, 1).encode())  # verified
    swapped = dataclasses.replace(bundle, identity=mallory.public)
    with pytest.raises(RemoteProtocolError, match="signature"):
        Session.initiate(alice, swapped, rng)
    with pytest.raises((TypeError, ValueError)):
        dataclasses.replace(bundle, identity=mallory.public, _verified=True)  # type: ignore[call-arg]
    Session.initiate(alice, bundle, rng)  # the genuine one still works

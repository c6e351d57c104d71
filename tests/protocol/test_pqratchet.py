"""The post-quantum ratchet inside sessions (docs/protocol.md §6, payload v3)."""

from __future__ import annotations

import pytest

from backchannel.protocol.e2e.chunks import decode_chunks
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.testing import SeededRng


def _pair(seed: str, pq: bool) -> tuple[Session, Session, SeededRng]:
    rng = SeededRng(seed)
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob_id, 1).encode())
    alice = Session.initiate(alice_id, bundle, rng, pq=pq)
    bob, _, _ = Session.respond(bob_id, prekeys, alice.seal(1, b"hi", 1, rng).payload, rng)
    return alice, bob, rng


def _pq(session: Session) -> int:
    state = session.post_quantum
    assert state is not None
    return state.latest


def test_epochs_complete_on_both_sides_in_1_kib_envelopes() -> None:
    alice, bob, rng = _pair("pq epochs", pq=True)
    for i in range(12):
        bob_payload = bob.seal(1, b"n" * 200, i, rng).payload
        assert len(bob_payload) + 17 == 1024
        alice.open(bob_payload, rng)
        bob.open(alice.seal(1, b"n" * 200, i, rng).payload, rng)
    assert _pq(alice) >= 3 and _pq(bob) >= 3


def test_envelope_sizes_are_the_same_with_and_without_the_pq_ratchet() -> None:
    _alice_pq, bob_pq, rng_pq = _pair("sizes", pq=True)
    _alice, bob, rng = _pair("sizes", pq=False)
    bob_pq.seal(1, b"", 0, rng_pq)
    bob.seal(1, b"", 0, rng)
    for size in (0, 200, 830, 831, 832, 833, 840, 3900, 3920, 3930, 4000):
        with_pq = len(bob_pq.seal(1, b"x" * size, 0, rng_pq).payload)
        without = len(bob.seal(1, b"x" * size, 0, rng).payload)
        assert with_pq == without, size


def test_a_flipped_bit_is_rejected_and_the_state_is_unchanged() -> None:
    alice, bob, rng = _pair("flip", pq=True)
    payload = bob.seal(1, b"note", 0, rng).payload
    before = alice.encode()
    for bit in (0, 8 * 5, 8 * 40, 8 * 100, 8 * (len(payload) - 1)):
        flipped = bytearray(payload)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((DecryptionFailed, RemoteProtocolError)):
            alice.open(bytes(flipped), rng)
        assert alice.encode() == before
    alice.open(payload, rng)


def test_a_classical_payload_in_a_pq_session_is_a_refused_downgrade() -> None:
    alice, bob, rng = _pair("downgrade", pq=True)
    payload = bob.seal(1, b"note", 0, rng).payload
    with pytest.raises(RemoteProtocolError, match="without the post-quantum ratchet"):
        alice.open(b"\x04" + payload[1:], rng)


def test_state_round_trips_mid_epoch_and_keeps_partial_objects() -> None:
    alice, bob, rng = _pair("state", pq=True)
    alice.open(bob.seal(1, b"n" * 200, 0, rng).payload, rng)
    restored = Session.decode(alice.encode())
    assert restored.encode() == alice.encode()
    state = restored.post_quantum
    assert state is not None and state.partials  # half of Bob's objects, kept
    restored.open(bob.seal(1, b"n" * 200, 1, rng).payload, rng)


def test_reordered_and_duplicated_messages_still_complete_epochs() -> None:
    alice, bob, rng = _pair("reorder", pq=True)
    for i in range(8):
        batch = [bob.seal(1, b"n" * 200, i, rng).payload for _ in range(3)]
        for payload in reversed(batch):
            alice.open(payload, rng)
        with pytest.raises(RemoteProtocolError):
            alice.open(batch[0], rng)
        bob.open(alice.seal(1, b"n" * 200, i, rng).payload, rng)
    assert _pq(alice) >= 2 and _pq(bob) >= 2


def test_chunk_area_garbage_raises_only_remote_protocol_errors() -> None:
    for area in (b"\x01", b"\x03" + bytes(30), b"\x01\x00\x00\x00\x01\x00\x00", b"\x00\x01"):
        with pytest.raises(RemoteProtocolError):
            decode_chunks(area)
    assert decode_chunks(bytes(40)) == []


def test_a_chunk_that_contradicts_units_already_received_is_refused() -> None:
    # docs/protocol.md §13: a unit that differs from one already received is a
    # RemoteProtocolError (a peer, or whoever holds its keys, cannot swap half a KEM
    # object); the same unit again is a harmless copy.
    from backchannel.protocol.e2e.chunks import CHUNK_UNIT, Chunk

    alice, bob, rng = _pair("contradict", pq=True)
    sender, receiver = bob.post_quantum, alice.post_quantum
    assert sender is not None and receiver is not None
    (chunk,) = decode_chunks(sender.copy().fill(800))
    epoch = sender.send_key()[0]
    first = Chunk(chunk.kind, chunk.epoch, chunk.first, chunk.data[: 2 * CHUNK_UNIT])
    taking = receiver.copy()
    taking.receive(epoch, [first], rng)
    taking.receive(epoch, [first], rng)  # a copy: accepted
    altered = bytearray(first.data)
    altered[CHUNK_UNIT] ^= 1
    with pytest.raises(RemoteProtocolError):
        taking.receive(epoch, [Chunk(first.kind, first.epoch, first.first, bytes(altered))], rng)

"""Properties of the PQ ratchet in sessions (docs/protocol.md §13): delivery under any
reordering, duplication and dropping; single-bit flips; decoders on garbage."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.client.invite import Hello, decode_capabilities
from backchannel.protocol.e2e.chunks import CHUNK_UNIT, Chunk, ChunkKind, decode_chunks, units_of
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.pqratchet import PqRatchet
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.testing import SeededRng
from tests.protocol.conftest import make_pair

_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pair(seed: str) -> tuple[Session, Session, SeededRng, bytes]:
    rng = SeededRng(seed)
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob_id, 1).encode())
    alice = Session.initiate(alice_id, bundle, rng, pq=True)
    first = alice.seal(1, b"first", 0, rng).payload
    bob, _, _ = Session.respond(bob_id, prekeys, first, rng)
    return alice, bob, rng, first


@dataclass
class _Wire:
    """Messages sealed in one direction, in the order sealed; none delivered yet."""

    payloads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    delivered: set[int] = field(default_factory=set)


def _deliver(receiver: Session, wire: _Wire, index: int, rng: SeededRng) -> None:
    payload = wire.payloads[index]
    if index in wire.delivered:
        before = receiver.encode()
        with pytest.raises((DecryptionFailed, RemoteProtocolError)):
            receiver.open(payload, rng)
        assert receiver.encode() == before
        return
    assert receiver.open(payload, rng).body == wire.bodies[index]
    wire.delivered.add(index)


# One step: (0, n) Bob seals n; (1, n) Alice seals n; (2, i) / (3, i) deliver the i-th
# (modulo what was sealed) of Bob's / Alice's messages: any order, any number of times,
# or never (dropped).
_STEP = st.tuples(st.integers(0, 3), st.integers(0, 40))


@_PROPERTY
@given(steps=st.lists(_STEP, max_size=40))
def test_any_reordering_duplication_and_dropping_delivers_survivors_once_and_epochs_go_on(
    steps: list[tuple[int, int]],
) -> None:
    alice, bob, rng, _first = _pair("interleavings")
    to_alice, to_bob = _Wire(), _Wire()
    # Bob can send once Alice's first message has reached him (it has).
    for action, n in steps:
        if action in (0, 1):
            sender, wire = (bob, to_alice) if action == 0 else (alice, to_bob)
            for _ in range(n % 4 + 1):
                body = f"{action} {len(wire.payloads)} ".encode() * 20
                wire.payloads.append(sender.seal(1, body, 0, rng).payload)
                wire.bodies.append(body)
        else:
            receiver, wire = (alice, to_alice) if action == 2 else (bob, to_bob)
            if wire.payloads:
                _deliver(receiver, wire, n % len(wire.payloads), rng)
    start = min(_latest(alice), _latest(bob))
    # Then a quiet exchange with nothing lost: both sides go on completing epochs.
    for i in range(10):
        _deliver(alice, to_alice, _seal(bob, to_alice, rng, i), rng)
        _deliver(bob, to_bob, _seal(alice, to_bob, rng, i), rng)
    end = min(_latest(alice), _latest(bob))
    assert end >= start + 2
    for e in range(1, end + 1):
        assert _key(alice, e) == _key(bob, e) is not None


def _seal(sender: Session, wire: _Wire, rng: SeededRng, i: int) -> int:
    body = f"quiet {i} {len(wire.payloads)}".encode()
    wire.payloads.append(sender.seal(1, body, 0, rng).payload)
    wire.bodies.append(body)
    return len(wire.payloads) - 1


def _latest(session: Session) -> int:
    pq = session.post_quantum
    assert pq is not None
    return pq.latest


def _key(session: Session, epoch: int) -> bytes | None:
    pq = session.post_quantum
    assert pq is not None
    return pq.key_for(epoch)


def _flip_fixture() -> tuple[bytes, bytes, bytes, bytes]:
    alice, bob, rng, first = _pair("flips")
    bob_state = bob.encode()
    alice.open(bob.seal(1, b"n" * 200, 0, rng).payload, rng)
    payload = bob.seal(1, b"n" * 200, 1, rng).payload
    return Session.decode(bob_state).encode(), first, alice.encode(), payload


_BOB_BEFORE, _FIRST, _ALICE_STATE, _PAYLOAD = _flip_fixture()


@settings(max_examples=150, deadline=None)
@given(bit=st.integers(0, 8 * len(_PAYLOAD) - 1))
def test_a_single_bit_flip_anywhere_is_rejected_and_the_state_is_unchanged(bit: int) -> None:
    alice = Session.decode(_ALICE_STATE)
    flipped = bytearray(_PAYLOAD)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((DecryptionFailed, RemoteProtocolError)):
        alice.open(bytes(flipped), SeededRng("x"))
    assert alice.encode() == _ALICE_STATE


@settings(max_examples=60, deadline=None)
@given(bit=st.integers(0, 8 * len(_FIRST) - 1))
def test_a_single_bit_flip_in_a_pq_initiation_is_rejected(bit: int) -> None:
    # The responder has already started from the genuine first payload: a flipped copy
    # is refused and changes nothing.
    bob = Session.decode(_BOB_BEFORE)
    flipped = bytearray(_FIRST)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises((DecryptionFailed, RemoteProtocolError)):
        bob.open(bytes(flipped), SeededRng("x"))
    assert bob.encode() == _BOB_BEFORE


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000))
def test_every_decoder_of_the_new_fields_raises_only_remote_protocol_error(data: bytes) -> None:
    for decode in (decode_chunks, PqRatchet.decode, Session.decode, decode_capabilities):
        with contextlib.suppress(RemoteProtocolError):
            decode(data)
    with contextlib.suppress(RemoteProtocolError):
        Hello.decode(data)


_PQ_STATE = Session.decode(_ALICE_STATE).post_quantum
assert _PQ_STATE is not None

_CHUNK = st.builds(
    lambda kind, epoch, first, count, fill: Chunk(
        kind,
        epoch,
        min(first, units_of(kind) - 1),
        bytes([fill])
        * CHUNK_UNIT
        * max(1, min(count, units_of(kind) - min(first, units_of(kind) - 1))),
    ),
    st.sampled_from(list(ChunkKind)),
    st.integers(0, 6),
    st.integers(0, 80),
    st.integers(1, 80),
    st.integers(0, 255),
)


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(_CHUNK, max_size=6))
def test_any_chunks_taken_in_give_progress_or_remote_protocol_error(chunks: list[Chunk]) -> None:
    assert _PQ_STATE is not None
    taking = _PQ_STATE.copy()
    area = b"".join(chunk.encode() for chunk in chunks)
    assert decode_chunks(area) == chunks
    try:
        taking.receive(taking.send_epoch, chunks, SeededRng("chunks"))
    except RemoteProtocolError:
        return
    again = PqRatchet.decode(taking.encode())
    assert again.encode() == taking.encode()


def _classical_pair(seed: str) -> tuple[Session, Session, SeededRng]:
    made = make_pair(seed)
    return made.alice, made.bob, made.rng


def _deliver_during_upgrade(receiver: Session, wire: _Wire, index: int, rng: SeededRng) -> None:
    # A classical payload sealed before its sender switched opens even when a PQ payload
    # overtook it (§13.8): an upgrade loses nothing, so the plain delivery rule holds.
    _deliver(receiver, wire, index, rng)


@_PROPERTY
@given(steps=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 40)), max_size=40))
def test_an_upgrade_in_place_survives_any_reordering_duplication_and_dropping(
    steps: list[tuple[int, int]],
) -> None:
    alice, bob, rng = _classical_pair("upgrade interleavings")
    bob.offer_post_quantum()  # Bob announced; (4, _) is Alice hearing it
    to_alice, to_bob = _Wire(), _Wire()
    for action, n in steps:
        if action in (0, 1):
            sender, wire = (bob, to_alice) if action == 0 else (alice, to_bob)
            for _ in range(n % 4 + 1):
                body = f"{action} {len(wire.payloads)} ".encode() * 20
                wire.payloads.append(sender.seal(1, body, 0, rng).payload)
                wire.bodies.append(body)
        elif action == 4:
            alice.start_post_quantum(rng)
        else:
            receiver, wire = (alice, to_alice) if action == 2 else (bob, to_bob)
            if wire.payloads:
                _deliver_during_upgrade(receiver, wire, n % len(wire.payloads), rng)
    alice.start_post_quantum(rng)
    for i in range(10):
        _deliver_during_upgrade(alice, to_alice, _seal(bob, to_alice, rng, i), rng)
        _deliver_during_upgrade(bob, to_bob, _seal(alice, to_bob, rng, i), rng)
    assert alice.post_quantum_locked and bob.post_quantum_locked
    end = min(_latest(alice), _latest(bob))
    assert end >= 2
    for e in range(1, end + 1):
        assert _key(alice, e) == _key(bob, e) is not None

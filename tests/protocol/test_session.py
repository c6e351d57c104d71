"""Behaviour of PQXDH + the ratchet through two real endpoints."""

from __future__ import annotations

import pytest

from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity, safety_number
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.ratchet import MAX_SKIP, DuplicateMessage, ForkedChain, Ratchet
from backchannel.protocol.e2e.session import PAYLOAD_RATCHET, Session
from backchannel.protocol.envelope import BUCKETS, ENVELOPE_HEADER_SIZE, Envelope
from backchannel.protocol.errors import (
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)
from backchannel.protocol.message import GENESIS_HASH
from backchannel.testing import SeededRng

from .conftest import Pair


def _parties(seed: str) -> tuple[SeededRng, IdentityKeyPair, IdentityKeyPair, PrekeySecrets]:
    rng = SeededRng(seed)
    return (
        rng,
        IdentityKeyPair.generate(rng),
        IdentityKeyPair.generate(rng),
        PrekeySecrets.generate(rng, one_time_count=2),
    )


def test_conversation_both_ways_with_hash_chain(pair: Pair) -> None:
    first = pair.alice.seal(1, b"one", 10, pair.rng)
    second = pair.alice.seal(1, b"two", 11, pair.rng)
    got1 = pair.bob.open(first.payload, pair.rng)
    got2 = pair.bob.open(second.payload, pair.rng)
    assert (got1.body, got2.body) == (b"one", b"two")
    assert got2.prev_hash == got1.hash
    assert got2.seq == got1.seq + 1
    reply = pair.bob.seal(1, b"three", 12, pair.rng)
    assert pair.alice.open(reply.payload, pair.rng).body == b"three"


def test_first_message_chain_starts_at_genesis() -> None:
    rng, alice, bob, prekeys = _parties("genesis")
    session = Session.initiate(alice, prekeys.bundle(bob, 1), rng)
    sealed = session.seal(1, b"x", 0, rng)
    assert sealed.message.prev_hash == GENESIS_HASH and sealed.message.seq == 1


def test_responder_can_start_from_any_initiating_message_and_read_the_rest() -> None:
    rng, alice, bob, prekeys = _parties("reorder-start")
    session = Session.initiate(alice, prekeys.bundle(bob, 1), rng)
    sealed = [session.seal(1, f"m{i}".encode(), i, rng) for i in range(4)]
    bob_session, message, remaining = Session.respond(bob, prekeys, sealed[2].payload, rng)
    assert message.body == b"m2"
    assert 1 not in remaining.one_time_prekeys and 2 in remaining.one_time_prekeys
    assert [bob_session.open(sealed[i].payload, rng).body for i in (3, 0, 1)] == [
        b"m3",
        b"m0",
        b"m1",
    ]


def test_one_time_prekey_used_twice_is_refused() -> None:
    rng, alice, bob, prekeys = _parties("opk-twice")
    first = Session.initiate(alice, prekeys.bundle(bob, 1), rng).seal(1, b"a", 0, rng)
    _, _, remaining = Session.respond(bob, prekeys, first.payload, rng)
    other = IdentityKeyPair.generate(rng)
    second = Session.initiate(other, prekeys.bundle(bob, 1), rng).seal(1, b"b", 0, rng)
    with pytest.raises(RemoteProtocolError, match="one-time prekey"):
        Session.respond(bob, remaining, second.payload, rng)


def test_bundle_with_a_forged_signature_is_refused() -> None:
    rng, _alice, bob, prekeys = _parties("forged")
    mallory = IdentityKeyPair.generate(rng)
    honest = prekeys.bundle(bob, 1)
    swapped = prekeys.bundle(mallory, 1)
    forged = PrekeyBundle(
        honest.identity,
        honest.signed_prekey_id,
        honest.signed_prekey,
        swapped.signed_prekey_signature,
        honest.pq_prekey_id,
        honest.pq_prekey,
        honest.pq_prekey_signature,
        honest.one_time_prekey_id,
        honest.one_time_prekey,
    )
    with pytest.raises(RemoteProtocolError, match="signature"):
        PrekeyBundle.decode(forged.encode())
    with pytest.raises(RemoteProtocolError, match="signature"):
        Session.initiate(mallory, forged, rng)


def test_initiation_does_not_reveal_the_initiator_identity() -> None:
    rng, alice, bob, prekeys = _parties("sealed-identity")
    payload = Session.initiate(alice, prekeys.bundle(bob, 1), rng).seal(1, b"", 0, rng).payload
    assert alice.public.signing_key not in payload
    assert alice.public.agreement_key not in payload


def test_payloads_fill_buckets_so_sizes_do_not_leak(pair: Pair) -> None:
    sizes = set()
    for length in (0, 1, 100, 800):
        sizes.add(len(pair.alice.seal(1, b"x" * length, 0, pair.rng).payload))
    assert sizes == {BUCKETS[0] - ENVELOPE_HEADER_SIZE}
    big = pair.alice.seal(1, b"x" * 20000, 0, pair.rng).payload
    assert len(big) + ENVELOPE_HEADER_SIZE == BUCKETS[3]
    Envelope(b"\x00" * 16, big)  # an exact bucket, accepted by the envelope


def test_too_large_message_is_refused_without_advancing(pair: Pair) -> None:
    before = pair.alice.encode()
    with pytest.raises(LocalProtocolError, match="too large"):
        pair.alice.seal(1, b"x" * 65536, 0, pair.rng)
    assert pair.alice.encode() == before


def test_duplicate_is_rejected_with_state_unchanged(pair: Pair) -> None:
    sealed = pair.alice.seal(1, b"once", 0, pair.rng)
    pair.bob.open(sealed.payload, pair.rng)
    before = pair.bob.encode()
    with pytest.raises(DuplicateMessage):
        pair.bob.open(sealed.payload, pair.rng)
    assert pair.bob.encode() == before


def test_a_copy_that_stepped_apart_on_one_chain_is_a_forked_chain(pair: Pair) -> None:
    """§5: a header under HKr that names another DHs than the chain's is a second sender
    state (a backup restored after the original stepped), reported, state unchanged."""
    copy = Session.decode(pair.alice.encode())  # the backup
    pair.bob.open(pair.alice.seal(1, b"original", 0, pair.rng).payload, pair.rng)
    reply = pair.bob.seal(1, b"reply", 0, pair.rng).payload
    assert pair.alice.open(reply, pair.rng).body == b"reply"
    assert copy.open(reply, pair.rng).body == b"reply"  # same chain: the copy reads it
    pair.bob.open(pair.alice.seal(1, b"after the step", 0, pair.rng).payload, pair.rng)
    before = pair.bob.encode()
    for text in (b"the copy's first", b"the copy's second", b"the copy's third"):
        with pytest.raises(ForkedChain):
            pair.bob.open(copy.seal(1, text, 0, pair.rng).payload, pair.rng)
    assert pair.bob.encode() == before
    assert pair.bob.open(pair.alice.seal(1, b"still fine", 0, pair.rng).payload,
                         pair.rng).body == b"still fine"


def test_skipped_message_key_is_used_once_then_a_replay_fails(pair: Pair) -> None:
    late = pair.alice.seal(1, b"late", 0, pair.rng)
    pair.bob.open(pair.alice.seal(1, b"early", 0, pair.rng).payload, pair.rng)
    assert pair.bob.open(late.payload, pair.rng).body == b"late"
    with pytest.raises((DuplicateMessage, DecryptionFailed)):
        pair.bob.open(late.payload, pair.rng)


def test_skip_beyond_bound_is_refused_with_state_unchanged() -> None:
    fresh = _far_message(MAX_SKIP + 1)
    before = fresh.bob.encode()
    with pytest.raises(RemoteProtocolError, match="skips"):
        fresh.bob.open(fresh.payload, fresh.rng)
    assert fresh.bob.encode() == before


class _Far:
    def __init__(self, bob: Session, payload: bytes, rng: SeededRng) -> None:
        self.bob, self.payload, self.rng = bob, payload, rng


def _far_message(skip: int) -> _Far:
    from .conftest import make_pair

    p = make_pair("far")
    for _ in range(skip):
        p.alice.seal(1, b"", 0, p.rng)  # sealed and never delivered
    return _Far(p.bob, p.alice.seal(1, b"far", 0, p.rng).payload, p.rng)


def test_skip_within_bound_delivers() -> None:
    far = _far_message(MAX_SKIP)
    assert far.bob.open(far.payload, far.rng).body == b"far"


def test_message_from_another_session_fails_opaquely(pair: Pair) -> None:
    from .conftest import make_pair

    stranger = make_pair("stranger")
    foreign = stranger.alice.seal(1, b"x", 0, stranger.rng).payload
    before = pair.bob.encode()
    with pytest.raises(DecryptionFailed) as caught:
        pair.bob.open(foreign, pair.rng)
    assert str(caught.value) == "message could not be decrypted"
    assert pair.bob.encode() == before


def test_responder_cannot_send_first() -> None:
    rng, _alice, _bob, prekeys = _parties("bob-first")
    ratchet = Ratchet.init_responder(rng(32), prekeys.signed_prekey_key(), rng(32), rng(32))
    with pytest.raises(LocalProtocolError):
        ratchet.encrypt(b"x", b"ad", rng)


def test_session_state_round_trips_and_keeps_working(pair: Pair) -> None:
    pending = pair.alice.seal(1, b"in flight", 0, pair.rng)
    restored_bob = Session.decode(pair.bob.encode())
    assert restored_bob.encode() == pair.bob.encode()
    assert restored_bob.open(pending.payload, pair.rng).body == b"in flight"
    restored_alice = Session.decode(pair.alice.encode())
    reply = restored_bob.seal(1, b"ok", 0, pair.rng)
    assert restored_alice.open(reply.payload, pair.rng).body == b"ok"


def test_initiator_stops_repeating_the_handshake_after_a_reply(pair: Pair) -> None:
    assert not pair.alice.awaiting_reply
    assert pair.alice.seal(1, b"", 0, pair.rng).payload[0] == PAYLOAD_RATCHET


def test_safety_number_is_symmetric_and_distinguishes_keys() -> None:
    rng = SeededRng("safety")
    a, b, c = (IdentityKeyPair.generate(rng).public for _ in range(3))
    ab, ba, ac = safety_number(a, b), safety_number(b, a), safety_number(a, c)
    assert ab == ba
    assert ab != ac
    assert len(ab.digits) == 60 and ab.digits.isdigit()
    assert len(ab.digit_groups) == 12 and len(ab.words) == 12
    assert len(set(safety_number(a, IdentityKeyPair.generate(rng).public).words)) > 1


def test_public_identity_round_trip_and_bad_tag() -> None:
    identity = IdentityKeyPair.generate(SeededRng("id")).public
    assert PublicIdentity.decode(identity.encode()) == identity
    bad = b"\x05" + identity.encode()[1:]
    with pytest.raises(RemoteProtocolError, match="key type"):
        PublicIdentity.decode(bad)


def test_secrets_never_appear_in_repr_or_errors(pair: Pair) -> None:
    rng = SeededRng("repr")
    identity = IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    secrets = [
        identity.private_bytes()[:32].hex(),
        identity.private_bytes()[32:].hex(),
        prekeys.signed_prekey.hex(),
        prekeys.pq_prekey_seed.hex(),
        pair.bob._ratchet.rk.hex(),
        pair.bob._ratchet.cks.hex(),
    ]
    sealed = pair.alice.seal(1, b"top secret body", 0, pair.rng)
    texts = [repr(identity), repr(prekeys), repr(pair.bob), repr(pair.bob._ratchet)]
    texts.append(repr(sealed.message))
    try:
        pair.bob.open(sealed.payload[:-1] + bytes([sealed.payload[-1] ^ 1]), pair.rng)
    except DecryptionFailed as error:
        texts.append(str(error))
    joined = " ".join(texts)
    for secret in secrets:
        assert secret not in joined
    assert "top secret" not in joined

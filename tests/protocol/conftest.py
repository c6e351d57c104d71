from __future__ import annotations

from dataclasses import dataclass

import pytest

from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.testing import SeededRng


@dataclass
class Pair:
    """Two live sessions that have exchanged one message each way."""

    alice: Session
    bob: Session
    rng: SeededRng


def make_pair(seed: str = "pair", *, pq: bool = False) -> Pair:
    """Alice initiates (with the PQ ratchet when `pq`), Bob answers, Alice reads it."""
    rng = SeededRng(seed)
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob_id, 1).encode())
    alice = Session.initiate(alice_id, bundle, rng, pq=pq)
    first = alice.seal(1, b"hello", 1, rng)
    bob, _, _ = Session.respond(bob_id, prekeys, first.payload, rng)
    alice.open(bob.seal(1, b"hello back", 2, rng).payload, rng)
    return Pair(alice, bob, rng)


@pytest.fixture
def pair() -> Pair:
    return make_pair()

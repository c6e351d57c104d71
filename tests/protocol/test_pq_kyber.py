"""The PQ ratchet's use of ML-KEM-768 checked against kyber-py, an independent FIPS 203
implementation, and its epoch keys recomputed from the spec alone (docs/protocol.md §13.5).

Every encapsulation in the session is done by kyber-py (the ratchet's `encapsulate` hook),
so OpenSSL decapsulates what kyber-py made; the test then rebuilds every epoch key with
kyber-py's key generation and decapsulation from the seeds the ek-senders drew, with an
RFC 5869 HKDF written here over hashlib and the labels as the spec spells them.
"""

from __future__ import annotations

import hmac
import struct

import pytest
from kyber_py.ml_kem import ML_KEM_768

from backchannel.protocol.e2e import pqratchet
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.testing import SeededRng

EPOCH0_INFO = b"Backchannel PQ ratchet epoch 0 v1"
EPOCH_INFO = b"Backchannel PQ ratchet epoch v1"


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    """RFC 5869 HKDF-SHA256, one 32-byte block."""
    prk = hmac.digest(salt if salt is not None else bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def test_epoch_keys_agree_with_kyber_py_and_the_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    encapsulations: dict[bytes, tuple[bytes, bytes]] = {}  # ek -> (shared secret, ct)

    def kyber_encapsulate(ek: bytes) -> tuple[bytes, bytes]:
        secret, ciphertext = ML_KEM_768.encaps(ek)
        encapsulations[ek] = (secret, ciphertext)
        return secret, ciphertext

    # Every PQ ratchet made from here on encapsulates with kyber-py (the first one does so
    # inside `respond`: a 2 KiB initiation envelope carries all of EK_1).
    monkeypatch.setattr(pqratchet, "cryptography_encapsulate", kyber_encapsulate)
    rng = SeededRng("kyber-py pq ratchet")
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob_id, 1).encode())
    alice = Session.initiate(alice_id, bundle, rng, pq=True)
    first = alice.seal(1, b"hi", 0, rng).payload
    bob, _, _ = Session.respond(bob_id, prekeys, first, rng)

    seeds: dict[int, bytes] = {}  # epoch -> the ek-sender's seed (d || z)

    def watch(session: Session) -> None:
        pq = session.post_quantum
        assert pq is not None
        assert pq.encapsulate is kyber_encapsulate
        if pq.own_epoch:
            seeds[pq.own_epoch] = pq.own_seed

    watch(alice)  # EK_1, drawn at `initiate`
    for i in range(16):
        watch(alice)
        watch(bob)
        alice.open(bob.seal(1, b"n" * 200, i, rng).payload, rng)
        watch(alice)
        bob.open(alice.seal(1, b"n" * 200, i, rng).payload, rng)
    alice_pq, bob_pq = alice.post_quantum, bob.post_quantum
    assert alice_pq is not None and bob_pq is not None
    done = min(alice_pq.latest, bob_pq.latest)
    assert done >= 3

    key = _hkdf(alice.associated_data, None, EPOCH0_INFO)
    assert alice_pq.key_for(0) == bob_pq.key_for(0) == key
    for epoch in range(1, done + 1):
        seed = seeds[epoch]
        ek, dk = ML_KEM_768._keygen_internal(seed[:32], seed[32:])
        secret, ciphertext = encapsulations[ek]  # the peer encapsulated to exactly this EK
        assert ML_KEM_768.decaps(dk, ciphertext) == secret
        key = _hkdf(secret, key, EPOCH_INFO + struct.pack(">I", epoch))
        assert alice_pq.key_for(epoch) == bob_pq.key_for(epoch) == key, epoch
    assert len(encapsulations) >= done

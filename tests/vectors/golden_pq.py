"""Builds the payload v3 (PQ ratchet) golden vectors; `python tests/vectors/golden_pq.py`
rewrites golden_pq.json.

Everything random comes from one `SeededRng(RNG_SEED)` in the order the code draws it
(docs/protocol.md §12, and §13 for the PQ ratchet's draws: the 64-byte ML-KEM seed of each
epoch a side begins). The only randomness the library takes from elsewhere in real use, the
encapsulations' (OpenSSL draws its own), is derandomised here: each encapsulation draws a
32-byte FIPS 203 message `m` from the same stream and runs kyber-py's `_encaps_internal`,
so the file alone reproduces the session and cross-checks kyber-py against OpenSSL's
decapsulation. The session completes at least two PQ epochs (checked when building).

The file lists every draw, per epoch the ek-sender's seed, EK, m, CT, shared secret and
key, and per message the payload, its header epoch and its chunk area.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kyber_py.ml_kem import ML_KEM_768

from backchannel.protocol.e2e import pqratchet
from backchannel.protocol.e2e.handshake import initiate_from_parts
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.primitives import hmac_sha256
from backchannel.protocol.e2e.session import Session
from backchannel.testing import SeededRng

HERE = Path(__file__).parent
RNG_SEED = "backchannel golden vectors v3 pq"
START_MS = 1_700_000_000_000
NOTE = b"The line holds; the next round is Thursday. " * 4 + b"-" * 24  # 200 bytes
SCRIPT = [
    ("alice", b"Geneva, opening"),
    *[(side, NOTE) for _ in range(7) for side in ("bob", "alice")],
    ("bob", b"z" * 3000),  # a 4 KiB envelope
    ("alice", b"closing"),
]


class RecordingRng:
    """A SeededRng that remembers every draw, in order."""

    def __init__(self, seed: str) -> None:
        self._rng = SeededRng(seed)
        self.draws: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = self._rng(n)
        self.draws.append(out)
        return out


@contextlib.contextmanager
def _derandomised(rng: RecordingRng, log: list[dict[str, str]]) -> Iterator[None]:
    """Every PQ ratchet made inside encapsulates with kyber-py and an `m` from `rng`."""

    def encapsulate(ek: bytes) -> tuple[bytes, bytes]:
        m = rng(32)
        secret, ciphertext = ML_KEM_768._encaps_internal(ek, m)
        log.append({"ek": ek.hex(), "m": m.hex(), "ct": ciphertext.hex(), "ss": secret.hex()})
        return secret, ciphertext

    saved = pqratchet.cryptography_encapsulate
    pqratchet.cryptography_encapsulate = encapsulate
    try:
        yield
    finally:
        pqratchet.cryptography_encapsulate = saved


def build() -> dict[str, Any]:
    rng = RecordingRng(RNG_SEED)
    encapsulations: list[dict[str, str]] = []
    with _derandomised(rng, encapsulations):
        return _build(rng, encapsulations)


def _build(rng: RecordingRng, encapsulations: list[dict[str, str]]) -> dict[str, Any]:
    alice = IdentityKeyPair.from_private_bytes(rng(64))
    bob = IdentityKeyPair.from_private_bytes(rng(64))
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    secrets_record = prekeys
    bundle = prekeys.bundle(bob, 1)
    ephemeral, kem_m = rng(32), rng(32)
    kem_secret, kem_ct = ML_KEM_768._encaps_internal(bundle.pq_prekey, kem_m)
    initiation, secrets = initiate_from_parts(alice, bundle, ephemeral, kem_secret, kem_ct)
    sessions = {"alice": Session.from_initiation(initiation, secrets, bundle, rng, pq=True)}
    seeds: dict[int, str] = {}

    def note_seeds() -> None:
        for session in sessions.values():
            pq = session.post_quantum
            assert pq is not None
            if pq.own_epoch:
                seeds.setdefault(pq.own_epoch, pq.own_seed.hex())

    note_seeds()
    messages = []
    for i, (sender, body) in enumerate(SCRIPT):
        ratchet = sessions[sender]._ratchet
        header_key, message_key = ratchet.hks, hmac_sha256(ratchet.cks, b"\x01")
        ratchet_private = ratchet.dhs.private_bytes_raw()
        sealed = sessions[sender].seal(1, body, START_MS + i, rng)
        receiver = "bob" if sender == "alice" else "alice"
        if receiver not in sessions:
            sessions["bob"], opened, prekeys = Session.respond_with_position(
                bob, prekeys, sealed.payload, rng
            )
        else:
            opened = sessions[receiver].open_with_position(sealed.payload, rng)
        assert opened.message == sealed.message
        note_seeds()
        state = sessions[receiver].post_quantum
        assert state is not None
        messages.append(
            {
                "sender": sender,
                "body": body.hex(),
                "message": sealed.message.encode().hex(),
                "sender_ratchet_private": ratchet_private.hex(),
                "header_key": header_key.hex(),
                "message_key": message_key.hex(),
                "payload": sealed.payload.hex(),
                "receiver_pq_latest": state.latest,
            }
        )
    alice_pq, bob_pq = sessions["alice"].post_quantum, sessions["bob"].post_quantum
    assert alice_pq is not None and bob_pq is not None
    completed = min(alice_pq.latest, bob_pq.latest)
    assert completed >= 2, "the vectors must complete at least two PQ epochs"
    epochs = []
    for epoch in range(1, completed + 1):
        key = alice_pq.key_for(epoch)
        assert key is not None and key == bob_pq.key_for(epoch)
        epochs.append(
            {
                "epoch": epoch,
                "ek_sender": "alice" if epoch % 2 else "bob",
                "seed": seeds[epoch],
                "encapsulation": encapsulations[epoch - 1],
                "key": key.hex(),
            }
        )
    key0 = alice_pq.key_for(0)
    return {
        "note": "Payload v3 (types 0x05/0x06: the PQ ratchet in the padding). Rebuilt by "
        "tests/vectors/golden_pq.py; every value re-derivable from this file.",
        "payload_version": 3,
        "rng_seed": RNG_SEED,
        "rng_draws": [draw.hex() for draw in rng.draws],
        "alice_identity_private": alice.private_bytes().hex(),
        "bob_identity_private": bob.private_bytes().hex(),
        "prekey_secrets": secrets_record.encode().hex(),
        "signed_prekey_private": secrets_record.signed_prekey.hex(),
        "pq_prekey_seed": secrets_record.pq_prekey_seed.hex(),
        "one_time_prekey_private": secrets_record.one_time_prekeys[1].hex(),
        "root_key": secrets.root_key.hex(),
        "shared_header_key": secrets.shared_header_key.hex(),
        "shared_next_header_key": secrets.shared_next_header_key.hex(),
        "bundle": bundle.encode().hex(),
        "initiation": initiation.encode().hex(),
        "associated_data": secrets.associated_data.hex(),
        "pq_epoch0_key": key0.hex() if key0 is not None else "",
        "sent_at_ms_start": START_MS,
        "epochs": epochs,
        # Every epoch begun (some not yet complete) and every encapsulation, epoch 1 first:
        # what a second implementation needs to predict each chunk area (§13.4).
        "pq_seeds": {str(epoch): seed for epoch, seed in sorted(seeds.items())},
        "pq_encapsulations": encapsulations,
        "messages": messages,
    }


if __name__ == "__main__":
    (HERE / "golden_pq.json").write_text(json.dumps(build(), indent=1) + "\n")

"""Builds the payload v2 golden vectors; `python tests/vectors/golden.py` rewrites golden.json.

Everything random comes from `SeededRng(RNG_SEED)` (docs/protocol.md §12 specifies it and the
order of draws), and the file also lists every draw in order and every secret a decoder
needs: identity and prekey private keys, the handshake inputs, and per message the sender's
ratchet private key, header key and message key. `tests/protocol/test_vectors.py` re-derives
every payload from the file alone with an independent decoder.

The KEM encapsulation is derandomised with kyber-py (FIPS 203 `_encaps_internal`), an
implementation independent of OpenSSL's, so the vectors also cross-check the two.

The frozen 0.1 vectors (payload v1) are in golden_v1.json; nothing produces them any more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kyber_py.ml_kem import ML_KEM_768

from backchannel.protocol.e2e.handshake import initiate_from_parts, respond
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.primitives import hmac_sha256
from backchannel.protocol.e2e.ratchet import SEALED_HEADER_SIZE
from backchannel.protocol.e2e.session import Session
from backchannel.testing import SeededRng

HERE = Path(__file__).parent
RNG_SEED = "backchannel golden vectors v2"
START_MS = 1_700_000_000_000
SCRIPT = [
    ("alice", b"Vienna, first round"),
    ("alice", b"a second note"),
    ("bob", b"received both"),
    ("alice", b"x" * 1500),
    ("bob", b""),
    ("bob", b"y" * 5000),
    ("alice", b"last"),
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


def build() -> dict[str, Any]:
    rng = RecordingRng(RNG_SEED)
    alice = IdentityKeyPair.from_private_bytes(rng(64))
    bob = IdentityKeyPair.from_private_bytes(rng(64))
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    secrets_record = prekeys
    bundle = prekeys.bundle(bob, 1)
    ephemeral = rng(32)
    kem_m = rng(32)
    kem_secret, kem_ct = ML_KEM_768._encaps_internal(bundle.pq_prekey, kem_m)
    initiation, secrets = initiate_from_parts(alice, bundle, ephemeral, kem_secret, kem_ct)
    _, bob_secrets = respond(bob, prekeys, initiation)
    assert bob_secrets == secrets
    sessions = {"alice": Session.from_initiation(initiation, secrets, bundle, rng)}
    messages = []
    for i, (sender, body) in enumerate(SCRIPT):
        ratchet = sessions[sender]._ratchet
        header_key, message_key = ratchet.hks, hmac_sha256(ratchet.cks, b"\x01")
        ratchet_private = ratchet.dhs.private_bytes_raw()
        sealed = sessions[sender].seal(1, body, START_MS + i, rng)
        ratchet_part = sealed.payload[_prefix_size(sealed.payload) :]
        messages.append(
            {
                "sender": sender,
                "body": body.hex(),
                "message": sealed.message.encode().hex(),
                "sender_ratchet_private": ratchet_private.hex(),
                "header_key": header_key.hex(),
                "message_key": message_key.hex(),
                "header_nonce": ratchet_part[:12].hex(),
                "body_nonce": ratchet_part[SEALED_HEADER_SIZE : SEALED_HEADER_SIZE + 12].hex(),
                "payload": sealed.payload.hex(),
            }
        )
        if sender == "alice" and "bob" not in sessions:
            sessions["bob"], _, prekeys = Session.respond(bob, prekeys, sealed.payload, rng)
        else:
            receiver = "bob" if sender == "alice" else "alice"
            sessions[receiver].open(sealed.payload, rng)
    return {
        "note": "Payload v2 (types 0x03/0x04, nonce || AES-256-GCM-SIV bodies). "
        "Rebuilt by tests/vectors/golden.py; every value re-derivable from this file.",
        "payload_version": 2,
        "rng_seed": RNG_SEED,
        "rng_draws": [draw.hex() for draw in rng.draws],
        "alice_identity_private": alice.private_bytes().hex(),
        "bob_identity_private": bob.private_bytes().hex(),
        "prekey_secrets": secrets_record.encode().hex(),
        "signed_prekey_id": secrets_record.signed_prekey_id,
        "signed_prekey_private": secrets_record.signed_prekey.hex(),
        "pq_prekey_id": secrets_record.pq_prekey_id,
        "pq_prekey_seed": secrets_record.pq_prekey_seed.hex(),
        "one_time_prekey_id": 1,
        "one_time_prekey_private": secrets_record.one_time_prekeys[1].hex(),
        "bundle": bundle.encode().hex(),
        "ephemeral_private": ephemeral.hex(),
        "kem_m": kem_m.hex(),
        "kem_ciphertext": kem_ct.hex(),
        "kem_secret": kem_secret.hex(),
        "initiation": initiation.encode().hex(),
        "associated_data": secrets.associated_data.hex(),
        "root_key": secrets.root_key.hex(),
        "shared_header_key": secrets.shared_header_key.hex(),
        "shared_next_header_key": secrets.shared_next_header_key.hex(),
        "sent_at_ms_start": START_MS,
        "messages": messages,
    }


def _prefix_size(payload: bytes) -> int:
    """Type byte, plus the initiation when the payload carries one (1212 or 1216 bytes)."""
    if payload[0] != 0x03:
        return 1
    has_opk = payload[1 + 33 + 8]
    return 1 + (1216 if has_opk else 1212)


if __name__ == "__main__":
    (HERE / "golden.json").write_text(json.dumps(build(), indent=1) + "\n")

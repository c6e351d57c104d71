"""Builds the golden vectors from fixed inputs; `python tests/vectors/golden.py` rewrites them.

The KEM encapsulation is derandomised with kyber-py (FIPS 203 `_encaps_internal`), an
implementation independent of OpenSSL's, so the vectors also cross-check the two.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kyber_py.ml_kem import ML_KEM_768

from backchannel.protocol.e2e.handshake import initiate_from_parts, respond
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.testing import SeededRng

HERE = Path(__file__).parent
SCRIPT = [
    ("alice", b"Vienna, first round"),
    ("alice", b"a second note"),
    ("bob", b"received both"),
    ("alice", b"x" * 1500),
    ("bob", b""),
]


def build() -> dict[str, Any]:
    rng = SeededRng("backchannel golden vectors v1")
    alice = IdentityKeyPair.from_private_bytes(rng(64))
    bob = IdentityKeyPair.from_private_bytes(rng(64))
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = prekeys.bundle(bob, 1)
    ephemeral = rng(32)
    kem_m = rng(32)
    kem_secret, kem_ct = ML_KEM_768._encaps_internal(bundle.pq_prekey, kem_m)
    initiation, secrets = initiate_from_parts(alice, bundle, ephemeral, kem_secret, kem_ct)
    _, bob_secrets = respond(bob, prekeys, initiation)
    assert bob_secrets == secrets
    sessions = {"alice": Session.from_initiation(initiation, secrets, bundle, rng)}
    payloads = []
    now = 1_700_000_000_000
    for i, (sender, body) in enumerate(SCRIPT):
        sealed = sessions[sender].seal(1, body, now + i, rng)
        payloads.append({"sender": sender, "body": body.hex(), "payload": sealed.payload.hex()})
        if sender == "alice" and "bob" not in sessions:
            sessions["bob"], _, prekeys = Session.respond(bob, prekeys, sealed.payload, rng)
        else:
            receiver = "bob" if sender == "alice" else "alice"
            sessions[receiver].open(sealed.payload, rng)
    return {
        "alice_identity_private": alice.private_bytes().hex(),
        "bob_identity_private": bob.private_bytes().hex(),
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
        "messages": payloads,
    }


if __name__ == "__main__":
    (HERE / "golden.json").write_text(json.dumps(build(), indent=1) + "\n")

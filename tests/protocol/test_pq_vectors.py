"""The payload v3 golden vectors (tests/vectors/golden_pq.json): a session that completes
two PQ epochs, rebuilt byte for byte, and its epoch keys re-derived from the file alone
with kyber-py and an HKDF over hashlib (docs/protocol.md §13.5)."""

from __future__ import annotations

import hmac
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from kyber_py.ml_kem import ML_KEM_768

from tests.vectors import golden_pq

VECTORS = Path(__file__).parent.parent / "vectors" / "golden_pq.json"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    prk = hmac.digest(salt if salt is not None else bytes(32), ikm, "sha256")
    return hmac.digest(prk, info + b"\x01", "sha256")


def test_pq_golden_vectors_are_reproduced_byte_for_byte(vectors: dict[str, Any]) -> None:
    assert golden_pq.build() == vectors


def test_pq_epoch_keys_follow_from_the_file_alone(vectors: dict[str, Any]) -> None:
    assert len(vectors["epochs"]) >= 2
    ad = bytes.fromhex(vectors["associated_data"])
    key = _hkdf(ad, None, b"Backchannel PQ ratchet epoch 0 v1")
    assert key.hex() == vectors["pq_epoch0_key"]
    for entry in vectors["epochs"]:
        seed = bytes.fromhex(entry["seed"])
        ek, dk = ML_KEM_768._keygen_internal(seed[:32], seed[32:])
        enc = entry["encapsulation"]
        assert enc["ek"] == ek.hex()
        secret, ct = ML_KEM_768._encaps_internal(ek, bytes.fromhex(enc["m"]))
        assert (ct.hex(), secret.hex()) == (enc["ct"], enc["ss"])
        assert ML_KEM_768.decaps(dk, ct) == secret
        info = b"Backchannel PQ ratchet epoch v1" + struct.pack(">I", entry["epoch"])
        key = _hkdf(secret, key, info)
        assert key.hex() == entry["key"]


def test_pq_vector_envelopes_are_the_buckets_of_their_messages(vectors: dict[str, Any]) -> None:
    sizes = [len(bytes.fromhex(m["payload"])) + 17 for m in vectors["messages"]]
    # The initiation (1,216 bytes) and the 3,000-byte note take 4 KiB; the rest fit 1 KiB.
    assert sizes[0] == sizes[-2] == 4096 and sizes.count(1024) == len(sizes) - 2
    assert {bytes.fromhex(m["payload"])[0] for m in vectors["messages"]} == {0x05, 0x06}

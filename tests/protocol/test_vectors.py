"""Known answers: libsignal's published X3DH chain keys, our checked-in golden vectors,
and ML-KEM through our wrapper against kyber-py (an independent FIPS 203 implementation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kyber_py.ml_kem import ML_KEM_768

from backchannel.protocol.e2e.handshake import Initiation, derive_handshake_secret, respond
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import (
    mlkem_private,
    mlkem_public,
    x25519,
    x25519_private,
    x25519_public,
)
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.wire import Reader
from backchannel.testing import SeededRng
from tests.vectors import golden

VECTORS = Path(__file__).parent.parent / "vectors" / "golden.json"


def _x(raw_hex: str) -> bytes:
    raw = bytes.fromhex(raw_hex)
    return raw[1:] if len(raw) == 33 else raw  # strip libsignal's 0x05 type byte


# signalapp/libsignal rust/protocol/tests/ratchet.rs (pre-Kyber X3DH, no one-time prekey):
# HKDF(salt=0^32, ikm=0xFF*32 || DH1 || DH2 || DH3, info="WhisperText") -> RK || CK.
BOB_IDENTITY_PUBLIC = "05f1f43874f6966956c2dd473f8fa15adeb71d1cb991b2341692324cefb1c5e626"
BOB_IDENTITY_PRIVATE = "4875cc69ddf8ea0719ec947d61081135868d5fd801f02c0225e516df2156605e"
BOB_SPK_PUBLIC = "05ac248a8f263be6863576eb0362e28c828f0107a3379d34bab1586bf8c770cd67"
BOB_SPK_PRIVATE = "583900131fb727998b7803fe6ac22cc591f342e4e42a8c8d5d78194209b8d253"
ALICE_BASE_PUBLIC = "05472d1fb1a9862c3af6beaca8920277e2b26f4a79213ec7c906aeb35e03cf8950"
ALICE_BASE_PRIVATE = "11ae7c64d1e61cd596b76a0db5012673391cae66edbfcf073b4da80516a47449"
ALICE_IDENTITY_PUBLIC = "05b4a8455660ada65b401007f615e654041746432e3339c6875149bceefcb42b4a"
ALICE_IDENTITY_PRIVATE = "9040f0d4e09cf38f6dc7c13779c908c015a1da4fa78737a080eb0a6f4f5f8f58"


def _dh(private_hex: str, public_hex: str) -> bytes:
    return x25519(x25519_private(_x(private_hex)), x25519_public(_x(public_hex)))


def test_libsignal_x3dh_chain_key_as_bob() -> None:
    parts = [
        _dh(BOB_SPK_PRIVATE, ALICE_IDENTITY_PUBLIC),
        _dh(BOB_IDENTITY_PRIVATE, ALICE_BASE_PUBLIC),
        _dh(BOB_SPK_PRIVATE, ALICE_BASE_PUBLIC),
    ]
    okm = derive_handshake_secret(parts, b"WhisperText", 64)
    assert okm[32:].hex() == "9797caca53c989bbe229a40ca7727010eb2604fc14945d77958a0aeda088b44d"


def test_libsignal_x3dh_chain_key_as_alice() -> None:
    # The published Alice vector pairs keys that do not match Bob's test, hence another value.
    parts = [
        _dh(ALICE_IDENTITY_PRIVATE, BOB_SPK_PUBLIC),
        _dh(ALICE_BASE_PRIVATE, BOB_IDENTITY_PUBLIC),
        _dh(ALICE_BASE_PRIVATE, BOB_SPK_PUBLIC),
    ]
    okm = derive_handshake_secret(parts, b"WhisperText", 64)
    assert okm[32:].hex() == "ab9be50e5cb22a925446ab90ee5670545f4fd32902459ec274b6ad0ae5d6031a"


VECTORS_V1 = VECTORS.parent / "golden_v1.json"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_golden_vectors_are_reproduced_byte_for_byte(vectors: dict[str, Any]) -> None:
    assert golden.build() == vectors


class _Keys:
    """An rng for receivers that hands out, for each DH ratchet step, the ratchet private key
    the vectors show that side using next (and fresh bytes for anything else)."""

    def __init__(self, keys: list[bytes]) -> None:
        self._keys = keys
        self._other = SeededRng("unused")

    def __call__(self, n: int) -> bytes:
        return self._keys.pop(0) if n == 32 and self._keys else self._other(n)


@pytest.mark.parametrize("path", [VECTORS_V1, VECTORS], ids=["payload v1", "payload v2"])
def test_every_golden_payload_opens_with_todays_decoder(path: Path) -> None:
    v = _load(path)
    bob = IdentityKeyPair.from_private_bytes(bytes.fromhex(v["bob_identity_private"]))
    prekeys = PrekeySecrets.decode(bytes.fromhex(v["prekey_secrets"]))
    bundle = PrekeyBundle.decode(bytes.fromhex(v["bundle"]))
    initiation = Initiation.read(Reader(bytes.fromhex(v["initiation"])))
    alice_secrets = respond(bob, prekeys, initiation)[1]
    assert alice_secrets.root_key.hex() == v["root_key"]
    ratchet_keys: dict[str, list[bytes]] = {"alice": [], "bob": []}
    for m in v["messages"]:
        key = bytes.fromhex(m["sender_ratchet_private"])
        if key not in ratchet_keys[m["sender"]]:
            ratchet_keys[m["sender"]].append(key)
    rngs = {side: _Keys(keys) for side, keys in ratchet_keys.items()}
    alice = Session.from_initiation(initiation, alice_secrets, bundle, rngs["alice"])
    sessions: dict[str, Session] = {"alice": alice}
    for m in v["messages"]:
        payload = bytes.fromhex(m["payload"])
        receiver = "bob" if m["sender"] == "alice" else "alice"
        if receiver not in sessions:
            sessions["bob"], message, prekeys = Session.respond(
                bob, prekeys, payload, rngs["bob"]
            )
        else:
            message = sessions[receiver].open(payload, rngs[receiver])
        assert message.body.hex() == m["body"]
        assert message.encode().hex() == m["message"]
    assert sessions["bob"].peer_identity.encode().hex() == v["associated_data"][:132]


def test_bundle_vector_decodes_and_verifies(vectors: dict[str, Any]) -> None:
    bundle = PrekeyBundle.decode(bytes.fromhex(vectors["bundle"]))
    assert bundle.one_time_prekey_id == 1


def test_mlkem_matches_kyber_py_for_seeded_keys_and_derandomised_encapsulation() -> None:
    rng = SeededRng("ml-kem cross-check")
    for _ in range(5):
        d, z, m = rng(32), rng(32), rng(32)
        ours = mlkem_private(d + z)
        ek, dk = ML_KEM_768._keygen_internal(d, z)
        assert ours.public_key().public_bytes_raw() == ek
        secret, ciphertext = ML_KEM_768._encaps_internal(ek, m)
        assert ours.decapsulate(ciphertext) == secret
        # And the other way round: our encapsulation, kyber-py's decapsulation.
        our_secret, our_ct = mlkem_public(ek).encapsulate()
        assert ML_KEM_768.decaps(dk, our_ct) == our_secret


def test_mlkem_implicit_rejection_gives_a_different_secret() -> None:
    rng = SeededRng("ml-kem rejection")
    key = mlkem_private(rng(64))
    secret, ciphertext = key.public_key().encapsulate()
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert key.decapsulate(tampered) != secret


def test_safety_number_words_are_the_published_bip39_english_list() -> None:
    import hashlib

    from backchannel.protocol.e2e.wordlist import WORDS

    # SHA-256 of bitcoin/bips bip-0039/english.txt (2048 lines, LF-terminated).
    digest = hashlib.sha256(("\n".join(WORDS) + "\n").encode()).hexdigest()
    assert digest == "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"

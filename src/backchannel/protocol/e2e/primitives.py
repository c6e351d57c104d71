"""Thin wrappers over `cryptography`: the only module that names a primitive.

Nothing here is hand-rolled; each function is one call into pyca/cryptography with the
parameters the protocol fixes, so the rest of the code says *what* (agree, derive, seal)
and this module says *with what*.
"""

from __future__ import annotations

import hmac as _stdlib_hmac
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.protocol.errors import (
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "AEAD_TAG_SIZE",
    "BODY_NONCE_SIZE",
    "HEADER_NONCE_SIZE",
    "KEM_CIPHERTEXT_SIZE",
    "KEM_PUBLIC_SIZE",
    "KEM_SEED_SIZE",
    "KEY_SIZE",
    "SIGNATURE_SIZE",
    "Rng",
    "aead_decrypt",
    "aead_encrypt",
    "body_decrypt",
    "body_encrypt",
    "constant_time_equal",
    "ed25519_private",
    "ed25519_public",
    "ed25519_sign",
    "ed25519_verify",
    "header_decrypt",
    "header_encrypt",
    "hkdf",
    "hmac_sha256",
    "mlkem_private",
    "mlkem_public",
    "sha256",
    "sha512",
    "x25519",
    "x25519_private",
    "x25519_public",
]

Rng = Callable[[int], bytes]
"""A random source: `rng(n)` returns n uniformly random bytes (default `os.urandom`)."""

KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
AEAD_TAG_SIZE: Final = 16
# AES-GCM-SIV takes a 96-bit nonce; header keys are reused for a whole chain, so the nonce
# is random and the mode is misuse-resistant: a repeated nonce leaks only equality.
HEADER_NONCE_SIZE: Final = 12
# Message bodies (payload v2) use the same construction as headers. A message key is meant to
# be used once, but a forked or restored state uses it again: with a random nonce and a
# misuse-resistant mode that costs nothing but equality of identical plaintexts, where a
# fixed nonce under a stream cipher gave away the XOR of the two plaintexts.
BODY_NONCE_SIZE: Final = 12
KEM_SEED_SIZE: Final = 64  # FIPS 203 seed form (d || z)
KEM_PUBLIC_SIZE: Final = 1184
KEM_CIPHERTEXT_SIZE: Final = 1088
_ZERO_NONCE: Final = b"\x00" * 12


def x25519_private(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def x25519_public(raw: bytes) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise RemoteProtocolError("invalid X25519 public key") from None


def x25519(private: X25519PrivateKey, public: X25519PublicKey) -> bytes:
    """Diffie-Hellman; a low-order peer key (all-zero output) is refused by the library."""
    try:
        return private.exchange(public)
    except ValueError:
        raise RemoteProtocolError("invalid X25519 public key") from None


def ed25519_private(raw: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(raw)


def ed25519_public(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise RemoteProtocolError("invalid Ed25519 public key") from None


def ed25519_sign(private: Ed25519PrivateKey, data: bytes) -> bytes:
    return private.sign(data)


def ed25519_verify(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def mlkem_private(seed: bytes) -> MLKEM768PrivateKey:
    return MLKEM768PrivateKey.from_seed_bytes(seed)


def mlkem_public(raw: bytes) -> MLKEM768PublicKey:
    """Parse an encapsulation key; FIPS 203's modulus check rejects non-canonical keys."""
    try:
        return MLKEM768PublicKey.from_public_bytes(raw)
    except ValueError:
        raise RemoteProtocolError("invalid ML-KEM-768 public key") from None


def hkdf(ikm: bytes, *, salt: bytes | None, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    # The standard library's one-shot HMAC is the cheapest call on this hot path (one per
    # message key and one per chain step); it is OpenSSL's HMAC underneath.
    return _stdlib_hmac.digest(key, data, "sha256")


def constant_time_equal(a: bytes, b: bytes) -> bool:
    return _stdlib_hmac.compare_digest(a, b)


def sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def sha512(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA512())
    digest.update(data)
    return digest.finalize()


def aead_encrypt(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """ChaCha20-Poly1305 with a fixed zero nonce: only under a key used exactly once.

    Used for the sealed initiator identity (its key comes from a fresh ephemeral key and a
    fresh KEM secret, so it cannot repeat). Payload v1 bodies used it too; they are only
    ever decrypted now.
    """
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, plaintext, associated_data)


def aead_decrypt(key: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, ciphertext, associated_data)
    except InvalidTag:
        raise DecryptionFailed() from None


def body_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """Payload v2 body: nonce || AES-256-GCM-SIV(key, nonce, plaintext, associated_data)."""
    if len(nonce) != BODY_NONCE_SIZE:
        raise LocalProtocolError(f"body nonce must be {BODY_NONCE_SIZE} bytes")
    return nonce + AESGCMSIV(key).encrypt(nonce, plaintext, associated_data)


def body_decrypt(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    """Open a payload v2 body.

    Raises:
        DecryptionFailed: truncated, or it does not authenticate under `key`.
    """
    if len(sealed) < BODY_NONCE_SIZE + AEAD_TAG_SIZE:
        raise DecryptionFailed()
    try:
        return AESGCMSIV(key).decrypt(
            sealed[:BODY_NONCE_SIZE], sealed[BODY_NONCE_SIZE:], associated_data
        )
    except InvalidTag:
        raise DecryptionFailed() from None


def header_encrypt(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM-SIV with a random nonce: header keys are reused across a chain."""
    return nonce + AESGCMSIV(key).encrypt(nonce, plaintext, associated_data)


def header_decrypt(key: bytes, sealed: bytes, associated_data: bytes) -> bytes | None:
    """Trial decryption of a header: None when this key does not authenticate it."""
    try:
        return AESGCMSIV(key).decrypt(
            sealed[:HEADER_NONCE_SIZE], sealed[HEADER_NONCE_SIZE:], associated_data
        )
    except InvalidTag:
        return None

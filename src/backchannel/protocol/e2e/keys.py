"""Identity keys, type-tagged key encodings and the safety number.

A principal's identity is two keys: an Ed25519 key that signs prekeys (and, only when the
principal explicitly asks, an agreed record) and an X25519 key for key agreement. Two keys
rather than one XEdDSA key: `cryptography` has no XEdDSA, and Olm/Matrix take the same
two-key approach.

Encodings are type-tagged (PQXDH spec §2.3) so an EC key can never be read as a KEM key::

    0x05 || 32 bytes   X25519 public key (libsignal's tag)
    0x06 || 32 bytes   Ed25519 public key
    0x0C || 1184 bytes ML-KEM-768 encapsulation key (libsignal has no ML-KEM-768 tag)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.primitives import (
    KEM_PUBLIC_SIZE,
    KEY_SIZE,
    Rng,
    ed25519_private,
    ed25519_public,
    ed25519_sign,
    ed25519_verify,
    sha256,
    sha512,
    x25519_private,
    x25519_public,
)
from backchannel.protocol.e2e.wordlist import WORDS
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader

__all__ = [
    "IDENTITY_ENCODING_SIZE",
    "KEY_TYPE_ED25519",
    "KEY_TYPE_MLKEM768",
    "KEY_TYPE_X25519",
    "IdentityKeyPair",
    "PublicIdentity",
    "SafetyNumber",
    "decode_tagged",
    "encode_tagged",
    "safety_number",
]

KEY_TYPE_X25519: Final = 0x05
KEY_TYPE_ED25519: Final = 0x06
KEY_TYPE_MLKEM768: Final = 0x0C
_KEY_SIZES: Final = {
    KEY_TYPE_X25519: KEY_SIZE,
    KEY_TYPE_ED25519: KEY_SIZE,
    KEY_TYPE_MLKEM768: KEM_PUBLIC_SIZE,
}
IDENTITY_ENCODING_SIZE: Final = 2 * (1 + KEY_SIZE)

# Signal's NumericFingerprint iterates SHA-512 5200 times: it makes a brute-force search for
# a colliding identity key 5200 times costlier while staying under a millisecond or so here.
SAFETY_NUMBER_ITERATIONS: Final = 5200
SAFETY_NUMBER_VERSION: Final = 1
# 30 bytes per side -> 6 groups of 5 digits per side, 60 digits in all (as Signal shows).
_FINGERPRINT_BYTES: Final = 30
# 12 words of 11 bits = 132 bits: past the 128-bit level, short enough to read aloud.
SAFETY_WORD_COUNT: Final = 12


def encode_tagged(key_type: int, raw: bytes) -> bytes:
    if _KEY_SIZES.get(key_type) != len(raw):
        raise LocalProtocolError("key does not match its type")
    return bytes((key_type,)) + raw


def decode_tagged(reader: Reader, key_type: int) -> bytes:
    """Read one tagged key of the expected type.

    Raises:
        RemoteProtocolError: the tag names another type or the key is truncated.
    """
    tag = reader.u8()
    if tag != key_type:
        raise RemoteProtocolError(f"expected key type 0x{key_type:02x}, found 0x{tag:02x}")
    return reader.fixed(_KEY_SIZES[key_type])


@dataclass(frozen=True, slots=True)
class PublicIdentity:
    """The public half of a principal's identity: safe to show, send and store."""

    signing_key: bytes  # Ed25519, raw 32 bytes
    agreement_key: bytes  # X25519, raw 32 bytes

    def __post_init__(self) -> None:
        if len(self.signing_key) != KEY_SIZE or len(self.agreement_key) != KEY_SIZE:
            raise LocalProtocolError("identity keys are 32 bytes each")

    def encode(self) -> bytes:
        return encode_tagged(KEY_TYPE_ED25519, self.signing_key) + encode_tagged(
            KEY_TYPE_X25519, self.agreement_key
        )

    @classmethod
    def read(cls, reader: Reader) -> PublicIdentity:
        signing = decode_tagged(reader, KEY_TYPE_ED25519)
        agreement = decode_tagged(reader, KEY_TYPE_X25519)
        ed25519_public(signing)  # reject keys the library cannot parse, now rather than later
        x25519_public(agreement)
        return cls(signing, agreement)

    @classmethod
    def decode(cls, data: bytes) -> PublicIdentity:
        reader = Reader(data, "identity")
        identity = cls.read(reader)
        reader.finish()
        return identity

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Check an Ed25519 signature made by this identity."""
        return ed25519_verify(ed25519_public(self.signing_key), signature, data)

    @property
    def fingerprint(self) -> str:
        """A short, stable name for logs and tables (not a security check)."""
        return sha256(self.encode())[:8].hex()


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """A principal's long-term secret keys. Never printed, never sent."""

    _signing: Ed25519PrivateKey = field(repr=False)
    _agreement: X25519PrivateKey = field(repr=False)
    public: PublicIdentity

    @classmethod
    def generate(cls, rng: Rng) -> IdentityKeyPair:
        return cls.from_private_bytes(rng(KEY_SIZE) + rng(KEY_SIZE))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> IdentityKeyPair:
        """Restore from `private_bytes()` (64 bytes: Ed25519 seed || X25519 scalar)."""
        if len(raw) != 2 * KEY_SIZE:
            raise LocalProtocolError("identity private key must be 64 bytes")
        signing = ed25519_private(raw[:KEY_SIZE])
        agreement = x25519_private(raw[KEY_SIZE:])
        public = PublicIdentity(
            signing.public_key().public_bytes_raw(), agreement.public_key().public_bytes_raw()
        )
        return cls(signing, agreement, public)

    def private_bytes(self) -> bytes:
        return self._signing.private_bytes_raw() + self._agreement.private_bytes_raw()

    def sign(self, data: bytes) -> bytes:
        """Sign prekeys or an agreed record. Never used on conversation messages."""
        return ed25519_sign(self._signing, data)

    @property
    def agreement(self) -> X25519PrivateKey:
        return self._agreement

    def __repr__(self) -> str:
        return f"IdentityKeyPair(public={self.public.fingerprint})"


def _wordlist() -> tuple[str, ...]:
    return WORDS


def _side_fingerprint(identity: PublicIdentity) -> bytes:
    encoded = identity.encode()
    digest = sha512(
        labels.SAFETY_NUMBER_PREFIX + SAFETY_NUMBER_VERSION.to_bytes(2, "big") + encoded
    )
    for _ in range(SAFETY_NUMBER_ITERATIONS - 1):
        digest = sha512(digest + encoded)
    return digest[:_FINGERPRINT_BYTES]


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    """What two principals compare out of band: 12 groups of 5 digits, or 12 words."""

    digits: str  # 60 digits
    words: tuple[str, ...]

    @property
    def digit_groups(self) -> list[str]:
        return [self.digits[i : i + 5] for i in range(0, len(self.digits), 5)]

    def __str__(self) -> str:
        return " ".join(self.digit_groups)


def _digits(fingerprint: bytes) -> str:
    groups = []
    for i in range(0, _FINGERPRINT_BYTES, 5):
        groups.append(f"{int.from_bytes(fingerprint[i : i + 5], 'big') % 100000:05d}")
    return "".join(groups)


def safety_number(a: PublicIdentity, b: PublicIdentity) -> SafetyNumber:
    """The safety number of a pair of identities; the same whichever side computes it.

    Both sides' fingerprints are sorted before they are combined, so the order of the
    arguments does not matter.
    """
    first, second = sorted((_side_fingerprint(a), _side_fingerprint(b)))
    digits = _digits(first) + _digits(second)
    bits = int.from_bytes(sha256(first + second), "big")
    words = _wordlist()
    chosen = tuple(words[(bits >> (256 - 11 * (i + 1))) & 0x7FF] for i in range(SAFETY_WORD_COUNT))
    return SafetyNumber(digits, chosen)

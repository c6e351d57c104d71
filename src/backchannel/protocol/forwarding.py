"""Private routing: a send sealed to the destination relay's key, sans I/O.

A client that does not want the destination relay D to see its address asks another relay
F to carry the send (``FORWARD``, docs/relay.md "Private routing"). The part F must not
read, the destination mailbox id, its send token and the envelope, is sealed here to D's
published long-term key with HPKE (RFC 9180, `cryptography`'s implementation, base mode).
The suite is the hybrid post-quantum one, ML-KEM-768 + X25519 with HKDF-SHA256 and
ChaCha20-Poly1305, so a recording of F's traffic to D does not give up the mailbox ids to
a later quantum computer either.

The sealed part also carries a fresh random *reply key* chosen by the client. D answers
with its outcome (stored as seq N, or refused with a code) sealed under that key, and F
passes the sealed answer back unchanged: F, which never sees the reply key, cannot forge a
"stored" (nor replay the answer of another forward, whose reply key differs).

Nothing here does I/O or reads a clock: keys are made from seeds and nonces are given. The
relay imports this module, never `backchannel.protocol.e2e`, so the labels below live
here rather than in `e2e.labels`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from backchannel.protocol.envelope import MAILBOX_ID_SIZE, MAX_ENVELOPE_SIZE
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.relayframes import (
    FORWARD_KEY_ID_SIZE,
    HPKE_ENC_SIZE,
    HPKE_TAG_SIZE,
    MAX_SEALED_SEND_SIZE,
    REPLY_KEY_SIZE,
    REPLY_NONCE_SIZE,
    SEALED_REPLY_SIZE,
    TOKEN_SIZE,
    ErrorCode,
)
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "KEY_SEED_SIZE",
    "PUBLISHED_KEY_SIZE",
    "ForgedReply",
    "ForwardOutcome",
    "InnerSend",
    "RelayKeyPair",
    "RelayPublicKey",
    "SealError",
    "open_reply",
    "open_send",
    "seal_bytes",
    "seal_reply",
    "seal_send",
]

# The HPKE suite (RFC 9180 ids: KEM 0x647a ML-KEM-768+X25519, KDF 0x0001, AEAD 0x0003).
_SUITE: Final = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256,
                           hpke.AEAD.CHACHA20_POLY1305)
SUITE_ID: Final = 0x647A_0001_0003
# HPKE `info`: binds the ciphertext to this use and, with the key id appended, to one key.
_SEAL_INFO: Final = b"backchannel relay forward v1\x00"
# AEAD associated data of D's sealed answer.
_REPLY_AAD: Final = b"backchannel relay forward reply v1\x00"
# Domain labels of the key id and the fingerprint (SHA-256 of label and public key).
_KEY_ID_LABEL: Final = b"backchannel relay key id v1\x00"
_FINGERPRINT_LABEL: Final = b"backchannel relay key fingerprint v1\x00"

_MLKEM_PUBLIC_SIZE: Final = 1184  # FIPS 203 ML-KEM-768 encapsulation key
_X25519_SIZE: Final = 32
_MLKEM_SEED_SIZE: Final = 64  # FIPS 203 (d, z) seed
# A key pair is made from this many random bytes: the ML-KEM seed and the X25519 scalar.
KEY_SEED_SIZE: Final = _MLKEM_SEED_SIZE + _X25519_SIZE
_PUBLISHED_VERSION: Final = 1
# The published form: version u8, suite u64 (as above), ML-KEM key, X25519 key.
PUBLISHED_KEY_SIZE: Final = 1 + 8 + _MLKEM_PUBLIC_SIZE + _X25519_SIZE
# The text form is base64url of the published form, unpadded: 1,634 characters.
_PUBLISHED_TEXT_SIZE: Final = (PUBLISHED_KEY_SIZE * 4 + 2) // 3
_STORED_CODE: Final = 0  # the outcome code of "stored"; refusals carry their ErrorCode

# The frame bounds in relayframes.py follow from these sizes; tests/protocol/
# test_forwarding.py checks that they agree with the suite and with this layout.


class SealError(RemoteProtocolError):
    """A sealed send does not open with this relay's key, or its inside is malformed.

    Attributes:
        code: the `ErrorCode` a relay answers with (UNKNOWN_KEY or MALFORMED).
    """

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


class ForgedReply(RemoteProtocolError):
    """An answer to a forward that was not sealed under its reply key: the forwarding
    relay (or the network) made it up or changed it. Blame: the forwarding relay."""


def _digest(label: bytes, data: bytes) -> bytes:
    return hashlib.sha256(label + data).digest()


@dataclass(frozen=True, slots=True)
class RelayPublicKey:
    """A relay's published forwarding key (what invites and ``GET /relay-key`` carry)."""

    mlkem_public: bytes
    x25519_public: bytes

    def __post_init__(self) -> None:
        if len(self.mlkem_public) != _MLKEM_PUBLIC_SIZE or len(self.x25519_public) != _X25519_SIZE:
            raise LocalProtocolError("a relay key is an ML-KEM-768 and an X25519 public key")

    @property
    def raw(self) -> bytes:
        """The two public keys, concatenated."""
        return self.mlkem_public + self.x25519_public

    @property
    def key_id(self) -> bytes:
        """`FORWARD_KEY_ID_SIZE` bytes naming the key in FORWARD and SEALED_SEND frames."""
        return _digest(_KEY_ID_LABEL, self.raw)[:FORWARD_KEY_ID_SIZE]

    @property
    def fingerprint(self) -> str:
        """The key's SHA-256 fingerprint as 16 groups of 4 hex digits, for operators."""
        text = _digest(_FINGERPRINT_LABEL, self.raw).hex()
        return " ".join(text[i : i + 4] for i in range(0, len(text), 4))

    def to_bytes(self) -> bytes:
        """The published form: ``version:u8 suite:u64 mlkem[1184] x25519[32]``."""
        return (Writer().u8(_PUBLISHED_VERSION).u64(SUITE_ID)
                .fixed(self.mlkem_public, _MLKEM_PUBLIC_SIZE)
                .fixed(self.x25519_public, _X25519_SIZE).getvalue())

    def to_text(self) -> str:
        """The published form in unpadded base64url (one line, 1,634 characters)."""
        return base64.urlsafe_b64encode(self.to_bytes()).rstrip(b"=").decode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes) -> RelayPublicKey:
        """Decode the published form.

        Raises:
            RemoteProtocolError: wrong size, version or suite, or a key that does not load.
        """
        if len(data) != PUBLISHED_KEY_SIZE:
            raise RemoteProtocolError(f"a published relay key is {PUBLISHED_KEY_SIZE} bytes")
        return _decoded_key(bytes(data))

    @classmethod
    def _decode(cls, data: bytes) -> RelayPublicKey:
        """`from_bytes` after its size check (through the cache of `_decoded_key`)."""
        r = Reader(data, "relay key")
        if r.u8() != _PUBLISHED_VERSION:
            raise RemoteProtocolError("unsupported relay key version")
        if r.u64() != SUITE_ID:
            raise RemoteProtocolError("unsupported relay key suite")
        key = cls(r.fixed(_MLKEM_PUBLIC_SIZE), r.fixed(_X25519_SIZE))
        r.finish()
        key.hpke_key()  # refuse now a key that cannot be used later
        return key

    @classmethod
    def from_text(cls, text: str) -> RelayPublicKey:
        """Decode the text form (see `to_text`).

        Raises:
            RemoteProtocolError: not base64url of a published key.
        """
        if len(text) != _PUBLISHED_TEXT_SIZE or not text.isascii():
            raise RemoteProtocolError(f"a relay key is {_PUBLISHED_TEXT_SIZE} characters")
        try:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise RemoteProtocolError("a relay key is base64url") from None
        key = cls.from_bytes(data)
        if key.to_text() != text:  # one text per key: no stray characters, no spare bits
            raise RemoteProtocolError("a relay key is base64url, unpadded")
        return key

    def hpke_key(self) -> hpke.MLKEM768X25519PublicKey:
        """The key as `cryptography` takes it.

        Raises:
            RemoteProtocolError: the ML-KEM key is not a valid encapsulation key.
        """
        try:
            return hpke.MLKEM768X25519PublicKey(
                mlkem.MLKEM768PublicKey.from_public_bytes(self.mlkem_public),
                x25519.X25519PublicKey.from_public_bytes(self.x25519_public))
        except ValueError:
            raise RemoteProtocolError("the relay key does not load") from None


class RelayKeyPair:
    """A relay's long-term forwarding key pair, made from `KEY_SEED_SIZE` random bytes.

    The seed is what a relay stores (its key file); the key pair follows from it.
    """

    __slots__ = ("_private", "public", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != KEY_SEED_SIZE:
            raise LocalProtocolError(f"a relay key seed is {KEY_SEED_SIZE} bytes")
        self.seed = seed
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:_MLKEM_SEED_SIZE])
        dh = x25519.X25519PrivateKey.from_private_bytes(seed[_MLKEM_SEED_SIZE:])
        self._private = hpke.MLKEM768X25519PrivateKey(kem, dh)
        self.public = RelayPublicKey(kem.public_key().public_bytes_raw(),
                                     dh.public_key().public_bytes_raw())

    def __repr__(self) -> str:
        return f"RelayKeyPair(key_id={self.public.key_id.hex()})"

    def decrypt(self, sealed: bytes, info: bytes) -> bytes:
        """HPKE-open `sealed` (raises `InvalidTag` when it does not open)."""
        return _SUITE.decrypt(sealed, self._private, info=info)


@dataclass(frozen=True, slots=True)
class InnerSend:
    """What a sealed send carries: the deposit and the key D seals its answer under."""

    mailbox_id: bytes
    send_token: bytes = field(repr=False)
    reply_key: bytes = field(repr=False)
    envelope: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.mailbox_id) != MAILBOX_ID_SIZE or len(self.send_token) != TOKEN_SIZE:
            raise LocalProtocolError("bad mailbox id or send token length")
        if len(self.reply_key) != REPLY_KEY_SIZE:
            raise LocalProtocolError(f"a reply key is {REPLY_KEY_SIZE} bytes")
        if len(self.envelope) > MAX_ENVELOPE_SIZE:
            raise LocalProtocolError("envelope too large")

    def to_bytes(self) -> bytes:
        """``mailbox_id[16] send_token[32] reply_key[32] envelope:bytes32``."""
        return (Writer().fixed(self.mailbox_id, MAILBOX_ID_SIZE)
                .fixed(self.send_token, TOKEN_SIZE).fixed(self.reply_key, REPLY_KEY_SIZE)
                .bytes32(self.envelope).getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> InnerSend:
        """Decode the inside of a sealed send (bounded; trailing bytes refused).

        Raises:
            RemoteProtocolError: malformed.
        """
        r = Reader(data, "sealed send")
        inner = cls(r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE), r.fixed(REPLY_KEY_SIZE),
                    r.bytes32(MAX_ENVELOPE_SIZE))
        r.finish()
        return inner


def _info(key_id: bytes) -> bytes:
    return _SEAL_INFO + key_id


def seal_send(destination: RelayPublicKey, inner: InnerSend) -> bytes:
    """Seal a send to the destination relay's key (HPKE base mode; randomised by HPKE).

    Returns:
        ``enc[1120] ciphertext``, at most `MAX_SEALED_SEND_SIZE` bytes.
    """
    return seal_bytes(destination, inner.to_bytes())


def seal_bytes(destination: RelayPublicKey, plaintext: bytes) -> bytes:
    """Seal any bytes as a sealed send's inside would be (`seal_send` uses it; tests seal
    what is not a deposit with it, to show that the destination refuses it)."""
    return _SUITE.encrypt(plaintext, destination.hpke_key(), info=_info(destination.key_id))


def open_send(keys: RelayKeyPair, key_id: bytes, sealed: bytes) -> InnerSend:
    """Open a sealed send addressed to this relay.

    Raises:
        SealError: another key's id (UNKNOWN_KEY), bytes that do not open under this key
            (UNKNOWN_KEY: a forged or damaged seal looks like one for another key), or an
            inside that does not decode (MALFORMED).
    """
    if key_id != keys.public.key_id:
        raise SealError("sealed to another key", ErrorCode.UNKNOWN_KEY)
    if not HPKE_ENC_SIZE + HPKE_TAG_SIZE <= len(sealed) <= MAX_SEALED_SEND_SIZE:
        raise SealError("sealed send of a wrong size", ErrorCode.MALFORMED)
    try:
        plain = keys.decrypt(sealed, _info(key_id))
    except (InvalidTag, ValueError):
        raise SealError("the sealed send does not open", ErrorCode.UNKNOWN_KEY) from None
    try:
        return InnerSend.from_bytes(plain)
    except (RemoteProtocolError, LocalProtocolError):
        raise SealError("the sealed send's inside is malformed", ErrorCode.MALFORMED) from None


@dataclass(frozen=True, slots=True)
class ForwardOutcome:
    """What the destination relay did with a forwarded send.

    Attributes:
        seq: the envelope's sequence number when stored, else 0.
        code: 0 when stored, else the `ErrorCode` value of the refusal.
    """

    seq: int
    code: int

    @property
    def stored(self) -> bool:
        """Whether the destination relay committed the envelope."""
        return self.code == _STORED_CODE


def seal_reply(reply_key: bytes, outcome: ForwardOutcome, nonce: bytes) -> bytes:
    """D's answer, sealed under the client's reply key (ChaCha20-Poly1305).

    Args:
        nonce: `REPLY_NONCE_SIZE` random bytes (each reply key seals one answer; a random
            nonce still keeps a second answer, if a bug ever sent one, from reusing it).

    Returns:
        `SEALED_REPLY_SIZE` bytes: ``nonce ciphertext``.
    """
    if len(nonce) != REPLY_NONCE_SIZE:
        raise LocalProtocolError(f"a reply nonce is {REPLY_NONCE_SIZE} bytes")
    plain = Writer().u16(outcome.code).u64(outcome.seq).getvalue()
    return nonce + ChaCha20Poly1305(reply_key).encrypt(nonce, plain, _REPLY_AAD)


def open_reply(reply_key: bytes, sealed: bytes) -> ForwardOutcome:
    """Open D's answer to a forward.

    Raises:
        ForgedReply: not sealed under `reply_key`, or its inside is not an outcome.
    """
    if len(sealed) != SEALED_REPLY_SIZE:
        raise ForgedReply("a forward's answer of a wrong size")
    nonce, body = sealed[:REPLY_NONCE_SIZE], sealed[REPLY_NONCE_SIZE:]
    try:
        plain = ChaCha20Poly1305(reply_key).decrypt(nonce, body, _REPLY_AAD)
    except InvalidTag:
        raise ForgedReply("the forward's answer was not sealed by the destination") from None
    r = Reader(plain, "forward outcome")
    code, seq = r.u16(), r.u64()
    stored = code == _STORED_CODE
    if stored != (seq > 0) or seq > (1 << 63) - 1:
        raise ForgedReply("the forward's answer is not an outcome")
    return ForwardOutcome(seq, code)


# A client reads a relay's key from its state at every flush and every slot; loading it
# (the ML-KEM key checked by `cryptography`) was a tenth of a send's time. The key is
# frozen and the same bytes always decode to the same key or the same error, so the
# ones that decoded are kept; a few relays per principal, 1.2 KB each.
@functools.lru_cache(maxsize=64)
def _decoded_key(data: bytes) -> RelayPublicKey:
    return RelayPublicKey._decode(data)

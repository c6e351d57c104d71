"""A relay's signed statement of its forwarding keys, sans I/O (docs/relay.md "Key pins").

Each relay has a long-term Ed25519 *relay identity*. It signs one kind of thing only: a
statement of which forwarding keys (`forwarding.RelayPublicKey`) open sealed sends at that
relay, the current one and the previous one while its overlap lasts, with until when. It
never signs anything of a conversation: it is the relay's, like a TLS certificate, and
the principals' deniability is untouched.

Invites (version 4, `client/invite.py`) carry the identity's 32-byte public key, the
*pin*, instead of the 1,225-byte forwarding key. A client fetches the statement and keeps
a key only if the statement verifies under the pinned identity; so whoever hands the
statement over (the relay, a proxy, the network) cannot substitute a key, and the
client can refetch after a rotation and still know the new key is the relay's.

Layout, then base64url without padding as text (``GET /relay-key-statement``)::

    magic "BCKS" | version u8 (1) | identity 32 | issued_at u64 (Unix seconds)
    count u8 (1..MAX_STATEMENT_KEYS) | count x (key 1225 (RelayPublicKey.to_bytes),
                                                until u64)
    signature 64 = Ed25519(identity, "backchannel relay key statement v1\\0" || all above)

The first key is the current one and has ``until`` 0 (no end); any other is a previous key
with its ``until`` (Unix seconds after which it opens nothing). Nothing here reads a clock.
The relay imports this module, never `backchannel.protocol.e2e`, so the labels live here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.forwarding import PUBLISHED_KEY_SIZE, RelayPublicKey
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "IDENTITY_SEED_SIZE",
    "MAX_STATEMENT_KEYS",
    "MAX_STATEMENT_SIZE",
    "PIN_SIZE",
    "KeyStatement",
    "RelayIdentity",
    "StatementRefused",
    "identity_fingerprint",
]

PIN_SIZE: Final = 32  # an Ed25519 public key
IDENTITY_SEED_SIZE: Final = 32  # an Ed25519 private key's seed
_SIGNATURE_SIZE: Final = 64
_MAGIC: Final = b"BCKS"
_VERSION: Final = 1
_SIGNATURE_LABEL: Final = b"backchannel relay key statement v1\x00"
_FINGERPRINT_LABEL: Final = b"backchannel relay identity fingerprint v1\x00"
# HKDF info of the identity of a key file written before identities existed (versions 1
# and 2, `relay.relaykey`): derived from its current seed, so it is the same at every start.
_DERIVED_INFO: Final = b"backchannel relay identity from key seed v1\x00"
# A relay's ring holds the current key and at most one previous key (`relaykey`); two
# more leave room for a later ring without making a statement unboundedly long.
MAX_STATEMENT_KEYS: Final = 4
_HEAD_SIZE: Final = len(_MAGIC) + 1 + PIN_SIZE + 8 + 1
_ENTRY_SIZE: Final = PUBLISHED_KEY_SIZE + 8
MAX_STATEMENT_SIZE: Final = _HEAD_SIZE + MAX_STATEMENT_KEYS * _ENTRY_SIZE + _SIGNATURE_SIZE
_MAX_TEXT_SIZE: Final = (MAX_STATEMENT_SIZE * 4 + 2) // 3
_MAX_U64: Final = (1 << 64) - 1


class StatementRefused(RemoteProtocolError):
    """A key statement that is malformed, not signed by its identity, or signed by
    another identity than the pin: no key in it is trusted."""


def identity_fingerprint(public: bytes) -> str:
    """A relay identity's SHA-256 fingerprint as 16 groups of 4 hex digits (operators
    read it out beside the forwarding key's)."""
    text = hashlib.sha256(_FINGERPRINT_LABEL + public).hexdigest()
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


@dataclass(frozen=True, slots=True)
class KeyStatement:
    """A verified statement: whose it is, when it was made, and its keys.

    Attributes:
        identity: the relay identity's public key (what an invite pins).
        issued_at: Unix seconds when the relay signed it.
        keys: (key, until) pairs, the current key first with until 0.
        raw: the signed bytes as received, kept to store and to pass on.
    """

    identity: bytes
    issued_at: int
    keys: tuple[tuple[RelayPublicKey, int], ...]
    raw: bytes

    @property
    def current(self) -> RelayPublicKey:
        """The key sealed sends should use now."""
        return self.keys[0][0]

    def lists_current(self, key: RelayPublicKey) -> bool:
        """Whether `key` is the statement's current key."""
        return self.current == key

    def to_text(self) -> str:
        """The signed bytes in unpadded base64url (one line)."""
        return base64.urlsafe_b64encode(self.raw).rstrip(b"=").decode("ascii")

    @classmethod
    def from_bytes(cls, data: bytes, pin: bytes | None = None) -> KeyStatement:
        """Decode and verify a statement; with `pin`, it must be that identity's.

        Raises:
            StatementRefused: malformed, trailing bytes, a bad signature, or another
                identity than `pin`.
        """
        if len(data) > MAX_STATEMENT_SIZE:
            raise StatementRefused("a relay key statement too long")
        try:
            r = Reader(data, "relay key statement")
            if r.fixed(len(_MAGIC)) != _MAGIC or r.u8() != _VERSION:
                raise StatementRefused("not a relay key statement of a known version")
            identity, issued_at, count = r.fixed(PIN_SIZE), r.u64(), r.u8()
            if not 1 <= count <= MAX_STATEMENT_KEYS:
                raise StatementRefused(f"a relay key statement lists 1 to "
                                       f"{MAX_STATEMENT_KEYS} keys")
            keys = tuple((RelayPublicKey.from_bytes(r.fixed(PUBLISHED_KEY_SIZE)), r.u64())
                         for _ in range(count))
            signed = len(data) - r.remaining
            signature = r.fixed(_SIGNATURE_SIZE)
            r.finish()
        except StatementRefused:
            raise
        except RemoteProtocolError as error:
            raise StatementRefused(f"a damaged relay key statement ({error})") from None
        if keys[0][1] != 0 or any(until == 0 for _, until in keys[1:]):
            raise StatementRefused("a relay key statement's first key alone is current")
        if len({key.key_id for key, _ in keys}) != count:
            raise StatementRefused("a relay key statement lists a key twice")
        if pin is not None and identity != pin:
            raise StatementRefused("the relay key statement is another relay's: it does not "
                                   "match the pin the invite gave")
        try:
            public = ed25519.Ed25519PublicKey.from_public_bytes(identity)
            public.verify(signature, _SIGNATURE_LABEL + data[:signed])
        except (InvalidSignature, ValueError):
            raise StatementRefused("the relay key statement's signature does not verify") \
                from None
        return cls(identity, issued_at, keys, data)

    @classmethod
    def from_text(cls, text: str, pin: bytes | None = None) -> KeyStatement:
        """Decode the text form (see `to_text`) and verify it (see `from_bytes`).

        Raises:
            StatementRefused: not base64url of a statement that verifies.
        """
        if not 0 < len(text) <= _MAX_TEXT_SIZE or not text.isascii():
            raise StatementRefused("a relay key statement is base64url, of a bounded size")
        try:
            data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise StatementRefused("a relay key statement is base64url") from None
        statement = cls.from_bytes(data, pin)
        if statement.to_text() != text:  # one text per statement: no stray characters
            raise StatementRefused("a relay key statement is base64url, unpadded")
        return statement


class RelayIdentity:
    """A relay's long-term Ed25519 identity, made from `IDENTITY_SEED_SIZE` random bytes
    (what the key file keeps). It signs key statements and nothing else."""

    __slots__ = ("_private", "public", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != IDENTITY_SEED_SIZE:
            raise LocalProtocolError(f"a relay identity seed is {IDENTITY_SEED_SIZE} bytes")
        self.seed = seed
        self._private = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._private.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return f"RelayIdentity({self.public.hex()[:16]}…)"

    @property
    def fingerprint(self) -> str:
        """See `identity_fingerprint`."""
        return identity_fingerprint(self.public)

    @classmethod
    def derived_from(cls, key_seed: bytes) -> RelayIdentity:
        """The identity of a key file from before identities (or of a bare key pair):
        HKDF-SHA256 of the forwarding key's seed under its own label, so it is the same
        at every start until the file is rewritten with an identity of its own."""
        return _derived(key_seed)

    def sign(self, keys: Sequence[tuple[RelayPublicKey, int]], issued_at: int) -> KeyStatement:
        """A statement of `keys` ((key, until) pairs, the current one first with until
        0), made at `issued_at` (Unix seconds).

        Raises:
            LocalProtocolError: no key, too many, or untils out of order.
        """
        if not 1 <= len(keys) <= MAX_STATEMENT_KEYS:
            raise LocalProtocolError(f"a statement lists 1 to {MAX_STATEMENT_KEYS} keys")
        if keys[0][1] != 0 or any(not 0 < until <= _MAX_U64 for _, until in keys[1:]):
            raise LocalProtocolError("the current key alone has until 0")
        w = Writer().raw(_MAGIC).u8(_VERSION).fixed(self.public, PIN_SIZE).u64(issued_at)
        w.u8(len(keys))
        for key, until in keys:
            w.fixed(key.to_bytes(), PUBLISHED_KEY_SIZE).u64(until)
        body = w.getvalue()
        signature = self._private.sign(_SIGNATURE_LABEL + body)
        return KeyStatement(self.public, issued_at, tuple(keys), body + signature)


@functools.lru_cache(maxsize=16)
def _derived(key_seed: bytes) -> RelayIdentity:
    seed = HKDF(hashes.SHA256(), IDENTITY_SEED_SIZE, None, _DERIVED_INFO).derive(key_seed)
    return RelayIdentity(seed)

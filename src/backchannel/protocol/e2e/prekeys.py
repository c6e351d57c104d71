"""Prekeys: what a responder publishes (the bundle) and what it keeps (the secrets).

A bundle carries a signed X25519 prekey, a signed ML-KEM-768 prekey and at most one
one-time X25519 prekey (PQXDH spec §3.2). Byte layout, in order::

    identity            66   PublicIdentity.encode()
    spk_id              u32
    spk                 33   tagged X25519
    spk_signature       64   Ed25519(identity, tagged spk)
    pqspk_id            u32
    pqspk               1185 tagged ML-KEM-768
    pqspk_signature     64   Ed25519(identity, tagged pqspk)
    has_opk             u8   0 or 1
    [opk_id u32, opk 33 tagged X25519]   when has_opk is 1
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backchannel.protocol.e2e.keys import (
    KEY_TYPE_MLKEM768,
    KEY_TYPE_X25519,
    IdentityKeyPair,
    PublicIdentity,
    decode_tagged,
    encode_tagged,
)
from backchannel.protocol.e2e.primitives import (
    KEM_SEED_SIZE,
    KEY_SIZE,
    SIGNATURE_SIZE,
    Rng,
    mlkem_private,
    mlkem_public,
    x25519_private,
    x25519_public,
)
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = ["MAX_ONE_TIME_PREKEYS", "PrekeyBundle", "PrekeySecrets"]

# A channel is paired by invite, one invite per counterpart, so a principal needs few
# one-time prekeys at once; the bound keeps a stored secrets record small and lets us
# refuse an absurd count early.
MAX_ONE_TIME_PREKEYS: Final = 100
_SECRETS_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class PrekeyBundle:
    """The public prekeys a responder publishes (inside an invite)."""

    identity: PublicIdentity
    signed_prekey_id: int
    signed_prekey: bytes
    signed_prekey_signature: bytes
    pq_prekey_id: int
    pq_prekey: bytes
    pq_prekey_signature: bytes
    one_time_prekey_id: int | None = None
    one_time_prekey: bytes | None = None
    # Set once verify() has passed, so decode-then-initiate checks the signatures once. Not an
    # init field: `dataclasses.replace` cannot set it and does not copy it, so a bundle whose
    # identity or keys were swapped is verified again rather than trusted.
    _verified: bool = field(default=False, init=False, compare=False, repr=False)

    def encode(self) -> bytes:
        w = Writer().raw(self.identity.encode())
        w.u32(self.signed_prekey_id).raw(encode_tagged(KEY_TYPE_X25519, self.signed_prekey))
        w.fixed(self.signed_prekey_signature, SIGNATURE_SIZE)
        w.u32(self.pq_prekey_id).raw(encode_tagged(KEY_TYPE_MLKEM768, self.pq_prekey))
        w.fixed(self.pq_prekey_signature, SIGNATURE_SIZE)
        if self.one_time_prekey is None or self.one_time_prekey_id is None:
            w.u8(0)
        else:
            w.u8(1).u32(self.one_time_prekey_id)
            w.raw(encode_tagged(KEY_TYPE_X25519, self.one_time_prekey))
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PrekeyBundle:
        """Parse a bundle and check both prekey signatures.

        Raises:
            RemoteProtocolError: malformed, or a signature does not verify (a tampered or
                forged bundle must never reach the handshake).
        """
        r = Reader(data, "prekey bundle")
        identity = PublicIdentity.read(r)
        spk_id = r.u32()
        spk = decode_tagged(r, KEY_TYPE_X25519)
        spk_sig = r.fixed(SIGNATURE_SIZE)
        pq_id = r.u32()
        pq = decode_tagged(r, KEY_TYPE_MLKEM768)
        pq_sig = r.fixed(SIGNATURE_SIZE)
        flag = r.u8()
        opk_id: int | None = None
        opk: bytes | None = None
        if flag == 1:
            opk_id = r.u32()
            opk = decode_tagged(r, KEY_TYPE_X25519)
        elif flag != 0:
            raise RemoteProtocolError("prekey bundle: bad one-time prekey flag")
        r.finish()
        bundle = cls(identity, spk_id, spk, spk_sig, pq_id, pq, pq_sig, opk_id, opk)
        bundle.verify()
        return bundle

    def verify(self) -> None:
        """Raises RemoteProtocolError unless both prekey signatures are the identity's."""
        if self._verified:
            return
        spk_ok = self.identity.verify(
            self.signed_prekey_signature, encode_tagged(KEY_TYPE_X25519, self.signed_prekey)
        )
        pq_ok = self.identity.verify(
            self.pq_prekey_signature, encode_tagged(KEY_TYPE_MLKEM768, self.pq_prekey)
        )
        if not (spk_ok and pq_ok):
            raise RemoteProtocolError("prekey bundle signature is invalid")
        # Parse now so a key the library rejects fails here, not halfway through a handshake.
        x25519_public(self.signed_prekey)
        mlkem_public(self.pq_prekey)
        if self.one_time_prekey is not None:
            x25519_public(self.one_time_prekey)
        object.__setattr__(self, "_verified", True)


@dataclass(frozen=True, slots=True)
class PrekeySecrets:
    """The private halves a responder keeps. One-time prekeys are removed when used."""

    signed_prekey_id: int
    signed_prekey: bytes = field(repr=False)
    pq_prekey_id: int
    pq_prekey_seed: bytes = field(repr=False)
    one_time_prekeys: dict[int, bytes] = field(default_factory=dict, repr=False)
    # Parsed key objects, made on first use: parsing costs a scalar multiplication (X25519)
    # or a full key expansion (ML-KEM), and every handshake needs both.
    _parsed: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def signed_prekey_key(self) -> X25519PrivateKey:
        key = self._parsed.get("spk")
        if not isinstance(key, X25519PrivateKey):
            key = self._parsed["spk"] = x25519_private(self.signed_prekey)
        return key

    def pq_prekey_key(self) -> MLKEM768PrivateKey:
        key = self._parsed.get("pq")
        if not isinstance(key, MLKEM768PrivateKey):
            key = self._parsed["pq"] = mlkem_private(self.pq_prekey_seed)
        return key

    @classmethod
    def generate(cls, rng: Rng, *, one_time_count: int = 1, first_id: int = 1) -> PrekeySecrets:
        if not 0 <= one_time_count <= MAX_ONE_TIME_PREKEYS:
            raise LocalProtocolError(f"one_time_count must be 0..{MAX_ONE_TIME_PREKEYS}")
        opks = {first_id + i: rng(KEY_SIZE) for i in range(one_time_count)}
        return cls(first_id, rng(KEY_SIZE), first_id, rng(KEM_SEED_SIZE), opks)

    def bundle(self, identity: IdentityKeyPair, one_time_prekey_id: int | None) -> PrekeyBundle:
        """The public bundle, offering one named one-time prekey (or none)."""
        spk = self.signed_prekey_key().public_key().public_bytes_raw()
        pq = self.pq_prekey_key().public_key().public_bytes_raw()
        opk: bytes | None = None
        if one_time_prekey_id is not None:
            if one_time_prekey_id not in self.one_time_prekeys:
                raise LocalProtocolError(f"no one-time prekey {one_time_prekey_id}")
            raw = self.one_time_prekeys[one_time_prekey_id]
            opk = x25519_private(raw).public_key().public_bytes_raw()
        return PrekeyBundle(
            identity.public,
            self.signed_prekey_id,
            spk,
            identity.sign(encode_tagged(KEY_TYPE_X25519, spk)),
            self.pq_prekey_id,
            pq,
            identity.sign(encode_tagged(KEY_TYPE_MLKEM768, pq)),
            one_time_prekey_id if opk is not None else None,
            opk,
        )

    def without_one_time_prekey(self, prekey_id: int) -> PrekeySecrets:
        remaining = {k: v for k, v in self.one_time_prekeys.items() if k != prekey_id}
        return replace(self, one_time_prekeys=remaining, _parsed=self._parsed)

    def encode(self) -> bytes:
        w = Writer().u8(_SECRETS_VERSION)
        w.u32(self.signed_prekey_id).fixed(self.signed_prekey, KEY_SIZE)
        w.u32(self.pq_prekey_id).fixed(self.pq_prekey_seed, KEM_SEED_SIZE)
        w.u16(len(self.one_time_prekeys))
        for prekey_id, raw in self.one_time_prekeys.items():
            w.u32(prekey_id).fixed(raw, KEY_SIZE)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PrekeySecrets:
        r = Reader(data, "prekey secrets")
        if r.u8() != _SECRETS_VERSION:
            raise RemoteProtocolError("unknown prekey secrets version")
        spk_id, spk = r.u32(), r.fixed(KEY_SIZE)
        pq_id, pq_seed = r.u32(), r.fixed(KEM_SEED_SIZE)
        count = r.u16()
        if count > MAX_ONE_TIME_PREKEYS:
            raise RemoteProtocolError("too many one-time prekeys")
        opks = {r.u32(): r.fixed(KEY_SIZE) for _ in range(count)}
        r.finish()
        return cls(spk_id, spk, pq_id, pq_seed, opks)

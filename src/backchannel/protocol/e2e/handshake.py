"""PQXDH: the post-quantum hybrid handshake (Signal's PQXDH specification, rev. 3).

The initiator (Alice) fetches the responder's (Bob's) prekey bundle and computes::

    DH1 = DH(IKa, SPKb)   DH2 = DH(EKa, IKb)   DH3 = DH(EKa, SPKb)   [DH4 = DH(EKa, OPKb)]
    (CT, SS) = ML-KEM-768.Encaps(PQSPKb)
    SK = HKDF-SHA256(salt = 32 zero bytes, ikm = 0xFF*32 || DH1 || DH2 || DH3 [|| DH4] || SS,
                     info = PQXDH_INFO, length = 32)
    AD = Encode(IKa) || Encode(IKb)

(§3.3). SK is then split into the ratchet's root key and its two shared header keys.

One departure, for discretion: Alice's identity travels *sealed* in the initiation, under a
key derived from DH3 and SS, which only the holder of Bob's signed prekey can compute. A
relay therefore never sees who opens a channel. Deniability is unchanged: nothing is signed.

Initiation layout::

    eka          33    tagged X25519 ephemeral key
    spk_id       u32
    pqspk_id     u32
    has_opk      u8    0 or 1, then opk_id u32 when 1
    kem_ct       1088
    sealed_ika   82    ChaCha20-Poly1305(seal key, zero nonce, Encode(IKa), AD = all above)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.keys import (
    IDENTITY_ENCODING_SIZE,
    KEY_TYPE_X25519,
    IdentityKeyPair,
    PublicIdentity,
    decode_tagged,
    encode_tagged,
)
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import (
    AEAD_TAG_SIZE,
    KEM_CIPHERTEXT_SIZE,
    KEY_SIZE,
    Rng,
    aead_decrypt,
    aead_encrypt,
    hkdf,
    mlkem_public,
    x25519,
    x25519_private,
    x25519_public,
)
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "ASSOCIATED_DATA_SIZE",
    "INITIATION_SIZE_WITH_ONE_TIME_PREKEY",
    "HandshakeSecrets",
    "Initiation",
    "derive_handshake_secret",
    "initiate",
    "initiate_from_parts",
    "respond",
]

ASSOCIATED_DATA_SIZE: Final = 2 * IDENTITY_ENCODING_SIZE
_SEALED_IDENTITY_SIZE: Final = IDENTITY_ENCODING_SIZE + AEAD_TAG_SIZE
# ek 33, spk_id 4, pqspk_id 4, has_opk 1, opk_id 4, kem_ct 1088, sealed identity 82: 1216.
INITIATION_SIZE_WITH_ONE_TIME_PREKEY: Final = (
    1 + KEY_SIZE + 4 + 4 + 1 + 4 + KEM_CIPHERTEXT_SIZE + _SEALED_IDENTITY_SIZE
)
_ZERO_SALT: Final = b"\x00" * 32


def derive_handshake_secret(parts: Sequence[bytes], info: bytes, length: int) -> bytes:
    """The X3DH/PQXDH KDF: HKDF(salt=0^32, ikm=F || parts..., info) (PQXDH §2.2).

    Exposed with `info` and `length` as parameters so the same code reproduces libsignal's
    published X3DH vectors (info "WhisperText", 64 bytes).
    """
    return hkdf(labels.PQXDH_PREFIX + b"".join(parts), salt=_ZERO_SALT, info=info, length=length)


@dataclass(frozen=True, slots=True)
class HandshakeSecrets:
    """What PQXDH hands to the Double Ratchet (DR spec §4.3 "SK, shared_hka, shared_nhkb")."""

    root_key: bytes = field(repr=False)
    shared_header_key: bytes = field(repr=False)  # Alice's first sending header key
    shared_next_header_key: bytes = field(repr=False)  # Bob's first sending header key
    associated_data: bytes

    @classmethod
    def from_secret(cls, sk: bytes, associated_data: bytes) -> HandshakeSecrets:
        okm = hkdf(sk, salt=None, info=labels.RATCHET_INIT_INFO, length=3 * KEY_SIZE)
        return cls(okm[:32], okm[32:64], okm[64:], associated_data)


@dataclass(frozen=True, slots=True)
class Initiation:
    """The handshake part of Alice's first messages."""

    ephemeral_key: bytes
    signed_prekey_id: int
    pq_prekey_id: int
    one_time_prekey_id: int | None
    kem_ciphertext: bytes
    sealed_identity: bytes

    def _unsealed_part(self) -> bytes:
        w = Writer().raw(encode_tagged(KEY_TYPE_X25519, self.ephemeral_key))
        w.u32(self.signed_prekey_id).u32(self.pq_prekey_id)
        if self.one_time_prekey_id is None:
            w.u8(0)
        else:
            w.u8(1).u32(self.one_time_prekey_id)
        return w.fixed(self.kem_ciphertext, KEM_CIPHERTEXT_SIZE).getvalue()

    def encode(self) -> bytes:
        return self._unsealed_part() + self.sealed_identity

    @classmethod
    def read(cls, r: Reader) -> Initiation:
        eka = decode_tagged(r, KEY_TYPE_X25519)
        spk_id, pq_id = r.u32(), r.u32()
        flag = r.u8()
        if flag not in (0, 1):
            raise RemoteProtocolError("initiation: bad one-time prekey flag")
        opk_id = r.u32() if flag == 1 else None
        ct = r.fixed(KEM_CIPHERTEXT_SIZE)
        sealed = r.fixed(_SEALED_IDENTITY_SIZE)
        return cls(eka, spk_id, pq_id, opk_id, ct, sealed)


def _seal_key(dh3: bytes, kem_secret: bytes) -> bytes:
    return derive_handshake_secret([dh3, kem_secret], labels.INITIATOR_SEAL_INFO, KEY_SIZE)


def initiate(
    identity: IdentityKeyPair, bundle: PrekeyBundle, rng: Rng
) -> tuple[Initiation, HandshakeSecrets]:
    """Run Alice's side of PQXDH against a bundle whose signatures were checked on decode.

    Raises:
        RemoteProtocolError: the bundle's signatures or keys are invalid.
    """
    bundle.verify()
    kem_secret, kem_ciphertext = mlkem_public(bundle.pq_prekey).encapsulate()
    return initiate_from_parts(identity, bundle, rng(KEY_SIZE), kem_secret, kem_ciphertext)


def initiate_from_parts(
    identity: IdentityKeyPair,
    bundle: PrekeyBundle,
    ephemeral_private: bytes,
    kem_secret: bytes,
    kem_ciphertext: bytes,
) -> tuple[Initiation, HandshakeSecrets]:
    """Alice's side with every random input given: deterministic, for golden vectors."""
    ephemeral = x25519_private(ephemeral_private)
    spk = x25519_public(bundle.signed_prekey)
    dh = [
        x25519(identity.agreement, spk),
        x25519(ephemeral, x25519_public(bundle.identity.agreement_key)),
        x25519(ephemeral, spk),
    ]
    if bundle.one_time_prekey is not None:
        dh.append(x25519(ephemeral, x25519_public(bundle.one_time_prekey)))
    sk = derive_handshake_secret([*dh, kem_secret], labels.PQXDH_INFO, KEY_SIZE)
    unsealed = Initiation(
        ephemeral.public_key().public_bytes_raw(),
        bundle.signed_prekey_id,
        bundle.pq_prekey_id,
        bundle.one_time_prekey_id if bundle.one_time_prekey is not None else None,
        kem_ciphertext,
        b"",
    )
    header = unsealed._unsealed_part()
    sealed = aead_encrypt(_seal_key(dh[2], kem_secret), identity.public.encode(), header)
    initiation = Initiation(
        unsealed.ephemeral_key,
        unsealed.signed_prekey_id,
        unsealed.pq_prekey_id,
        unsealed.one_time_prekey_id,
        kem_ciphertext,
        sealed,
    )
    ad = identity.public.encode() + bundle.identity.encode()
    return initiation, HandshakeSecrets.from_secret(sk, ad)


def respond(
    identity: IdentityKeyPair, secrets: PrekeySecrets, initiation: Initiation
) -> tuple[PublicIdentity, HandshakeSecrets]:
    """Run Bob's side of PQXDH. Does not consume the one-time prekey: the caller removes
    it only once the first message has authenticated, so a forged initiation costs nothing.

    Returns:
        Alice's identity (unsealed) and the secrets for the ratchet.

    Raises:
        RemoteProtocolError: the initiation names prekeys we do not hold (including a
            one-time prekey that was already used).
        DecryptionFailed: the sealed identity does not authenticate.
    """
    if initiation.signed_prekey_id != secrets.signed_prekey_id:
        raise RemoteProtocolError("initiation names an unknown signed prekey")
    if initiation.pq_prekey_id != secrets.pq_prekey_id:
        raise RemoteProtocolError("initiation names an unknown post-quantum prekey")
    opk_raw: bytes | None = None
    if initiation.one_time_prekey_id is not None:
        opk_raw = secrets.one_time_prekeys.get(initiation.one_time_prekey_id)
        if opk_raw is None:
            raise RemoteProtocolError("initiation names a one-time prekey that is used or unknown")
    eka = x25519_public(initiation.ephemeral_key)
    spk = secrets.signed_prekey_key()
    kem_secret = secrets.pq_prekey_key().decapsulate(initiation.kem_ciphertext)
    dh3 = x25519(spk, eka)
    try:
        encoded_alice = aead_decrypt(
            _seal_key(dh3, kem_secret), initiation.sealed_identity, initiation._unsealed_part()
        )
    except DecryptionFailed:
        raise DecryptionFailed() from None
    alice = PublicIdentity.decode(encoded_alice)
    dh = [x25519(spk, x25519_public(alice.agreement_key)), x25519(identity.agreement, eka), dh3]
    if opk_raw is not None:
        dh.append(x25519(x25519_private(opk_raw), eka))
    sk = derive_handshake_secret([*dh, kem_secret], labels.PQXDH_INFO, KEY_SIZE)
    ad = alice.encode() + identity.public.encode()
    return alice, HandshakeSecrets.from_secret(sk, ad)

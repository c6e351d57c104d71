"""The Double Ratchet with header encryption (Signal's Double Ratchet spec, rev. 1, §4).

State follows the spec's names: DHs, DHr, RK, CKs, CKr, Ns, Nr, PN, HKs, HKr, NHKs, NHKr,
MKSKIPPED. Choices the spec leaves open:

- KDF_RK_HE(rk, dh) = HKDF-SHA256(salt=rk, ikm=dh, info=ROOT_KDF_INFO) -> RK || CK || NHK.
- KDF_CK(ck): MK = HMAC-SHA256(ck, 0x01), CK' = HMAC-SHA256(ck, 0x02) (§5.2).
- ENCRYPT: ChaCha20-Poly1305 keyed by MK with a zero nonce; MK is used exactly once.
- HENCRYPT: AES-256-GCM-SIV with a random 96-bit nonce, since a header key encrypts every
  header of its chain (§4.2 warns the header key is reused).
- Header plaintext: DHs public (32) || PN (u32) || N (u32): 40 bytes, 68 sealed.
- AD for the header is the session AD; AD for the body is session AD || sealed header
  (§3.4 CONCAT; the session AD has a fixed length, so the concatenation is unambiguous).

Decryption is *clone-then-commit*: every new value is computed into locals and written to
the state only after the body has authenticated, so a forged or corrupted message leaves
the state exactly as it was.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.primitives import (
    AEAD_TAG_SIZE,
    HEADER_NONCE_SIZE,
    KEY_SIZE,
    Rng,
    aead_decrypt,
    aead_encrypt,
    header_decrypt,
    header_encrypt,
    hkdf,
    hmac_sha256,
    x25519,
    x25519_private,
    x25519_public,
)
from backchannel.protocol.errors import (
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "HEADER_SIZE",
    "MAX_SKIP",
    "MAX_SKIPPED_KEYS",
    "SEALED_HEADER_SIZE",
    "DuplicateMessage",
    "Ratchet",
    "TooFarAhead",
]

# How far ahead of the next expected message one header may jump in one chain (DR spec
# §3.5 MAX_SKIP). A relay outage can hold back many messages while later ones arrive by
# another relay; 1,000 covers a day of one message a minute, and deriving 1,000 keys costs
# a few milliseconds, so a forged jump cannot make a receiver work much.
MAX_SKIP: Final = 1000
# Keys kept for messages not yet arrived, over all chains (libsignal keeps 2,000 per chain).
# Each is 68 bytes in the stored state; 2,000 of them is 136 KB at worst. The oldest are
# dropped first: a message that late is reported as undecryptable rather than kept forever.
MAX_SKIPPED_KEYS: Final = 2000

HEADER_SIZE: Final = KEY_SIZE + 4 + 4
SEALED_HEADER_SIZE: Final = HEADER_NONCE_SIZE + HEADER_SIZE + AEAD_TAG_SIZE
_HEADER: Final = struct.Struct(">32sII")
_STATE_VERSION: Final = 1
_NO_KEY: Final = b""


class DuplicateMessage(RemoteProtocolError):
    """The message authenticated as ours but its key is already used: a replay or a copy."""


class TooFarAhead(RemoteProtocolError):
    """An authentic header more than MAX_SKIP messages ahead of this chain.

    Nothing changed. The messages in between may still come (by another relay, later):
    keep this one and try again after them, rather than dropping it.
    """


def _kdf_rk(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes, bytes]:
    okm = hkdf(dh_output, salt=root_key, info=labels.ROOT_KDF_INFO, length=3 * KEY_SIZE)
    return okm[:32], okm[32:64], okm[64:]


def _kdf_ck(chain_key: bytes) -> tuple[bytes, bytes]:
    """Returns (next chain key, message key)."""
    return (
        hmac_sha256(chain_key, labels.CHAIN_NEXT_KEY_INPUT),
        hmac_sha256(chain_key, labels.CHAIN_MESSAGE_KEY_INPUT),
    )


@dataclass(frozen=True, slots=True)
class _Header:
    dh: bytes
    pn: int
    n: int


def _open_header(key: bytes | None, sealed: bytes, ad: bytes) -> _Header | None:
    if not key:
        return None
    plain = header_decrypt(key, sealed, ad)
    if plain is None or len(plain) != HEADER_SIZE:
        return None
    dh, pn, n = _HEADER.unpack(plain)
    return _Header(dh, pn, n)


class Ratchet:
    """One side of a Double Ratchet session with header encryption."""

    __slots__ = (
        "ckr",
        "cks",
        "dhr",
        "dhs",
        "dhs_public",
        "hkr",
        "hks",
        "nhkr",
        "nhks",
        "nr",
        "ns",
        "pn",
        "rk",
        "skipped",
    )

    def __init__(self) -> None:
        self.dhs: X25519PrivateKey = X25519PrivateKey.from_private_bytes(b"\x01" * 32)
        self.dhs_public = b""  # cached: deriving it costs a scalar multiplication
        self.dhr: bytes = _NO_KEY
        self.rk: bytes = _NO_KEY
        self.cks: bytes = _NO_KEY
        self.ckr: bytes = _NO_KEY
        self.ns = self.nr = self.pn = 0
        self.hks: bytes = _NO_KEY
        self.hkr: bytes = _NO_KEY
        self.nhks: bytes = _NO_KEY
        self.nhkr: bytes = _NO_KEY
        # (header key, n) -> message key, oldest first.
        self.skipped: dict[tuple[bytes, int], bytes] = {}

    def __repr__(self) -> str:
        return f"Ratchet(ns={self.ns}, nr={self.nr}, pn={self.pn}, skipped={len(self.skipped)})"

    # -- initialisation (DR spec §4.3) ------------------------------------------------

    @classmethod
    def init_initiator(
        cls,
        root_key: bytes,
        responder_ratchet_key: bytes,
        shared_header_key: bytes,
        shared_next_header_key: bytes,
        rng: Rng,
    ) -> Ratchet:
        """RatchetInitAliceHE: Alice knows Bob's signed prekey and can send at once."""
        r = cls()
        r.dhs = x25519_private(rng(KEY_SIZE))
        r.dhr = responder_ratchet_key
        r.rk, r.cks, r.nhks = _kdf_rk(root_key, x25519(r.dhs, x25519_public(r.dhr)))
        r.hks = shared_header_key
        r.nhkr = shared_next_header_key
        return r

    @classmethod
    def init_responder(
        cls,
        root_key: bytes,
        own_ratchet_key: X25519PrivateKey,
        shared_header_key: bytes,
        shared_next_header_key: bytes,
    ) -> Ratchet:
        """RatchetInitBobHE: Bob waits for Alice's first message before he can send."""
        r = cls()
        r.dhs = own_ratchet_key
        r.rk = root_key
        r.nhks = shared_next_header_key
        r.nhkr = shared_header_key
        return r

    @property
    def can_send(self) -> bool:
        return bool(self.cks)

    # -- sending ----------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, ad: bytes, rng: Rng) -> bytes:
        """RatchetEncryptHE: returns sealed header || body ciphertext.

        Raises:
            LocalProtocolError: the responder tried to send before receiving anything.
        """
        if not self.cks:
            raise LocalProtocolError("cannot send before the first message has arrived")
        self.cks, mk = _kdf_ck(self.cks)
        if not self.dhs_public:
            self.dhs_public = self.dhs.public_key().public_bytes_raw()
        header = _HEADER.pack(self.dhs_public, self.pn, self.ns)
        sealed = header_encrypt(self.hks, rng(HEADER_NONCE_SIZE), header, ad)
        self.ns += 1
        return sealed + aead_encrypt(mk, plaintext, ad + sealed)

    # -- receiving --------------------------------------------------------------------

    def decrypt(self, data: bytes, ad: bytes, rng: Rng) -> bytes:
        """RatchetDecryptHE with clone-then-commit.

        Raises:
            DecryptionFailed: nothing authenticates (tampered, foreign, or too old).
            DuplicateMessage: an authentic message whose key was already used.
            RemoteProtocolError: an authentic header that skips more than MAX_SKIP.
        """
        if len(data) < SEALED_HEADER_SIZE + AEAD_TAG_SIZE:
            raise DecryptionFailed()
        sealed, body = data[:SEALED_HEADER_SIZE], data[SEALED_HEADER_SIZE:]
        body_ad = ad + sealed

        # 1. A key saved for a message that was skipped (TrySkippedMessageKeysHE).
        for hk in dict.fromkeys(k for k, _ in self.skipped):
            header = _open_header(hk, sealed, ad)
            if header is not None and (hk, header.n) in self.skipped:
                plaintext = aead_decrypt(self.skipped[hk, header.n], body, body_ad)
                del self.skipped[hk, header.n]
                return plaintext

        # 2. The current receiving chain, or the next one (DecryptHeader).
        header = _open_header(self.hkr, sealed, ad)
        step = False
        if header is None:
            header = _open_header(self.nhkr, sealed, ad)
            step = True
            if header is None:
                raise DecryptionFailed()
        if not step and header.n < self.nr:
            raise DuplicateMessage("message was already received")

        # 3. Work on copies; commit only after the body authenticates.
        new_skipped: list[tuple[tuple[bytes, int], bytes]] = []
        hkr, ckr, nr = self.hkr, self.ckr, self.nr
        rk, dhs, dhr = self.rk, self.dhs, self.dhr
        cks, ns, pn, hks, nhks, nhkr = self.cks, self.ns, self.pn, self.hks, self.nhks, self.nhkr
        if step:
            nr = self._skip(new_skipped, hkr, ckr, nr, header.pn)[1]
            pn, ns, nr = ns, 0, 0
            hks, hkr = nhks, nhkr
            dhr = header.dh
            peer = x25519_public(dhr)
            rk, ckr, nhkr = _kdf_rk(rk, x25519(dhs, peer))
            dhs = x25519_private(rng(KEY_SIZE))
            rk, cks, nhks = _kdf_rk(rk, x25519(dhs, peer))
        ckr, nr = self._skip(new_skipped, hkr, ckr, nr, header.n)
        ckr, mk = _kdf_ck(ckr)
        plaintext = aead_decrypt(mk, body, body_ad)

        # Authentic: commit.
        self.hkr, self.ckr, self.nr = hkr, ckr, nr + 1
        if dhs is not self.dhs:
            self.dhs_public = b""
        self.rk, self.dhs, self.dhr = rk, dhs, dhr
        self.cks, self.ns, self.pn, self.hks, self.nhks, self.nhkr = cks, ns, pn, hks, nhks, nhkr
        for key, value in new_skipped:
            self.skipped[key] = value
        while len(self.skipped) > MAX_SKIPPED_KEYS:
            del self.skipped[next(iter(self.skipped))]
        return plaintext

    @staticmethod
    def _skip(
        out: list[tuple[tuple[bytes, int], bytes]],
        hk: bytes,
        ck: bytes,
        nr: int,
        until: int,
    ) -> tuple[bytes, int]:
        """SkipMessageKeysHE into `out`; returns the advanced (chain key, counter)."""
        if until - nr > MAX_SKIP:
            raise TooFarAhead(f"message skips {until - nr} keys, more than {MAX_SKIP}")
        if not ck:
            return ck, nr
        while nr < until:
            ck, mk = _kdf_ck(ck)
            out.append(((hk, nr), mk))
            nr += 1
        return ck, nr

    # -- storage ----------------------------------------------------------------------

    def encode(self) -> bytes:
        """Serialise the whole state (secret: store it encrypted)."""
        w = Writer().u8(_STATE_VERSION)
        w.fixed(self.dhs.private_bytes_raw(), KEY_SIZE)
        for value in (self.dhr, self.rk, self.cks, self.ckr):
            w.bytes16(value)
        w.u32(self.ns).u32(self.nr).u32(self.pn)
        for value in (self.hks, self.hkr, self.nhks, self.nhkr):
            w.bytes16(value)
        w.u32(len(self.skipped))
        for (hk, n), mk in self.skipped.items():
            w.fixed(hk, KEY_SIZE).u32(n).fixed(mk, KEY_SIZE)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Ratchet:
        r = Reader(data, "ratchet state")
        if r.u8() != _STATE_VERSION:
            raise RemoteProtocolError("unknown ratchet state version")
        state = cls()
        state.dhs = x25519_private(r.fixed(KEY_SIZE))
        state.dhr, state.rk, state.cks, state.ckr = (r.bytes16(KEY_SIZE) for _ in range(4))
        state.ns, state.nr, state.pn = r.u32(), r.u32(), r.u32()
        state.hks, state.hkr, state.nhks, state.nhkr = (r.bytes16(KEY_SIZE) for _ in range(4))
        count = r.u32()
        if count > MAX_SKIPPED_KEYS:
            raise RemoteProtocolError("ratchet state holds too many skipped keys")
        for _ in range(count):
            hk, n, mk = r.fixed(KEY_SIZE), r.u32(), r.fixed(KEY_SIZE)
            state.skipped[hk, n] = mk
        r.finish()
        return state

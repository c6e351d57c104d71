"""The Double Ratchet with header encryption (Signal's Double Ratchet spec, rev. 1, §4).

State follows the spec's names: DHs, DHr, RK, CKs, CKr, Ns, Nr, PN, HKs, HKr, NHKs, NHKr,
MKSKIPPED. Choices the spec leaves open:

- KDF_RK_HE(rk, dh) = HKDF-SHA256(salt=rk, ikm=dh, info=ROOT_KDF_INFO) -> RK || CK || NHK.
- KDF_CK(ck): MK = HMAC-SHA256(ck, 0x01), CK' = HMAC-SHA256(ck, 0x02) (§5.2).
- ENCRYPT (body version 2, what every sender produces): nonce(12, random) ||
  AES-256-GCM-SIV(MK, nonce, plaintext, AD || sealed header). MK is meant to be used once;
  should a forked or restored state use it twice, the random nonce and the misuse-resistant
  mode leak nothing but equality of identical plaintexts (no two-time pad).
- Body version 1 (Backchannel 0.1, decrypted only): ChaCha20-Poly1305 under MK with a zero
  nonce.
- HENCRYPT: AES-256-GCM-SIV with a random 96-bit nonce, since a header key encrypts every
  header of its chain (§4.2 warns the header key is reused).
- Header plaintext: DHs public (32) || PN (u32) || N (u32): 40 bytes, 68 sealed.
- PQ payloads (docs/protocol.md §13): the header is DHs public (32) || PN || N || epoch
  (u32): 44 bytes, 72 sealed; the body is sealed under
  HMAC-SHA256(key_epoch, PQ_MESSAGE_KEY_INPUT || MK) instead of MK.
- AD for the header is the session AD; AD for the body is session AD || sealed header
  (§3.4 CONCAT; the session AD has a fixed length, so the concatenation is unambiguous).

Decryption is *clone-then-commit*: every new value is computed into locals and written to
the state only when the caller commits, which it does only after the body has authenticated
and its plaintext parsed (`prepare_decrypt` then `PendingDecryption.commit`), so a forged,
corrupted or malformed message leaves the state exactly as it was.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from typing import Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.primitives import (
    AEAD_TAG_SIZE,
    BODY_NONCE_SIZE,
    HEADER_NONCE_SIZE,
    KEY_SIZE,
    Rng,
    aead_decrypt,
    body_decrypt,
    body_encrypt,
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
    "PQ_HEADER_SIZE",
    "PQ_SEALED_HEADER_SIZE",
    "SEALED_HEADER_SIZE",
    "BodyVersion",
    "DuplicateMessage",
    "ForkedChain",
    "PendingDecryption",
    "Position",
    "PqKeys",
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
PQ_HEADER_SIZE: Final = HEADER_SIZE + 4
PQ_SEALED_HEADER_SIZE: Final = HEADER_NONCE_SIZE + PQ_HEADER_SIZE + AEAD_TAG_SIZE
_HEADER: Final = struct.Struct(">32sII")
_PQ_HEADER: Final = struct.Struct(">32sIII")
_STATE_VERSION: Final = 1
_NO_KEY: Final = b""


class BodyVersion(IntEnum):
    """How a message body is encrypted under its message key (the payload type says which)."""

    CHACHA_ZERO_NONCE = 1  # Backchannel 0.1; decrypted, never produced
    GCM_SIV_RANDOM_NONCE = 2


# Smallest body of each version: an empty plaintext still carries its tag (and nonce).
_MIN_BODY: Final = {
    BodyVersion.CHACHA_ZERO_NONCE: AEAD_TAG_SIZE,
    BodyVersion.GCM_SIV_RANDOM_NONCE: BODY_NONCE_SIZE + AEAD_TAG_SIZE,
}


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message sits in its sender's ratchet: chain (sender's DHs public) and N.

    `sealed_header` is the 68-byte sealed header as received. Only a holder of the sender's
    header key can seal a header, and sealing draws a fresh random nonce, so two different
    sealed headers at one position prove two sealings (a forked sender state), while the
    same sealed header again is a copy (perhaps with its body tampered with by a relay).
    """

    ratchet_key: bytes
    n: int
    sealed_header: bytes

    def __repr__(self) -> str:
        return f"Position(ratchet_key={self.ratchet_key[:4].hex()}.., n={self.n})"


class DuplicateMessage(RemoteProtocolError):
    """An authentic header for a position of the current receiving chain already consumed.

    Either a copy of a message already received, or (when `sealed_header` differs from the
    one received at that position) a second message sealed from a forked sender state: the
    caller compares with what it stored (docs/protocol.md §8). Nothing changed.

    Attributes:
        ratchet_key: the sender's ratchet public key (DHs), 32 bytes.
        n: the message number N within that chain.
        sealed_header: the sealed header of the duplicate, 68 bytes.
    """

    def __init__(self, ratchet_key: bytes, n: int, sealed_header: bytes) -> None:
        super().__init__("message was already received")
        self.ratchet_key = ratchet_key
        self.n = n
        self.sealed_header = sealed_header

    @property
    def position(self) -> Position:
        return Position(self.ratchet_key, self.n, self.sealed_header)


class ForkedChain(RemoteProtocolError):
    """An authentic header of the current receiving chain (it opens under `HKr`) that names
    another ratchet key than the chain's own (`DHs_pub` is not `DHr`).

    An honest sender changes its header key whenever it changes its ratchet key, so only a
    second copy of its state can seal this: a copy restored from a backup, or a second
    machine, that stepped its ratchet apart from the original on the same root (docs/
    protocol.md §5 and §8). Whatever its N, the body cannot open here (its chain key is
    the copy's own), so it would otherwise be taken for a duplicate or a forgery. Nothing
    changed.

    Attributes:
        position: the header's `DHs_pub` and N, and the 68-byte sealed header.
    """

    def __init__(self, position: Position) -> None:
        super().__init__("a second sender state on one chain (a fork)")
        self.position = position


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


PqKeys = Callable[[int], bytes | None]
"""The PQ epoch keys a receiver holds: epoch -> key, or None when it holds none."""


def _mix_pq(pq_key: bytes, message_key: bytes) -> bytes:
    return hmac_sha256(pq_key, labels.PQ_MESSAGE_KEY_INPUT + message_key)


@dataclass(frozen=True, slots=True)
class _Header:
    dh: bytes
    pn: int
    n: int
    epoch: int = -1  # PQ payloads only


def _open_body(version: BodyVersion, key: bytes, body: bytes, ad: bytes) -> bytes:
    if version is BodyVersion.GCM_SIV_RANDOM_NONCE:
        return body_decrypt(key, body, ad)
    return aead_decrypt(key, body, ad)


@dataclass(frozen=True, slots=True)
class PendingDecryption:
    """A message whose body authenticated, and the state change that accepting it makes.

    Nothing has changed yet: call `commit()` to keep the message (once, straight away, with
    no other use of the ratchet in between), or drop this object to leave the state as is.
    """

    plaintext: bytes = field(repr=False)
    position: Position
    commit: Callable[[], object] = field(repr=False)
    pq_epoch: int = -1  # the header's epoch (PQ payloads); -1 otherwise


def _open_header(key: bytes | None, sealed: bytes, ad: bytes, pq: bool) -> _Header | None:
    if not key:
        return None
    plain = header_decrypt(key, sealed, ad)
    if plain is None or len(plain) != (PQ_HEADER_SIZE if pq else HEADER_SIZE):
        return None
    if pq:
        return _Header(*_PQ_HEADER.unpack(plain))
    dh, pn, n = _HEADER.unpack(plain)
    return _Header(dh, pn, n)


def _body_key(mk: bytes, header: _Header, pq_keys: PqKeys | None) -> bytes:
    if pq_keys is None:
        return mk
    pq_key = pq_keys(header.epoch)
    if pq_key is None:
        # An epoch this side never reached or has forgotten: nothing can open it.
        raise DecryptionFailed()
    return _mix_pq(pq_key, mk)


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

    def encrypt(
        self, plaintext: bytes, ad: bytes, rng: Rng, pq: tuple[int, bytes] | None = None
    ) -> bytes:
        """RatchetEncryptHE: returns sealed header || body (body version 2).

        With `pq` = (epoch, key_epoch) the header is the 44-byte PQ header naming the epoch
        and the body key is MK mixed with key_epoch (docs/protocol.md §13.4).

        Draws from `rng`, in this order: the header nonce (12), then the body nonce (12).

        Raises:
            LocalProtocolError: the responder tried to send before receiving anything.
        """
        if not self.cks:
            raise LocalProtocolError("cannot send before the first message has arrived")
        self.cks, mk = _kdf_ck(self.cks)
        if not self.dhs_public:
            self.dhs_public = self.dhs.public_key().public_bytes_raw()
        if pq is None:
            header = _HEADER.pack(self.dhs_public, self.pn, self.ns)
        else:
            header = _PQ_HEADER.pack(self.dhs_public, self.pn, self.ns, pq[0])
            mk = _mix_pq(pq[1], mk)
        sealed = header_encrypt(self.hks, rng(HEADER_NONCE_SIZE), header, ad)
        self.ns += 1
        return sealed + body_encrypt(mk, rng(BODY_NONCE_SIZE), plaintext, ad + sealed)

    # -- receiving --------------------------------------------------------------------

    def decrypt(
        self,
        data: bytes,
        ad: bytes,
        rng: Rng,
        body_version: BodyVersion = BodyVersion.GCM_SIV_RANDOM_NONCE,
    ) -> bytes:
        """RatchetDecryptHE, committed as soon as the body authenticates.

        Raises:
            DecryptionFailed: nothing authenticates (tampered, foreign, or too old).
            DuplicateMessage: an authentic header whose key was already used.
            TooFarAhead: an authentic header that skips more than MAX_SKIP.
        """
        pending = self.prepare_decrypt(data, ad, rng, body_version)
        pending.commit()
        return pending.plaintext

    def prepare_decrypt(
        self,
        data: bytes,
        ad: bytes,
        rng: Rng,
        body_version: BodyVersion = BodyVersion.GCM_SIV_RANDOM_NONCE,
        pq_keys: PqKeys | None = None,
    ) -> PendingDecryption:
        """RatchetDecryptHE with clone-then-commit: decrypt without changing anything.

        `data` is sealed header || body; `body_version` is what the payload type says;
        `pq_keys` is given for PQ payloads (44-byte header, body key mixed with the epoch's).

        Raises:
            DecryptionFailed: nothing authenticates (tampered, foreign, or too old).
            DuplicateMessage: an authentic header for a position of the current receiving
                chain already consumed (a copy from an older chain gives DecryptionFailed:
                its header key is no longer held).
            ForkedChain: an authentic header of the current receiving chain naming another
                ratchet key: a forked sender state.
            TooFarAhead: an authentic header that skips more than MAX_SKIP.
        """
        pq = pq_keys is not None
        sealed_size = PQ_SEALED_HEADER_SIZE if pq else SEALED_HEADER_SIZE
        if len(data) < sealed_size + _MIN_BODY[body_version]:
            raise DecryptionFailed()
        sealed, body = data[:sealed_size], data[sealed_size:]
        body_ad = ad + sealed

        # 1. A key saved for a message that was skipped (TrySkippedMessageKeysHE).
        for hk in dict.fromkeys(k for k, _ in self.skipped):
            header = _open_header(hk, sealed, ad, pq)
            if header is not None and (hk, header.n) in self.skipped:
                key = _body_key(self.skipped[hk, header.n], header, pq_keys)
                plaintext = _open_body(body_version, key, body, body_ad)
                forget = partial(self.skipped.pop, (hk, header.n))
                position = Position(header.dh, header.n, sealed)
                return PendingDecryption(plaintext, position, forget, header.epoch)

        # 2. The current receiving chain, or the next one (DecryptHeader).
        header = _open_header(self.hkr, sealed, ad, pq)
        step = False
        if header is None:
            header = _open_header(self.nhkr, sealed, ad, pq)
            step = True
            if header is None:
                raise DecryptionFailed()
        if not step and self.dhr != _NO_KEY and header.dh != self.dhr:
            raise ForkedChain(Position(header.dh, header.n, sealed))
        if not step and header.n < self.nr:
            raise DuplicateMessage(header.dh, header.n, sealed)

        # 3. Work on copies; commit only when told to.
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
        plaintext = _open_body(body_version, _body_key(mk, header, pq_keys), body, body_ad)

        def commit() -> None:
            self.hkr, self.ckr, self.nr = hkr, ckr, nr + 1
            if dhs is not self.dhs:
                self.dhs_public = b""
            self.rk, self.dhs, self.dhr = rk, dhs, dhr
            self.cks, self.ns, self.pn = cks, ns, pn
            self.hks, self.nhks, self.nhkr = hks, nhks, nhkr
            for key, value in new_skipped:
                self.skipped[key] = value
            while len(self.skipped) > MAX_SKIPPED_KEYS:
                del self.skipped[next(iter(self.skipped))]

        position = Position(header.dh, header.n, sealed)
        return PendingDecryption(plaintext, position, commit, header.epoch)

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
        """Restore a stored ratchet.

        Raises:
            RemoteProtocolError: not a ratchet state of a known version, or a key field
                that is neither absent (0 bytes) nor a key (32 bytes).
        """
        r = Reader(data, "ratchet state")
        if r.u8() != _STATE_VERSION:
            raise RemoteProtocolError("unknown ratchet state version")
        state = cls()
        state.dhs = x25519_private(r.fixed(KEY_SIZE))
        state.dhr, state.rk, state.cks, state.ckr = (_optional_key(r) for _ in range(4))
        state.ns, state.nr, state.pn = r.u32(), r.u32(), r.u32()
        state.hks, state.hkr, state.nhks, state.nhkr = (_optional_key(r) for _ in range(4))
        count = r.u32()
        if count > MAX_SKIPPED_KEYS:
            raise RemoteProtocolError("ratchet state holds too many skipped keys")
        for _ in range(count):
            hk, n, mk = r.fixed(KEY_SIZE), r.u32(), r.fixed(KEY_SIZE)
            state.skipped[hk, n] = mk
        r.finish()
        return state


def _optional_key(r: Reader) -> bytes:
    """A key field of the stored state: absent (0 bytes) or a key (32 bytes), nothing else."""
    value = r.bytes16(KEY_SIZE)
    if len(value) not in (0, KEY_SIZE):
        raise RemoteProtocolError(f"ratchet state: a key field of {len(value)} bytes")
    return value

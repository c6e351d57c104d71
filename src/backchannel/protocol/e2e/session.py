"""A channel's end-to-end session: PQXDH, then the ratchet, then padded payloads.

Payload layout (the envelope's payload; its length is always `bucket - 17`)::

    type        u8    0x03: carries the PQXDH initiation; 0x04: ratchet only (payload v2)
                      0x05 / 0x06: the same with the post-quantum ratchet (payload v3)
    initiation        (types 0x01, 0x03 and 0x05 only; see `handshake`)
    sealed header 68  (72 for v3: the header names the PQ epoch)
    body              v2: nonce 12 || AES-256-GCM-SIV of: u32 length || Message || zeros
                      v3: nonce 12 || AES-256-GCM-SIV of: Message || chunks || zeros

A v3 payload has exactly the overhead of a v2 one (the header's 4 more bytes are the length
prefix it no longer needs: a Message delimits itself), so a message goes into the same
bucket whether or not its session has the PQ ratchet; the chunks only fill the padding.

Senders produce v2, or v3 once the session runs the PQ ratchet (from its start, or after
an upgrade in place: docs/protocol.md §13.8; once both sides run it, a v2 payload is a
refused downgrade). Receivers also accept Backchannel 0.1's payload v1 (type 0x01 with
an initiation, 0x02 without), whose body is ChaCha20-Poly1305 under a zero nonce, so that
messages in flight from a 0.1 sender still open. Receivers check that the payload fills
the smallest bucket that holds it (docs/protocol.md §6).

The initiator repeats the initiation in every message until it has received a reply, so
the responder can start the session from whichever of those messages reaches it first
(messages may travel by different relays and arrive out of order).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from backchannel.protocol.e2e.chunks import decode_chunks
from backchannel.protocol.e2e.handshake import (
    ASSOCIATED_DATA_SIZE,
    INITIATION_SIZE_WITH_ONE_TIME_PREKEY,
    HandshakeSecrets,
    Initiation,
    initiate,
    respond,
)
from backchannel.protocol.e2e.keys import (
    IDENTITY_ENCODING_SIZE,
    IdentityKeyPair,
    PublicIdentity,
)
from backchannel.protocol.e2e.pqratchet import PqRatchet
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import AEAD_TAG_SIZE, BODY_NONCE_SIZE, Rng, sha256
from backchannel.protocol.e2e.ratchet import (
    PQ_SEALED_HEADER_SIZE,
    SEALED_HEADER_SIZE,
    BodyVersion,
    PendingDecryption,
    Position,
    Ratchet,
)
from backchannel.protocol.envelope import BUCKETS, ENVELOPE_HEADER_SIZE, bucket_for_payload
from backchannel.protocol.errors import (
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)
from backchannel.protocol.message import (
    GENESIS_HASH,
    MAX_BODY_SIZE,
    MESSAGE_ID_SIZE,
    Message,
)
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "MAX_INITIATION_BODY_SIZE",
    "PAYLOAD_INITIATION",
    "PAYLOAD_PQ_INITIATION",
    "PAYLOAD_PQ_RATCHET",
    "PAYLOAD_RATCHET",
    "PAYLOAD_V1_INITIATION",
    "PAYLOAD_V1_RATCHET",
    "DowngradeRefused",
    "OpenedMessage",
    "SealedMessage",
    "Session",
    "starts_session",
]

# Payload types (docs/protocol.md §6). v2 (what senders produce): the body is
# nonce || AES-256-GCM-SIV. v1 (Backchannel 0.1, accepted on receipt only): the body is
# ChaCha20-Poly1305 under a zero nonce, which a forked state turned into a two-time pad.
PAYLOAD_INITIATION: Final = 0x03
PAYLOAD_RATCHET: Final = 0x04
PAYLOAD_V1_INITIATION: Final = 0x01
PAYLOAD_V1_RATCHET: Final = 0x02
# v3: v2's body AEAD, a header naming the PQ epoch, and chunks in the padding (§13).
PAYLOAD_PQ_INITIATION: Final = 0x05
PAYLOAD_PQ_RATCHET: Final = 0x06
# type -> (carries an initiation, body version, post-quantum ratchet)
_PAYLOAD_TYPES: Final = {
    PAYLOAD_V1_INITIATION: (True, BodyVersion.CHACHA_ZERO_NONCE, False),
    PAYLOAD_V1_RATCHET: (False, BodyVersion.CHACHA_ZERO_NONCE, False),
    PAYLOAD_INITIATION: (True, BodyVersion.GCM_SIV_RANDOM_NONCE, False),
    PAYLOAD_RATCHET: (False, BodyVersion.GCM_SIV_RANDOM_NONCE, False),
    PAYLOAD_PQ_INITIATION: (True, BodyVersion.GCM_SIV_RANDOM_NONCE, True),
    PAYLOAD_PQ_RATCHET: (False, BodyVersion.GCM_SIV_RANDOM_NONCE, True),
}
# What the body adds to the padded plaintext, per version: (nonce and) tag.
_BODY_OVERHEAD: Final = {
    BodyVersion.CHACHA_ZERO_NONCE: AEAD_TAG_SIZE,
    BodyVersion.GCM_SIV_RANDOM_NONCE: BODY_NONCE_SIZE + AEAD_TAG_SIZE,
}
# The largest body a type 0x03 payload holds when the initiation names a one-time prekey
# (1216 bytes of initiation; 4 more body bytes fit without one): MAX_BODY_SIZE - 1216.
MAX_INITIATION_BODY_SIZE: Final = MAX_BODY_SIZE - INITIATION_SIZE_WITH_ONE_TIME_PREKEY
_LENGTH: Final = struct.Struct(">I")
# Version 2 adds the PQ ratchet state (absent for a classical session); version 1 (0.1)
# still loads, as a classical session.
_STATE_VERSION: Final = 2
_STATE_VERSION_CLASSICAL: Final = 1
_ROLE_INITIATOR: Final = 1
_ROLE_RESPONDER: Final = 2
# A stored session holds a ratchet (at most ~140 KB with every skipped key) and a little
# more; anything claiming to be larger is damaged.
_MAX_RATCHET_STATE: Final = 256 * 1024
# A stored PQ ratchet: 512 epoch keys (18 KB), two KEM objects to send and two partly
# received (under 5 KB), and a seed; anything larger is damaged.
_MAX_PQ_STATE: Final = 32 * 1024
# The PQ byte of a version 2 state (docs/protocol.md §13.7). 0 and 1 are what the first
# version 2 states wrote (classical; PQ from the session's start), so those still load.
_PQ_NONE: Final = 0  # classical, no upgrade offered
_PQ_LOCKED: Final = 1  # PQ ratchet running, the peer's PQ payloads seen: never off again
_PQ_OFFERED: Final = 2  # classical; this side announced the PQ capability (§13.8)
_PQ_STARTED: Final = 3  # PQ ratchet running here, the peer's first PQ payload not yet seen
# Locked as 1, followed by the lowest seq of a PQ message of the peer's seen (u64): its
# classical messages below it were sealed before it switched and still open (§13.8).
_PQ_LOCKED_FROM: Final = 4


class DowngradeRefused(RemoteProtocolError):
    """A payload without the post-quantum ratchet in a channel where both sides run it.

    Once both sides have the PQ ratchet it is never turned off (docs/protocol.md §13.8):
    a classical payload (a peer's broken client, or an attacker holding the classical
    keys) is refused before any decryption, state unchanged.
    """


def starts_session(payload: bytes) -> bool:
    """True if the payload carries a PQXDH initiation (type 0x03, or 0.1's 0x01).

    Only such a payload can start a session (`Session.respond`); this looks at the type
    byte alone and proves nothing about the rest.
    """
    kind = _PAYLOAD_TYPES.get(payload[0]) if payload else None
    return kind is not None and kind[0]


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A message and the payload that carries it (sent as is to every relay)."""

    message: Message
    payload: bytes


@dataclass(frozen=True, slots=True)
class OpenedMessage:
    """A message received, and where it sat in the sender's ratchet (to tell forks apart)."""

    message: Message
    position: Position


def _pad(plain: bytes, overhead: int) -> bytes:
    """Length-prefix and zero-pad `plain` so the whole envelope fills the smallest bucket."""
    needed = overhead + _LENGTH.size + len(plain)
    bucket = bucket_for_payload(needed)
    capacity = bucket - ENVELOPE_HEADER_SIZE - overhead - _LENGTH.size
    return _LENGTH.pack(len(plain)) + plain + b"\x00" * (capacity - len(plain))


def _unpad(padded: bytes, overhead: int) -> bytes:
    """The plaintext inside `padded`, which the payload's `overhead` bytes wrap.

    Raises:
        RemoteProtocolError: malformed length or padding, or a payload that is not the
            smallest bucket holding the message (one canonical size per message).
    """
    if len(padded) < _LENGTH.size:
        raise RemoteProtocolError("padded message is truncated")
    (length,) = _LENGTH.unpack_from(padded)
    end = _LENGTH.size + length
    # Padding must be zeros: one canonical plaintext per message. Compared in C, not a loop.
    if end > len(padded) or padded[end:] != bytes(len(padded) - end):
        raise RemoteProtocolError("message padding is malformed")
    smallest = bucket_for_payload(overhead + end)
    if smallest != ENVELOPE_HEADER_SIZE + overhead + len(padded):
        raise RemoteProtocolError("message is not in the smallest bucket that holds it")
    return padded[_LENGTH.size : end]


def _read_type(r: Reader) -> tuple[bool, BodyVersion, bool]:
    kind = r.u8()
    known = _PAYLOAD_TYPES.get(kind)
    if known is None:
        raise RemoteProtocolError(f"unknown payload type {kind}")
    return known


def _check_payload_size(payload: bytes) -> None:
    # Checked before any decryption: an envelope is always exactly one bucket.
    if len(payload) + ENVELOPE_HEADER_SIZE not in BUCKETS:
        raise RemoteProtocolError("payload does not fill a bucket")


class Session:
    """One principal's end of a channel's end-to-end session."""

    __slots__ = (
        "_initiation_digest",
        "_peer_pq",
        "_peer_pq_from",
        "_pending_initiation",
        "_pq",
        "_pq_offered",
        "_ratchet",
        "associated_data",
        "last_sent_hash",
        "next_seq",
        "role",
    )

    def __init__(
        self,
        role: int,
        associated_data: bytes,
        ratchet: Ratchet,
        pending_initiation: bytes,
        initiation_digest: bytes,
        next_seq: int = 1,
        last_sent_hash: bytes = GENESIS_HASH,
        pq: PqRatchet | None = None,
        pq_flag: int | None = None,
        peer_pq_from: int = 0,
    ) -> None:
        self.role = role
        self.associated_data = associated_data
        self._ratchet = ratchet
        self._pending_initiation = pending_initiation
        self._initiation_digest = initiation_digest
        self.next_seq = next_seq
        self.last_sent_hash = last_sent_hash
        self._pq = pq
        if pq_flag is None:
            pq_flag = _PQ_NONE if pq is None else _PQ_LOCKED
        # Offered: this side runs the PQ ratchet as soon as the peer shows it does.
        self._pq_offered = pq_flag != _PQ_NONE
        # The peer sealed a PQ payload: a classical one from it is a downgrade now.
        self._peer_pq = pq_flag in (_PQ_LOCKED, _PQ_LOCKED_FROM)
        # The lowest seq of the peer's PQ messages seen (0: none, or a state that did not
        # keep it, which refuses every classical payload once locked).
        self._peer_pq_from = peer_pq_from

    def __repr__(self) -> str:
        role = "initiator" if self.role == _ROLE_INITIATOR else "responder"
        return f"Session({role}, peer={self.peer_identity.fingerprint}, next_seq={self.next_seq})"

    @property
    def local_identity(self) -> PublicIdentity:
        half = self.associated_data[:IDENTITY_ENCODING_SIZE]
        other = self.associated_data[IDENTITY_ENCODING_SIZE:]
        return PublicIdentity.decode(half if self.role == _ROLE_INITIATOR else other)

    @property
    def peer_identity(self) -> PublicIdentity:
        half = self.associated_data[:IDENTITY_ENCODING_SIZE]
        other = self.associated_data[IDENTITY_ENCODING_SIZE:]
        return PublicIdentity.decode(other if self.role == _ROLE_INITIATOR else half)

    @property
    def can_send(self) -> bool:
        """False only for a responder before its first message arrived."""
        return self._ratchet.can_send

    @property
    def post_quantum(self) -> PqRatchet | None:
        """The PQ ratchet (read it, do not change it), or None for a classical session."""
        return self._pq

    @property
    def post_quantum_locked(self) -> bool:
        """True once both sides run the PQ ratchet: it can never be turned off again."""
        return self._pq is not None and self._peer_pq

    @property
    def post_quantum_offered(self) -> bool:
        """True if this side runs the PQ ratchet or accepts the peer's start of it."""
        return self._pq_offered

    def offer_post_quantum(self) -> None:
        """Accept the peer's PQ payloads in this classical session (docs/protocol.md §13.8).

        Call it when this side announces the PQ capability to the peer; the ratchet starts
        here when the peer's first PQ payload authenticates. Idempotent.
        """
        self._pq_offered = True

    def start_post_quantum(self, rng: Rng) -> None:
        """Start the PQ ratchet now: the peer announced the capability (§13.8).

        From now on this side seals PQ payloads; it still opens the peer's classical ones
        until the peer's first PQ payload arrives. The initiator draws its EK_1 seed (64
        bytes) from `rng`. Does nothing if the ratchet already runs.
        """
        self._pq_offered = True
        if self._pq is None:
            self._pq = PqRatchet.start(self.role == _ROLE_INITIATOR, self.associated_data, rng)

    @property
    def awaiting_reply(self) -> bool:
        """True while the initiator still repeats the handshake in its messages."""
        return bool(self._pending_initiation)

    # -- starting ---------------------------------------------------------------------

    @classmethod
    def initiate(
        cls, identity: IdentityKeyPair, bundle: PrekeyBundle, rng: Rng, pq: bool = False
    ) -> Session:
        """Open a session to the owner of `bundle` (PQXDH as Alice).

        With `pq` the session runs the post-quantum ratchet (payload v3) from its first
        message; the responder learns it from the payload type and can never turn it off.

        Raises:
            RemoteProtocolError: the bundle does not verify.
        """
        initiation, secrets = initiate(identity, bundle, rng)
        return cls.from_initiation(initiation, secrets, bundle, rng, pq)

    @classmethod
    def from_initiation(
        cls,
        initiation: Initiation,
        secrets: HandshakeSecrets,
        bundle: PrekeyBundle,
        rng: Rng,
        pq: bool = False,
    ) -> Session:
        """The initiator's session from a handshake already run (see `initiate_from_parts`)."""
        ratchet = Ratchet.init_initiator(
            secrets.root_key,
            bundle.signed_prekey,
            secrets.shared_header_key,
            secrets.shared_next_header_key,
            rng,
        )
        encoded = initiation.encode()
        # Drawn after the ratchet key: the initiator's EK_1 seed (64).
        pq_state = PqRatchet.start(True, secrets.associated_data, rng) if pq else None
        return cls(
            _ROLE_INITIATOR,
            secrets.associated_data,
            ratchet,
            encoded,
            sha256(encoded),
            pq=pq_state,
        )

    @classmethod
    def respond(
        cls, identity: IdentityKeyPair, prekeys: PrekeySecrets, payload: bytes, rng: Rng
    ) -> tuple[Session, Message, PrekeySecrets]:
        """Accept a session from the first payload that reaches us (PQXDH as Bob).

        Accepts an initiation in either payload version (0x03, or 0.1's 0x01).

        Returns:
            The session, the first message, and the prekey secrets without the one-time
            prekey that was used (store them in the same transaction as the session).

        Raises:
            RemoteProtocolError: not an initiation, it names prekeys we do not hold, or
                its plaintext is malformed.
            DecryptionFailed: the payload does not authenticate; nothing was consumed.
        """
        session, opened, remaining = cls.respond_with_position(identity, prekeys, payload, rng)
        return session, opened.message, remaining

    @classmethod
    def respond_with_position(
        cls, identity: IdentityKeyPair, prekeys: PrekeySecrets, payload: bytes, rng: Rng
    ) -> tuple[Session, OpenedMessage, PrekeySecrets]:
        """`respond`, also giving the first message's position in the sender's ratchet."""
        _check_payload_size(payload)
        r = Reader(payload, "payload")
        carries_initiation, body_version, pq = _read_type(r)
        if not carries_initiation:
            raise RemoteProtocolError("payload does not start a session")
        initiation = Initiation.read(r)
        _alice, secrets = respond(identity, prekeys, initiation)
        ratchet = Ratchet.init_responder(
            secrets.root_key,
            prekeys.signed_prekey_key(),
            secrets.shared_header_key,
            secrets.shared_next_header_key,
        )
        encoded = initiation.encode()
        pq_state = PqRatchet.start(False, secrets.associated_data, rng) if pq else None
        session = cls(
            _ROLE_RESPONDER, secrets.associated_data, ratchet, b"", sha256(encoded), pq=pq_state
        )
        prefix_size = len(payload) - r.remaining
        opened = session._open(r.rest(), prefix_size, body_version, rng, pq)
        remaining = prekeys
        if initiation.one_time_prekey_id is not None:
            remaining = prekeys.without_one_time_prekey(initiation.one_time_prekey_id)
        return session, opened, remaining

    # -- messages ---------------------------------------------------------------------

    def seal(self, kind: int, body: bytes, now_ms: int, rng: Rng) -> SealedMessage:
        """Build the next message and encrypt it into a bucket-sized payload.

        The state advances: store the session (and the payload, to resend it as is)
        before the payload leaves the machine.

        Raises:
            LocalProtocolError: too large for the largest bucket, or a responder that has
                not yet received anything tries to send.
        """
        if not self._ratchet.can_send:
            raise LocalProtocolError("cannot send before the first message has arrived")
        if len(body) > MAX_BODY_SIZE:
            raise LocalProtocolError(
                f"message too large: a body of {len(body)} bytes, the limit is {MAX_BODY_SIZE}"
            )
        message = Message(
            rng(MESSAGE_ID_SIZE), self.next_seq, self.last_sent_hash, now_ms, kind, body
        )
        pq = self._pq
        prefix = Writer()
        if self._pending_initiation:
            kind = PAYLOAD_PQ_INITIATION if pq else PAYLOAD_INITIATION
            prefix.u8(kind).raw(self._pending_initiation)
        else:
            prefix.u8(PAYLOAD_PQ_RATCHET if pq else PAYLOAD_RATCHET)
        head = prefix.getvalue()
        encoded = message.encode()
        body_overhead = _BODY_OVERHEAD[BodyVersion.GCM_SIV_RANDOM_NONCE]
        if pq is None:
            padded = _pad(encoded, len(head) + SEALED_HEADER_SIZE + body_overhead)
            payload = head + self._ratchet.encrypt(padded, self.associated_data, rng)
        else:
            overhead = len(head) + PQ_SEALED_HEADER_SIZE + body_overhead
            # The bucket comes from the message alone; the chunks get what is left of it.
            bucket = bucket_for_payload(overhead + len(encoded))
            capacity = bucket - ENVELOPE_HEADER_SIZE - overhead - len(encoded)
            area = pq.fill(capacity)
            padded = encoded + area + bytes(capacity - len(area))
            sealed = self._ratchet.encrypt(padded, self.associated_data, rng, pq.send_key())
            payload = head + sealed
        self.next_seq += 1
        self.last_sent_hash = Message.hash_of(encoded)
        return SealedMessage(message, payload)

    def open(self, payload: bytes, rng: Rng) -> Message:
        """Decrypt a payload of this session (either payload version).

        State changes only if it authenticates and its plaintext is well formed.

        Raises:
            DecryptionFailed: it does not authenticate.
            DuplicateMessage: an authentic header for a position already received.
            TooFarAhead: an authentic header too far ahead; nothing changed.
            RemoteProtocolError: malformed, or an initiation of another session.
        """
        return self.open_with_position(payload, rng).message

    def open_with_position(self, payload: bytes, rng: Rng) -> OpenedMessage:
        """`open`, also giving the message's position in the sender's ratchet."""
        _check_payload_size(payload)
        r = Reader(payload, "payload")
        carries_initiation, body_version, pq = _read_type(r)
        # A session that never offered the PQ ratchet opens no PQ payload (§13.8); once
        # locked, a classical payload opens only if its seq shows the peer sealed it
        # before it switched (`_open`), and no other is decrypted at all.
        if not pq and self.post_quantum_locked and self._peer_pq_from <= 1:
            raise DowngradeRefused(
                "payload without the post-quantum ratchet in a session that has it"
            )
        if pq and not self._pq_offered:
            raise RemoteProtocolError("post-quantum payload in a session without it")
        if carries_initiation:
            initiation = Initiation.read(r)
            # A later initiation-carrying payload must repeat the one that started us.
            if sha256(initiation.encode()) != self._initiation_digest:
                raise RemoteProtocolError("payload starts a different session")
        prefix_size = len(payload) - r.remaining
        return self._open(r.rest(), prefix_size, body_version, rng, pq)

    def _open(
        self,
        ratchet_part: bytes,
        prefix_size: int,
        body_version: BodyVersion,
        rng: Rng,
        pq: bool,
    ) -> OpenedMessage:
        if pq:
            state = self._pq
            if state is None:
                # The peer started the ratchet we offered (§13.8): ours starts too, kept
                # only if this payload authenticates and parses.
                state = PqRatchet.start(self.role == _ROLE_INITIATOR, self.associated_data, rng)
            return self._open_pq(state, ratchet_part, prefix_size, rng)
        pending = self._ratchet.prepare_decrypt(
            ratchet_part, self.associated_data, rng, body_version
        )
        overhead = prefix_size + SEALED_HEADER_SIZE + _BODY_OVERHEAD[body_version]
        # Parse before committing: an authentic but malformed plaintext changes nothing.
        message = Message.decode(_unpad(pending.plaintext, overhead))
        if self.post_quantum_locked and message.seq >= self._peer_pq_from:
            # The peer's seqs rise in sending order and it sealed PQ payloads from the one
            # at `_peer_pq_from` on: a classical one at or after it is a downgrade.
            raise DowngradeRefused(
                "payload without the post-quantum ratchet after the peer switched to it"
            )
        return self._commit(pending, message)

    def _open_pq(
        self, pq: PqRatchet, ratchet_part: bytes, prefix_size: int, rng: Rng
    ) -> OpenedMessage:
        pending = self._ratchet.prepare_decrypt(
            ratchet_part,
            self.associated_data,
            rng,
            BodyVersion.GCM_SIV_RANDOM_NONCE,
            pq_keys=pq.key_for,
        )
        plain = pending.plaintext
        overhead = (
            prefix_size + PQ_SEALED_HEADER_SIZE + _BODY_OVERHEAD[BodyVersion.GCM_SIV_RANDOM_NONCE]
        )
        message, end = Message.decode_prefix(plain)
        if bucket_for_payload(overhead + end) != ENVELOPE_HEADER_SIZE + overhead + len(plain):
            raise RemoteProtocolError("message is not in the smallest bucket that holds it")
        chunks = decode_chunks(plain[end:])
        # Work on a copy, kept only with the ratchet's commit below (all checks passed).
        candidate = pq.copy()
        candidate.receive(pending.pq_epoch, chunks, rng)
        opened = self._commit(pending, message)
        self._pq = candidate
        if not self._peer_pq or message.seq < self._peer_pq_from:
            self._peer_pq_from = message.seq
        self._peer_pq = self._pq_offered = True
        return opened

    def _commit(self, pending: PendingDecryption, message: Message) -> OpenedMessage:
        pending.commit()
        # The peer has our session now: stop repeating the handshake.
        self._pending_initiation = b""
        return OpenedMessage(message, pending.position)

    # -- storage ----------------------------------------------------------------------

    def encode(self) -> bytes:
        """Serialise the session (secret: the caller stores it encrypted)."""
        w = Writer().u8(_STATE_VERSION).u8(self.role)
        w.fixed(self.associated_data, ASSOCIATED_DATA_SIZE)
        w.bytes16(self._pending_initiation).fixed(self._initiation_digest, 32)
        w.u64(self.next_seq).fixed(self.last_sent_hash, 32)
        w.bytes32(self._ratchet.encode())
        if self._pq is None:
            return w.u8(_PQ_OFFERED if self._pq_offered else _PQ_NONE).getvalue()
        if self._peer_pq:
            w.u8(_PQ_LOCKED_FROM).u64(self._peer_pq_from)
        else:
            w.u8(_PQ_STARTED)
        return w.bytes32(self._pq.encode()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Session:
        """Restore a stored session.

        Raises:
            RemoteProtocolError: the bytes are not a session state of a known version.
        """
        r = Reader(data, "session state")
        version = r.u8()
        if version not in (_STATE_VERSION, _STATE_VERSION_CLASSICAL):
            raise RemoteProtocolError("unknown session state version")
        role = r.u8()
        if role not in (_ROLE_INITIATOR, _ROLE_RESPONDER):
            raise RemoteProtocolError("session state has an unknown role")
        ad = r.fixed(ASSOCIATED_DATA_SIZE)
        pending = r.bytes16(8192)
        digest = r.fixed(32)
        next_seq, last_hash = r.u64(), r.fixed(32)
        ratchet = Ratchet.decode(r.bytes32(_MAX_RATCHET_STATE))
        pq: PqRatchet | None = None
        pq_flag = _PQ_NONE
        peer_pq_from = 0
        if version == _STATE_VERSION:
            pq_flag = r.u8()
            if pq_flag not in (_PQ_NONE, _PQ_LOCKED, _PQ_OFFERED, _PQ_STARTED, _PQ_LOCKED_FROM):
                raise RemoteProtocolError("session state has a bad PQ flag")
            if pq_flag == _PQ_LOCKED_FROM:
                peer_pq_from = r.u64()
            if pq_flag in (_PQ_LOCKED, _PQ_STARTED, _PQ_LOCKED_FROM):
                pq = PqRatchet.decode(r.bytes32(_MAX_PQ_STATE))
                if pq.is_initiator != (role == _ROLE_INITIATOR):
                    raise RemoteProtocolError("session state PQ role differs from its own")
        r.finish()
        return cls(role, ad, ratchet, pending, digest, next_seq, last_hash, pq, pq_flag,
                   peer_pq_from)


# Re-exported for callers that catch it.
__all__ += ["DecryptionFailed"]

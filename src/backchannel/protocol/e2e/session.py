"""A channel's end-to-end session: PQXDH, then the ratchet, then padded payloads.

Payload layout (the envelope's payload; its length is always `bucket - 17`)::

    type        u8    0x01: carries the PQXDH initiation; 0x02: ratchet only
    initiation        (type 0x01 only; see `handshake`)
    sealed header 68
    body              ChaCha20-Poly1305 of: u32 length || Message || zero padding

The initiator repeats the initiation in every message until it has received a reply, so
the responder can start the session from whichever of those messages reaches it first
(messages may travel by different relays and arrive out of order).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from backchannel.protocol.e2e.handshake import (
    ASSOCIATED_DATA_SIZE,
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
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import AEAD_TAG_SIZE, Rng, sha256
from backchannel.protocol.e2e.ratchet import SEALED_HEADER_SIZE, Ratchet
from backchannel.protocol.envelope import ENVELOPE_HEADER_SIZE, bucket_for_payload
from backchannel.protocol.errors import (
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)
from backchannel.protocol.message import GENESIS_HASH, MESSAGE_ID_SIZE, Message
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "PAYLOAD_INITIATION",
    "PAYLOAD_RATCHET",
    "SealedMessage",
    "Session",
]

PAYLOAD_INITIATION: Final = 0x01
PAYLOAD_RATCHET: Final = 0x02
_LENGTH: Final = struct.Struct(">I")
_STATE_VERSION: Final = 1
_ROLE_INITIATOR: Final = 1
_ROLE_RESPONDER: Final = 2
# A stored session holds a ratchet (at most ~140 KB with every skipped key) and a little
# more; anything claiming to be larger is damaged.
_MAX_RATCHET_STATE: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A message and the payload that carries it (sent as is to every relay)."""

    message: Message
    payload: bytes


def _pad(plain: bytes, overhead: int) -> bytes:
    """Length-prefix and zero-pad `plain` so the whole envelope fills a bucket."""
    needed = overhead + _LENGTH.size + len(plain)
    bucket = bucket_for_payload(needed)
    capacity = bucket - ENVELOPE_HEADER_SIZE - overhead - _LENGTH.size
    return _LENGTH.pack(len(plain)) + plain + b"\x00" * (capacity - len(plain))


def _unpad(padded: bytes) -> bytes:
    if len(padded) < _LENGTH.size:
        raise RemoteProtocolError("padded message is truncated")
    (length,) = _LENGTH.unpack_from(padded)
    end = _LENGTH.size + length
    # Padding must be zeros: one canonical plaintext per message. Compared in C, not a loop.
    if end > len(padded) or padded[end:] != bytes(len(padded) - end):
        raise RemoteProtocolError("message padding is malformed")
    return padded[_LENGTH.size : end]


class Session:
    """One principal's end of a channel's end-to-end session."""

    __slots__ = (
        "_initiation_digest",
        "_pending_initiation",
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
    ) -> None:
        self.role = role
        self.associated_data = associated_data
        self._ratchet = ratchet
        self._pending_initiation = pending_initiation
        self._initiation_digest = initiation_digest
        self.next_seq = next_seq
        self.last_sent_hash = last_sent_hash

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
    def awaiting_reply(self) -> bool:
        """True while the initiator still repeats the handshake in its messages."""
        return bool(self._pending_initiation)

    # -- starting ---------------------------------------------------------------------

    @classmethod
    def initiate(cls, identity: IdentityKeyPair, bundle: PrekeyBundle, rng: Rng) -> Session:
        """Open a session to the owner of `bundle` (PQXDH as Alice).

        Raises:
            RemoteProtocolError: the bundle does not verify.
        """
        initiation, secrets = initiate(identity, bundle, rng)
        return cls.from_initiation(initiation, secrets, bundle, rng)

    @classmethod
    def from_initiation(
        cls, initiation: Initiation, secrets: HandshakeSecrets, bundle: PrekeyBundle, rng: Rng
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
        return cls(_ROLE_INITIATOR, secrets.associated_data, ratchet, encoded, sha256(encoded))

    @classmethod
    def respond(
        cls, identity: IdentityKeyPair, prekeys: PrekeySecrets, payload: bytes, rng: Rng
    ) -> tuple[Session, Message, PrekeySecrets]:
        """Accept a session from the first payload that reaches us (PQXDH as Bob).

        Returns:
            The session, the first message, and the prekey secrets without the one-time
            prekey that was used (store them in the same transaction as the session).

        Raises:
            RemoteProtocolError: not an initiation, or it names prekeys we do not hold.
            DecryptionFailed: the payload does not authenticate; nothing was consumed.
        """
        r = Reader(payload, "payload")
        if r.u8() != PAYLOAD_INITIATION:
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
        session = cls(_ROLE_RESPONDER, secrets.associated_data, ratchet, b"", sha256(encoded))
        message = session._open(r.rest(), rng)
        remaining = prekeys
        if initiation.one_time_prekey_id is not None:
            remaining = prekeys.without_one_time_prekey(initiation.one_time_prekey_id)
        return session, message, remaining

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
        message = Message(
            rng(MESSAGE_ID_SIZE), self.next_seq, self.last_sent_hash, now_ms, kind, body
        )
        prefix = Writer()
        if self._pending_initiation:
            prefix.u8(PAYLOAD_INITIATION).raw(self._pending_initiation)
        else:
            prefix.u8(PAYLOAD_RATCHET)
        head = prefix.getvalue()
        encoded = message.encode()
        padded = _pad(encoded, len(head) + SEALED_HEADER_SIZE + AEAD_TAG_SIZE)
        payload = head + self._ratchet.encrypt(padded, self.associated_data, rng)
        self.next_seq += 1
        self.last_sent_hash = Message.hash_of(encoded)
        return SealedMessage(message, payload)

    def open(self, payload: bytes, rng: Rng) -> Message:
        """Decrypt a payload of this session. State changes only if it authenticates.

        Raises:
            DecryptionFailed: it does not authenticate.
            DuplicateMessage: an authentic copy of a message already received.
            RemoteProtocolError: malformed, or an initiation of another session.
        """
        r = Reader(payload, "payload")
        kind = r.u8()
        if kind == PAYLOAD_INITIATION:
            initiation = Initiation.read(r)
            if sha256(initiation.encode()) != self._initiation_digest:
                raise RemoteProtocolError("payload starts a different session")
        elif kind != PAYLOAD_RATCHET:
            raise RemoteProtocolError(f"unknown payload type {kind}")
        return self._open(r.rest(), rng)

    def _open(self, ratchet_part: bytes, rng: Rng) -> Message:
        padded = self._ratchet.decrypt(ratchet_part, self.associated_data, rng)
        message = Message.decode(_unpad(padded))
        # The peer has our session now: stop repeating the handshake.
        self._pending_initiation = b""
        return message

    # -- storage ----------------------------------------------------------------------

    def encode(self) -> bytes:
        """Serialise the session (secret: the caller stores it encrypted)."""
        w = Writer().u8(_STATE_VERSION).u8(self.role)
        w.fixed(self.associated_data, ASSOCIATED_DATA_SIZE)
        w.bytes16(self._pending_initiation).fixed(self._initiation_digest, 32)
        w.u64(self.next_seq).fixed(self.last_sent_hash, 32)
        return w.bytes32(self._ratchet.encode()).getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Session:
        """Restore a stored session.

        Raises:
            RemoteProtocolError: the bytes are not a session state of a known version.
        """
        r = Reader(data, "session state")
        if r.u8() != _STATE_VERSION:
            raise RemoteProtocolError("unknown session state version")
        role = r.u8()
        if role not in (_ROLE_INITIATOR, _ROLE_RESPONDER):
            raise RemoteProtocolError("session state has an unknown role")
        ad = r.fixed(ASSOCIATED_DATA_SIZE)
        pending = r.bytes16(8192)
        digest = r.fixed(32)
        next_seq, last_hash = r.u64(), r.fixed(32)
        ratchet = Ratchet.decode(r.bytes32(_MAX_RATCHET_STATE))
        r.finish()
        return cls(role, ad, ratchet, pending, digest, next_seq, last_hash)


# Re-exported for callers that catch it.
__all__ += ["DecryptionFailed"]

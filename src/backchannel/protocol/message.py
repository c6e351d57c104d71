"""The message plaintext: what travels inside the ratchet.

Layout::

    version     u8    MESSAGE_VERSION
    message_id  16    random; deduplicates copies that arrive by several relays or retries
    seq         u64   per-sender sequence number, from 1; a gap is visible until filled
    prev_hash   32    hash of the previous message this sender sent (zeros for the first)
    sent_at     u64   sender's clock, milliseconds since the Unix epoch
    kind        u16   what the body is (see `MessageKind`); unknown kinds are kept, not refused
    body        u32 length + bytes, at most MAX_BODY_SIZE (MAX_RECEIVED_BODY_SIZE on receipt)

`message_hash` chains a sender's messages: each names its predecessor, so a receiver detects
a dropped or substituted message even across relays.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "GENESIS_HASH",
    "MAX_BODY_SIZE",
    "MAX_RECEIVED_BODY_SIZE",
    "MESSAGE_ID_SIZE",
    "MESSAGE_VERSION",
    "Message",
    "MessageKind",
]

MESSAGE_VERSION: Final = 1
MESSAGE_ID_SIZE: Final = 16
HASH_SIZE: Final = 32
GENESIS_HASH: Final = b"\x00" * HASH_SIZE
# The largest body a sender can send: what fills the largest bucket in a ratchet-only payload
# v2 (type 0x04): 65536 - 17 (envelope) - 1 (type) - 68 (sealed header) - 12 (body nonce)
# - 16 (tag) - 4 (padding length) - 71 (message fields before the body) = 65347. A payload
# that also carries the initiation (type 0x03) holds 1212 bytes less, or 1216 with a one-time
# prekey (see `session.MAX_INITIATION_BODY_SIZE`); sealing refuses what does not fit.
MAX_BODY_SIZE: Final = 65347
# What a receiver accepts: Backchannel 0.1's type 0x02 payload had no body nonce, so its
# largest body was 12 bytes longer. Checked before any allocation, so a malformed length
# cannot make a receiver reserve gigabytes.
MAX_RECEIVED_BODY_SIZE: Final = MAX_BODY_SIZE + 12
_HASH_PREFIX: Final = b"Backchannel message hash v1"
# Everything before the body, in one struct: encoding is on every message's hot path.
_FIXED: Final = struct.Struct(">B16sQ32sQHI")


class MessageKind(IntEnum):
    """Registered kinds. The dialogue layer adds its own numbers from 0x0100 up."""

    NOTE = 0x0001
    RECEIPT_DELIVERED = 0x0002
    RECEIPT_READ = 0x0003


@dataclass(frozen=True, slots=True)
class Message:
    message_id: bytes
    seq: int
    prev_hash: bytes
    sent_at_ms: int
    kind: int
    body: bytes

    def __post_init__(self) -> None:
        if len(self.message_id) != MESSAGE_ID_SIZE or len(self.prev_hash) != HASH_SIZE:
            raise LocalProtocolError("message id is 16 bytes and prev_hash 32")
        if len(self.body) > MAX_RECEIVED_BODY_SIZE:
            raise LocalProtocolError(f"message body exceeds {MAX_RECEIVED_BODY_SIZE} bytes")
        if not 0 <= self.kind <= 0xFFFF:
            raise LocalProtocolError("message kind out of range")

    def __repr__(self) -> str:
        # Bodies are secrets: a repr may end up in a log.
        return (
            f"Message(id={self.message_id.hex()}, seq={self.seq}, kind={self.kind}, "
            f"body=<{len(self.body)} bytes>)"
        )

    def encode(self) -> bytes:
        if not (0 <= self.seq < 2**64 and 0 <= self.sent_at_ms < 2**64):
            raise LocalProtocolError("message seq and sent_at must fit 64 bits")
        fixed = _FIXED.pack(
            MESSAGE_VERSION,
            self.message_id,
            self.seq,
            self.prev_hash,
            self.sent_at_ms,
            self.kind,
            len(self.body),
        )
        return fixed + self.body

    @classmethod
    def decode(cls, data: bytes) -> Message:
        """Parse a message plaintext.

        Raises:
            RemoteProtocolError: wrong version, truncated, oversized or trailing bytes.
        """
        if len(data) < _FIXED.size:
            raise RemoteProtocolError("message is truncated")
        version, message_id, seq, prev_hash, sent_at, kind, length = _FIXED.unpack_from(data)
        if version != MESSAGE_VERSION:
            raise RemoteProtocolError("unknown message version")
        if length > MAX_RECEIVED_BODY_SIZE:
            raise RemoteProtocolError(
                f"message body of {length} bytes exceeds {MAX_RECEIVED_BODY_SIZE}"
            )
        if len(data) != _FIXED.size + length:
            raise RemoteProtocolError("message length does not match its body")
        return cls(message_id, seq, prev_hash, sent_at, kind, bytes(data[_FIXED.size :]))

    @classmethod
    def decode_prefix(cls, data: bytes) -> tuple[Message, int]:
        """Parse the message at the start of `data`; returns it and its encoded length.

        A message delimits itself (its fixed fields give the body's length), which is what
        lets a PQ payload put chunks after it without a length prefix (docs/protocol.md §13).

        Raises:
            RemoteProtocolError: wrong version, truncated or oversized.
        """
        if len(data) < _FIXED.size:
            raise RemoteProtocolError("message is truncated")
        length = _FIXED.unpack_from(data)[6]
        if length > MAX_RECEIVED_BODY_SIZE or len(data) < _FIXED.size + length:
            raise RemoteProtocolError("message is truncated or oversized")
        end = _FIXED.size + length
        return cls.decode(data[:end]), end

    @property
    def hash(self) -> bytes:
        return self.hash_of(self.encode())

    @staticmethod
    def hash_of(encoded: bytes) -> bytes:
        """The chain hash of an already-encoded message (saves encoding it twice)."""
        return hashlib.sha256(_HASH_PREFIX + encoded).digest()

"""The envelope: the only thing a relay ever sees.

Layout (all sizes in bytes)::

    version     1   ENVELOPE_VERSION
    mailbox_id  16  random, chosen by the recipient; routes the envelope
    payload     B - 17, where B is one of BUCKETS

The whole envelope is exactly one bucket long. The payload is end-to-end ciphertext that
the session layer already padded (inside the encryption) to fill the bucket, so neither the
relay nor a network observer learns the true size of a message, only its bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "BUCKETS",
    "ENVELOPE_HEADER_SIZE",
    "ENVELOPE_VERSION",
    "MAILBOX_ID_SIZE",
    "MAX_ENVELOPE_SIZE",
    "Envelope",
    "bucket_for_payload",
    "envelope_mailbox_id",
]

ENVELOPE_VERSION: Final = 1
MAILBOX_ID_SIZE: Final = 16  # 128 random bits: unguessable and collision-free at any scale
ENVELOPE_HEADER_SIZE: Final = 1 + MAILBOX_ID_SIZE

# Envelope sizes. Four buckets spaced by 4x keep the size leak to two bits while wasting at
# most 75% on padding; 1 KiB holds a typical diplomatic note, 64 KiB a long agreed record.
# Larger content is refused rather than split, so that no message is ever half-delivered.
BUCKETS: Final = (1024, 4096, 16384, 65536)
MAX_ENVELOPE_SIZE: Final = BUCKETS[-1]


def bucket_for_payload(payload_size: int) -> int:
    """The smallest bucket whose payload capacity holds `payload_size` bytes.

    Raises:
        LocalProtocolError: the payload does not fit the largest bucket.
    """
    for bucket in BUCKETS:
        if payload_size <= bucket - ENVELOPE_HEADER_SIZE:
            return bucket
    raise LocalProtocolError(
        f"message too large: {payload_size} bytes of ciphertext, the limit is "
        f"{MAX_ENVELOPE_SIZE - ENVELOPE_HEADER_SIZE}"
    )


@dataclass(frozen=True, slots=True)
class Envelope:
    """An addressed, padded, opaque payload."""

    mailbox_id: bytes
    payload: bytes

    def __post_init__(self) -> None:
        if len(self.mailbox_id) != MAILBOX_ID_SIZE:
            raise LocalProtocolError(f"mailbox id must be {MAILBOX_ID_SIZE} bytes")
        if len(self.payload) + ENVELOPE_HEADER_SIZE not in BUCKETS:
            raise LocalProtocolError("envelope payload must fill a bucket exactly")

    def __repr__(self) -> str:
        return f"Envelope(mailbox_id={self.mailbox_id.hex()}, size={self.size})"

    @property
    def size(self) -> int:
        return ENVELOPE_HEADER_SIZE + len(self.payload)

    def encode(self) -> bytes:
        return bytes((ENVELOPE_VERSION,)) + self.mailbox_id + self.payload

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        """Parse an envelope received from the network.

        Raises:
            RemoteProtocolError: wrong version or a size that is not a bucket.
        """
        return cls(envelope_mailbox_id(data), bytes(data[ENVELOPE_HEADER_SIZE:]))


def envelope_mailbox_id(data: bytes) -> bytes:
    """The mailbox id of an envelope's bytes, checked as `Envelope.decode` checks them.

    For a relay, which reads only the clear header: the payload is neither copied nor
    wrapped in an object (one of each per envelope on the relay's hot path).

    Raises:
        RemoteProtocolError: wrong version or a size that is not a bucket.
    """
    if len(data) not in BUCKETS:
        raise RemoteProtocolError(f"envelope of {len(data)} bytes is not a bucket size")
    if data[0] != ENVELOPE_VERSION:
        raise RemoteProtocolError(f"unknown envelope version {data[0]}")
    return bytes(data[1:ENVELOPE_HEADER_SIZE])

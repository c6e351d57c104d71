"""Chunks of the post-quantum ratchet, as they travel in the padding of a PQ payload.

Layout of the chunk area (docs/protocol.md §13.3), which follows the message plaintext
inside the body AEAD and runs to the end of the padded plaintext::

    chunk*      kind u8 (1 = encapsulation key, 2 = ciphertext) || epoch u32 ||
                first u8 || count u8 || count * CHUNK_UNIT bytes
    padding     zero bytes (a zero kind byte ends the chunks; everything after it is zero)

A KEM object is cut into units of CHUNK_UNIT bytes, numbered from 0; a chunk carries the
units `first .. first + count - 1` of one object of one epoch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from backchannel.protocol.e2e.primitives import KEM_CIPHERTEXT_SIZE, KEM_PUBLIC_SIZE
from backchannel.protocol.errors import RemoteProtocolError

__all__ = [
    "CHUNK_HEADER_SIZE",
    "CHUNK_UNIT",
    "MIN_CHUNK_SIZE",
    "Chunk",
    "ChunkKind",
    "decode_chunks",
    "encode_chunks",
    "units_of",
]

# Objects are cut in 16-byte units: both ML-KEM-768 objects are whole numbers of units
# (1184 = 74 * 16, 1088 = 68 * 16), so no unit is partial, and a unit index fits a u8. A
# smaller unit would waste less of a message's free space (at most 15 bytes now) but
# lengthen nothing else; 16 keeps the coverage bitmap at 74 bits.
CHUNK_UNIT: Final = 16
_CHUNK_HEADER: Final = struct.Struct(">BIBB")
CHUNK_HEADER_SIZE: Final = _CHUNK_HEADER.size
# A chunk smaller than one unit carries nothing: free space below this is left as zeros.
MIN_CHUNK_SIZE: Final = CHUNK_HEADER_SIZE + CHUNK_UNIT


class ChunkKind(IntEnum):
    """What a chunk is a part of (0 is the padding that ends the chunk area)."""

    ENCAPSULATION_KEY = 1
    CIPHERTEXT = 2


_OBJECT_SIZE: Final = {
    ChunkKind.ENCAPSULATION_KEY: KEM_PUBLIC_SIZE,
    ChunkKind.CIPHERTEXT: KEM_CIPHERTEXT_SIZE,
}


def units_of(kind: ChunkKind) -> int:
    """How many units one object of `kind` is cut into (74 or 68)."""
    return _OBJECT_SIZE[kind] // CHUNK_UNIT


@dataclass(frozen=True, slots=True)
class Chunk:
    """Units `first .. first + count - 1` of the `kind` object of `epoch`."""

    kind: ChunkKind
    epoch: int
    first: int
    data: bytes

    @property
    def count(self) -> int:
        return len(self.data) // CHUNK_UNIT

    def encode(self) -> bytes:
        return _CHUNK_HEADER.pack(self.kind, self.epoch, self.first, self.count) + self.data


def encode_chunks(chunks: list[Chunk]) -> bytes:
    """The chunk area without its zero padding."""
    return b"".join(chunk.encode() for chunk in chunks)


def decode_chunks(area: bytes) -> list[Chunk]:
    """Parse a chunk area (everything after the message, to the end of the plaintext).

    Raises:
        RemoteProtocolError: an unknown kind, a unit range outside its object, a truncated
            chunk, or a nonzero byte after the chunks end.
    """
    chunks: list[Chunk] = []
    offset = 0
    end = len(area)
    while offset < end and area[offset] != 0:
        if end - offset < CHUNK_HEADER_SIZE:
            raise RemoteProtocolError("PQ chunk header is truncated")
        raw_kind, epoch, first, count = _CHUNK_HEADER.unpack_from(area, offset)
        if raw_kind not in _OBJECT_SIZE:
            raise RemoteProtocolError(f"unknown PQ chunk kind {raw_kind}")
        kind = ChunkKind(raw_kind)
        if count == 0 or first + count > units_of(kind):
            raise RemoteProtocolError("PQ chunk lies outside its object")
        offset += CHUNK_HEADER_SIZE
        size = count * CHUNK_UNIT
        if end - offset < size:
            raise RemoteProtocolError("PQ chunk is truncated")
        chunks.append(Chunk(kind, epoch, first, bytes(area[offset : offset + size])))
        offset += size
    # One canonical plaintext per message: after the chunks, zeros only (compared in C).
    if area[offset:] != bytes(end - offset):
        raise RemoteProtocolError("PQ chunk area padding is malformed")
    return chunks

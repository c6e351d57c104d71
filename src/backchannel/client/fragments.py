"""A large envelope carried across slots in pieces (`client.slots`, design §10).

Every slot carries one envelope of `SLOT_BUCKET` bytes. An outbox row larger than that (a
note longer than about 900 bytes: a 4, 16 or 64 KiB bucket) is cut into pieces of at most
`PIECE_SIZE` bytes of the *whole envelope*, each sealed by the channel's ratchet as a
message of kind `KIND_FRAGMENT` (so each fills one slot bucket and, like cover, only the
recipient can tell what it is), one piece per slot. The recipient keeps the pieces
(`state.fragments`) until it has them all, then processes the envelope they make as if
the relay had delivered it: the message inside was sealed before its pieces, so its
ratchet key is among those the pieces skipped.

A piece's body: ``fragment_id[16] index:u16 count:u16 piece:bytes16``. The fragment id
is a hash of the envelope, the same for every sending of it (after a restart the pieces
go again, and the recipient keeps each index once).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Final

from backchannel.protocol.envelope import MAX_ENVELOPE_SIZE
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "FRAGMENT_ID_SIZE",
    "KIND_FRAGMENT",
    "MAX_PIECES",
    "PIECE_SIZE",
    "Piece",
    "fragment_id",
    "split",
]

# The kind of a piece (inside the AEAD: the relay never sees it); next to cover's 0x0008.
KIND_FRAGMENT: Final = 0x0009
FRAGMENT_ID_SIZE: Final = 16
# Envelope bytes per piece: with the piece's 22 bytes of framing, the message header and
# the session's overhead (post-quantum included) it fills one 1,024-byte bucket with room
# to spare (tests/client/test_slots_split.py seals the largest piece in both kinds of
# session). A 4 KiB envelope is 6 pieces, 16 KiB 22, 64 KiB 86.
PIECE_SIZE: Final = 768
MAX_PIECES: Final = math.ceil(MAX_ENVELOPE_SIZE / PIECE_SIZE)
_LABEL: Final = b"backchannel slot fragment v1\x00"


@dataclass(frozen=True, slots=True)
class Piece:
    """One piece of an envelope, as a `KIND_FRAGMENT` body carries it."""

    fragment_id: bytes
    index: int
    count: int
    data: bytes

    def encode(self) -> bytes:
        return (Writer().fixed(self.fragment_id, FRAGMENT_ID_SIZE).u16(self.index)
                .u16(self.count).bytes16(self.data).getvalue())

    @classmethod
    def decode(cls, body: bytes) -> Piece:
        """Raises RemoteProtocolError: not a piece (bounds, index beyond the count)."""
        r = Reader(body, "fragment")
        piece = cls(r.fixed(FRAGMENT_ID_SIZE), r.u16(), r.u16(), r.bytes16(PIECE_SIZE))
        r.finish()
        if not (2 <= piece.count <= MAX_PIECES and 0 <= piece.index < piece.count
                and piece.data):
            raise RemoteProtocolError("a fragment out of its bounds")
        return piece


def fragment_id(envelope: bytes) -> bytes:
    """The id of an envelope's pieces (a hash of it: the same at every sending)."""
    return hashlib.sha256(_LABEL + envelope).digest()[:FRAGMENT_ID_SIZE]


def split(envelope: bytes) -> list[Piece]:
    """The pieces of an envelope (at least two: call it only for one larger than a piece)."""
    count = math.ceil(len(envelope) / PIECE_SIZE)
    if count < 2:
        raise ValueError("an envelope that fits one piece is not split")
    ident = fragment_id(envelope)
    return [Piece(ident, i, count, envelope[i * PIECE_SIZE:(i + 1) * PIECE_SIZE])
            for i in range(count)]

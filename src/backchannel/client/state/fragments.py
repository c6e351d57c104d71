"""Pieces of large envelopes received in slots (`client.fragments`), kept until the
envelope is whole, sealed at rest like every record. Pieces of an envelope that never
completes (its sender gave up, the channel moved) are forgotten after `KEEP_MS`."""

from __future__ import annotations

import json
from typing import Final

from backchannel.client.fragments import Piece
from backchannel.client.keystore import Keystore

__all__ = ["KEEP_MS", "FragmentRepository"]

_KIND: Final = "fragment"
# A week: longer than any slot backlog; the relay keeps an envelope 30 days, but a piece
# kept here was acked there, and the sender sends every piece again after a restart.
KEEP_MS: Final = 7 * 86_400_000


class FragmentRepository:
    """Pieces by channel and fragment id (writes inside the caller's transaction)."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"FragmentRepository({self._store!r})"

    def add(self, channel_id: str, piece: Piece, now_ms: int) -> bytes | None:
        """Keep a piece; returns the whole envelope once every piece is here (and
        forgets the pieces), else None. A piece kept already is kept once."""
        key = bytes.fromhex(channel_id) + piece.fragment_id
        raw = self._store.get(_KIND, key)
        record: dict[str, object] = (
            json.loads(raw) if raw is not None
            else {"count": piece.count, "first_ms": now_ms, "pieces": {}})
        pieces = record["pieces"]
        assert isinstance(pieces, dict)
        if record["count"] != piece.count:
            return None  # not of this envelope (a forgery would not have opened)
        pieces.setdefault(str(piece.index), piece.data.hex())
        if len(pieces) < piece.count:
            self._store.put(_KIND, key, json.dumps(record).encode())
            return None
        self._store.delete(_KIND, key)
        return b"".join(bytes.fromhex(pieces[str(i)]) for i in range(piece.count))

    def pending(self) -> int:
        """Envelopes with some pieces here."""
        return len(self._store.all(_KIND))

    def forget_before(self, cutoff_ms: int) -> None:
        for key, raw in self._store.all(_KIND):
            if int(json.loads(raw)["first_ms"]) < cutoff_ms:
                self._store.delete(_KIND, key)

    def delete_channel(self, channel_id: str) -> None:
        prefix = bytes.fromhex(channel_id)
        for key, _ in self._store.all(_KIND):
            if key.startswith(prefix):
                self._store.delete(_KIND, key)

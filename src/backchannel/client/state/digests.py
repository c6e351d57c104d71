"""Digests of the payloads already processed, with when each was first seen.

They spare a decrypt for a copy (the same payload via two relays, or redelivered); only
a keyed hash of the payload is stored.
"""

from __future__ import annotations

from backchannel.client.keystore import Keystore

__all__ = ["DigestRepository"]


class DigestRepository:
    """The `processed` table (writes inside the caller's transaction)."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"DigestRepository({self._store!r})"

    def _digest(self, payload: bytes) -> bytes:
        return self._store.index(b"payload", payload)

    def seen(self, payload: bytes) -> bool:
        row = self._store.db.execute(
            "SELECT 1 FROM processed WHERE digest = ?", (self._digest(payload),)
        ).fetchone()
        return row is not None

    def remember(self, payload: bytes, now_ms: int) -> None:
        self._store.db.execute(
            "INSERT OR IGNORE INTO processed (digest, seen_ms) VALUES (?, ?)",
            (self._digest(payload), now_ms),
        )

    def forget_before(self, cutoff_ms: int) -> None:
        self._store.db.execute("DELETE FROM processed WHERE seen_ms < ?", (cutoff_ms,))

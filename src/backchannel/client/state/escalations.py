"""Escalations: the sealed payloads kept to send again, and the notes already escalated."""

from __future__ import annotations

from typing import Final

from backchannel.client.keystore import Keystore

__all__ = ["EscalationRepository"]

_ESCALATED: Final = "escalated"


class EscalationRepository:
    """Retained payloads (`retained` table) and escalated marks (writes inside the
    caller's transaction). Message ids are bytes, as the dialogue layer has them."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"EscalationRepository({self._store!r})"

    def retain(self, channel_id: str, message_id: bytes, payload: bytes) -> None:
        self._store.db.execute(
            "INSERT OR REPLACE INTO retained VALUES (?, ?, ?)",
            (bytes.fromhex(channel_id), message_id, payload),
        )

    def retained(self, channel_id: str, message_id: bytes) -> bytes | None:
        row = self._store.db.execute(
            "SELECT payload FROM retained WHERE channel = ? AND message_id = ?",
            (bytes.fromhex(channel_id), message_id),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def escalated(self, channel_id: str) -> set[bytes]:
        """The ids of this channel's notes already escalated."""
        prefix = bytes.fromhex(channel_id)
        return {key[16:] for key, _ in self._store.all(_ESCALATED) if key[:16] == prefix}

    def mark_escalated(self, channel_id: str, message_id: bytes) -> None:
        self._store.put(_ESCALATED, bytes.fromhex(channel_id) + message_id, b"1")

    def delete_channel(self, channel_id: str) -> None:
        """Forget the retained payloads and escalated marks of a channel being removed."""
        cid = bytes.fromhex(channel_id)
        self._store.db.execute("DELETE FROM retained WHERE channel = ?", (cid,))
        for key in self.escalated(channel_id):
            self._store.delete(_ESCALATED, cid + key)

"""Receipts owed: message ids to acknowledge (delivered, read), until a receipt is queued."""

from __future__ import annotations

from backchannel.client.keystore import Keystore

__all__ = ["PendingReceiptRepository"]


class PendingReceiptRepository:
    """The `pending_receipts` table (writes inside the caller's transaction)."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"PendingReceiptRepository({self._store!r})"

    def add(self, channel_id: str, kind: int, message_id: str) -> None:
        self._store.db.execute(
            "INSERT OR IGNORE INTO pending_receipts VALUES (?, ?, ?)",
            (bytes.fromhex(channel_id), kind, bytes.fromhex(message_id)),
        )

    def any(self) -> bool:
        row = self._store.db.execute("SELECT 1 FROM pending_receipts LIMIT 1").fetchone()
        return row is not None

    def grouped(self) -> dict[tuple[str, int], list[str]]:
        """The message ids owed, by (channel id, receipt kind), in the order they came."""
        rows = self._store.db.execute(
            "SELECT channel, kind, message_id FROM pending_receipts ORDER BY rowid"
        ).fetchall()
        grouped: dict[tuple[str, int], list[str]] = {}
        for cid, kind, message_id in rows:
            grouped.setdefault((bytes(cid).hex(), int(kind)), []).append(bytes(message_id).hex())
        return grouped

    def done(self, channel_id: str, kind: int) -> None:
        self._store.db.execute(
            "DELETE FROM pending_receipts WHERE channel = ? AND kind = ?",
            (bytes.fromhex(channel_id), kind),
        )

    def delete_channel(self, channel_id: str) -> None:
        """Forget the receipts owed on a channel that is being removed."""
        self._store.db.execute(
            "DELETE FROM pending_receipts WHERE channel = ?", (bytes.fromhex(channel_id),)
        )

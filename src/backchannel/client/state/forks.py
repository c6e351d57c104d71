"""Fork records and the payloads a channel accepted (to tell a copy from a fork)."""

from __future__ import annotations

from backchannel.client.forks import ForkRecord
from backchannel.client.keystore import Keystore

__all__ = ["ForkRepository"]


class ForkRepository:
    """Forks seen on each channel, and the digests of every payload a channel accepted.

    The accepted digests are kept for the life of the transcript (one per message, like
    the messages themselves): a relay may redeliver a copy long after the short-lived
    `processed` digests are gone, and a copy must never be taken for a fork.
    """

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"ForkRepository({self._store!r})"

    def add(self, channel_id: str, record: ForkRecord) -> None:
        cid = bytes.fromhex(channel_id)
        cursor = self._store.db.execute(
            "INSERT INTO forks (channel, record) VALUES (?, x'')", (cid,)
        )
        row_id = int(cursor.lastrowid or 0)
        self._seal(row_id, cid, record)

    def _seal(self, row_id: int, cid: bytes, record: ForkRecord) -> None:
        sealed = self._store.seal("forks", cid + row_id.to_bytes(8, "big"), record.to_json())
        self._store.db.execute("UPDATE forks SET record = ? WHERE id = ?", (sealed, row_id))

    def of_channel(self, channel_id: str) -> list[tuple[int, ForkRecord]]:
        """(row id, record) of every fork of a channel, oldest first."""
        cid = bytes.fromhex(channel_id)
        rows = self._store.db.execute(
            "SELECT id, record FROM forks WHERE channel = ? ORDER BY id", (cid,)
        ).fetchall()
        return [
            (
                int(row_id),
                ForkRecord.from_json(
                    self._store.unseal("forks", cid + int(row_id).to_bytes(8, "big"), bytes(raw))
                ),
            )
            for row_id, raw in rows
        ]

    def replace(self, channel_id: str, row_id: int, record: ForkRecord) -> None:
        self._seal(row_id, bytes.fromhex(channel_id), record)

    def accept_payload(self, channel_id: str, payload: bytes) -> None:
        digest = self._store.index(b"accepted", bytes.fromhex(channel_id), payload)
        self._store.db.execute("INSERT OR IGNORE INTO accepted VALUES (?)", (digest,))

    def was_accepted(self, channel_id: str, payload: bytes) -> bool:
        digest = self._store.index(b"accepted", bytes.fromhex(channel_id), payload)
        row = self._store.db.execute(
            "SELECT 1 FROM accepted WHERE digest = ?", (digest,)
        ).fetchone()
        return row is not None

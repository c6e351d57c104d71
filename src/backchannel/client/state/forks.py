"""Fork records, and the sealed header accepted at each ratchet position (to tell a copy
from a fork)."""

from __future__ import annotations

from backchannel.client.forks import ForkRecord
from backchannel.client.keystore import Keystore
from backchannel.protocol.e2e.ratchet import Position

__all__ = ["ForkRepository"]


class ForkRepository:
    """Forks seen on each channel, and which sealed header each ratchet position carried.

    A sealed header can only be made by the sender (it needs the header key) and each
    sealing draws a fresh nonce, so the same header again is a copy (whatever body a relay
    put behind it) and another header at a used position is a second sealing: a fork
    (docs/protocol.md §8). Positions are kept for the life of the transcript, one per
    message, like the messages: a relay may redeliver a copy long after the short-lived
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

    def delete_channel(self, channel_id: str) -> None:
        """Forget the forks of a channel being removed. Its positions stay: they are keyed
        hashes with no channel column, meaningless once the channel's keys are gone."""
        self._store.db.execute("DELETE FROM forks WHERE channel = ?", (bytes.fromhex(channel_id),))

    def remember_position(self, channel_id: str, position: Position) -> None:
        """Record which sealed header a channel accepted at a ratchet position."""
        self._store.db.execute(
            "INSERT OR IGNORE INTO positions VALUES (?, ?)",
            (self._key(channel_id, position), self._header(channel_id, position)),
        )

    def same_header(self, channel_id: str, position: Position) -> bool | None:
        """Whether the sealed header accepted at `position` is this one: True (a copy),
        False (another sealing: a fork), None (nothing recorded there)."""
        row = self._store.db.execute(
            "SELECT header FROM positions WHERE position = ?",
            (self._key(channel_id, position),),
        ).fetchone()
        if row is None:
            return None
        return bytes(row[0]) == self._header(channel_id, position)

    def _key(self, channel_id: str, position: Position) -> bytes:
        return self._store.index(
            b"position", bytes.fromhex(channel_id), position.ratchet_key,
            position.n.to_bytes(4, "big"),
        )

    def _header(self, channel_id: str, position: Position) -> bytes:
        return self._store.index(b"header", bytes.fromhex(channel_id), position.sealed_header)

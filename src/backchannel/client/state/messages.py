"""The transcript: every message of every channel, both ways, sealed one per row.

In clear beside each sealed record: the channel id, a keyed hash of the message id (`ref`),
the direction, the sequence number and `ord`, the order in which this side first stored
the message (kept when the record is updated by a receipt or a read mark: the dialogue
fold replays messages in the order they were learned).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from backchannel.client.keystore import SEAL_NONCE, SEAL_TAG, Keystore, stamp
from backchannel.client.records import MessageRecord, dump, load

__all__ = ["MessageRepository", "StoredSince", "in_seq_slots"]

_TABLE: Final = "messages"
# Refs per ``IN (...)`` read: far below SQLite's bound on parameters.
_IN_CHUNK: Final = 500


@dataclass(frozen=True, slots=True)
class StoredSince:
    """A channel's messages from one `ord` on, read in one statement (one snapshot).

    Attributes:
        first_ref: the ref of the row at the `ord` asked for, or None if it is gone.
        records: the rows after it, by `ord`, each with its `ord` (not re-slotted).
        count: how many messages the channel holds in that same snapshot.
    """

    first_ref: bytes | None
    records: list[tuple[int, bytes, MessageRecord]]
    count: int


def in_seq_slots(records: list[MessageRecord]) -> list[MessageRecord]:
    """`records` (in `ord` order) with theirs put in their sequence order into the slots
    where theirs were stored: the order the dialogue fold replays (`in_stored_order`)."""
    slots = [i for i, m in enumerate(records) if m.direction == "in"]
    theirs = sorted((records[i] for i in slots), key=lambda m: m.seq)
    out = list(records)
    for slot, record in zip(slots, theirs, strict=True):
        out[slot] = record
    return out


class MessageRepository:
    """All messages of one principal's store. Ids are hex, as in the records."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"MessageRepository({self._store!r})"

    def ref(self, message_id: str) -> bytes:
        """The keyed hash that stands for a message id in clear columns."""
        return self._store.index(b"msg", bytes.fromhex(message_id))

    def put(self, channel_id: str, record: MessageRecord) -> None:
        """Store a new message or update one (inside the caller's transaction)."""
        cid = bytes.fromhex(channel_id)
        ref = self.ref(record.message_id)
        self._store.db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?,"
            " (SELECT COALESCE(MAX(ord), 0) + 1 FROM messages WHERE channel = ?))"
            " ON CONFLICT (channel, ref) DO UPDATE SET record = excluded.record",
            (
                cid,
                ref,
                1 if record.direction == "in" else 0,
                record.seq,
                self._store.seal(_TABLE, cid + ref, dump(record)),
                cid,
            ),
        )

    def get(self, channel_id: str, message_id: str) -> MessageRecord | None:
        return self._by_ref(channel_id, self.ref(message_id))

    def by_ref(self, channel_id: str, ref: bytes) -> MessageRecord | None:
        """The message of a channel with this ref (an outbox row's), if stored."""
        return self._by_ref(channel_id, ref)

    def _by_ref(self, channel_id: str, ref: bytes) -> MessageRecord | None:
        cid = bytes.fromhex(channel_id)
        row = self._store.db.execute(
            "SELECT record FROM messages WHERE channel = ? AND ref = ?", (cid, ref)
        ).fetchone()
        return None if row is None else self._load(cid, ref, row[0])

    def mark_stored(self, channel_id: str, ref: bytes, url: str) -> None:
        """Note that the relay at `url` stored our message `ref` (inside a transaction)."""
        self.mark_stored_many([(channel_id, ref)], url)

    def mark_stored_many(self, stored: Iterable[tuple[str, bytes]], url: str) -> None:
        """`mark_stored` for each (channel id, ref) of a flush's window: per channel, one
        statement reads them and one writes them back, not two per message."""
        by_channel: dict[str, dict[bytes, None]] = {}
        for channel_id, ref in stored:
            by_channel.setdefault(channel_id, {})[ref] = None
        for channel_id, refs in by_channel.items():
            changed = []
            for ref, record in self.by_refs(channel_id, list(refs)):
                if url not in record.stored_on:
                    record.stored_on.append(url)
                    changed.append((ref, record))
            self.update(channel_id, changed)

    def by_refs(self, channel_id: str, refs: list[bytes]) -> list[tuple[bytes, MessageRecord]]:
        """The messages of a channel stored under these refs, in no order (those not
        stored are left out)."""
        cid = bytes.fromhex(channel_id)
        return [(ref, self._load(cid, ref, sealed))
                for ref, sealed in self._sealed_by_refs(channel_id, refs)]

    def update(self, channel_id: str, changed: list[tuple[bytes, MessageRecord]]) -> None:
        """Write back messages read with their refs (`by_refs`), in one statement; each
        keeps its place (`ord`). Inside the caller's transaction."""
        cid = bytes.fromhex(channel_id)
        self._store.db.executemany(
            "UPDATE messages SET record = ? WHERE channel = ? AND ref = ?",
            [(self._store.seal(_TABLE, cid + ref, dump(record)), cid, ref)
             for ref, record in changed],
        )

    def of_channel(self, channel_id: str) -> list[MessageRecord]:
        """A channel's messages: ours in sequence order, then theirs in sequence order."""
        return self._select(channel_id, "ORDER BY direction, seq")

    def in_stored_order(self, channel_id: str) -> list[MessageRecord]:
        """A channel's messages in the order they were stored, except that theirs, which
        may have been stored out of their order (two relays race), fill the slots where
        theirs were learned in their sequence order."""
        return in_seq_slots(self._select(channel_id, "ORDER BY ord"))

    def stored_since(self, channel_id: str, ord_: int) -> StoredSince:
        """The row at `ord_` (its ref only) and every row stored after it, with the
        channel's message count, all from one snapshot: what an incremental fold needs
        to tell an append (by this handle or another process) from any other change.
        `ord_` 0 asks for every row (`first_ref` is then None)."""
        cid = bytes.fromhex(channel_id)
        rows = self._store.db.execute(
            "SELECT ord, ref, CASE WHEN ord > ? THEN record END,"
            " (SELECT COUNT(*) FROM messages WHERE channel = ?)"
            " FROM messages WHERE channel = ? AND ord >= ? ORDER BY ord",
            (ord_, cid, cid, ord_),
        ).fetchall()
        if not rows:
            count = self._store.db.execute(
                "SELECT COUNT(*) FROM messages WHERE channel = ?", (cid,)
            ).fetchone()[0]
            return StoredSince(None, [], int(count))
        first_ref = bytes(rows[0][1]) if int(rows[0][0]) == ord_ else None
        records = [
            (int(o), bytes(ref), self._load(cid, bytes(ref), raw))
            for o, ref, raw, _count in rows
            if int(o) > ord_
        ]
        return StoredSince(first_ref, records, int(rows[0][3]))

    def theirs_around(self, channel_id: str, seq: int) -> dict[int, MessageRecord]:
        """Their messages at `seq - 1`, `seq` and `seq + 1` that we hold, by seq."""
        cid = bytes.fromhex(channel_id)
        rows = self._store.db.execute(
            "SELECT ref, seq, record FROM messages WHERE channel = ? AND direction = 1"
            " AND seq BETWEEN ? AND ?",
            (cid, seq - 1, seq + 1),
        ).fetchall()
        return {int(s): self._load(cid, bytes(ref), raw) for ref, s, raw in rows}

    def stamps(self, channel_id: str) -> list[tuple[bytes, bytes]]:
        """The ref and stamp of every message of a channel, in no order.

        The stamp is the sealed record's nonce and authentication tag. Every write seals
        with a fresh random nonce and the tag authenticates the whole record, so a row
        whose stamp is unchanged holds the record it held (`keystore.stamp`), which is
        what `MessageTallies` keeps its counts by.
        """
        # Two columns: `||` would make text of them. substr of a blob counts bytes.
        rows = self._store.db.execute(
            "SELECT ref, substr(record, 1, ?), substr(record, -?) FROM messages"
            " WHERE channel = ?",
            (SEAL_NONCE, SEAL_TAG, bytes.fromhex(channel_id)),
        ).fetchall()
        return [(ref, nonce + tag) for ref, nonce, tag in rows]  # blobs come as bytes

    def with_stamps(self, channel_id: str,
                    refs: list[bytes]) -> list[tuple[bytes, bytes, MessageRecord]]:
        """The messages of a channel with these refs: (ref, stamp, record) each."""
        cid = bytes.fromhex(channel_id)
        return [(ref, stamp(sealed), self._load(cid, ref, sealed))
                for ref, sealed in self._sealed_by_refs(channel_id, refs)]

    def _sealed_by_refs(self, channel_id: str, refs: list[bytes]) -> list[tuple[bytes, bytes]]:
        cid = bytes.fromhex(channel_id)
        found: list[tuple[bytes, bytes]] = []
        for i in range(0, len(refs), _IN_CHUNK):
            chunk = refs[i:i + _IN_CHUNK]
            rows = self._store.db.execute(
                "SELECT ref, record FROM messages WHERE channel = ?"
                f" AND ref IN ({','.join('?' * len(chunk))})",
                (cid, *chunk),
            ).fetchall()
            found += [(bytes(ref), bytes(raw)) for ref, raw in rows]
        return found

    def delete_channel(self, channel_id: str) -> None:
        self._store.db.execute(
            "DELETE FROM messages WHERE channel = ?", (bytes.fromhex(channel_id),)
        )

    def _select(self, channel_id: str, order: str) -> list[MessageRecord]:
        cid = bytes.fromhex(channel_id)
        rows = self._store.db.execute(
            f"SELECT ref, record FROM messages WHERE channel = ? {order}", (cid,)
        ).fetchall()
        return [self._load(cid, bytes(ref), raw) for ref, raw in rows]

    def _load(self, cid: bytes, ref: bytes, raw: bytes) -> MessageRecord:
        record: MessageRecord = load(
            MessageRecord, self._store.unseal(_TABLE, cid + ref, bytes(raw))
        )
        return record

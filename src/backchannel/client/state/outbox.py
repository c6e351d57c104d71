"""The outbox: one row per message and relay, until that relay said it stored it.

The envelopes are end-to-end ciphertext already, so they are kept in clear. A flusher
*claims* the rows it is about to offer (`in_flight_until_ms`, set in the transaction that
reads them), so that two handles of one principal (the agent's loop and a request's
worker) never offer the same row at once. A claim ends when the send is answered; one
left by a process that died mid-send ends when the next process takes the home's lock
(`release_all`: only one process has the home at a time, so every claim it finds is
stale), or by itself when it expires. Either way no row is lost.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from backchannel.client.keystore import Keystore
from backchannel.protocol.envelope import Envelope

__all__ = ["OutboxRepository", "OutboxRow"]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    row_id: int
    channel_id: str  # hex
    ref: bytes  # the message's keyed hash (`MessageRepository.ref`)
    envelope: bytes

    @property
    def mailbox_id(self) -> bytes:
        return Envelope.decode(self.envelope).mailbox_id


class OutboxRepository:
    """The outbox rows of one principal's store (writes inside the caller's transaction)."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"OutboxRepository({self._store!r})"

    def add(self, channel_id: str, url: str, ref: bytes, envelope: Envelope) -> None:
        self._store.db.execute(
            "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
            (bytes.fromhex(channel_id), url, ref, envelope.encode()),
        )

    def relays(self) -> list[str]:
        """The relays some row waits for, in URL order."""
        rows = self._store.db.execute("SELECT DISTINCT relay FROM outbox ORDER BY relay")
        return [str(url) for (url,) in rows.fetchall()]

    def claim(
        self,
        url: str,
        channel_ids: Collection[str],
        now_ms: int,
        until_ms: int,
        limit: int,
        skip: Collection[int] = (),
    ) -> list[OutboxRow]:
        """Claim, oldest first, up to `limit` rows for `url` of the given channels that no
        one else holds (or whose claim expired), except those in `skip`, until `until_ms`.

        Must run inside a transaction, so that no other flusher claims them in between.
        """
        rows = self._store.db.execute(
            "SELECT id, channel, ref, envelope FROM outbox"
            " WHERE relay = ? AND in_flight_until_ms <= ? ORDER BY id",
            (url, now_ms),
        )
        claimed: list[OutboxRow] = []
        # Read row by row up to the window, not all at once: a burst queues thousands,
        # and every window would otherwise read every envelope still waiting.
        for row_id, cid, ref, raw in rows:
            if int(row_id) in skip or bytes(cid).hex() not in channel_ids:
                continue
            claimed.append(OutboxRow(int(row_id), bytes(cid).hex(), bytes(ref), bytes(raw)))
            if len(claimed) == limit:
                break
        rows.close()
        self._store.db.executemany(
            "UPDATE outbox SET in_flight_until_ms = ? WHERE id = ?",
            [(until_ms, row.row_id) for row in claimed],
        )
        return claimed

    def any_waiting(self, url: str, now_ms: int) -> bool:
        """Whether a row for `url` waits unclaimed (or its claim expired) now."""
        row = self._store.db.execute(
            "SELECT 1 FROM outbox WHERE relay = ? AND in_flight_until_ms <= ? LIMIT 1",
            (url, now_ms),
        ).fetchone()
        return row is not None

    def release(self, rows: Iterable[OutboxRow]) -> None:
        """End the claims on rows still queued (a row sent meanwhile is gone already)."""
        self._store.db.executemany(
            "UPDATE outbox SET in_flight_until_ms = 0 WHERE id = ?",
            [(row.row_id,) for row in rows],
        )

    def release_all(self) -> None:
        """End every claim (the claimants are gone: see the module's docstring)."""
        self._store.db.execute(
            "UPDATE outbox SET in_flight_until_ms = 0 WHERE in_flight_until_ms != 0"
        )

    def remove(self, row: OutboxRow) -> None:
        """The relay stored it."""
        self.remove_many([row])

    def remove_many(self, rows: Iterable[OutboxRow]) -> None:
        """The relay stored them."""
        self._store.db.executemany(
            "DELETE FROM outbox WHERE id = ?", [(row.row_id,) for row in rows]
        )

    def refused(self, row: OutboxRow, now_ms: int) -> None:
        """The relay refused it for good (a quota, not the envelope): it stays queued."""
        self._store.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?,"
            " in_flight_until_ms = 0 WHERE id = ?",
            (now_ms, row.row_id),
        )

    def drop(self, channel_id: str, url: str) -> None:
        """Drop a channel's rows for one relay (its mailbox there is gone)."""
        self._store.db.execute(
            "DELETE FROM outbox WHERE channel = ? AND relay = ?", (bytes.fromhex(channel_id), url)
        )

    def readdress(self, channel_id: str, url: str, mailbox_id: bytes) -> None:
        """Point a channel's rows for one relay at the counterpart's new mailbox there."""
        cid = bytes.fromhex(channel_id)
        rows = self._store.db.execute(
            "SELECT id, envelope FROM outbox WHERE channel = ? AND relay = ?", (cid, url)
        ).fetchall()
        self._store.db.executemany(
            "UPDATE outbox SET envelope = ? WHERE id = ?",
            [
                (Envelope(mailbox_id, Envelope.decode(bytes(raw)).payload).encode(), row_id)
                for row_id, raw in rows
            ],
        )

    def copy_to(self, channel_id: str, url: str, mailbox_id: bytes) -> None:
        """Queue for `url` too, to `mailbox_id`, each message of the channel still waiting
        for another relay and not yet for this one (a relay the channel starts sending to:
        the counterpart moved a mailbox there because its others are down)."""
        cid = bytes.fromhex(channel_id)
        rows = self._store.db.execute(
            "SELECT ref, MIN(envelope) FROM outbox WHERE channel = ? AND relay != ?"
            " AND ref NOT IN (SELECT ref FROM outbox WHERE channel = ? AND relay = ?)"
            " GROUP BY ref ORDER BY MIN(id)",
            (cid, url, cid, url),
        ).fetchall()
        self._store.db.executemany(
            "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
            [
                (cid, url, ref, Envelope(mailbox_id, Envelope.decode(bytes(raw)).payload).encode())
                for ref, raw in rows
            ],
        )

    def refs_for(self, channel_id: str, url: str) -> set[bytes]:
        """The messages of a channel still queued for `url` (their refs)."""
        rows = self._store.db.execute(
            "SELECT ref FROM outbox WHERE channel = ? AND relay = ?",
            (bytes.fromhex(channel_id), url),
        )
        return {bytes(ref) for (ref,) in rows.fetchall()}

    def row_ids(self, channel_id: str) -> list[int]:
        rows = self._store.db.execute(
            "SELECT id FROM outbox WHERE channel = ? ORDER BY id", (bytes.fromhex(channel_id),)
        )
        return [int(row_id) for (row_id,) in rows.fetchall()]

    def queued_row(self, row_id: int) -> bool:
        """Whether the row is still queued (no relay stored it, nothing dropped it)."""
        found = self._store.db.execute("SELECT 1 FROM outbox WHERE id = ?", (row_id,))
        return found.fetchone() is not None

    def queued_messages(self, channel_id: str) -> int:
        """How many of a channel's messages some relay has still to store."""
        (count,) = self._store.db.execute(
            "SELECT COUNT(DISTINCT ref) FROM outbox WHERE channel = ?",
            (bytes.fromhex(channel_id),),
        ).fetchone()
        return int(count)

    def delete_channel(self, channel_id: str) -> None:
        self._store.db.execute(
            "DELETE FROM outbox WHERE channel = ?", (bytes.fromhex(channel_id),)
        )

"""Retained payloads and escalations: the sealed payloads of our messages kept to send
again (an escalation's resend; a resend to a mailbox a relay lost before the counterpart
read it), until the counterpart says it has them, and the notes already escalated."""

from __future__ import annotations

from typing import Final

from backchannel.client.keystore import Keystore

__all__ = [
    "KEEP_FOR_ESCALATION",
    "KEEP_UNTIL_RECEIPTED",
    "KEEP_UNTIL_SEEN",
    "EscalationRepository",
]

_ESCALATED: Final = "escalated"
# How long each retained payload is kept (`retained.until_receipted`):
KEEP_FOR_ESCALATION: Final = 0  # as long as the channel (and every row kept before 0.2)
KEEP_UNTIL_RECEIPTED: Final = 1  # until its delivered receipt
# Until a later message of ours is receipted, or `expire_unseen`: what owes no receipt (a
# receipt, a fork notice, the capabilities). The counterpart reads a mailbox in order, so
# a receipt for a later message says it read these too.
KEEP_UNTIL_SEEN: Final = 2


class EscalationRepository:
    """Retained payloads (`retained` table) and escalated marks (writes inside the
    caller's transaction). Message ids are bytes, as the dialogue layer has them."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"EscalationRepository({self._store!r})"

    def retain(self, channel_id: str, message_id: bytes, payload: bytes, *,
               keep: int = KEEP_FOR_ESCALATION, seq: int = 0, now_ms: int = 0) -> None:
        """Keep a message's sealed payload for as long as `keep` says (an escalation
        resends it whatever the receipts say; a move from a lost mailbox resends it while
        it is kept)."""
        self._store.db.execute(
            "INSERT OR REPLACE INTO retained"
            " (channel, message_id, payload, until_receipted, seq, kept_at_ms)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (bytes.fromhex(channel_id), message_id, payload, keep, seq, now_ms))

    def retained(self, channel_id: str, message_id: bytes) -> bytes | None:
        row = self._store.db.execute(
            "SELECT payload FROM retained WHERE channel = ? AND message_id = ?",
            (bytes.fromhex(channel_id), message_id),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def release(self, channel_id: str, message_ids: list[bytes]) -> None:
        """Forget the payloads of messages the counterpart has (a delivered receipt),
        but those kept for an escalation."""
        cid = bytes.fromhex(channel_id)
        self._store.db.executemany(
            "DELETE FROM retained WHERE channel = ? AND message_id = ? AND until_receipted = 1",
            [(cid, message_id) for message_id in message_ids],
        )

    def unseen_below(self, channel_id: str, seq: int) -> list[tuple[bytes, int]]:
        """(message id, seq) of what is kept until seen (it owes no receipt), below `seq`."""
        rows = self._store.db.execute(
            "SELECT message_id, seq FROM retained"
            " WHERE channel = ? AND until_receipted = ? AND seq < ?",
            (bytes.fromhex(channel_id), KEEP_UNTIL_SEEN, seq))
        return [(bytes(mid), int(s)) for mid, s in rows.fetchall()]

    def seen(self, channel_id: str, message_ids: list[bytes]) -> None:
        """Forget what owes no receipt and the counterpart has read (`Receiver`)."""
        cid = bytes.fromhex(channel_id)
        self._store.db.executemany(
            "DELETE FROM retained WHERE channel = ? AND message_id = ? AND until_receipted = ?",
            [(cid, message_id, KEEP_UNTIL_SEEN) for message_id in message_ids])

    def expire_unseen(self, before_ms: int) -> None:
        """Forget what owes no receipt and was kept before `before_ms` (a relay no longer
        holds it either: its envelope TTL has passed)."""
        self._store.db.execute(
            "DELETE FROM retained WHERE until_receipted = ? AND kept_at_ms < ?",
            (KEEP_UNTIL_SEEN, before_ms))

    def all_retained(self, channel_id: str) -> list[tuple[bytes, bytes]]:
        """(message id, payload) of every payload the channel retains, oldest first."""
        rows = self._store.db.execute(
            "SELECT message_id, payload FROM retained WHERE channel = ? ORDER BY rowid",
            (bytes.fromhex(channel_id),),
        )
        return [(bytes(mid), bytes(payload)) for mid, payload in rows.fetchall()]

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


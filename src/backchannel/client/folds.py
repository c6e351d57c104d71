"""Each channel's dialogue fold, kept between rounds and extended by what was stored since.

`duties.dialogue_of` folds a channel's whole transcript; doing that on every sync and every
duty round of a watch costs O(channel) per round, which a burst of notes turns into O(n²).
`DialogueCache` keeps, per channel, the folded `Dialogue` and how far it folded (the last
`ord`, its ref, how many rows, the highest sequence number of theirs) and on the next call
reads only the rows stored after it (`MessageRepository.stored_since`, one statement).

The cached fold is served only when it is the fold of what the store holds now; anything
but an append folds again from the first message:

- a row folded is gone or replaced (a deleted message, a removed channel, a rolled-back
  transaction whose rows were folded): the last folded row's ref differs or is missing,
  or the count is not the old count plus the rows read;
- a message of theirs stored with a sequence number at or below one already folded (two
  relays raced): `in_stored_order` re-slots theirs by sequence, which changes the order
  retroactively;
- another counterpart key (the channel was re-paired).

Appends by another handle on the same file (the agent, a worker) are rows like our own,
so they are seen the same way. Updates in place are not folded again: the fold reads only
what a message was when stored (id, hash, side, times, kind, body), which no update
changes — a receipt, a read mark or `stored_on` alter other fields, and the receiver
never stores a message it already holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from backchannel.client.records import ChannelRecord, MessageRecord
from backchannel.client.state.messages import MessageRepository, in_seq_slots
from backchannel.dialogue import Dialogue, DialogueEvent, Side
from backchannel.protocol.e2e.keys import PublicIdentity
from backchannel.protocol.message import MessageKind

__all__ = ["DialogueCache", "FoldStats", "dialogue_event", "is_dialogue"]

# Receipts are not part of the dialogue (they mark our messages delivered or read).
_RECEIPTS = frozenset((MessageKind.RECEIPT_DELIVERED, MessageKind.RECEIPT_READ))


def is_dialogue(record: MessageRecord) -> bool:
    """Whether the message is fed to the dialogue fold (receipts are not)."""
    return record.kind not in _RECEIPTS


def dialogue_event(record: MessageRecord) -> DialogueEvent:
    """The fold's view of a stored message."""
    return DialogueEvent(
        bytes.fromhex(record.message_id),
        bytes.fromhex(record.message_hash) if record.message_hash else b"\x00" * 32,
        Side.OURS if record.direction == "out" else Side.THEIRS,
        record.sent_at_ms,
        record.received_at_ms or record.sent_at_ms,
        record.kind,
        bytes.fromhex(record.body),
    )


@dataclass(slots=True)
class FoldStats:
    """How the cache answered: for benchmarks and tests, not for decisions."""

    full: int = 0  # folded from the first message
    extended: int = 0  # rows applied to a kept fold
    unchanged: int = 0  # the kept fold served as it was
    applied: int = 0  # messages applied, in either way


@dataclass(slots=True)
class _Fold:
    peer_identity: str
    dialogue: Dialogue
    last_ord: int
    last_ref: bytes | None
    count: int
    their_top_seq: int


class DialogueCache:
    """Folded dialogues by channel id, for one handle's store (one connection).

    The `Dialogue` returned is the cache's own and is extended in place by a later call
    for the same channel: use it (or the frozen views its queries return) before asking
    again, and never `apply` to it.
    """

    def __init__(self, messages: MessageRepository, ours: PublicIdentity) -> None:
        self._messages = messages
        self._ours = ours
        self._folds: dict[str, _Fold] = {}
        self.stats = FoldStats()

    def __repr__(self) -> str:
        return f"DialogueCache({len(self._folds)} channels)"

    def forget(self, channel_id: str) -> None:
        """Drop a channel's fold (it was removed; also safe at any time)."""
        self._folds.pop(channel_id, None)

    def dialogue(self, channel: ChannelRecord) -> Dialogue:
        """The dialogue state of `channel`: the fold of every message stored now."""
        fold = self._folds.get(channel.channel_id)
        same_peer = fold is not None and fold.peer_identity == channel.peer_identity
        if fold is not None and same_peer and self._extend(channel.channel_id, fold):
            return fold.dialogue
        return self._refold(channel)

    def _extend(self, channel_id: str, fold: _Fold) -> bool:
        """Apply the rows stored since `fold`; False when that would not be the full fold."""
        since = self._messages.stored_since(channel_id, fold.last_ord)
        if since.first_ref != fold.last_ref or since.count != fold.count + len(since.records):
            return False
        if not since.records:
            self.stats.unchanged += 1
            return True
        theirs = [r.seq for _o, _ref, r in since.records if r.direction == "in"]
        if theirs and min(theirs) <= fold.their_top_seq:
            return False  # stored out of their order: the re-slot reaches folded rows
        # Theirs above every folded seq: re-slotting the new rows among themselves is
        # the full re-slot's tail (the folded slots keep the same messages).
        self._apply(fold, [r for _o, _ref, r in since.records])
        fold.last_ord, fold.last_ref, _ = since.records[-1]
        fold.count = since.count
        fold.their_top_seq = max([fold.their_top_seq, *theirs])
        self.stats.extended += 1
        return True

    def _refold(self, channel: ChannelRecord) -> Dialogue:
        since = self._messages.stored_since(channel.channel_id, 0)
        rows = since.records
        theirs = PublicIdentity.decode(bytes.fromhex(channel.peer_identity))
        fold = _Fold(
            channel.peer_identity,
            Dialogue(self._ours, theirs),
            rows[-1][0] if rows else 0,
            rows[-1][1] if rows else None,
            len(rows),
            max((r.seq for _o, _ref, r in rows if r.direction == "in"), default=0),
        )
        self._apply(fold, [r for _o, _ref, r in rows])
        self._folds[channel.channel_id] = fold
        self.stats.full += 1
        return fold.dialogue

    def _apply(self, fold: _Fold, records: list[MessageRecord]) -> None:
        for record in in_seq_slots(records):
            if is_dialogue(record):
                fold.dialogue.apply(dialogue_event(record))
                self.stats.applied += 1

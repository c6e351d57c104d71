"""Notes with a precedence and an acknowledgement deadline; acknowledgements, holding
replies and escalation (`docs/dialogue.md`, "Urgent notes").

State machine of a note (per message id)::

    sent --ACK by the other side--> acknowledged            (final)
    sent --HOLD by the other side--> held --ACK--> acknowledged
    held --HOLD--> held (the latest expected-by time counts)

Illegal: acknowledging or holding an unknown message, a message that is not a note, a
side's own note; acknowledging twice; holding an acknowledged note.

A note with a deadline (`ack_within_ms > 0`) is *awaiting acknowledgement* until it is
acknowledged. Its deadline is `sent_at + ack_within` by the sender's clock; a holding
reply moves the worry to its `expected_by` if that is later. Past that time it is
*overdue*, and a note of ours that is overdue is *escalated* once.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from backchannel.dialogue.bodies import Ack, Hold, Note
from backchannel.dialogue.events import (
    DialogueEvent,
    IllegalTransition,
    KnownMessage,
    Side,
    short_id,
)
from backchannel.dialogue.kinds import Precedence

__all__ = [
    "Escalation", "HoldingReply", "NoteLedger", "NoteSummary", "PendingAck", "escalations_due",
]


@dataclass(frozen=True, slots=True)
class HoldingReply:
    """A holding reply: "received, cannot answer yet, expect an answer by ..."."""

    message_id: bytes  # the HOLD message
    side: Side  # who sent it
    expected_by_ms: int
    received_at_ms: int
    text: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PendingAck:
    """A note with a deadline, not yet acknowledged.

    Attributes:
        message_id: the note.
        side: who sent it (OURS: we await their acknowledgement; THEIRS: they await ours).
        precedence: its precedence.
        sent_at_ms: the sender's clock when it was sent.
        deadline_ms: `sent_at_ms + ack_within_ms`.
        hold: the latest holding reply to it, if any.
        worry_at_ms: when it becomes overdue: the deadline, or a later `expected_by`.
        overdue: whether `now_ms` is past `worry_at_ms`.
    """

    message_id: bytes
    side: Side
    precedence: Precedence
    sent_at_ms: int
    deadline_ms: int
    hold: HoldingReply | None
    worry_at_ms: int
    overdue: bool


@dataclass(frozen=True, slots=True)
class Escalation:
    """A note of ours whose deadline passed without acknowledgement: resend it on every
    relay, mark it overdue and run the configured command, once."""

    message_id: bytes
    precedence: Precedence
    sent_at_ms: int
    deadline_ms: int
    worry_at_ms: int


@dataclass(frozen=True, slots=True)
class NoteSummary:
    """A note as a periodic review counts it.

    Attributes:
        deadline_ms: its acknowledgement deadline (sender's clock), None if it has none.
        acked_at_ms: when its acknowledgement was stored (our clock), None if none.
        held: whether a holding reply came.
    """

    message_id: bytes
    side: Side
    precedence: Precedence
    sent_at_ms: int
    deadline_ms: int | None
    acked_at_ms: int | None
    held: bool


@dataclass(slots=True)
class _NoteEntry:
    message_id: bytes
    side: Side
    precedence: Precedence
    sent_at_ms: int
    ack_within_ms: int
    acked_at_ms: int | None = None
    ack_message_id: bytes | None = None
    hold: HoldingReply | None = None

    @property
    def deadline_ms(self) -> int | None:
        return self.sent_at_ms + self.ack_within_ms if self.ack_within_ms else None


class NoteLedger:
    """The notes of a channel and their acknowledgement state."""

    __slots__ = ("_notes",)

    def __init__(self) -> None:
        self._notes: dict[bytes, _NoteEntry] = {}

    def add_note(self, event: DialogueEvent, note: Note) -> None:
        """Record a note (always legal)."""
        self._notes[event.message_id] = _NoteEntry(
            event.message_id, event.side, note.precedence, event.sent_at_ms, note.ack_within_ms
        )

    def add_code_message(
        self, event: DialogueEvent, precedence: Precedence, ack_within_ms: int
    ) -> None:
        """Record a codebook message as a note with its entry's default precedence and
        deadline: it is acknowledged, held and escalated like one."""
        self._notes[event.message_id] = _NoteEntry(
            event.message_id, event.side, precedence, event.sent_at_ms, ack_within_ms
        )

    def knows(self, message_id: bytes) -> bool:
        return message_id in self._notes

    def _target(
        self, side: Side, message_id: bytes, known: KnownMessage | None, act: str
    ) -> _NoteEntry:
        if known is None:
            raise IllegalTransition(f"cannot {act} message {short_id(message_id)}: unknown message")
        entry = self._notes.get(message_id)
        if entry is None:
            raise IllegalTransition(
                f"cannot {act} message {short_id(message_id)}: it is not a note"
            )
        if entry.side is side:
            raise IllegalTransition(
                f"cannot {act} message {short_id(message_id)}: a side cannot {act} its own note"
            )
        if entry.acked_at_ms is not None:
            raise IllegalTransition(
                f"cannot {act} message {short_id(message_id)}: it is already acknowledged"
            )
        return entry

    def check_ack(self, side: Side, message_id: bytes, known: KnownMessage | None) -> None:
        """Check that `side` may acknowledge `message_id`.

        Raises:
            IllegalTransition: unknown message, not a note, `side`'s own note, or already
                acknowledged.
        """
        self._target(side, message_id, known, "acknowledge")

    def apply_ack(self, event: DialogueEvent, ack: Ack, known: KnownMessage | None) -> None:
        """Apply an acknowledgement, or raise `IllegalTransition` leaving the state as it was."""
        entry = self._target(event.side, ack.message_id, known, "acknowledge")
        entry.acked_at_ms = event.received_at_ms
        entry.ack_message_id = event.message_id

    def check_hold(self, side: Side, message_id: bytes, known: KnownMessage | None) -> None:
        """Check that `side` may send a holding reply to the note `message_id`.

        Raises:
            IllegalTransition: unknown message, not a note, `side`'s own note, or already
                acknowledged (a holding reply after the acknowledgement says nothing).
        """
        self._target(side, message_id, known, "hold")

    def apply_hold(self, event: DialogueEvent, hold: Hold, known: KnownMessage | None) -> None:
        """Apply a holding reply to a note, or raise `IllegalTransition` leaving the state."""
        entry = self._target(event.side, hold.message_id, known, "hold")
        entry.hold = HoldingReply(
            event.message_id, event.side, hold.expected_by_ms, event.received_at_ms, hold.text
        )

    def acknowledged_at(self, message_id: bytes) -> int | None:
        """When the note was acknowledged (our clock), or None."""
        entry = self._notes.get(message_id)
        return None if entry is None else entry.acked_at_ms

    def summaries(self) -> tuple[NoteSummary, ...]:
        """Every note with its deadline and acknowledgement, in stored order."""
        return tuple(
            NoteSummary(
                e.message_id, e.side, e.precedence, e.sent_at_ms, e.deadline_ms,
                e.acked_at_ms, e.hold is not None,
            )
            for e in self._notes.values()
        )

    def pending(self, now_ms: int, side: Side | None = None) -> tuple[PendingAck, ...]:
        """Notes with a deadline that are not acknowledged yet, oldest first.

        Args:
            now_ms: the current time (our clock).
            side: only notes sent by this side (None: both).

        Returns:
            One `PendingAck` per note, with `overdue` computed at `now_ms`.
        """
        out = []
        for entry in self._notes.values():
            deadline = entry.deadline_ms
            if deadline is None or entry.acked_at_ms is not None:
                continue
            if side is not None and entry.side is not side:
                continue
            worry = deadline if entry.hold is None else max(deadline, entry.hold.expected_by_ms)
            out.append(
                PendingAck(
                    entry.message_id,
                    entry.side,
                    entry.precedence,
                    entry.sent_at_ms,
                    deadline,
                    entry.hold,
                    worry,
                    now_ms > worry,
                )
            )
        out.sort(key=lambda p: (p.sent_at_ms, p.message_id))
        return tuple(out)


def escalations_due(
    pending: Iterable[PendingAck], now_ms: int, already_escalated: Set[bytes]
) -> list[Escalation]:
    """The escalations to perform now, each exactly once.

    Args:
        pending: `NoteLedger.pending` (or `Dialogue.pending_acks`) of our notes.
        now_ms: the current time (our clock).
        already_escalated: ids of the notes the client has already escalated.

    Returns:
        Our overdue notes not yet escalated, most urgent first (FLASH before PRIORITY
        before ROUTINE, then by how long they have been overdue).
    """
    due = [
        Escalation(p.message_id, p.precedence, p.sent_at_ms, p.deadline_ms, p.worry_at_ms)
        for p in pending
        if p.side is Side.OURS and p.worry_at_ms < now_ms and p.message_id not in already_escalated
    ]
    due.sort(key=lambda e: (-e.precedence, e.worry_at_ms, e.message_id))
    return due

"""The status board of a channel: everything a principal must see at a glance, as one
frozen value with a stable JSON form (`StatusBoard.to_dict`).

The dialogue layer fills what it knows (`Dialogue.board`); the client adds what only it
knows (relay reachability) beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from backchannel.dialogue.agenda import AgendaItem, AgendaRound
from backchannel.dialogue.clarify import Clarification
from backchannel.dialogue.codebook import CodeEntryVersion, CodeEntryView
from backchannel.dialogue.events import Anomaly, Side
from backchannel.dialogue.linetest import LineStatus
from backchannel.dialogue.notify import DutyView, Notification
from backchannel.dialogue.records import RecordVersion, RecordView
from backchannel.dialogue.redlines import RedLineVersion, RedLineView
from backchannel.dialogue.translations import AddedTranslation
from backchannel.dialogue.urgent import HoldingReply, PendingAck

__all__ = [
    "BOARD_FORMAT",
    "StatusBoard",
    "code_entry_json",
    "duty_json",
    "notification_json",
    "translation_json",
]

# Bumped when a key of `StatusBoard.to_dict` changes meaning or disappears (adding keys
# does not bump it).
BOARD_FORMAT: Final = 1

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class StatusBoard:
    """A channel's dialogue state at `now_ms`.

    Attributes:
        now_ms: the time the board was computed for.
        last_heard_from_ms: when we last stored a message from the other side (our clock).
        awaiting_their_ack: our notes with a deadline they have not acknowledged.
        awaiting_our_ack: their notes with a deadline we have not acknowledged.
        open_clarifications: requests not yet answered, in both directions.
        red_lines: both sides' red lines, with their acknowledgement state.
        next_round: the highest-numbered meeting round with agenda items, if any.
        records: every record and its versions.
        line: the line-test state.
        anomalies: messages the fold ignored because they broke the rules.
        codebook: every codebook entry, by number.
        translations: translations shared with TRANSLATION messages, by target id.
        duties: the notification duties (categories), by id.
        notifications: every notification and request under them, by event time, each
            with its status at `now_ms` (due, missed, notified in time, late).
    """

    now_ms: int
    last_heard_from_ms: int | None
    awaiting_their_ack: tuple[PendingAck, ...]
    awaiting_our_ack: tuple[PendingAck, ...]
    open_clarifications: tuple[Clarification, ...]
    red_lines: tuple[RedLineView, ...]
    next_round: AgendaRound | None
    records: tuple[RecordView, ...]
    line: LineStatus
    anomalies: tuple[Anomaly, ...]
    codebook: tuple[CodeEntryView, ...] = ()
    translations: tuple[AddedTranslation, ...] = ()
    duties: tuple[DutyView, ...] = ()
    notifications: tuple[Notification, ...] = ()

    @property
    def overdue(self) -> tuple[PendingAck, ...]:
        """Notes past their deadline without acknowledgement, ours first."""
        return tuple(p for p in self.awaiting_their_ack + self.awaiting_our_ack if p.overdue)

    @property
    def red_lines_awaiting_their_ack(self) -> tuple[RedLineView, ...]:
        return tuple(
            r for r in self.red_lines if r.owner is Side.OURS and r.awaiting_acknowledgement
        )

    @property
    def red_lines_awaiting_our_ack(self) -> tuple[RedLineView, ...]:
        return tuple(
            r for r in self.red_lines if r.owner is Side.THEIRS and r.awaiting_acknowledgement
        )

    def to_dict(self) -> Json:
        """A JSON-ready dict: ids as hex, times as ms since the epoch, enums as lowercase
        words. Its keys are stable (`BOARD_FORMAT`)."""
        return {
            "format": BOARD_FORMAT,
            "now_ms": self.now_ms,
            "last_heard_from_ms": self.last_heard_from_ms,
            "awaiting_their_ack": [_pending(p) for p in self.awaiting_their_ack],
            "awaiting_our_ack": [_pending(p) for p in self.awaiting_our_ack],
            "overdue": [p.message_id.hex() for p in self.overdue],
            "open_clarifications": [_clarification(c) for c in self.open_clarifications],
            "red_lines": [_red_line(r) for r in self.red_lines],
            "next_round": None if self.next_round is None else _round(self.next_round),
            "records": [_record(r) for r in self.records],
            "codebook": [code_entry_json(e) for e in self.codebook],
            "translations": [translation_json(t) for t in self.translations],
            "duties": [duty_json(d) for d in self.duties],
            "notifications": [notification_json(n, self.now_ms) for n in self.notifications],
            "line": _line(self.line),
            "anomalies": [_anomaly(a) for a in self.anomalies],
        }


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _hold(hold: HoldingReply | None) -> Json | None:
    if hold is None:
        return None
    return {
        "message_id": hold.message_id.hex(),
        "expected_by_ms": hold.expected_by_ms,
        "received_at_ms": hold.received_at_ms,
        "text": hold.text,
    }


def _pending(p: PendingAck) -> Json:
    return {
        "message_id": p.message_id.hex(),
        "sent_by": p.side.value,
        "precedence": p.precedence.name.lower(),
        "sent_at_ms": p.sent_at_ms,
        "deadline_ms": p.deadline_ms,
        "worry_at_ms": p.worry_at_ms,
        "overdue": p.overdue,
        "hold": _hold(p.hold),
    }


def _clarification(c: Clarification) -> Json:
    return {
        "request_id": c.request_id.hex(),
        "asked_by": c.asked_by.value,
        "target_id": c.target_id.hex(),
        "target_hash": c.target_hash.hex(),
        "question": c.question,
        "asked_at_ms": c.asked_at_ms,
        "hold": _hold(c.hold),
        "answer_id": _hex(c.answer_id),
        "answer": c.answer,
        "answered_at_ms": c.answered_at_ms,
    }


def _red_line_version(v: RedLineVersion) -> Json:
    return {
        "version": v.version,
        "title": v.title,
        "text": v.text,
        "message_id": v.message_id.hex(),
        "declared_at_ms": v.declared_at_ms,
        "acknowledged_at_ms": v.acknowledged_at_ms,
    }


def _red_line(r: RedLineView) -> Json:
    return {
        "redline_id": r.redline_id.hex(),
        "owner": r.owner.value,
        "version": r.latest.version,
        "title": r.latest.title,
        "awaiting_acknowledgement": r.awaiting_acknowledgement,
        "versions": [_red_line_version(v) for v in r.versions],
    }


def _item(i: AgendaItem) -> Json:
    return {
        "item_id": i.item_id.hex(),
        "round": i.round,
        "proposed_by": i.proposed_by.value,
        "title": i.title,
        "detail": i.detail,
        "proposed_at_ms": i.proposed_at_ms,
        "sent_at_ms": i.sent_at_ms,
        "status": i.status.value,
        "decided_at_ms": i.decided_at_ms,
        "reason": i.reason,
    }


def _round(r: AgendaRound) -> Json:
    return {
        "round": r.round,
        "items": [_item(i) for i in r.items],
        "agreed": [i.item_id.hex() for i in r.agreed],
    }


def _record_version(v: RecordVersion) -> Json:
    return {
        "version": v.version,
        "proposed_by": v.proposed_by.value,
        "status": v.status.value,
        "title": v.statement.title,
        "authoritative_language": v.statement.authoritative.language,
        "languages": [lv.language for lv in v.statement.versions],
        "statement_hash": v.statement_hash.hex(),
        "message_id": v.message_id.hex(),
        "proposed_at_ms": v.proposal.signed_at_ms,
        "cosigned_at_ms": None if v.cosignature is None else v.cosignature.signed_at_ms,
    }


def _record(r: RecordView) -> Json:
    return {
        "record_id": r.record_id.hex(),
        "owner": r.owner.value,
        "latest_version": r.latest.version,
        "status": r.latest.status.value,
        "versions": [_record_version(v) for v in r.versions],
    }


def _code_version(v: CodeEntryVersion) -> Json:
    p = v.proposal
    return {
        "version": p.version,
        "number": p.number,
        "code_word": p.code_word,
        "parameters": list(p.parameters),
        "precedence": None if p.precedence is None else p.precedence.name.lower(),
        "ack_within_ms": p.ack_within_ms,
        "texts": {t.language: t.text for t in p.texts},
        "proposed_at_ms": v.proposed_at_ms,
        "accepted_at_ms": v.accepted_at_ms,
    }


def code_entry_json(e: CodeEntryView) -> Json:
    """One codebook entry as the board's JSON shows it."""
    current = e.current
    awaiting = e.awaiting_acceptance
    shown = (current or e.latest).proposal
    return {
        "entry_id": e.entry_id.hex(),
        "owner": e.owner.value,
        "number": shown.number,
        "code_word": shown.code_word,
        "status": e.status.value,
        "current_version": None if current is None else current.version,
        "awaiting_acceptance": None if awaiting is None else awaiting.version,
        "withdrawn_by": sorted(side.value for side in e.withdrawn_by),
        "withdrawn_at_ms": e.withdrawn_at_ms,
        "versions": [_code_version(v) for v in e.versions],
    }


def translation_json(t: AddedTranslation) -> Json:
    """A translation shared after the fact, as the board's JSON shows it."""
    return {
        "message_id": t.message_id.hex(),
        "target_id": t.target_id.hex(),
        "translated_by": t.side.value,
        **t.translation.to_dict(),
        "shared_at_ms": t.at_ms,
    }


def duty_json(d: DutyView) -> Json:
    """A notification duty as the board's JSON shows it."""
    shown = d.current or d.latest
    return {
        "duty_id": d.duty_id.hex(),
        "owner": d.owner.value,
        "title": shown.title,
        "rule": shown.rule.name.lower(),
        "window_ms": shown.window_ms,
        "describe": shown.describe(),
        "current_version": None if d.current is None else d.current.version,
        "latest_version": d.latest.version,
        "status": "agreed" if d.current is not None else "proposed",
    }


def notification_json(n: Notification, now_ms: int) -> Json:
    """A notification or request, with its status at `now_ms`."""
    return {
        "message_id": n.message_id.hex(),
        "duty_id": n.duty_id.hex(),
        "version": n.version,
        "owed_by": n.owed_by.value,
        "requested": n.requested,
        "event_at_ms": n.event_at_ms,
        "deadline_ms": n.deadline_ms,
        "notified_by": None if n.notified_by is None else n.notified_by.hex(),
        "notified_sent_at_ms": n.notified_at_ms,
        "status": n.status(now_ms).value,
        "text": n.text,
    }


def _line(s: LineStatus) -> Json:
    return {
        "state": s.state.value,
        "last_test_sent_at_ms": s.last_test_sent_at_ms,
        "last_answered_at_ms": s.last_answered_at_ms,
        "round_trip_ms": s.round_trip_ms,
        "next_test_due_at_ms": s.next_test_due_at_ms,
        "test_due": s.test_due,
        "unanswered_theirs": [t.hex() for t in s.unanswered_theirs],
    }


def _anomaly(a: Anomaly) -> Json:
    return {
        "message_id": a.message_id.hex(),
        "sent_by": a.side.value,
        "kind": a.kind,
        "at_ms": a.at_ms,
        "reason": a.reason,
    }

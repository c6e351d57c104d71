"""A periodic channel review (the Incidents at Sea agreement's annual meeting): what a
channel carried in a period, counted from the dialogue state, as JSON and Markdown.

Pure: the period and `now_ms` are parameters. A message belongs to the period by its
sender's clock (`sent_at_ms`), which both sides hold alike, so two readouts of the same
channel and period count the same messages; what depends on this side's clock (when an
acknowledgement was stored, what is overdue now) is marked so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from backchannel.dialogue.agreed import format_utc
from backchannel.dialogue.events import Side
from backchannel.dialogue.kinds import DialogueKind
from backchannel.dialogue.notify import NotificationStatus
from backchannel.dialogue.records import RecordStatus
from backchannel.dialogue.state import Dialogue
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.message import MessageKind

__all__ = ["ChannelReview", "review_channel"]

# What the review names each kind, in the order it lists them.
_ACTS: dict[int, str] = {
    int(MessageKind.NOTE): "notes",
    int(DialogueKind.ACK): "acknowledgements",
    int(DialogueKind.HOLD): "holding replies",
    int(DialogueKind.CLARIFY): "clarification requests",
    int(DialogueKind.ANSWER): "answers",
    int(DialogueKind.REDLINE): "red lines declared",
    int(DialogueKind.REDLINE_ACK): "red lines acknowledged",
    int(DialogueKind.AGENDA_PROPOSE): "agenda items proposed",
    int(DialogueKind.AGENDA_ACCEPT): "agenda items accepted",
    int(DialogueKind.AGENDA_DECLINE): "agenda items declined",
    int(DialogueKind.RECORD_PROPOSE): "records proposed",
    int(DialogueKind.RECORD_SIGN): "records co-signed",
    int(DialogueKind.CODEBOOK_SEND): "codebook messages",
    int(DialogueKind.TRANSLATION): "translations shared",
    int(DialogueKind.NOTIFY): "notifications",
    int(DialogueKind.NOTIFY_REQUEST): "notifications requested",
    int(DialogueKind.LINETEST): "line tests",
}


@dataclass(frozen=True, slots=True)
class ChannelReview:
    """What a channel carried from `since_ms` to `until_ms` (sender's clocks).

    Attributes:
        sent: per act (`_ACTS` names), how many each side sent: {"notes": {"ours": 3, ...}}.
        deadlines: notes with an acknowledgement deadline, by outcome and by sender:
            acknowledged_in_time, acknowledged_late, unacknowledged_overdue, pending.
        late: ids (hex) of the notes acknowledged late or still overdue.
        clarifications: asked and answered (by who asked).
        notifications: duty instances (notifications and requests sent in the period)
            by status (in time, late, missed, due).
        agreed_records: the titles of the records co-signed in the period.
        anomalies: messages the fold ignored in the period.
    """

    since_ms: int
    until_ms: int
    now_ms: int
    sent: dict[str, dict[str, int]] = field(default_factory=dict)
    deadlines: dict[str, dict[str, int]] = field(default_factory=dict)
    late: tuple[str, ...] = ()
    clarifications: dict[str, dict[str, int]] = field(default_factory=dict)
    notifications: dict[str, int] = field(default_factory=dict)
    agreed_records: tuple[str, ...] = ()
    anomalies: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "since": format_utc(self.since_ms),
            "until": format_utc(self.until_ms),
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "sent": self.sent,
            "deadlines": self.deadlines,
            "late": list(self.late),
            "clarifications": self.clarifications,
            "notifications": self.notifications,
            "agreed_records": list(self.agreed_records),
            "anomalies": self.anomalies,
        }

    def to_markdown(self, ours: str = "us", theirs: str = "them") -> str:
        """A readout for people. Names are the caller's (escape them before printing)."""
        lines = [
            f"# Channel review, {format_utc(self.since_ms)} to {format_utc(self.until_ms)}",
            "",
            "Counted by each message's sending time; acknowledgement times by this side's "
            "clock.",
            "",
            "## Sent",
            "",
            f"| | {ours} | {theirs} |",
            "|---|---|---|",
        ]
        for act, by in self.sent.items():
            lines.append(f"| {act} | {by.get('ours', 0)} | {by.get('theirs', 0)} |")
        lines += ["", "## Acknowledgement deadlines", "",
                  f"| outcome | notes of {ours} | notes of {theirs} |",
                  "|---|---|---|"]  # fmt: skip
        for outcome, by in self.deadlines.items():
            lines.append(f"| {outcome.replace('_', ' ')} | {by.get('ours', 0)} | "
                         f"{by.get('theirs', 0)} |")  # fmt: skip
        if self.late:
            lines += ["", "Late or overdue: " + ", ".join(self.late)]
        lines += ["", "## Clarifications", "",
                  f"| | asked by {ours} | asked by {theirs} |", "|---|---|---|"]  # fmt: skip
        for what, by in self.clarifications.items():
            lines.append(f"| {what} | {by.get('ours', 0)} | {by.get('theirs', 0)} |")
        lines += ["", "## Notification duties", ""]
        if self.notifications:
            lines += [f"- {status.replace('_', ' ')}: {count}"
                      for status, count in self.notifications.items()]  # fmt: skip
        else:
            lines.append("None in the period.")
        lines += ["", "## Agreed", ""]
        lines += [f"- {title}" for title in self.agreed_records] or ["No record co-signed."]
        if self.anomalies:
            lines += ["", f"{self.anomalies} message(s) broke the dialogue's rules and were "
                          "ignored."]  # fmt: skip
        return "\n".join(lines) + "\n"


def _side(side: Side) -> str:
    return side.value


def review_channel(dialogue: Dialogue, since_ms: int, until_ms: int, now_ms: int) -> ChannelReview:
    """The review of `dialogue` for messages sent in [since_ms, until_ms).

    Raises:
        LocalProtocolError: the period is empty or reversed.
    """
    if not 0 <= since_ms < until_ms:
        raise LocalProtocolError("a review's period starts before it ends")

    def within(ms: int) -> bool:
        return since_ms <= ms < until_ms

    counts: dict[str, Counter[str]] = {name: Counter() for name in _ACTS.values()}
    for known in dialogue.known_messages():
        name = _ACTS.get(known.kind)
        if name is not None and within(known.sent_at_ms):
            counts[name][_side(known.side)] += 1
    sent = {name: dict(c) for name, c in counts.items() if c}

    outcomes: dict[str, Counter[str]] = {
        k: Counter() for k in ("acknowledged_in_time", "acknowledged_late",
                               "unacknowledged_overdue", "pending")
    }  # fmt: skip
    late: list[str] = []
    for note in dialogue.note_summaries():
        if note.deadline_ms is None or not within(note.sent_at_ms):
            continue
        who = _side(note.side)
        if note.acked_at_ms is not None:
            in_time = note.acked_at_ms <= note.deadline_ms
            outcomes["acknowledged_in_time" if in_time else "acknowledged_late"][who] += 1
            if not in_time:
                late.append(note.message_id.hex())
        elif now_ms > note.deadline_ms:
            outcomes["unacknowledged_overdue"][who] += 1
            late.append(note.message_id.hex())
        else:
            outcomes["pending"][who] += 1

    asked: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    for c in dialogue.clarifications(open_only=False):
        request = dialogue.known(c.request_id)
        if request is None or not within(request.sent_at_ms):
            continue
        asked[_side(c.asked_by)] += 1
        if not c.is_open:
            answered[_side(c.asked_by)] += 1

    statuses: Counter[str] = Counter()
    for n in dialogue.notifications():
        # By when the notification (or the request for it) was sent, like every message.
        opened = dialogue.known(n.message_id)
        if opened is not None and within(opened.sent_at_ms):
            statuses[n.status(now_ms).value] += 1
    order = [s.value for s in NotificationStatus]

    agreed = tuple(
        v.statement.title
        for r in dialogue.records()
        for v in r.versions
        if v.status is RecordStatus.AGREED and v.cosignature is not None
        and within(v.cosignature.signed_at_ms)
    )  # fmt: skip
    anomalies = 0
    for anomaly in dialogue.anomalies:
        stored = dialogue.known(anomaly.message_id)
        anomalies += stored is not None and within(stored.sent_at_ms)
    return ChannelReview(
        since_ms, until_ms, now_ms, sent,
        {k: dict(v) for k, v in outcomes.items()}, tuple(late),
        {"asked": dict(asked), "answered": dict(answered)},
        {s: statuses[s] for s in order if statuses[s]}, agreed, anomalies,
    )  # fmt: skip

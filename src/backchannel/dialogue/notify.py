"""Notification duties (`docs/dialogue.md` §4.9): agreed categories, notifications, and the
duty each one tracks (the 1972 Incidents at Sea agreement's advance notice "within set
times").

A *duty* is a category both sides agree to, proposed and accepted like a codebook entry:
"missile test: notify at least 24 h before" (rule BEFORE), "incident involving our
vessels: notify within 1 h" (rule WITHIN). Once accepted it binds both sides. Then:

- NOTIFY: a side notifies an event of the category, with the event's time; it is in time
  if sent (the sender's clock, which both sides know alike) by the deadline, late if not;
- NOTIFY_REQUEST: a side says an event of the category happened (or is due) and the other
  side owes its notification: the request is *due* until its deadline, *missed* after it,
  *notified in time* or *late* once a NOTIFY answers it. A missed request of ours is
  escalated like an overdue note (`Dialogue.duty_escalations`).

The deadline is `event_at - window` for BEFORE, `event_at + window` for WITHIN.

Fold rules (no message crossing another can break them): a proposal is its owner's, the
version after the latest; an acceptance is the other side's, of a version not yet
accepted; a notification or request names an accepted version; a notification answers at
most one request of the other side, not yet answered, of the same duty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import ClassVar, Final

from backchannel.dialogue.events import DialogueEvent, IllegalTransition, Side, short_id
from backchannel.dialogue.kinds import (
    ID_SIZE,
    MAX_ACK_WITHIN_MS,
    MAX_REASON_BYTES,
    MAX_TEXT_BYTES,
    MAX_TIMESTAMP_MS,
    MAX_TITLE_BYTES,
    MAX_VERSION,
    DialogueKind,
    Precedence,
)
from backchannel.dialogue.text import check_id, check_line, check_text, check_time
from backchannel.dialogue.translations import Languages, read_languages, write_languages
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "ESCALATION_PRECEDENCE",
    "NO_REQUEST",
    "DutyAccept",
    "DutyPropose",
    "DutyRule",
    "DutyView",
    "Notification",
    "NotificationBook",
    "NotificationStatus",
    "Notify",
    "NotifyRequest",
]

# A NOTIFY that answers no request carries 16 zero bytes where the request id goes.
NO_REQUEST: Final = bytes(ID_SIZE)
# A missed notification is escalated as a PRIORITY matter (the escalation command is told).
ESCALATION_PRECEDENCE: Final = Precedence.PRIORITY


class DutyRule(IntEnum):
    BEFORE = 1
    """Notify at least `window` before the event."""
    WITHIN = 2
    """Notify within `window` after the event."""


def _version(value: int, what: str) -> None:
    if not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise LocalProtocolError(f"{what} must be between 1 and {MAX_VERSION}, not {value}")


@dataclass(frozen=True, slots=True)
class DutyPropose:
    """A notification category, or a new version of one. Layout: duty_id 16, version u32
    (from 1), rule u8 (1 BEFORE, 2 WITHIN), window_ms u64 (1 ms to 30 days), title
    (u16 + UTF-8, one line), text (u16 + UTF-8, 0 to 1 KiB: what counts as an event)."""

    KIND: ClassVar[int] = DialogueKind.DUTY_PROPOSE
    duty_id: bytes
    version: int
    rule: DutyRule
    window_ms: int
    title: str = field(repr=False)
    text: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        check_id(self.duty_id, ID_SIZE, "duty id")
        _version(self.version, "duty version")
        if self.rule not in {int(r) for r in DutyRule}:
            raise LocalProtocolError(f"unknown duty rule {self.rule}")
        object.__setattr__(self, "rule", DutyRule(self.rule))
        check_time(self.window_ms, MAX_ACK_WITHIN_MS, "notification window")
        if self.window_ms == 0:
            raise LocalProtocolError("a notification window is at least 1 ms")
        check_line(self.title, MAX_TITLE_BYTES, "duty title")
        check_text(self.text, MAX_REASON_BYTES, "duty text", allow_empty=True)

    def describe(self) -> str:
        """The rule in words: "notify at least 24 h before" (hours, minutes or ms)."""
        window = _duration(self.window_ms)
        if self.rule is DutyRule.BEFORE:
            return f"notify at least {window} before"
        return f"notify within {window}"

    def deadline(self, event_at_ms: int) -> int:
        if self.rule is DutyRule.BEFORE:
            return max(event_at_ms - self.window_ms, 0)
        return event_at_ms + self.window_ms

    def encode(self) -> bytes:
        w = Writer().fixed(self.duty_id, ID_SIZE).u32(self.version).u8(self.rule)
        return w.u64(self.window_ms).text16(self.title).text16(self.text).getvalue()

    @classmethod
    def read(cls, r: Reader) -> DutyPropose:
        duty_id, version, rule = r.fixed(ID_SIZE), r.u32(), r.u8()
        if rule not in {int(x) for x in DutyRule}:
            raise RemoteProtocolError(f"unknown duty rule {rule}")
        window = r.u64()
        return cls(duty_id, version, DutyRule(rule), window, r.text16(MAX_TITLE_BYTES),
                   r.text16(MAX_REASON_BYTES))  # fmt: skip


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


@dataclass(frozen=True, slots=True)
class DutyAccept:
    """The other side accepts one version of a duty. Layout: duty_id 16, version u32."""

    KIND: ClassVar[int] = DialogueKind.DUTY_ACCEPT
    duty_id: bytes
    version: int

    def __post_init__(self) -> None:
        check_id(self.duty_id, ID_SIZE, "duty id")
        _version(self.version, "duty version")

    def encode(self) -> bytes:
        return Writer().fixed(self.duty_id, ID_SIZE).u32(self.version).getvalue()

    @classmethod
    def read(cls, r: Reader) -> DutyAccept:
        return cls(r.fixed(ID_SIZE), r.u32())


@dataclass(frozen=True, slots=True)
class Notify:
    """A notification. Layout: duty_id 16, version u32, event_at_ms u64, request_id 16
    (zeros: none), text (u16 + UTF-8, 1 to 8 KiB), then, optionally, a language block."""

    KIND: ClassVar[int] = DialogueKind.NOTIFY
    duty_id: bytes
    version: int
    event_at_ms: int
    text: str = field(repr=False)
    request_id: bytes = NO_REQUEST
    languages: Languages | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_id(self.duty_id, ID_SIZE, "duty id")
        _version(self.version, "duty version")
        check_time(self.event_at_ms, MAX_TIMESTAMP_MS, "event time")
        check_id(self.request_id, ID_SIZE, "request id")
        check_text(self.text, MAX_TEXT_BYTES, "notification text")
        if self.languages is not None:
            if not isinstance(self.languages, Languages):
                raise LocalProtocolError("a body's translations are a Languages block")
            self.languages.check_for(titled=False, text_bound=MAX_TEXT_BYTES,
                                     original_size=len(self.text.encode()))  # fmt: skip

    def encode(self) -> bytes:
        w = Writer().fixed(self.duty_id, ID_SIZE).u32(self.version).u64(self.event_at_ms)
        w.fixed(self.request_id, ID_SIZE).text16(self.text)
        return write_languages(w, self.languages).getvalue()

    @classmethod
    def read(cls, r: Reader) -> Notify:
        duty_id, version, event_at = r.fixed(ID_SIZE), r.u32(), r.u64()
        request, text = r.fixed(ID_SIZE), r.text16(MAX_TEXT_BYTES)
        return cls(duty_id, version, event_at, text, request, read_languages(r))


@dataclass(frozen=True, slots=True)
class NotifyRequest:
    """The other side owes a notification of an event: the request id is this message's id.
    Layout: duty_id 16, version u32, event_at_ms u64, text (u16 + UTF-8, 0 to 1 KiB)."""

    KIND: ClassVar[int] = DialogueKind.NOTIFY_REQUEST
    duty_id: bytes
    version: int
    event_at_ms: int
    text: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        check_id(self.duty_id, ID_SIZE, "duty id")
        _version(self.version, "duty version")
        check_time(self.event_at_ms, MAX_TIMESTAMP_MS, "event time")
        check_text(self.text, MAX_REASON_BYTES, "request text", allow_empty=True)

    def encode(self) -> bytes:
        w = Writer().fixed(self.duty_id, ID_SIZE).u32(self.version).u64(self.event_at_ms)
        return w.text16(self.text).getvalue()

    @classmethod
    def read(cls, r: Reader) -> NotifyRequest:
        duty_id, version, event_at = r.fixed(ID_SIZE), r.u32(), r.u64()
        return cls(duty_id, version, event_at, r.text16(MAX_REASON_BYTES))


class NotificationStatus(Enum):
    DUE = "due"
    """Requested, not yet notified, the deadline still ahead."""
    MISSED = "missed"
    """Requested, not notified, the deadline passed."""
    IN_TIME = "notified_in_time"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class DutyView:
    """A duty and its versions: (proposal, accepted?) oldest first."""

    duty_id: bytes
    owner: Side
    versions: tuple[DutyPropose, ...] = field(repr=False)
    accepted: frozenset[int] = frozenset()

    @property
    def current(self) -> DutyPropose | None:
        agreed = [v for v in self.versions if v.version in self.accepted]
        return agreed[-1] if agreed else None

    @property
    def latest(self) -> DutyPropose:
        return self.versions[-1]


@dataclass(frozen=True, slots=True)
class Notification:
    """One duty instance: a notification, a request for one, or both.

    Attributes:
        message_id: the NOTIFY_REQUEST's id, else the NOTIFY's.
        duty_id, version: the duty version it is under.
        owed_by: the side that must notify.
        event_at_ms: the event's time (the request's, else the notification's).
        deadline_ms: by when the notification is due (the sender's clock).
        requested: whether the other side asked for it (NOTIFY_REQUEST).
        notified_by: the NOTIFY's id, if one came.
        notified_at_ms: the NOTIFY's `sent_at` (the notifier's clock).
        text: the notification's text, else the request's.
    """

    message_id: bytes
    duty_id: bytes
    version: int
    owed_by: Side
    event_at_ms: int
    deadline_ms: int
    requested: bool
    notified_by: bytes | None = None
    notified_at_ms: int | None = None
    text: str = field(default="", repr=False)

    def status(self, now_ms: int) -> NotificationStatus:
        if self.notified_at_ms is not None:
            if self.notified_at_ms <= self.deadline_ms:
                return NotificationStatus.IN_TIME
            return NotificationStatus.LATE
        return NotificationStatus.DUE if now_ms <= self.deadline_ms else NotificationStatus.MISSED


class NotificationBook:
    """Every duty of a channel and every notification and request under them."""

    __slots__ = ("_duties", "_items")

    def __init__(self) -> None:
        self._duties: dict[bytes, DutyView] = {}
        self._items: dict[bytes, Notification] = {}

    # -- checks -----------------------------------------------------------------------

    def check_propose(self, side: Side, body: DutyPropose) -> None:
        """Raises IllegalTransition: the other side's duty, or not the next version."""
        duty = self._duties.get(body.duty_id)
        name = short_id(body.duty_id)
        if duty is not None and duty.owner is not side:
            raise IllegalTransition(f"cannot propose duty {name}: it is not theirs")
        latest = 0 if duty is None else duty.latest.version
        if body.version != latest + 1:
            raise IllegalTransition(
                f"cannot propose version {body.version} of duty {name}: the next is {latest + 1}"
            )

    def check_accept(self, side: Side, body: DutyAccept, *, own: bool) -> None:
        """Raises IllegalTransition: unknown, one's own, already accepted, or (own) not the
        latest version."""
        duty = self._duties.get(body.duty_id)
        name = short_id(body.duty_id)
        if duty is None or not 1 <= body.version <= len(duty.versions):
            raise IllegalTransition(f"cannot accept version {body.version} of duty {name}: unknown")
        if duty.owner is side:
            raise IllegalTransition(f"cannot accept duty {name}: its owner proposed it")
        if body.version in duty.accepted:
            raise IllegalTransition(f"cannot accept duty {name}: version {body.version} "
                                    "is already accepted")  # fmt: skip
        if own and body.version != duty.latest.version:
            raise IllegalTransition(f"cannot accept version {body.version} of duty {name}: "
                                    f"version {duty.latest.version} replaces it")  # fmt: skip

    def _agreed(self, duty_id: bytes, version: int, *, own: bool) -> DutyPropose:
        duty = self._duties.get(duty_id)
        name = short_id(duty_id)
        if duty is None or not 1 <= version <= len(duty.versions):
            raise IllegalTransition(f"duty {name} version {version} is unknown")
        if version not in duty.accepted:
            raise IllegalTransition(f"duty {name} version {version} is not accepted by both sides")
        current = duty.current
        if own and current is not None and current.version != version:
            raise IllegalTransition(f"duty {name}: the current version is {current.version}")
        return duty.versions[version - 1]

    def check_notify(self, side: Side, body: Notify, *, own: bool) -> DutyPropose:
        """Raises IllegalTransition: not an agreed version (own: not the current one), or
        a request that is unknown, the notifier's own, of another duty, or answered."""
        proposal = self._agreed(body.duty_id, body.version, own=own)
        if body.request_id != NO_REQUEST:
            item = self._items.get(body.request_id)
            name = short_id(body.request_id)
            if item is None or not item.requested:
                raise IllegalTransition(f"cannot answer request {name}: unknown request")
            if item.owed_by is not side:
                raise IllegalTransition(f"cannot answer request {name}: it is owed by the "
                                        "other side")  # fmt: skip
            if item.duty_id != body.duty_id:
                raise IllegalTransition(f"cannot answer request {name}: it is of another duty")
            if item.notified_by is not None:
                raise IllegalTransition(f"cannot answer request {name}: already notified")
        return proposal

    def check_request(self, body: NotifyRequest, *, own: bool) -> DutyPropose:
        """Raises IllegalTransition: not an agreed version (own: not the current one)."""
        return self._agreed(body.duty_id, body.version, own=own)

    # -- the fold ---------------------------------------------------------------------

    def apply_propose(self, event: DialogueEvent, body: DutyPropose) -> None:
        self.check_propose(event.side, body)
        duty = self._duties.get(body.duty_id)
        if duty is None:
            self._duties[body.duty_id] = DutyView(body.duty_id, event.side, (body,))
        else:
            self._duties[body.duty_id] = DutyView(
                duty.duty_id, duty.owner, (*duty.versions, body), duty.accepted
            )

    def apply_accept(self, event: DialogueEvent, body: DutyAccept) -> None:
        self.check_accept(event.side, body, own=False)
        duty = self._duties[body.duty_id]
        self._duties[body.duty_id] = DutyView(
            duty.duty_id, duty.owner, duty.versions, duty.accepted | {body.version}
        )

    def apply_notify(self, event: DialogueEvent, body: Notify) -> None:
        proposal = self.check_notify(event.side, body, own=False)
        if body.request_id != NO_REQUEST:
            item = self._items[body.request_id]
            self._items[body.request_id] = Notification(
                item.message_id, item.duty_id, item.version, item.owed_by, item.event_at_ms,
                item.deadline_ms, True, event.message_id, event.sent_at_ms, body.text,
            )  # fmt: skip
            return
        self._items[event.message_id] = Notification(
            event.message_id, body.duty_id, body.version, event.side, body.event_at_ms,
            proposal.deadline(body.event_at_ms), False, event.message_id, event.sent_at_ms,
            body.text,
        )  # fmt: skip

    def apply_request(self, event: DialogueEvent, body: NotifyRequest) -> None:
        proposal = self.check_request(body, own=False)
        self._items[event.message_id] = Notification(
            event.message_id, body.duty_id, body.version, event.side.other, body.event_at_ms,
            proposal.deadline(body.event_at_ms), True, text=body.text,
        )  # fmt: skip

    # -- queries ----------------------------------------------------------------------

    def duties(self) -> tuple[DutyView, ...]:
        return tuple(sorted(self._duties.values(), key=lambda d: d.duty_id))

    def duty(self, duty_id: bytes) -> DutyView | None:
        return self._duties.get(duty_id)

    def notifications(self) -> tuple[Notification, ...]:
        """Every duty instance, by event time then id (the same order on both sides)."""
        return tuple(sorted(self._items.values(), key=lambda n: (n.event_at_ms, n.message_id)))

    def missed(self, now_ms: int) -> tuple[Notification, ...]:
        """Requested notifications whose deadline passed without one, owed by either
        side: what this side escalates (each once)."""
        return tuple(
            n for n in self.notifications()
            if n.requested and n.status(now_ms) is NotificationStatus.MISSED
        )  # fmt: skip

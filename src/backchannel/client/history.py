"""A channel's history: every message both ways, each dialogue act in its place.

Pure: built from the channel's stored messages (in stored order, the order the dialogue
fold uses, `MessageRepository.in_stored_order`), the fold over them and the forks seen;
no I/O, no clock. `Principal.history` feeds it from the store.

What is shown, and why:

- notes and every dialogue act (`DialogueKind`), in the order this side stored them: a
  causal order seen from here (an answer comes after the question it answers), which the
  senders' clocks, possibly wrong, would not guarantee;
- receipts are not entries: they are the `delivered_at_ms` and `read_at_ms` of the
  message they concern; pairing messages (hello, move) and fork notices are the channel's
  own machinery, and a fork is shown as a `HistoryFork` mark where it showed;
- a `HistoryGap` mark where the counterpart's sequence numbers skip (a message not yet
  received, or lost); sequence numbers count every message, receipts included, so a gap
  may be of receipts only, and says so.

Ids are whole hex message ids; a prefix of at least 4 digits names the message to `ack`,
`hold`, `clarify`, `answer` and `read` (`StrategicChannel.resolve`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from backchannel.client.duties import dialogue_of
from backchannel.client.errors import ClientError, UnknownReference
from backchannel.client.forks import ForkRecord
from backchannel.client.records import ChannelRecord, MessageRecord
from backchannel.dialogue import (
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Clarify,
    Dialogue,
    Hold,
    LineTestReply,
    Note,
    Precedence,
    RecordPropose,
    RecordSign,
    RedLine,
    RedLineAck,
    Translate,
    decode_body,
)
from backchannel.dialogue.bodies import versions_of
from backchannel.dialogue.kinds import DIALOGUE_KIND_FIRST, DialogueKind
from backchannel.dialogue.translations import AddedTranslation, TextVersion
from backchannel.protocol.e2e.keys import PublicIdentity
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.message import MessageKind

__all__ = [
    "HistoryEntry",
    "HistoryFork",
    "HistoryGap",
    "HistoryItem",
    "HistoryPage",
    "build_history",
]


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One message of the channel, as the history shows it.

    Attributes:
        message_id: the whole hex id; any prefix of 4 digits or more names it in commands.
        direction: "out" (ours) or "in" (theirs).
        seq: the sender's sequence number (it counts receipts too, so it skips).
        act: "note", or the dialogue kind's name in lower case ("hold", "redline_ack",
            ...); "unknown" for a kind of a later version.
        at_ms: when this side stored it, on our clock (ours: sealed; theirs: received).
        sent_at_ms: the sender's clock.
        title: a red line's, agenda item's or record's title.
        text: a note, question, answer, holding reply, red line or reason, as sent.
        target_id: the message, request, agenda item or line test this act answers.
        subject_id: the red line or record a red-line or record act is about.
        version: the red line's or record's version.
        round: the agenda round.
        precedence, ack_within_ms: a note's (`Precedence`, 0 for no deadline).
        expected_by_ms: a holding reply's promised time.
        delivered_at_ms, read_at_ms: receipts for ours (0: none yet); for theirs, when
            this side read it (notes only).
        acknowledged_at_ms: a note's acknowledgement (our clock), 0 if none.
        answered_at_ms: a line test's answer (when this side stored it), 0 if none.
        stored_on: for ours, the relays that stored it.
        anomaly: why the dialogue fold ignored this message ("" if it did not).
        versions: its texts side by side, when it carries translations or the receiver
            shared one (`dialogue.TextVersion`, the authoritative first); else empty.
    """

    message_id: str
    direction: str
    seq: int
    act: str
    at_ms: int
    sent_at_ms: int
    title: str = ""
    text: str = ""
    target_id: str = ""
    subject_id: str = ""
    version: int = 0
    round: int = 0
    precedence: int = Precedence.ROUTINE
    ack_within_ms: int = 0
    expected_by_ms: int = 0
    delivered_at_ms: int = 0
    read_at_ms: int = 0
    acknowledged_at_ms: int = 0
    answered_at_ms: int = 0
    stored_on: tuple[str, ...] = ()
    anomaly: str = ""
    versions: tuple[TextVersion, ...] = ()


@dataclass(frozen=True, slots=True)
class HistoryGap:
    """Their sequence numbers `first_seq`..`last_seq` are missing before the next entry."""

    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class HistoryFork:
    """A fork seen on the channel (`client.forks`), placed where it showed.

    Attributes:
        side: "theirs" (their messages forked) or "ours" (they saw ours fork).
        reason: in words (`ForkReason.label`).
    """

    side: str
    reason: str
    seq: int
    detected_at_ms: int
    message_id: str = ""


HistoryItem = HistoryEntry | HistoryGap | HistoryFork


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a channel's history, oldest first.

    Attributes:
        channel: the channel's name.
        items: entries, each preceded by the gap and fork marks that belong before it.
        total: entries in the whole history from `since_ms` on.
        earlier: entries of that history before this page (0: this page starts it).
        later: entries of that history after this page (0 unless `before` was given).
    """

    channel: str
    items: tuple[HistoryItem, ...]
    total: int
    earlier: int
    later: int

    @property
    def entries(self) -> tuple[HistoryEntry, ...]:
        """The page's messages, without the marks."""
        return tuple(i for i in self.items if isinstance(i, HistoryEntry))


def _shown(record: MessageRecord) -> bool:
    return record.kind == MessageKind.NOTE or record.kind >= DIALOGUE_KIND_FIRST


def _act(kind: int) -> str:
    if kind == MessageKind.NOTE:
        return "note"
    try:
        return DialogueKind(kind).name.lower()
    except ValueError:
        return "unknown"


def _entry(record: MessageRecord, acknowledged_at: int, anomaly: str) -> HistoryEntry:
    base = HistoryEntry(
        message_id=record.message_id,
        direction=record.direction,
        seq=record.seq,
        act=_act(record.kind),
        at_ms=record.received_at_ms or record.sent_at_ms,
        sent_at_ms=record.sent_at_ms,
        delivered_at_ms=record.delivered_at_ms,
        read_at_ms=record.read_at_ms,
        acknowledged_at_ms=acknowledged_at,
        stored_on=tuple(record.stored_on),
        anomaly=anomaly,
    )
    try:
        body = decode_body(record.kind, bytes.fromhex(record.body))
    except RemoteProtocolError:
        return replace(base, act="malformed")
    match body:
        case Note(precedence=precedence, ack_within_ms=within, text=text):
            return replace(base, text=text, precedence=precedence, ack_within_ms=within)
        case Ack(message_id=target):
            return replace(base, target_id=target.hex())
        case Hold(message_id=target, expected_by_ms=by, text=text):
            return replace(base, target_id=target.hex(), expected_by_ms=by, text=text)
        case Clarify(target_id=target, question=question):
            return replace(base, target_id=target.hex(), text=question)
        case Answer(request_id=request, text=text):
            return replace(base, target_id=request.hex(), text=text)
        case RedLine(redline_id=rid, version=version, title=title, text=text):
            return replace(base, subject_id=rid.hex(), version=version, title=title, text=text)
        case RedLineAck(redline_id=rid, version=version):
            return replace(base, subject_id=rid.hex(), version=version)
        case AgendaPropose(round=number, title=title, detail=detail):
            return replace(base, round=number, title=title, text=detail)
        case AgendaAccept(round=number, item_id=item):
            return replace(base, round=number, target_id=item.hex())
        case AgendaDecline(round=number, item_id=item, reason=reason):
            return replace(base, round=number, target_id=item.hex(), text=reason)
        case RecordPropose(record_id=rid, version=version, statement=statement):
            return replace(base, subject_id=rid.hex(), version=version, title=statement.title)
        case RecordSign(record_id=rid, version=version):
            return replace(base, subject_id=rid.hex(), version=version)
        case LineTestReply(test_id=test):
            return replace(base, target_id=test.hex())
        case Translate(target_id=target, translation=t):
            return replace(base, target_id=target.hex(), title=t.title, text=t.text)
        case _:
            return base  # a line test, or a kind this version does not read


def _versions(record: MessageRecord, added: Iterable[AddedTranslation]) -> tuple[TextVersion, ...]:
    try:
        return versions_of(decode_body(record.kind, bytes.fromhex(record.body)), added)
    except RemoteProtocolError:
        return ()


def _fork(fork: ForkRecord) -> HistoryFork:
    return HistoryFork(fork.side, fork.reason.label, fork.seq, fork.detected_at_ms,
                       fork.message_id)


@dataclass(frozen=True, slots=True)
class _Slot:
    """A group before its entry is built: the marks, and the stored message they precede
    (None for the marks after the last one). Only the slots of the requested page become
    entries (`_Builder.entry`), so a long channel pages at the cost of the page, the fold
    and one pass over the records, not of an entry per message."""

    marks: tuple[HistoryGap | HistoryFork, ...]
    record: MessageRecord | None
    at_ms: int = 0
    line_test: bool = False  # a line test or its answer (well formed)


class _Builder:
    """Entries from records, with what the fold says of each (acknowledgement, anomaly,
    codebook rendering) and when each line test was answered."""

    def __init__(self, dialogue: Dialogue) -> None:
        self.dialogue = dialogue
        self.anomalies = {a.message_id.hex(): a.reason for a in dialogue.anomalies}
        self.answered: dict[str, int] = {}

    def entry(self, record: MessageRecord) -> HistoryEntry:
        mid = bytes.fromhex(record.message_id)
        acknowledged = self.dialogue.acknowledged_at(mid) or 0
        entry = _entry(record, acknowledged, self.anomalies.get(record.message_id, ""))
        entry = replace(entry, versions=_versions(record, self.dialogue.translations(mid)))
        code = self.dialogue.code_message(mid)
        if code is not None:
            # Only the number and values travelled: the text is the agreed one, rendered
            # here in each of the entry's languages, the entry's first language first.
            rendered = [f"{t.language}: {code.render(t.language)[1]}" for t in code.entry.texts]
            entry = replace(entry, title=f"{code.entry.number} {code.code_word}",
                            subject_id=code.entry.entry_id.hex(),
                            version=code.entry.version, text="\n".join(rendered))
        if entry.act == "linetest" and entry.message_id in self.answered:
            # Each line test with when its answer arrived, so that a reader of a long
            # history can leave the answers out and still see which went unanswered.
            entry = replace(entry, answered_at_ms=self.answered[entry.message_id])
        return entry


_LINE_TEST_KINDS: Final = frozenset({DialogueKind.LINETEST, DialogueKind.LINETEST_REPLY})


def _slots(
    channel: ChannelRecord,
    messages: list[MessageRecord],
    forks: Iterable[ForkRecord],
    builder: _Builder,
) -> list[_Slot]:
    # A fork is shown before the message that revealed it; one with no such message
    # stored (it did not decrypt, or the counterpart reported ours) by when it was seen.
    stored = {m.message_id for m in messages}
    forks = list(forks)
    by_message = {f.message_id: f for f in forks if f.message_id in stored}
    unplaced = sorted((f for f in forks if f.message_id not in stored),
                      key=lambda f: f.detected_at_ms)
    slots: list[_Slot] = []
    marks: list[HistoryGap | HistoryFork] = []
    theirs_seen = 0
    for record in messages:
        if record.direction == "in":
            if record.seq > theirs_seen + 1:
                marks.append(HistoryGap(theirs_seen + 1, record.seq - 1))
            theirs_seen = max(theirs_seen, record.seq)
        fork = by_message.pop(record.message_id, None)
        if fork is not None:
            marks.append(_fork(fork))
        if not _shown(record):
            continue
        at = record.received_at_ms or record.sent_at_ms
        while unplaced and unplaced[0].detected_at_ms <= at:
            marks.append(_fork(unplaced.pop(0)))
        line_test = False
        if record.kind in _LINE_TEST_KINDS:
            # Line tests are built now: their answers are needed for every test, and
            # whether one is well formed decides whether `line_tests=False` leaves it out.
            entry = _entry(record, 0, "")
            line_test = entry.act in _LINE_TEST_ACTS
            if entry.act == "linetest_reply":
                builder.answered[entry.target_id] = entry.at_ms
        slots.append(_Slot(tuple(marks), record, at, line_test))
        marks = []
    marks += [_fork(f) for f in unplaced]
    if marks:
        slots.append(_Slot(tuple(marks), None))
    return slots


def _without_line_tests(slots: list[_Slot]) -> list[_Slot]:
    """The slots without line tests and their answers; their marks go to the next entry."""
    kept: list[_Slot] = []
    carried: tuple[HistoryGap | HistoryFork, ...] = ()
    for slot in slots:
        if slot.line_test:
            carried += slot.marks
            continue
        kept.append(replace(slot, marks=(*carried, *slot.marks)))
        carried = ()
    if carried:
        kept.append(_Slot(carried, None))
    return kept


_LINE_TEST_ACTS: Final = frozenset({"linetest", "linetest_reply"})


def build_history(
    ours: PublicIdentity,
    channel: ChannelRecord,
    messages: list[MessageRecord],
    forks: Iterable[ForkRecord] = (),
    *,
    since_ms: int = 0,
    limit: int | None = None,
    before: str | None = None,
    line_tests: bool = True,
    first: int | None = None,
    dialogue: Dialogue | None = None,
) -> HistoryPage:
    """One page of the channel's history.

    Only the page's entries are built: a page of a long channel costs the dialogue fold,
    one pass over the records and the page itself.

    Args:
        ours: this principal's public identity (for the dialogue fold).
        channel: the channel.
        messages: all its stored messages, in stored order (`in_stored_order`).
        forks: the forks seen on it (`Principal.forks`).
        since_ms: only entries stored at or after this moment (our clock); 0 for all.
        limit: at most this many entries, the latest of those selected (with `first`:
            the first `limit` from it); None for all.
        before: only entries stored before the message with this id (or id prefix).
        line_tests: include line tests and their answers (each test also carries when
            it was answered, `answered_at_ms`); sent hourly, they can outnumber the
            conversation.
        first: only entries from this one on (0 is the first entry selected): a window
            anywhere in a long history, with `limit` its size.
        dialogue: the fold of `messages` (`duties.dialogue_of`), if the caller has it
            already; folded here otherwise.

    Returns:
        The page; its marks come with the entries they precede.

    Raises:
        ClientError: `limit` below 1, or `before` names no message or several.
    """
    if limit is not None and limit < 1:
        raise ClientError(f"a page holds at least one message, not {limit}")

    def count(part: list[_Slot]) -> int:
        return sum(1 for slot in part if slot.record is not None)

    messages = list(messages)
    if dialogue is None:
        dialogue = dialogue_of(ours, channel, messages)
    builder = _Builder(dialogue)
    every = _slots(channel, messages, forks, builder)
    if not line_tests:
        every = _without_line_tests(every)
    slots = [s for s in every if s.record is None or s.at_ms >= since_ms]
    end = len(slots)
    if before is not None:
        end = _position(slots, before, channel.name)
    if first is None:
        start = 0 if limit is None else max(_entry_index(slots, end, limit), 0)
    else:
        total = count(slots)
        start = _entry_index(slots, len(slots), total - first) if first < total else end
        start = min(start, end)
        if limit is not None:
            end = min(end, _after(slots, start, limit))
    page = slots[start:end]

    items: list[HistoryItem] = []
    for slot in page:
        items += slot.marks
        if slot.record is not None:
            items.append(builder.entry(slot.record))
    return HistoryPage(
        channel.name,
        tuple(items),
        total=count(slots),
        earlier=count(slots[:start]),
        later=count(slots[end:]),
    )


def _entry_index(slots: list[_Slot], end: int, limit: int) -> int:
    """Where a page of `limit` entries ending at `end` starts (trailing marks ride free)."""
    taken, index = 0, end
    while index > 0 and taken < limit:
        index -= 1
        if slots[index].record is not None:
            taken += 1
    return index


def _after(slots: list[_Slot], start: int, limit: int) -> int:
    """Where a page of `limit` entries starting at `start` ends (the marks after its last
    entry belong to the next one)."""
    taken, index = 0, start
    while index < len(slots) and taken < limit:
        if slots[index].record is not None:
            taken += 1
        index += 1
    return index


def _position(slots: list[_Slot], ref: str, channel: str) -> int:
    ref = ref.strip().lower()
    found = [i for i, slot in enumerate(slots)
             if slot.record is not None and slot.record.message_id.startswith(ref)]
    if not ref or not found:
        raise UnknownReference(f"no message '{ref}' in the history of '{channel}'")
    if len(found) > 1:
        raise ClientError(f"'{ref}' matches {len(found)} messages in '{channel}'; "
                          "give more digits")
    return found[0]

"""The console's data source over an open principal: reads a `Snapshot`, runs the acts.

The principal is opened in this process under the home's lock (as a CLI command without
an agent opens it) and kept open for the console's lifetime. `refresh` syncs with the
relays, runs the duties (line tests, escalations) and reads what is shown; the reading is
done in a thread, so a long channel never stalls the screen, and one lock keeps the
thread, the syncs and the acts from using the principal at once.

What is read each time: the selected channel in full (its messages once, one dialogue
fold for its board and its history page, and only the page's entries built), and one
other channel's row in turn (so a home of many long channels costs one extra channel a
refresh, not all of them). Every counterpart string passes `escaped` here, before any
widget sees it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import typing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from backchannel.protocol.text import escaped
from backchannel.tui.views import (
    BoardView,
    ChannelRow,
    ConversationLine,
    InviteRow,
    Pending,
    Snapshot,
)

if TYPE_CHECKING:
    from backchannel.client.engine import Principal
    from backchannel.client.history import HistoryItem, HistoryPage
    from backchannel.client.records import ChannelRecord, MessageRecord
    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue import CodeEntryView, Dialogue, Statement
    from backchannel.dialogue.board import StatusBoard
    from backchannel.dialogue.urgent import PendingAck
    from backchannel.meet import Suggestion

# The conversation shows the latest entries only, so a channel of any length opens at
# the cost of one page; older ones come a page at a time (`refresh(first=...)`).
PAGE_SIZE: Final = 200
# Once paged back, the console shows this many entries (a bounded list, however long
# the channel), moving a page at a time.
WINDOW: Final = 3 * PAGE_SIZE
# How long a sync on refresh may take: the console refreshes every second, and a relay
# that does not answer must not stall it for longer than this.
SYNC_DEADLINE_S: Final = 2.0
# Enough of an id to name a message back to the engine (the CLI's `short_id`).
SHORT_ID: Final = 8
# The meeting planner's table: this many venues.
MEET_ROWS: Final = 5
# How often a console over this source refreshes (and syncs): countdowns show seconds.
REFRESH_S: Final = 1.0

# Every act of `ConsoleData` a console may ask the agent to run (`console.act`): a method
# of that name, and nothing else, runs on the agent's side. A new act is a method here
# plus its name in this tuple; a type its hints name only under TYPE_CHECKING goes into
# `act_hints` too.
ACTS: Final[tuple[str, ...]] = (
    "send", "ack", "hold", "clarify", "answer", "linetest_now",
    "redline_add", "redline_ack", "agenda_propose", "agenda_decide",
    "record_propose", "record_sign", "record_export", "record_verify",
    "code_propose", "code_accept", "code_send",
    "invite", "relays", "accept", "safety_number", "confirm_verified", "meet",
    "hold_until", "redline_revise", "record_propose_languages", "code_revise",
    "code_withdraw", "invite_revoke", "duty_propose", "duty_accept", "duty_notify",
    "duty_request", "review", "translation_share",
)


@functools.cache
def act_hints(name: str) -> dict[str, Any]:
    """The act `name`'s parameter types (and its `return`): how its values are written
    as JSON (`jsonvalues`) between a console and the agent."""
    from backchannel.meet import Suggestion

    return typing.get_type_hints(getattr(ConsoleData, name),
                                 localns={"Suggestion": Suggestion})


def _short(identifier: bytes | str) -> str:
    text = identifier.hex() if isinstance(identifier, bytes) else identifier
    return text[:SHORT_ID]


def _line(item: HistoryItem) -> ConversationLine:
    from backchannel.client.history import HistoryFork, HistoryGap
    from backchannel.dialogue.kinds import Precedence

    if isinstance(item, HistoryGap):
        span = (str(item.first_seq) if item.first_seq == item.last_seq
                else f"{item.first_seq}-{item.last_seq}")
        return ConversationLine("", "", "gap", f"their messages {span} not received",
                                "ROUTINE", "")
    if isinstance(item, HistoryFork):
        return ConversationLine("", "", "fork",
                                f"{item.side} forked at {item.seq}: {escaped(item.reason)}",
                                "ROUTINE", "", message_id=item.message_id)
    entry = item
    receipt = ""
    if entry.acknowledged_at_ms:
        receipt = "acknowledged"
    elif entry.read_at_ms:
        receipt = "read"
    elif entry.delivered_at_ms:
        receipt = "delivered"
    title = f"{entry.title}: " if entry.title else ""
    version = f" v{entry.version}" if entry.version else ""
    text = title + entry.text
    if entry.act == "linetest":
        text = "answered" if entry.answered_at_ms else "not answered yet"
    translations: list[str] = []
    for v in entry.versions:
        if v.role == "original":
            # The line's own text is the original: it only gains its language.
            text = f"[{v.language}{', authoritative' if v.authoritative else ''}] {text}"
            continue
        who = v.by or "unattributed"
        if v.role == "shared":
            side = "" if v.shared_by is None else f" by {v.shared_by.name.lower()}"
            who = f"shared{side}: {who}"
        tags = ", ".join(filter(None, (v.language, who,
                                       "authoritative" if v.authoritative else "")))
        title_part = f"{v.title}: " if v.title else ""
        translations.append(escaped(f"[{tags}] {title_part}{v.text}".replace("\n", " / ")))
    return ConversationLine(
        ref=_short(entry.message_id),
        direction=entry.direction,
        act=entry.act + version if entry.act != "note" else "note",
        text=escaped(text.replace("\n", " / ")),
        precedence=Precedence(entry.precedence).name if entry.act == "note" else "ROUTINE",
        receipt=receipt,
        message_id=entry.message_id,
        subject_id=entry.subject_id or entry.target_id,
        version=entry.version,
        translations=tuple(translations),
    )


def _pending(p: PendingAck, now_ms: int, escalated: set[bytes]) -> Pending:
    from backchannel.dialogue.events import Side

    return Pending(
        ref=_short(p.message_id),
        ours=p.side is Side.OURS,
        precedence=p.precedence.name,
        remaining_ms=p.worry_at_ms - now_ms,
        overdue=p.overdue,
        held=p.hold is not None,
        escalated=p.message_id in escalated,
    )


def _board(board: StatusBoard, escalated: set[bytes]) -> BoardView:
    now = board.now_ms
    agenda: tuple[str, ...] = ()
    if board.next_round is not None:
        agenda = tuple(
            f"{_short(item.item_id)} round {item.round}: {escaped(item.title)}"
            f" ({item.status.name.lower()})"
            for item in board.next_round.items
        )
    line = board.line
    tested = ""
    if line.last_answered_at_ms is not None:
        tested = f", answered {(now - line.last_answered_at_ms) // 1000}s ago"
    return BoardView(
        pending=tuple(_pending(p, now, escalated)
                      for p in board.awaiting_their_ack + board.awaiting_our_ack),
        clarifications=tuple(
            f"{_short(c.request_id)} {c.asked_by.name.lower()}: {escaped(c.question)}"
            for c in board.open_clarifications
        ),
        red_lines=tuple(
            f"{_short(r.redline_id)} {r.owner.name.lower()}: {escaped(r.latest.title)}"
            f" v{r.latest.version}"
            + (" (awaiting ack)" if r.awaiting_acknowledgement else " (acknowledged)")
            for r in board.red_lines
        ),
        agenda=agenda,
        records=tuple(
            f"{_short(r.record_id)} v{r.latest.version} {r.latest.status.name.lower()}"
            f": {escaped(r.latest.statement.title)}"
            f" ({escaped(r.latest.statement.authentic_clause())})"
            for r in board.records
        ),
        line=f"line {line.state.name}{tested}",
        codebook=tuple(_code(entry) for entry in board.codebook),
        duties=_duties(board),
        notifications=_notifications(board),
    )


def _duties(board: StatusBoard) -> tuple[str, ...]:
    """Each duty: its title, rule, who proposed it and whether both sides agreed."""
    from backchannel.dialogue import Side

    return tuple(
        f"{_short(d.duty_id)} {escaped((d.current or d.latest).title)}: "
        f"{(d.current or d.latest).describe()}"
        f" ({'ours' if d.owner is Side.OURS else 'theirs'}, "
        f"{'agreed' if d.current else 'awaits acceptance'})"
        for d in board.duties
    )


def _notifications(board: StatusBoard) -> tuple[str, ...]:
    """Each notification or request: its duty, who owes it, its status, its text."""
    from backchannel.dialogue import Side

    titles = {d.duty_id: (d.current or d.latest).title for d in board.duties}
    return tuple(
        f"{_short(n.message_id)} {escaped(titles.get(n.duty_id, '?'))}, owed by "
        f"{'us' if n.owed_by is Side.OURS else 'them'}: "
        f"{n.status(board.now_ms).value.replace('_', ' ').upper()}"
        + (f": {escaped(n.text)}" if n.text else "")
        for n in board.notifications
    )


def _statement_mark(authoritative: bool, authentic: bool) -> str:
    # As `record show` heads each text.
    return "authoritative" if authoritative else "authentic" if authentic else "translation"


def _with_texts(line: ConversationLine, statements: dict[tuple[str, int], Statement],
                notified: dict[str, str]) -> ConversationLine:
    """A record proposal with its texts side by side and its authentic-text clause; a
    notification or request with its text (the history entry carries neither)."""
    if line.act.startswith("record_propose"):
        statement = statements.get((line.subject_id, line.version))
        if statement is None:
            return line
        first, *others = statement.versions
        mark = _statement_mark(first.authoritative, first.authentic)
        text = f"{statement.title}: [{first.language}, {mark}] {first.text}"
        return replace(
            line, text=escaped(text.replace("\n", " / ")),
            translations=tuple(escaped(
                f"[{v.language}, {_statement_mark(v.authoritative, v.authentic)}] "
                + v.text.replace("\n", " / ")) for v in others),
            clause=escaped(statement.authentic_clause()))
    if line.act in ("notify", "notify_request") and not line.text:
        return replace(line, text=notified.get(line.message_id, ""))
    return line


def _code(entry: CodeEntryView) -> str:
    latest = entry.latest
    state = "withdrawn" if entry.withdrawn_by else (
        "accepted" if latest.accepted_at_ms is not None else "proposed")
    return (f"{latest.proposal.number} {escaped(latest.proposal.code_word)}"
            f" v{latest.proposal.version} {entry.owner.name.lower()} ({state})")


@dataclass(frozen=True, slots=True)
class _Read:
    """One channel read in full: its row, board and latest page."""

    row: ChannelRow
    board: BoardView
    page: HistoryPage | None
    # Each record version's statement, by (record id, version); each notification's
    # and request's text (escaped) by message id: for the page's lines.
    statements: dict[tuple[str, int], Statement] = field(default_factory=dict)
    notified: dict[str, str] = field(default_factory=dict)


@dataclass
class ReadMemory:
    """What reading keeps between refreshes: each channel's row as last read, and which
    other channel is read next. The agent keeps one per console connected to it."""

    rows: dict[str, ChannelRow] = field(default_factory=dict)
    turn: int = 0


class ConsoleData:
    """The live data source: one open principal, read and acted on by the console."""

    # It syncs itself on each refresh; no event stream drives it.
    refresh_every_s: float = REFRESH_S

    def __init__(self, principal: Principal, memory: ReadMemory | None = None) -> None:
        self.principal = principal
        self._lock = asyncio.Lock()
        self._memory = memory or ReadMemory()

    async def changes(self) -> AsyncIterator[object]:
        """What makes the console refresh at once, besides its timer: nothing here (an
        agent's source yields its events, `tui/source.py`)."""
        return
        yield  # an async generator that ends at once

    def _strategic(self, channel: str) -> StrategicChannel:
        from backchannel.client.strategic import StrategicChannel

        return StrategicChannel(self.principal, channel)

    # -- reading ----------------------------------------------------------------------

    async def refresh(self, selected: str | None, *, sync: bool = True,
                      first: int | None = None) -> Snapshot:
        """Sync with the relays and run the duties (unless `sync` is False), then read
        what is shown (in a thread). `first`: show the window of `WINDOW` entries from
        this one (the console has paged back) instead of the latest page."""
        async with self._lock:
            if sync and self.principal.channels():
                await self.principal.sync(deadline=SYNC_DEADLINE_S)
                await asyncio.to_thread(self.principal.duties.perform)
            return await asyncio.to_thread(self.read, selected, first)

    def _read_channel(self, record: ChannelRecord, *, page: bool,
                      first: int | None = None) -> _Read:
        from backchannel.client.history import build_history
        from backchannel.client.strategic import line_grace_ms, line_period_ms
        from backchannel.dialogue import DEFAULT_LINETEST_EVERY_MS
        from backchannel.protocol.message import MessageKind

        messages: list[MessageRecord] = self.principal.messages(record.name)
        # The principal's fold cache (`client.folds`): only what was stored since the last
        # read is folded. The object is the cache's, extended in place by the next call, so
        # everything shown is read from it here, before this method returns.
        dialogue: Dialogue = self.principal.duties.dialogue(record)
        every = line_period_ms(record) or DEFAULT_LINETEST_EVERY_MS
        board = dialogue.board(self.principal.now_ms(), every, line_grace_ms(record))
        escalated = self.principal.escalated_ids(record.channel_id)
        urgent = any(p.overdue or p.precedence.name == "FLASH" for p in board.awaiting_our_ack)
        unread = sum(1 for m in messages if m.direction == "in"
                     and m.kind == MessageKind.NOTE and not m.read_at_ms)
        row = ChannelRow(
            key=record.name,
            name=escaped(record.name),
            line=board.line.state.name,
            unread=unread,
            urgent=urgent,
            verified=record.verified,
            relays=len(record.links),
            relays_up=sum(1 for link in record.links if self._up(link.url)),
            relays_lost=len(self.principal.relays_lost(record.channel_id)),
            identity_changed=record.identity_changed,
        )
        history = None
        if page:
            history = build_history(
                self.principal.identity, record, messages,
                self.principal.forks(record.channel_id),
                limit=PAGE_SIZE if first is None else WINDOW,
                first=first, dialogue=dialogue)
        statements = {(r.record_id.hex(), v.version): v.statement
                      for r in board.records for v in r.versions}
        notified: dict[str, str] = {}
        for n in board.notifications:
            for mid in (n.message_id, n.notified_by):
                if mid is not None:
                    notified[mid.hex()] = escaped(n.text.replace("\n", " / "))
        return _Read(row, _board(board, escalated), history, statements, notified)

    def _up(self, url: str) -> bool:
        """Whether the last sync reached the relay at `url`."""
        health = self.principal.relay_health(url)
        return health.last_ok_ms > 0 and health.last_ok_ms >= health.last_error_ms

    def read(self, selected: str | None, first: int | None = None) -> Snapshot:
        """Everything shown, for `selected` (None: the first channel)."""
        channels = self.principal.channels()
        names = [c.name for c in channels]
        memory = self._memory
        memory.rows = {name: row for name, row in memory.rows.items() if name in names}
        if selected not in names:
            selected = names[0] if names else None
        others = [c for c in channels if c.name != selected]
        # One other channel in turn, and every channel not read yet.
        if others:
            memory.turn = (memory.turn + 1) % len(others)
        for index, record in enumerate(others):
            if index == memory.turn or record.name not in memory.rows:
                memory.rows[record.name] = self._read_channel(record, page=False).row
        now = self.principal.now_ms()
        invites = tuple(
            InviteRow(i.invite_id[:SHORT_ID], tuple(escaped(link.url) for link in i.links),
                      i.expires_at_ms - now)
            for i in self.principal.pending_invites())
        if selected is None:
            return Snapshot(channels=tuple(memory.rows[n] for n in names), invites=invites)
        chosen = self._read_channel(channels[names.index(selected)], page=True, first=first)
        memory.rows[selected] = chosen.row
        view = chosen.board
        flash = next(
            (p for p in view.pending if not p.ours and p.precedence == "FLASH" and not p.held),
            None,
        )
        page = chosen.page
        assert page is not None
        return Snapshot(
            channels=tuple(memory.rows[n] for n in names),
            selected=selected,
            conversation=tuple(_with_texts(_line(i), chosen.statements, chosen.notified)
                               for i in page.items),
            earlier=page.earlier,
            board=view,
            flash=flash,
            total=page.total,
            later=page.later,
            invites=invites,
        )

    # -- acts -------------------------------------------------------------------------

    async def send(self, channel: str, text: str, precedence: str, ack_within_ms: int) -> None:
        """A note; `precedence` by name."""
        from backchannel.dialogue.kinds import Precedence

        async with self._lock:
            await self._strategic(channel).note(text, Precedence[precedence], ack_within_ms)

    async def ack(self, channel: str, ref: str) -> None:
        """Acknowledge their note `ref`."""
        async with self._lock:
            await self._strategic(channel).ack(ref)

    async def hold(self, channel: str, ref: str, expected_in_ms: int, text: str = "") -> None:
        """A holding reply to `ref`: an answer is expected within `expected_in_ms`."""
        async with self._lock:
            await self._strategic(channel).hold(
                ref, self.principal.now_ms() + expected_in_ms, text)

    async def clarify(self, channel: str, ref: str, question: str) -> None:
        """Ask about their message `ref`."""
        async with self._lock:
            await self._strategic(channel).clarify(ref, question)

    async def answer(self, channel: str, ref: str, text: str) -> None:
        """Answer their clarification request `ref`."""
        async with self._lock:
            await self._strategic(channel).answer(ref, text)

    async def linetest_now(self, channel: str) -> None:
        """Send a line test now."""
        async with self._lock:
            await self._strategic(channel).test_line()

    async def redline_add(self, channel: str, title: str, text: str) -> None:
        """Declare a red line."""
        async with self._lock:
            await self._strategic(channel).declare_red_line(title, text)

    async def redline_ack(self, channel: str, ref: str) -> None:
        """Acknowledge (as understood) their red line `ref`, its latest version."""
        async with self._lock:
            await self._strategic(channel).acknowledge_red_line(ref)

    async def agenda_propose(self, channel: str, round_number: int, title: str,
                             detail: str) -> None:
        """Propose an agenda item for a round."""
        async with self._lock:
            await self._strategic(channel).propose_agenda_item(round_number, title, detail)

    async def agenda_decide(self, channel: str, ref: str, accept: bool,
                            reason: str = "") -> None:
        """Accept or decline the agenda item `ref` (the proposing message)."""
        async with self._lock:
            await self._strategic(channel).decide_agenda_item(ref, accept, reason)

    async def record_propose(self, channel: str, title: str, text: str) -> None:
        """Propose (and sign) a statement for the record, in one language (en)."""
        from backchannel.cli.records import parse_languages

        async with self._lock:
            await self._strategic(channel).propose_record(
                title, parse_languages(text, [], None))

    async def record_sign(self, channel: str, ref: str) -> None:
        """Co-sign their record `ref` (its latest version)."""
        async with self._lock:
            await self._strategic(channel).sign_record(ref)

    async def record_export(self, channel: str, ref: str, path: Path) -> Path:
        """Write the co-signed record `ref` to `path`."""
        async with self._lock:
            data = self._strategic(channel).export_record(ref)
        await asyncio.to_thread(path.write_bytes, data)
        return path

    async def record_verify(self, path: Path) -> str:
        """Check an agreed-record file offline; what it says, in one line."""
        from backchannel.client.errors import ClientError
        from backchannel.dialogue import RecordFileError, verify_record_file

        try:
            data = await asyncio.to_thread(path.read_bytes)
            verified = verify_record_file(data)
        except OSError as error:
            raise ClientError(f"cannot read {path}: {error.strerror}") from None
        except RecordFileError as error:  # the CLI's `record verify` words
            raise ClientError(f"{path} is not a valid agreed record: {error}") from None
        return (f"verified: record {_short(verified.record_id)} v{verified.version} "
                f"'{escaped(verified.statement.title)}', signed by both sides")

    async def code_propose(self, channel: str, number: int, code_word: str,
                           texts: list[str], parameters: list[str], precedence: str) -> None:
        """Propose a codebook entry: texts as `TAG=TEXT` (the CLI's `--lang`), parameter
        names, and a precedence by name ("" for ROUTINE)."""
        from backchannel.cli.codebook import parse_code_texts
        from backchannel.dialogue.kinds import Precedence

        chosen = Precedence[precedence.upper()] if precedence else None
        async with self._lock:
            await self._strategic(channel).propose_code(
                number, code_word, parse_code_texts(texts), tuple(parameters), chosen)

    async def code_accept(self, channel: str, ref: str) -> None:
        """Accept their codebook entry (by number, code word or id prefix)."""
        async with self._lock:
            await self._strategic(channel).accept_code(ref)

    async def code_send(self, channel: str, ref: str, values: list[str]) -> None:
        """Send an agreed codebook entry with `NAME=VALUE` values (the CLI's `code send`)."""
        from backchannel.cli.codebook import parse_assignments

        async with self._lock:
            await self._strategic(channel).send_code(ref, parse_assignments(values))

    async def invite(self, relays: list[str]) -> str:
        """A new invite code offering a channel over `relays`."""
        async with self._lock:
            return await self.principal.invite(relays)

    def relays(self) -> list[str]:
        """The relays of the channels so far (an invite's default)."""
        urls: list[str] = []
        for channel in self.principal.channels():
            urls += [link.url for link in channel.links if link.url not in urls]
        return urls

    async def accept(self, code: str, name: str | None = None) -> str:
        """Join the channel an invite code offers; its name."""
        async with self._lock:
            channel = await self.principal.accept(code.strip(), name=name or None)
        return channel.name

    def safety_number(self, channel: str) -> tuple[str, tuple[str, ...], bool]:
        """The channel's safety number: 12 digit groups, 12 words, whether verified."""
        return self.principal.safety_number(channel)

    async def confirm_verified(self, channel: str) -> None:
        """Record that the safety number was compared out of band and matched."""
        async with self._lock:
            self.principal.confirm_verified(channel)

    async def meet(self, channel: str, round_number: int, between: list[str],
                   after: dt.date) -> tuple[str, tuple[Suggestion, ...]]:
        """Propose the best venue for a round as an agenda item; the title proposed and
        the ranked venues."""
        from backchannel.client.errors import ClientError
        from backchannel.meet import (
            HostPolicy,
            MeetError,
            MeetingRequest,
            load_gazetteer,
            suggest_venues,
        )

        def ranked() -> tuple[Suggestion, ...]:
            try:
                gazetteer = load_gazetteer()
                request = MeetingRequest(
                    tuple(gazetteer.resolve(name) for name in between), HostPolicy(), (),
                    after, 2)
                return tuple(suggest_venues(request, gazetteer))[:MEET_ROWS]
            except MeetError as error:
                raise ClientError(str(error)) from None

        table = await asyncio.to_thread(ranked)
        async with self._lock:
            _, best = await self._strategic(channel).propose_meeting(
                round_number, between, after)
        return escaped(best.venue.name), table

    # -- acts: new versions, holds until a time, several languages, invites waiting,
    # notification duties and the review. Each takes only strings, numbers, booleans and
    # lists of strings (a typed value is parsed here, with the CLI's own parser, so a bad
    # one is refused in the CLI's words).

    async def hold_until(self, channel: str, ref: str, until: str, text: str = "") -> None:
        """A holding reply to `ref` (their note or clarification request): an answer is
        expected by `until`, a duration (2h) or a local time (14:00), as `hold --until`."""
        from backchannel.cli.durations import parse_when

        async with self._lock:
            expected_by = parse_when(until, now_ms=self.principal.now_ms(), option="--until")
            await self._strategic(channel).hold(ref, expected_by, text)

    async def redline_revise(self, channel: str, ref: str, title: str, text: str) -> None:
        """A new version of our red line `ref` (`redline add --update`)."""
        async with self._lock:
            await self._strategic(channel).declare_red_line(title, text, ref)

    async def record_propose_languages(self, channel: str, title: str, text: str,
                                       langs: list[str], authoritative: str = "",
                                       authentic: list[str] | None = None,
                                       update: str = "") -> None:
        """Propose (and sign) a statement, or with `update` a new version of our record:
        TEXT in one language, or `langs` as `TAG=TEXT`, with the authentic-text clause
        (`authoritative` prevails; `authentic` are equally authentic), as `record propose`
        reads them."""
        from backchannel.cli.records import parse_languages

        versions = parse_languages(text or None, langs, authoritative or None,
                                   authentic or None)
        async with self._lock:
            await self._strategic(channel).propose_record(title, versions, update or None)

    async def code_revise(self, channel: str, replaces: str, number: int, code_word: str,
                          texts: list[str], parameters: list[str], precedence: str = "",
                          ack_within: str = "") -> None:
        """A new version of our codebook entry `replaces` (`codebook propose --replaces`):
        texts as `TAG=TEXT`, a precedence (routine, priority, flash; "" for none) and a
        default acknowledgement deadline (a duration; "" for none)."""
        import typer

        from backchannel.cli.codebook import parse_code_texts
        from backchannel.cli.durations import parse_duration
        from backchannel.dialogue.kinds import MAX_ACK_WITHIN_MS, Precedence

        parsed = parse_code_texts(texts)
        chosen = None
        if precedence:
            if precedence.lower() not in ("routine", "priority", "flash"):
                raise typer.BadParameter("routine, priority or flash", param_hint="--precedence")
            chosen = Precedence[precedence.upper()]
        within = 0
        if ack_within:
            within = parse_duration(ack_within, option="--ack-within",
                                    maximum_ms=MAX_ACK_WITHIN_MS)
        async with self._lock:
            await self._strategic(channel).propose_code(
                number, code_word, parsed, tuple(parameters), chosen, within, replaces)

    async def code_withdraw(self, channel: str, ref: str) -> None:
        """Withdraw a codebook entry, ours or theirs (by number, code word or id)."""
        async with self._lock:
            await self._strategic(channel).withdraw_code(ref)

    async def invite_revoke(self, ref: str) -> str:
        """Withdraw an invite nobody has used (`invite revoke`): what happened, in one
        line, with each relay that could not delete its mailbox."""
        async with self._lock:
            record, left = await self.principal.revoke_invite(ref)
        said = f"revoked invite {record.invite_id[:SHORT_ID]}: the code can no longer be used"
        if left:
            said += "; mailboxes left on " + ", ".join(escaped(where) for where in left)
        return said

    async def duty_propose(self, channel: str, title: str, before: str = "",
                           within: str = "", detail: str = "", replaces: str = "") -> None:
        """Propose a notification duty (or with `replaces` a new version of ours): one of
        `before` and `within`, a duration, as `duty propose --before|--within`."""
        import typer

        from backchannel.cli.durations import parse_duration
        from backchannel.dialogue import DutyRule
        from backchannel.dialogue.kinds import MAX_ACK_WITHIN_MS

        if bool(before) == bool(within):
            raise typer.BadParameter("give one of --before DURATION and --within DURATION")
        rule = DutyRule.BEFORE if before else DutyRule.WITHIN
        window = parse_duration(before or within, option="--before" if before else "--within",
                                maximum_ms=MAX_ACK_WITHIN_MS)
        async with self._lock:
            await self._strategic(channel).propose_duty(title, rule, window, detail,
                                                        replaces or None)

    async def duty_accept(self, channel: str, ref: str) -> None:
        """Accept their notification duty (by title or id), its latest version."""
        async with self._lock:
            await self._strategic(channel).accept_duty(ref)

    async def duty_notify(self, channel: str, ref: str, text: str, event_at: str,
                          answers: str = "") -> str:
        """Notify an event under an agreed duty; `event_at` as `duty notify --event-at`
        (now, +2d, -30m, ISO). Its status on our board ("notified in time", "late")."""
        from backchannel.cli.notifications import parse_event_time

        async with self._lock:
            strategic = self._strategic(channel)
            when = parse_event_time(event_at, now_ms=self.principal.now_ms())
            sent = await strategic.notify(ref, when, text, answers or None)
            wanted = bytes.fromhex(sent.message_id)
            item = next((n for n in strategic.dialogue().notifications()
                         if wanted in (n.message_id, n.notified_by)), None)
            now = self.principal.now_ms()
        return "unknown" if item is None else item.status(now).value.replace("_", " ")

    async def duty_request(self, channel: str, ref: str, event_at: str,
                           text: str = "") -> None:
        """Say that they owe a notification of an event under duty `ref`."""
        from backchannel.cli.notifications import parse_event_time

        async with self._lock:
            when = parse_event_time(event_at, now_ms=self.principal.now_ms())
            await self._strategic(channel).request_notification(ref, when, text)

    async def review(self, channel: str, since: str = "-365d", until: str = "now",
                     out: str = "", file_format: str = "",
                     propose_record: bool = False) -> str:
        """The channel's review of a period as `review CHANNEL` prints it (escaped);
        written to `out` (md or json, from its suffix unless `file_format`) if given, and
        proposed as a record if `propose_record`."""
        import json

        import typer

        from backchannel.cli.notifications import parse_event_time
        from backchannel.dialogue import LanguageVersion
        from backchannel.dialogue.review import review_channel

        target = Path(out).expanduser() if out else None
        chosen = file_format or (target.suffix.lstrip(".").lower() if target else "md")
        if chosen not in ("md", "json"):
            raise typer.BadParameter("md or json", param_hint="--format")
        async with self._lock:
            strategic = self._strategic(channel)
            now = self.principal.now_ms()
            start = parse_event_time(since, now_ms=now, option="--since")
            end = parse_event_time(until, now_ms=now, option="--until")
            if end == now:
                end += 1  # "until now" includes what was sent this millisecond
            summary = review_channel(strategic.dialogue(), start, end, now)
            markdown = summary.to_markdown("you", strategic.name)
            if propose_record:
                shape = summary.to_dict()
                title = f"Channel review {shape['since']} to {shape['until']}"
                joint = summary.to_markdown("proposer", "co-signer")
                await strategic.propose_record(
                    title[:200], [LanguageVersion("en", joint, authoritative=True)])
        if target is not None:  # an OSError is refused as the CLI words it
            content = (json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n"
                       if chosen == "json" else markdown)
            await asyncio.to_thread(target.write_text, content, encoding="utf-8")
        return escaped(markdown, multiline=True)

    async def translation_share(self, channel: str, ref: str, language: str, text: str,
                                by: str = "", title: str = "") -> None:
        """Share our translation of their message `ref` (`translate add`): its language,
        text, who made it (`staff`, `staff:NAME`, `translator:NAME`, `machine:TOOL`; ""
        for staff) and a translated title (red lines, agenda items)."""
        from backchannel.cli.translations import parse_attribution

        attribution = parse_attribution(by or None)
        async with self._lock:
            await self._strategic(channel).share_translation(ref, language, text,
                                                             attribution, title)

"""`status`: each channel's board, everything a principal must see at a glance.

The board joins what the client knows of the channel (relays, receipts, queue; a
`ChannelStatus`) with the dialogue state (`StatusBoard`: notes awaiting acknowledgement,
holding replies, open clarifications, red lines, the next round's agenda, records, the
line test). For people: Rich tables, times in the local zone. For scripts: the two JSON
forms merged into one object per channel (docs/cli.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.context import JSON_OPTION, cli_context, reports_errors
from backchannel.cli.durations import format_duration
from backchannel.cli.hints import Hint, command_line, hint_for_home
from backchannel.cli.output import (
    emit_json,
    local_time,
    short_id,
    shown,
    status_json,
    status_table,
)

if TYPE_CHECKING:
    # Only for annotations: `status --help` builds the command without Rich, the engine,
    # cryptography or the dialogue package; the functions that use them at run time
    # import them there.
    from rich.console import RenderableType
    from rich.table import Table

    from backchannel.cli.section import Section
    from backchannel.client.engine import ChannelStatus, Principal
    from backchannel.client.state.slotstatus import DirectionStatus
    from backchannel.dialogue import (
        Clarification,
        HoldingReply,
        LineStatus,
        PendingAck,
        Side,
        StatusBoard,
    )

__all__ = [
    "ChannelBoard", "board_json", "board_renderables", "collect_boards", "register", "slots_json",
]


@dataclass(frozen=True, slots=True)
class ChannelBoard:
    """One channel's board as `status` shows it.

    Attributes:
        status: the client's view (relays, receipts, queue).
        board: the dialogue state at the time it was collected.
        peer: the counterpart's name, as this principal calls the channel.
        escalated: our notes already escalated (each is escalated once).
        every_ms: how often this side tests the line (0: it sends no tests).
        grace_ms: how long an answer to a line test may take before the line is down.
    """

    status: ChannelStatus
    board: StatusBoard
    peer: str
    escalated: frozenset[bytes]
    every_ms: int
    grace_ms: int
    slot_interval: float | None = None  # seconds between slots (None: off)
    slot_directions: int = 0  # relays this side writes to in slots
    # What the slots of a watch or the agent last reported (`state.slotstatus`): the
    # directions with rows held back or a failure; and each relay's routing line.
    slot_status: tuple[DirectionStatus, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()
    # Each direction's request frame per slot (`Principal.slot_frames`): forwarded or not.
    slot_frames: tuple[int, ...] = ()


def collect_boards(principal: Principal, channel: str | None = None) -> list[ChannelBoard]:
    """The board of one channel, or of every channel, at the principal's `now`."""
    from backchannel.client.slotpolicy import slot_interval
    from backchannel.client.strategic import StrategicChannel, line_grace_ms, line_period_ms

    now = principal.now_ms()
    boards = []
    for status in principal.status(channel):
        strategic = StrategicChannel(principal, status.channel_id)
        directions = sum(1 for link in strategic.record.links if link.outbound is not None)
        slot_status, routes = principal.slot_status(status.channel_id)
        boards.append(ChannelBoard(
            status,
            strategic.board(now),
            strategic.name,
            frozenset(principal.escalated_ids(status.channel_id)),
            line_period_ms(strategic.record),
            line_grace_ms(strategic.record),
            slot_interval(principal.setting, status.channel_id),
            directions,
            tuple(slot_status),
            tuple(sorted(routes.items())),
            tuple(principal.slot_frames(status.channel_id)),
        ))
    return boards


def board_json(cb: ChannelBoard) -> dict[str, Any]:
    """`status_json` and `StatusBoard.to_dict()` merged (their keys do not overlap), plus
    what only the client knows: which overdue notes it escalated and its line-test
    settings."""
    return {
        **status_json(cb.status),
        **cb.board.to_dict(),
        "escalated": sorted(m.hex() for m in cb.escalated),
        "line_test": {"every_ms": cb.every_ms, "grace_ms": cb.grace_ms},
        "slots": {**slots_json(cb.slot_interval, cb.slot_directions, cb.slot_frames),
                  "directions": [_direction_json(d) for d in cb.slot_status]},
        "routing": dict(cb.routes),
    }


def _direction_json(d: DirectionStatus) -> dict[str, Any]:
    return {"relay": d.url, "held": d.held, "held_until_ms": d.held_until_ms or None,
            "last_failure": d.failure or None, "failed_at_ms": d.failed_at_ms or None}


def slots_json(interval: float | None, directions: int,
               frames: Sequence[int] = ()) -> dict[str, Any]:
    """A channel's slots and what they cost (`status --json`, `slots --json`): envelope
    bytes (`bytes_per_day`), and the request frames that carry them on each direction's
    route (`sent_bytes_per_day`: a forwarded slot's frame is about twice a direct one's,
    and opens a connection of its own; `frames` empty: all direct)."""
    from backchannel.client.slotpolicy import (
        DIRECT_SLOT_FRAME,
        SLOT_BUCKET,
        bytes_per_day,
        frame_bytes_per_day,
    )

    frames = list(frames) or [DIRECT_SLOT_FRAME] * directions
    return {"interval_s": interval, "bucket": SLOT_BUCKET, "relays": directions,
            "bytes_per_day_per_relay": bytes_per_day(interval),
            "bytes_per_day": bytes_per_day(interval) * directions,
            "forwarded_relays": sum(1 for f in frames if f > DIRECT_SLOT_FRAME),
            "sent_bytes_per_day": frame_bytes_per_day(interval, frames)}


# -- tables --------------------------------------------------------------------------------


def _who(side: Side, peer: str) -> str:
    from backchannel.dialogue import Side

    return "you" if side is Side.OURS else peer


def _hold(hold: HoldingReply | None) -> str:
    if hold is None:
        return ""
    said = f": {hold.text}" if hold.text else ""
    return f"answer expected by {local_time(hold.expected_by_ms)}{said}"


def line_summary(line: LineStatus, every_ms: int, grace_ms: int) -> str:
    """The line test in one or two lines: its state and what it rests on."""
    from backchannel.dialogue import LineState

    if line.state is LineState.UP:
        state = f"UP: last answered {local_time(line.last_answered_at_ms or 0)}"
        if line.round_trip_ms is not None:
            state += f" in {format_duration(line.round_trip_ms)}"
    elif line.state is LineState.DOWN:
        state = (f"DOWN: our test of {local_time(line.last_test_sent_at_ms or 0)} went "
                 f"unanswered for more than {format_duration(grace_ms)}")
    elif line.last_test_sent_at_ms is None:
        state = "unknown: no test sent yet"
    else:
        state = f"unknown: test of {local_time(line.last_test_sent_at_ms)} awaiting its answer"
    if every_ms:
        due = ("now" if line.next_test_due_at_ms is None
               else local_time(line.next_test_due_at_ms))
        schedule = f"every {format_duration(every_ms)}, next {due}"
    else:
        schedule = "this side sends no tests"
    return f"{state}\n{schedule}; grace {format_duration(grace_ms)}"


def _slots_summary(cb: ChannelBoard) -> str:
    from backchannel.client.slotpolicy import describe_cost

    lines = [describe_cost(cb.slot_interval, cb.slot_directions, cb.slot_frames)]
    now_ms = cb.board.now_ms
    for d in cb.slot_status:
        # The URL came from an invite, the failure line names it and the channel.
        if d.held:
            when = ("ends" if d.held_until_ms > now_ms else "ended") + \
                f" {local_time(d.held_until_ms)}"
            lines.append(f"held: {d.held} message(s) to {shown(d.url)} that the relay refused "
                         f"(the mailbox or relay full), kept queued with cover in their slots; "
                         f"the last hold {when}")
        if d.failure:
            lines.append(f"failed {local_time(d.failed_at_ms)}: {shown(d.failure)}")
    return "\n".join(lines)


def _overview(cb: ChannelBoard) -> Table:
    table = status_table([cb.status])
    table.title = f"Channel '{cb.peer}': status board at {local_time(cb.board.now_ms)}"
    table.add_row("Line test", line_summary(cb.board.line, cb.every_ms, cb.grace_ms))
    table.add_row("Slots", _slots_summary(cb))
    if cb.routes:
        # Sends not forwarded as the settings ask (`client.routing`), as `sync` says them.
        table.add_row("Routing", "\n".join(shown(line) for _, line in cb.routes))
    table.add_row("Red lines", _red_lines_summary(cb))
    table.add_row("Awaiting acknowledgement", _acks_summary(cb))
    if cb.board.codebook:
        table.add_row("Codebook", _codebook_summary(cb))
    if cb.board.duties:
        table.add_row("Notification duties", _duties_summary(cb))
    if cb.board.translations:
        table.add_row("Translations shared", str(len(cb.board.translations)))
    if cb.status.forks:
        # The alarm that used to be silent: two writers of one principal's state.
        table.add_row("FORK", f"{len(cb.status.forks)} fork(s), latest: {cb.status.forks[-1]}; "
                              "a copy of a principal's state sent messages (see docs/client.md)")
    if cb.status.awaiting_counterpart:
        # A joiner whose inviter never answers may have lost a race for the code: its
        # sends were stored, and nobody reads them (docs/cli.md, "A code used twice").
        table.add_row("Counterpart", "never heard from: the inviter has not taken up your "
                                     "hello yet. If this lasts, ask them whether the code "
                                     "reached them first; someone else may have used it")
    for claim in cb.status.invite_claims:
        # Someone else used the invite this channel came from (kept until the channel
        # is removed): shown on every status, not only by the sync that read it.
        table.add_row("INVITE USED TWICE", claim)
    if cb.board.anomalies:
        table.add_row("Anomalies", f"{len(cb.board.anomalies)} message(s) broke the rules "
                                   "and were ignored (see status --json)")
    return table


def _red_lines_summary(cb: ChannelBoard) -> str:
    from backchannel.dialogue import Side

    ours = sum(1 for r in cb.board.red_lines if r.owner is Side.OURS)
    theirs = len(cb.board.red_lines) - ours
    waiting = sum(1 for r in cb.board.red_lines if r.awaiting_acknowledgement)
    if not cb.board.red_lines:
        return "none declared"
    state = f"{waiting} awaiting acknowledgement" if waiting else "all acknowledged"
    return f"{ours} yours, {theirs} {cb.peer}'s; {state}"


def _codebook_summary(cb: ChannelBoard) -> str:
    from backchannel.dialogue import Side

    lines = []
    for entry in cb.board.codebook:
        proposal = (entry.current or entry.latest).proposal
        waiting = entry.awaiting_acceptance
        state = entry.status.value
        if waiting is not None:
            whose = "your" if entry.owner is Side.THEIRS else f"{cb.peer}'s"
            state += f", v{waiting.version} awaiting {whose} acceptance"
        lines.append(f"{proposal.number} {shown(proposal.code_word)} ({state})")
    return "\n".join(lines)


def _duties_summary(cb: ChannelBoard) -> str:
    """Each duty with its rule, then the notifications by status (due and missed first:
    they are what needs doing)."""
    from collections import Counter

    from backchannel.dialogue import Side

    lines = [f"{shown((d.current or d.latest).title)}: {(d.current or d.latest).describe()}"
             + ("" if d.current else " (awaiting acceptance)") for d in cb.board.duties]
    now = cb.board.now_ms
    counts = Counter(n.status(now).value for n in cb.board.notifications)
    owed = [n for n in cb.board.notifications if n.status(now).value in ("due", "missed")]
    for n in owed:
        who = "you owe" if n.owed_by is Side.OURS else f"{cb.peer} owes"
        lines.append(f"{n.status(now).value.upper()}: {who} a notification "
                     f"(due {local_time(n.deadline_ms)})")
    if counts:
        lines.append(", ".join(f"{v} {k.replace('_', ' ')}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


def _acks_summary(cb: ChannelBoard) -> str:
    theirs, ours = len(cb.board.awaiting_their_ack), len(cb.board.awaiting_our_ack)
    overdue = len(cb.board.overdue)
    if not theirs + ours:
        return "nothing"
    return (f"{theirs} by {cb.peer}, {ours} by you"
            + (f"; {overdue} OVERDUE" if overdue else ""))


def _deadline_state(pending: PendingAck, escalated: frozenset[bytes], now_ms: int) -> str:
    if pending.overdue:
        return "OVERDUE, escalated" if pending.message_id in escalated else "OVERDUE"
    return f"due in {format_duration(max(pending.worry_at_ms - now_ms, 0))}"


def _acks_table(cb: ChannelBoard) -> Section | None:
    from backchannel.cli.section import Section
    from backchannel.cli.urgency import note_urgency

    rows = [("their ack", p) for p in cb.board.awaiting_their_ack]
    rows += [("your ack", p) for p in cb.board.awaiting_our_ack]
    if not rows:
        return None
    # The note first: stacked at a narrow width, it heads each block.
    table = Section("Notes awaiting acknowledgement",
                    ("Note", "Waiting for", "Precedence", "Sent", "Deadline", "Holding reply",
                     "State"))
    for waiting_for, p in rows:
        table.add_row(
            short_id(p.message_id.hex()),
            waiting_for if waiting_for == "your ack" else f"{cb.peer}'s ack",
            p.precedence.name,
            local_time(p.sent_at_ms),
            local_time(p.deadline_ms),
            _hold(p.hold),
            _deadline_state(p, cb.escalated, cb.board.now_ms),
            style=note_urgency(p.precedence, overdue=p.overdue).style or None,
        )
    return table


def _clarifications_table(cb: ChannelBoard) -> Section | None:
    from backchannel.cli.section import Section

    opened: tuple[Clarification, ...] = cb.board.open_clarifications
    if not opened:
        return None
    table = Section("Open clarification requests",
                    ("Request", "Asked by", "About", "Question", "Asked", "Holding reply"))
    for c in opened:
        table.add_row(short_id(c.request_id.hex()), _who(c.asked_by, cb.peer),
                      short_id(c.target_id.hex()), c.question, local_time(c.asked_at_ms),
                      _hold(c.hold))
    return table


def _red_lines_table(cb: ChannelBoard, hint: Hint) -> Section | None:
    from backchannel.cli.section import Section
    from backchannel.dialogue import Side

    waiting = [r for r in cb.board.red_lines if r.awaiting_acknowledgement]
    if not waiting:
        return None
    table = Section("Red lines awaiting acknowledgement",
                    ("Red line", "Declared by", "Version", "Title", "Declared", "Awaiting"),
                    caption=f"{len(cb.board.red_lines)} red line(s) in all: "
                            + hint("redline", "list", cb.peer))
    for r in waiting:
        table.add_row(short_id(r.redline_id.hex()), _who(r.owner, cb.peer), str(r.latest.version),
                      r.latest.title, local_time(r.latest.declared_at_ms),
                      f"{cb.peer}'s acknowledgement" if r.owner is Side.OURS
                      else "your acknowledgement")
    return table


def _agenda_table(cb: ChannelBoard) -> Section | None:
    from backchannel.cli.section import Section
    from backchannel.dialogue import AgendaStatus

    meeting = cb.board.next_round
    if meeting is None:
        return None
    agreed = "; ".join(i.title for i in meeting.agreed) or "nothing agreed yet"
    table = Section(f"Next meeting: round {meeting.round}",
                    ("Item", "Proposed by", "Title", "Detail", "State"),
                    caption=f"Agreed agenda: {agreed}")
    for item in meeting.items:
        state = item.status.value
        if item.status is AgendaStatus.DECLINED and item.reason:
            state += f" ({item.reason})"
        table.add_row(short_id(item.item_id.hex()), _who(item.proposed_by, cb.peer), item.title,
                      item.detail, state)
    return table


def _records_table(cb: ChannelBoard) -> Section | None:
    from backchannel.cli.section import Section
    from backchannel.dialogue import RecordStatus, Side

    if not cb.board.records:
        return None
    table = Section("Records", ("Record", "Proposed by", "Version", "Title", "State"))
    for record in cb.board.records:
        latest = record.latest
        if latest.status is RecordStatus.AGREED:
            state = "agreed: co-signed by both"
        elif record.owner is Side.OURS:
            state = f"awaiting {cb.peer}'s co-signature"
        else:
            state = "awaiting your co-signature"
        table.add_row(short_id(record.record_id.hex()), _who(record.owner, cb.peer),
                      str(latest.version), latest.statement.title, state)
    return table


def board_renderables(cb: ChannelBoard, hint: Hint = command_line) -> list[RenderableType]:
    """The overview and every non-empty section, in the order a principal scans them."""
    sections = (_acks_table(cb), _clarifications_table(cb), _red_lines_table(cb, hint),
                _agenda_table(cb), _records_table(cb))
    return [_overview(cb), *(s for s in sections if s is not None)]


# -- the command ---------------------------------------------------------------------------


def status(
    ctx: typer.Context,
    channel: str | None = typer.Argument(None, help="Only this channel (name or id)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show each channel's board: what awaits whom, red lines, agenda, records, the line.

    Relays and their reachability, last heard, notes awaiting acknowledgement (overdue
    ones marked, escalated ones said), holding replies, open clarifications, red lines
    awaiting acknowledgement, the next meeting round and its agenda, records, the line
    test. What it shows of relays is what the last `sync` or `watch` saw.

    Example: backchannel status beijing
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        boards = collect_boards(principal, channel)
    if state.json:
        emit_json({"channels": [board_json(b) for b in boards]})
        return
    if not boards:
        state.out.print("No channels yet.")
    for cb in boards:
        for renderable in board_renderables(cb, hint_for_home(state.home)):
            state.out.print(renderable)


def register(app: typer.Typer) -> None:
    """Add `status` to the root app."""
    app.command()(reports_errors(status))

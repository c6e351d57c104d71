"""Renderings of the console's panes, from `views` values to Rich text.

Counterpart strings arrive escaped (`live`); they are still added as plain text, never
as markup, so a `[` in a note cannot restyle the screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from rich.table import Table
from rich.text import Text

from backchannel.tui.views import (
    BoardView,
    ChannelRow,
    ConversationLine,
    InviteRow,
    Pending,
    Snapshot,
)

if TYPE_CHECKING:
    from backchannel.meet import Suggestion

_PRECEDENCE_STYLE: Final = {"FLASH": "bold white on red", "PRIORITY": "bold yellow"}
MS_PER_S: Final = 1000


def countdown(remaining_ms: int) -> str:
    """`12m05s left`, or `overdue 3m10s` (whole seconds, no clock time on screen)."""
    seconds = abs(remaining_ms) // MS_PER_S
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    span = f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
    return f"overdue {span}" if remaining_ms < 0 else f"{span} left"


def span(ms: int) -> str:
    """A time span in at most two units, to the minute: `6d23h`, `2h05m`, `12m`."""
    minutes = abs(ms) // 60_000
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h" if hours else f"{days}d"
    return f"{hours}h{mins:02d}m" if hours else f"{mins}m"


def invites_text(invites: tuple[InviteRow, ...]) -> Text:
    """Our invites nobody has taken up: waiting with the time left, or expired (whose
    mailboxes stay until revoked)."""
    text = Text()
    for invite in invites:
        if invite.expires_in_ms > 0:
            text.append(f"invite {invite.ref} waiting", style="cyan")
            text.append(f"\n  expires in {span(invite.expires_in_ms)}\n", style="dim")
        else:
            text.append(f"invite {invite.ref} expired", style="yellow")
            text.append("\n  revoke it (I)\n", style="dim")
    return text


def channels_text(rows: tuple[ChannelRow, ...], selected: str | None,
                  invites: tuple[InviteRow, ...] = ()) -> Text:
    """The left pane: one line per channel with line state, unread count, urgency; then
    our invites waiting."""
    text = Text()
    if not rows and not invites:
        text.append("no channels yet\n(backchannel invite / accept)", style="dim")
    for row in rows:
        chosen = row.key == selected
        marker = "▶ " if chosen else "  "
        text.append(marker)
        text.append(row.name, style="bold" if chosen else "")
        line_style = {"UP": "green", "DOWN": "bold red"}.get(row.line, "dim")
        text.append(f" {row.line}", style=line_style)
        if row.unread:
            text.append(f" ({row.unread})", style="bold")
        if row.urgent:
            text.append(" !", style="bold red")
        if not row.verified:
            text.append(" unverified", style="yellow")
        if row.identity_changed:
            text.append(" IDENTITY CHANGED", style="bold red")
        if row.relays:
            style = "green" if row.relays_up == row.relays else "bold red"
            text.append(f"\n  relays {row.relays_up}/{row.relays} up", style=style)
        if row.relays_lost:
            text.append(f", {row.relays_lost} lost", style="bold red")
        text.append("\n")
    text.append_text(invites_text(invites))
    return text


def conversation_line(line: ConversationLine) -> Text:
    """One line of the conversation: direction, short id, act, precedence, text, receipt;
    a gap or fork mark in its own colour where it is."""
    if line.act in ("gap", "fork"):
        return Text(f"── {line.act}: {line.text} ──", style="bold magenta")
    text = Text()
    text.append("→ " if line.direction == "out" else "← ", style="dim")
    text.append(line.ref, style="dim")
    if line.act != "note":
        text.append(f" [{line.act}]", style="cyan")
    if line.precedence != "ROUTINE":
        text.append(f" {line.precedence}", style=_PRECEDENCE_STYLE.get(line.precedence, ""))
    text.append(" ")
    text.append(line.text)
    if line.receipt:
        text.append(f"  ({line.receipt})", style="dim")
    for translation in line.translations:
        text.append("\n    ")
        text.append(translation, style="italic")
    if line.clause:
        text.append("\n    ")
        text.append(line.clause, style="dim")
    return text


def earlier_text(earlier: int) -> Text:
    """The conversation's first line while earlier entries are not read yet."""
    return Text(f"… {earlier} earlier messages (up or < reads them)", style="dim")


def later_text(later: int) -> Text:
    """The conversation's last line while it shows an earlier window."""
    return Text(f"… {later} later messages (down or > reads them)", style="dim")


def conversation_text(snapshot: Snapshot) -> Text:
    """The centre pane as one text: the page shown, oldest first."""
    text = Text()
    if snapshot.earlier:
        text.append_text(earlier_text(snapshot.earlier))
        text.append("\n")
    for line in snapshot.conversation:
        text.append_text(conversation_line(line))
        text.append("\n")
    return text


def _pending_line(p: Pending) -> Text:
    who = "they owe" if p.ours else "we owe"
    style = "bold red" if p.overdue else _PRECEDENCE_STYLE.get(p.precedence, "")
    text = Text(f"{who} ack {p.ref} {p.precedence} ", style=style)
    text.append(countdown(p.remaining_ms), style=style)
    if p.held:
        text.append(" (held)", style="dim")
    if p.overdue:
        text.append(" escalated" if p.escalated else " not escalated yet", style="bold red")
    return text


def board_text(board: BoardView) -> Text:
    """The right pane: pending acks with countdowns, clarifications, red lines, agenda,
    records."""
    text = Text()
    if board.line:
        text.append(f"{board.line}\n", style="bold")
    sections: list[tuple[str, list[Text]]] = [
        ("Awaiting acknowledgement", [_pending_line(p) for p in board.pending]),
        ("Open clarifications", [Text(c) for c in board.clarifications]),
        ("Red lines", [Text(r) for r in board.red_lines]),
        ("Agenda", [Text(a) for a in board.agenda]),
        ("Records", [Text(r) for r in board.records]),
    ]
    if board.codebook:
        sections.append(("Codebook", [Text(c) for c in board.codebook]))
    if board.duties:
        sections.append(("Notification duties", [Text(d) for d in board.duties]))
    if board.notifications:
        sections.append(("Notifications", [_notification_line(n)
                                           for n in board.notifications]))
    for title, lines in sections:
        text.append(f"{title}\n", style="bold underline")
        if not lines:
            text.append("  none\n", style="dim")
        for line in lines:
            text.append("  ")
            text.append_text(line)
            text.append("\n")
    return text


def _notification_line(line: str) -> Text:
    # A missed notification is as loud as an overdue note; a late one is marked.
    style = "bold red" if ": MISSED" in line else "yellow" if ": LATE" in line else ""
    return Text(line, style=style)


def flash_text(flash: Pending) -> Text:
    """The banner while their FLASH note waits for our acknowledgement or holding reply."""
    return Text(
        f" FLASH {flash.ref}: {countdown(flash.remaining_ms)} — a: acknowledge  h: hold ",
        style="bold white on red",
    )


def qr_text(code: str) -> Text:
    """An invite code and its QR code in half-block characters (two modules a cell,
    dark on light with a quiet zone), as `invite --qr` shows it."""
    from backchannel.cli.pairing import no_qr_reason, qr_symbol

    symbol = qr_symbol(code)  # the symbol `invite --qr` shows
    if symbol is None:
        reason = no_qr_reason(code)
        return Text(code + "\n\n", style="bold").append(reason[0].upper() + reason[1:] + ".")
    rows = [[bool(m) for m in row] for row in symbol.matrix_iter(scale=1, border=2)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    text = Text(code + "\n\n", style="bold")
    glyphs = {(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}
    for top, bottom in zip(rows[::2], rows[1::2], strict=True):
        text.append("".join(glyphs[(a, b)] for a, b in zip(top, bottom, strict=True)),
                    style="black on white")
        text.append("\n")
    return text


def meet_table(suggestions: Sequence[Suggestion]) -> Table:
    """The ranked venues: rank, city, country, dates, score (hours, lower is better)."""
    table = Table("#", "venue", "country", "dates", "score (h)", "why")
    for s in suggestions:
        table.add_row(str(s.rank), s.venue.name, s.venue.country_name,
                      f"{s.plan.first_day.isoformat()} to {s.plan.last_day.isoformat()}",
                      f"{s.score:.1f}", s.reasons[0] if s.reasons else "")
    return table

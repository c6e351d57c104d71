"""How principal commands show things: local times for people, stable JSON for scripts.

The JSON shapes built here are documented in `docs/cli.md`; keys are only ever added,
never renamed or removed. Times in JSON are ISO 8601 in UTC (``...Z``) or null when
unknown; times for people are in the local time zone.

Text from the counterpart or a relay (names, titles, relay URLs, reasons, bodies) is shown
through `shown`, which escapes every character that could act on a terminal or reorder
what it shows (docs/threat-model.md, "Text from the other side"). JSON keeps the text,
with such characters written as ``\\uXXXX`` escapes, so a script reads the same string
and a terminal shows no control sequence.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.durations import format_duration
from backchannel.protocol.text import escaped, json_escaped

if TYPE_CHECKING:
    # Only for annotations. Every command module imports this one, so what it imports at
    # the top every command's `--help` pays for: the engine (and cryptography under it)
    # is 0.3 s, Rich's tables 50 ms, `dialogue` 0.15 s (it signs records). The functions
    # that need Rich or `Precedence` at run time import them themselves.
    from rich.table import Table

    from backchannel.client.engine import (
        ChannelStatus,
        InboxEntry,
        RelayHealth,
        SendResult,
        SyncReport,
    )
    from backchannel.client.records import ChannelRecord, InviteRecord

__all__ = [
    "channel_json",
    "channels_table",
    "emit_json",
    "inbox_table",
    "invite_json",
    "json_text",
    "local_time",
    "message_json",
    "precedence_label",
    "precedence_name",
    "relay_health_json",
    "send_json",
    "short_id",
    "shown",
    "status_json",
    "status_table",
    "sync_json",
    "utc_time",
]

# Enough of a 32-hex-digit id to tell messages apart in a conversation, and accepted back
# by `read CHANNEL MESSAGE` (the engine matches by prefix).
SHORT_ID = 8


def short_id(identifier: str) -> str:
    """The first characters of a message or channel id, as shown in tables."""
    return identifier[:SHORT_ID]


def utc_time(ms: int) -> str | None:
    """ISO 8601 UTC with milliseconds, or None for 0 (not yet)."""
    if not ms:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_time(ms: int, *, empty: str = "-") -> str:
    """The moment in the local time zone, or `empty` for 0 (not yet).

    Today's moments show the time to the second; others the date and the minute, which is
    what a reader scanning a table needs and keeps the column narrow.
    """
    if not ms:
        return empty
    moment = dt.datetime.fromtimestamp(ms / 1000).astimezone()
    if moment.date() == dt.datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def shown(text: str, *, multiline: bool = False) -> str:
    """Text from the counterpart or a relay, made safe to print: the one function every
    output (the CLI, a future TUI) passes such text through.

    Every control character (C0 and C1, so ESC and U+009B CSI), format character (bidi
    embeddings, overrides and isolates, zero-width spaces, the BOM), line or paragraph
    separator and lone surrogate becomes a visible escape: ``\x1b``, ``\x9b``,
    ``<U+202E>``. Ordinary text in any script, emoji included, is returned unchanged.
    Markup is not interpreted by our consoles (`context.plain_console`), so ``[bold]`` in a
    name prints as ``[bold]``; print it through a console with markup on only after
    `rich.markup.escape`.

    Args:
        text: the text, from anyone.
        multiline: keep line feeds and tabs (a note body, a statement).
    """
    return escaped(text, multiline=multiline)


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """`data` as JSON that is safe to print: non-ASCII text stays readable, and every
    character a terminal would act on is a ``\\uXXXX`` escape (the same string once
    parsed; `protocol.text.json_escaped`)."""
    return json_escaped(json.dumps(data, indent=indent, ensure_ascii=False))


def emit_json(data: dict[str, Any]) -> None:
    """Print one JSON document on stdout."""
    typer.echo(json_text(data))


# -- JSON shapes (docs/cli.md) -------------------------------------------------------------


def channel_json(channel: ChannelRecord) -> dict[str, Any]:
    return {
        "name": channel.name,
        "id": channel.channel_id,
        "role": channel.role,
        "verified": channel.verified,
        "relays": [link.url for link in channel.links],
        "ready": any(link.outbound is not None for link in channel.links),
        "created_at": utc_time(channel.created_at_ms),
        "last_heard": utc_time(channel.last_heard_ms),
    }


def invite_json(invite: InviteRecord, now_ms: int | None = None) -> dict[str, Any]:
    # The mailbox tokens stay out: they are what the code itself conveys. The id's first
    # 8 hex characters name it for `invite revoke` (an id alone opens nothing).
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000) if now_ms is None else now_ms
    return {
        "id": invite.invite_id[:8],
        "relays": [link.url for link in invite.links],
        "created_at": utc_time(invite.created_at_ms),
        "expires_at": utc_time(invite.expires_at_ms),
        "expired": invite.expires_at_ms <= now,
    }


def message_json(entry: InboxEntry) -> dict[str, Any]:
    from backchannel.cli.urgency import note_urgency

    return {
        "channel": entry.channel,
        "message_id": entry.message_id,
        "seq": entry.seq,
        "direction": entry.direction,
        "text": entry.text,
        "sent_at": utc_time(entry.sent_at_ms),
        "received_at": utc_time(entry.received_at_ms),
        "delivered_at": utc_time(entry.delivered_at_ms),
        "read_at": utc_time(entry.read_at_ms),
        "stored_on": list(entry.stored_on),
        "precedence": precedence_name(entry.precedence),
        "ack_within_ms": entry.ack_within_ms,
        # What the text output makes impossible to miss (`urgency.note_urgency`).
        "urgent": note_urgency(entry.precedence).urgent,
    }


def precedence_name(precedence: int) -> str:
    """``"flash"``, ``"priority"`` or ``"routine"``, as the board's JSON spells them."""
    from backchannel.dialogue import Precedence

    return Precedence(precedence).name.lower()


def send_json(channel: str, result: SendResult) -> dict[str, Any]:
    return {
        "channel": channel,
        "message_id": result.message_id,
        "seq": result.seq,
        "stored_on": list(result.stored_on),
        "queued_for": list(result.queued_for),
        "queued": not result.stored_on,
        "next_slot_within_s": result.next_slot_s,
    }


def sync_json(report: SyncReport, new_messages: int) -> dict[str, Any]:
    return {
        "new_messages": new_messages,
        "received": report.received,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "sent": report.sent,
        "new_channels": list(report.new_channels),
        "relays_up": list(report.relays_up),
        "relays_down": dict(report.relays_down),
        "line_tests_sent": report.line_tests_sent,
        "line_tests_answered": report.line_tests_answered,
        "escalated": report.escalated,
        "forks": report.forks,
        "invite_claims": [claim.describe() for claim in report.invite_claims],
    }


def status_json(status: ChannelStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "id": status.channel_id,
        "verified": status.verified,
        "relays": list(status.relays),
        "last_heard": utc_time(status.last_heard_ms),
        "sent": status.sent,
        "delivered": status.delivered,
        "read": status.read,
        "received": status.received,
        "unread": status.unread,
        "queued": status.queued,
        "gaps": [list(gap) for gap in status.gaps],
        "rejected": status.rejected,
        "identity_changed": status.identity_changed,
        "relay_health": [relay_health_json(h) for h in status.relay_health],
        "forks": list(status.forks),
        "relays_lost": list(status.relays_lost),
        "invite_claims": list(status.invite_claims),
    }


def relay_health_json(health: RelayHealth) -> dict[str, Any]:
    return {
        "url": health.url,
        "up": health.up,
        "last_ok": utc_time(health.last_ok_ms),
        "last_error": health.last_error or None,
        "last_error_at": utc_time(health.last_error_ms),
    }


# -- tables --------------------------------------------------------------------------------


def _lost(s: ChannelStatus) -> str:
    """The relays that forgot a mailbox of the channel, and what that means for the
    principal: nothing is dropped, it waits for a fresh mailbox there."""
    if not s.relays_lost:
        return "none"
    return (", ".join(map(shown, s.relays_lost))
            + "\n  forgot a mailbox of this channel (lost its disk, or expired it): a fresh "
              "one is set up by whoever owned it, and what waits for it goes then")


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def channels_table(channels: list[ChannelRecord]) -> Table:
    from rich.table import Table

    table = Table(title="Channels")
    table.add_column("Channel")
    table.add_column("Id")
    table.add_column("Role")
    table.add_column("Verified")
    table.add_column("Relays")
    table.add_column("Created")
    for channel in channels:
        table.add_row(
            shown(channel.name),
            short_id(channel.channel_id),
            channel.role,
            _yes_no(channel.verified),
            "\n".join(shown(link.url) for link in channel.links),
            local_time(channel.created_at_ms),
        )
    return table


def inbox_table(entries: list[InboxEntry]) -> Table:
    from rich.table import Table

    from backchannel.cli.urgency import note_urgency

    table = Table(title="Inbox")
    # No sequence-number column: the numbers count receipts too, so they skip, and
    # commands take the id (review §4 row 17).
    table.add_column("Channel")
    table.add_column("Id")
    table.add_column("Precedence")
    table.add_column("Sent")
    table.add_column("Read")
    table.add_column("Text")
    for entry in entries:
        table.add_row(
            shown(entry.channel),
            short_id(entry.message_id),
            precedence_label(entry.precedence, entry.ack_within_ms),
            local_time(entry.sent_at_ms),
            local_time(entry.read_at_ms, empty="unread"),
            shown(entry.text, multiline=True),
            style=note_urgency(entry.precedence).style or None,
        )
    return table


def precedence_label(precedence: int, ack_within_ms: int = 0) -> str:
    """``FLASH, ack within 10m`` for people; routine notes without a deadline stay quiet."""
    from backchannel.dialogue import Precedence

    word = Precedence(precedence).name
    if ack_within_ms:
        return f"{word}, ack within {format_duration(ack_within_ms)}"
    return "" if precedence == Precedence.ROUTINE else word


def _gaps(gaps: tuple[tuple[int, int], ...]) -> str:
    if not gaps:
        return "none"
    return ", ".join(f"#{a}" if a == b else f"#{a}-{b}" for a, b in gaps)


def _relay_line(health: RelayHealth) -> str:
    # The URL came from an invite; the error was stored from a relay's failure, possibly
    # by an older version that kept the relay's own words: both escaped.
    url = shown(health.url)
    if health.up:
        return f"{url}\n  up (last reached {local_time(health.last_ok_ms)})"
    if health.last_error_ms:
        return (f"{url}\n  down since {local_time(health.last_error_ms)}"
                f" ({shown(health.last_error)})")
    return f"{url}\n  not tried yet"


def _relays(status: ChannelStatus) -> str:
    if not status.relay_health:
        return "\n".join(shown(url) for url in status.relays)
    return "\n".join(_relay_line(h) for h in status.relay_health)


def status_table(statuses: list[ChannelStatus]) -> Table:
    """One column per channel, one row per measure: a principal has few channels, and
    the measures would not fit side by side in a terminal."""
    from rich.table import Table

    table = Table(title="Channel status")
    table.add_column("")
    for s in statuses:
        table.add_column(shown(s.name))
    rows: tuple[tuple[str, list[str]], ...] = (
        ("Verified", [_yes_no(s.verified) for s in statuses]),
        ("Identity key", ["CHANGED: verify before sending" if s.identity_changed and not
                          s.verified else "unchanged" for s in statuses]),
        ("Relays", [_relays(s) for s in statuses]),
        ("Relays lost", [_lost(s) for s in statuses]),
        ("Last heard", [local_time(s.last_heard_ms, empty="never") for s in statuses]),
        ("Sent / delivered / read", [f"{s.sent} / {s.delivered} / {s.read}" for s in statuses]),
        ("Received / unread", [f"{s.received} / {s.unread}" for s in statuses]),
        ("Queued", [str(s.queued) for s in statuses]),
        ("Gaps", [_gaps(s.gaps) for s in statuses]),
        ("Rejected", [str(s.rejected) for s in statuses]),
    )
    for heading, cells in rows:
        table.add_row(heading, *cells)
    return table

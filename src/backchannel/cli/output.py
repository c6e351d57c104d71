"""How principal commands show things: local times for people, stable JSON for scripts.

The JSON shapes built here are documented in `docs/cli.md`; keys are only ever added,
never renamed or removed. Times in JSON are ISO 8601 in UTC (``...Z``) or null when
unknown; times for people are in the local time zone.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import typer
from rich.console import JustifyMethod
from rich.table import Table

from backchannel.client.engine import ChannelStatus, InboxEntry, SendResult, SyncReport
from backchannel.client.records import ChannelRecord, InviteRecord

__all__ = [
    "channel_json",
    "channels_table",
    "emit_json",
    "inbox_table",
    "invite_json",
    "local_time",
    "message_json",
    "send_json",
    "short_id",
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
    """The moment in the local time zone, to the second, or `empty` for 0 (not yet)."""
    if not ms:
        return empty
    return dt.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def emit_json(data: dict[str, Any]) -> None:
    """Print one JSON document on stdout."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


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


def invite_json(invite: InviteRecord) -> dict[str, Any]:
    # The invite id and the mailbox tokens stay out: they are what the code itself conveys.
    return {
        "relays": [link.url for link in invite.links],
        "created_at": utc_time(invite.created_at_ms),
        "expires_at": utc_time(invite.expires_at_ms),
    }


def message_json(entry: InboxEntry) -> dict[str, Any]:
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
    }


def send_json(channel: str, result: SendResult) -> dict[str, Any]:
    return {
        "channel": channel,
        "message_id": result.message_id,
        "seq": result.seq,
        "stored_on": list(result.stored_on),
        "queued_for": list(result.queued_for),
        "queued": not result.stored_on,
    }


def sync_json(report: SyncReport) -> dict[str, Any]:
    return {
        "received": report.received,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "sent": report.sent,
        "new_channels": list(report.new_channels),
        "relays_up": list(report.relays_up),
        "relays_down": dict(report.relays_down),
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
    }


# -- tables --------------------------------------------------------------------------------


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def channels_table(channels: list[ChannelRecord]) -> Table:
    table = Table(title="Channels")
    table.add_column("Channel")
    table.add_column("Id")
    table.add_column("Role")
    table.add_column("Verified")
    table.add_column("Relays")
    table.add_column("Created")
    for channel in channels:
        table.add_row(
            channel.name,
            short_id(channel.channel_id),
            channel.role,
            _yes_no(channel.verified),
            "\n".join(link.url for link in channel.links),
            local_time(channel.created_at_ms),
        )
    return table


def inbox_table(entries: list[InboxEntry]) -> Table:
    table = Table(title="Inbox")
    table.add_column("Channel")
    table.add_column("#", justify="right")
    table.add_column("Id")
    table.add_column("Sent")
    table.add_column("Read")
    table.add_column("Text")
    for entry in entries:
        table.add_row(
            entry.channel,
            str(entry.seq),
            short_id(entry.message_id),
            local_time(entry.sent_at_ms),
            local_time(entry.read_at_ms, empty="unread"),
            entry.text,
        )
    return table


def _gaps(gaps: tuple[tuple[int, int], ...]) -> str:
    if not gaps:
        return "none"
    return ", ".join(f"#{a}" if a == b else f"#{a}-{b}" for a, b in gaps)


def status_table(statuses: list[ChannelStatus]) -> Table:
    table = Table(title="Channel status")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("Channel", "left"),
        ("Verified", "left"),
        ("Relays", "left"),
        ("Last heard", "left"),
        ("Sent / delivered / read", "right"),
        ("Received / unread", "right"),
        ("Queued", "right"),
        ("Gaps", "left"),
        ("Rejected", "right"),
    )
    for heading, justify in columns:
        table.add_column(heading, justify=justify)
    for s in statuses:
        table.add_row(
            s.name,
            _yes_no(s.verified),
            "\n".join(s.relays),
            local_time(s.last_heard_ms, empty="never"),
            f"{s.sent} / {s.delivered} / {s.read}",
            f"{s.received} / {s.unread}",
            str(s.queued),
            _gaps(s.gaps),
            str(s.rejected),
        )
    return table

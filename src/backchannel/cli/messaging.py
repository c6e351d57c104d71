"""`channels`, `send`, `sync`, `inbox`, `read` and `status`: using a channel."""

from __future__ import annotations

import asyncio
from collections import Counter

import typer

from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors
from backchannel.cli.output import (
    channel_json,
    channels_table,
    emit_json,
    inbox_table,
    invite_json,
    local_time,
    message_json,
    send_json,
    short_id,
    status_json,
    status_table,
    sync_json,
)
from backchannel.client.engine import InboxEntry, SyncReport

__all__ = ["register"]


def channels(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List your channels and the invites still waiting for a counterpart.

    Example: backchannel channels
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        records = principal.channels()
        invites = principal.pending_invites()
    if state.json:
        emit_json({"channels": [channel_json(c) for c in records],
                   "pending_invites": [invite_json(i) for i in invites]})
        return
    if records:
        state.out.print(channels_table(records))
    else:
        state.out.print("No channels yet: backchannel invite --relay URL, or accept a code.")
    for pending in invites:
        state.out.print(f"Invite waiting (expires {local_time(pending.expires_at_ms)}) on "
                        + ", ".join(link.url for link in pending.links))


def send(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    text: str = typer.Argument(..., help="The message."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a message: kept in the outbox first, then stored on every relay of the channel.

    With no relay reachable the message stays queued (exit code 0); `sync` sends it later.

    Example: backchannel send beijing "We propose Vienna, the week of 12 May."
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        name = principal.channel(channel).name
        with state.progress(f"Sending to {name}…"):
            result = asyncio.run(principal.send(name, text))
    if state.json:
        emit_json(send_json(name, result))
        return
    label = f"(id {short_id(result.message_id)})"
    if not result.stored_on:
        state.out.print(f"Queued for {name} {label}: no relay answered; "
                        "`backchannel sync` will send it.")
        return
    state.out.print(f"Sent to {name} {label}: stored on {', '.join(result.stored_on)}.")
    if result.queued_for:
        state.out.print(f"Still queued for {', '.join(result.queued_for)}; "
                        "`backchannel sync` will send it there.")


def _print_sync(state: CliContext, report: SyncReport, new: list[InboxEntry]) -> None:
    # What the engine received besides notes: receipts, and one opening message per new
    # channel.
    receipts = report.received - len(new) - len(report.new_channels)
    state.out.print(
        f"Synced: {len(new)} new message(s), {receipts} receipt(s), {report.sent} sent"
        + (f", {report.duplicates} duplicate(s) dropped" if report.duplicates else "")
        + (f", {report.rejected} rejected (tampered or not for us)" if report.rejected else "")
        + "."
    )
    for name, count in Counter(e.channel for e in new).items():
        state.out.print(f"{count} new in '{name}': backchannel read {name}")
    for name in report.new_channels:
        state.out.print(f"New channel '{name}'. Compare the safety number: "
                        f"backchannel verify {name}")
    for url, reason in report.relays_down.items():
        state.err.print(f"relay {url} is unreachable ({reason}); "
                        "what is queued for it stays queued")


def sync(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Send everything queued, fetch and process everything waiting, send receipts, exit.

    Example: backchannel sync
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal, state.progress("Syncing with the relays…"):
        # The engine counts every message received, receipts included; people want to
        # know about notes, so the inbox is compared before and after.
        known = {e.message_id for e in principal.inbox()}
        report = asyncio.run(principal.sync())
        new = [e for e in principal.inbox() if e.message_id not in known]
    if state.json:
        emit_json(sync_json(report, len(new)))
        return
    _print_sync(state, report, new)


def inbox(
    ctx: typer.Context,
    channel: str | None = typer.Argument(None, help="Only this channel (name or id)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the messages you received, in order; `read` opens them.

    Example: backchannel inbox beijing
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        entries = principal.inbox(channel)
    if state.json:
        emit_json({"messages": [message_json(e) for e in entries]})
    elif entries:
        state.out.print(inbox_table(entries))
    else:
        state.out.print("No messages received yet (`backchannel sync` fetches new ones).")


def _print_message(state: CliContext, entry: InboxEntry) -> None:
    state.out.print(f"{entry.channel} #{entry.seq} · sent "
                    f"{local_time(entry.sent_at_ms)} · id {short_id(entry.message_id)}",
                    style="bold")
    state.out.print(entry.text)
    state.out.print()


def read(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str | None = typer.Argument(
        None, help="A message id (or its first characters) [default: every unread one]."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Open received messages, mark them read and send read receipts.

    Example: backchannel read beijing 3f9a2c1e
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        name = principal.channel(channel).name
        entries = asyncio.run(principal.read(name, message))
    if state.json:
        emit_json({"messages": [message_json(e) for e in entries]})
        return
    if not entries:
        state.out.print(f"No unread messages in '{name}'.")
        return
    for entry in entries:
        _print_message(state, entry)


def status(
    ctx: typer.Context,
    channel: str | None = typer.Argument(None, help="Only this channel (name or id)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show each channel's health: verified, relays, receipts, queue, gaps, rejections.

    Example: backchannel status beijing
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        statuses = principal.status(channel)
    if state.json:
        emit_json({"channels": [status_json(s) for s in statuses]})
    elif statuses:
        state.out.print(status_table(statuses))
    else:
        state.out.print("No channels yet.")


def register(app: typer.Typer) -> None:
    """Add the messaging commands to the root app."""
    for command in (channels, send, sync, inbox, read, status):
        app.command()(reports_errors(command))

"""`channels`, `send`, `sync`, `inbox` and `read`: using a channel (`status` is in
`board`)."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import typer

from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors
from backchannel.cli.durations import parse_duration
from backchannel.cli.narrate import describe
from backchannel.cli.output import (
    channel_json,
    channels_table,
    emit_json,
    inbox_table,
    invite_json,
    local_time,
    message_json,
    precedence_label,
    send_json,
    short_id,
    sync_json,
)
from backchannel.client.engine import InboxEntry, Principal, SyncReport
from backchannel.client.errors import ClientError
from backchannel.client.records import MessageRecord
from backchannel.dialogue import Precedence

__all__ = ["register"]


def channels(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List your channels and your invites not yet used (waiting, or expired).

    `channels rename OLD NEW` renames one here; `channels remove NAME` deletes one.

    Example: backchannel channels
    """
    if ctx.invoked_subcommand is not None:
        return  # `channels rename` or `channels remove`
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        records = principal.channels()
        invites = principal.pending_invites()
        now = principal.now_ms()
    if state.json:
        emit_json({"channels": [channel_json(c) for c in records],
                   "pending_invites": [invite_json(i, now) for i in invites]})
        return
    if records:
        state.out.print(channels_table(records))
    else:
        state.out.print("No channels yet: backchannel invite --relay URL, or accept a code.")
    for pending in invites:
        relays = ", ".join(link.url for link in pending.links)
        ref = pending.invite_id[:8]
        if pending.expires_at_ms <= now:
            # An expired code can no longer be accepted (the joiner refuses it and so do
            # we): it is not waiting for anyone. Its mailboxes stay until revoked.
            state.out.print(f"Invite {ref} expired {local_time(pending.expires_at_ms)} on "
                            f"{relays}; delete its mailboxes: backchannel invite revoke {ref}")
        else:
            state.out.print(f"Invite {ref} waiting (expires "
                            f"{local_time(pending.expires_at_ms)}) on {relays}")


def rename(
    ctx: typer.Context,
    old: str = typer.Argument(..., help="The channel's name or id."),
    new: str = typer.Argument(..., help="Its new name (here only; unique)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Rename a channel on this side; your counterpart is not told and keeps its name.

    Example: backchannel channels rename "beijing~2" beijing-embassy
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        record = principal.rename_channel(old, new)
    if state.json:
        emit_json({"channel": channel_json(record)})
        return
    state.out.print(f"Renamed channel {short_id(record.channel_id)} to '{record.name}'.")


def remove(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="The channel's name or id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Delete a channel for good: its mailboxes on the relays, its keys and its transcript.

    Asks first unless --yes (and, with no terminal to ask on, as with an agent running,
    needs --yes). Your counterpart is not told: what it sends next is refused by the
    relays. This cannot be undone; keep what you need from `read` first.

    Example: backchannel channels remove beijing --yes
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        record = principal.channel(channel)
        if not yes:
            if not sys.stdin.isatty():
                raise ClientError("removing a channel cannot be undone: give --yes to confirm")
            if not typer.confirm(f"Delete channel '{record.name}', its keys and its whole "
                                 "transcript?", default=False, err=True):
                state.err.print("Nothing was removed.")
                raise typer.Exit(1)
        with state.progress("Deleting the channel's mailboxes…"):
            removed, left = asyncio.run(principal.remove_channel(record.channel_id))
    if state.json:
        emit_json({"removed": channel_json(removed), "mailboxes_left": left})
        return
    state.out.print(f"Removed channel '{removed.name}': its keys and transcript are deleted.")
    for where in left:
        state.err.print(f"warning: relay {where} could not delete the channel's mailbox; "
                        "it expires there in time and nothing here can read it")


def _precedence(flash: bool, priority: bool, routine: bool) -> Precedence:
    chosen = [p for p, flag in ((Precedence.FLASH, flash), (Precedence.PRIORITY, priority),
                                (Precedence.ROUTINE, routine)) if flag]
    if len(chosen) > 1:
        raise typer.BadParameter("give at most one of --flash, --priority and --routine")
    return chosen[0] if chosen else Precedence.ROUTINE


def send(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    text: str = typer.Argument(..., help="The message."),
    flash: bool = typer.Option(False, "--flash", help="Precedence FLASH: act on it now."),
    priority: bool = typer.Option(False, "--priority", help="Precedence PRIORITY: act soon."),
    routine: bool = typer.Option(False, "--routine", help="Precedence ROUTINE (the default)."),
    ack_within: str | None = typer.Option(
        None, "--ack-within", metavar="DURATION",
        help="Ask for an explicit acknowledgement within this time (10m, 2h); missed, "
             "the note is escalated.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a message: kept in the outbox first, then stored on every relay of the channel.

    With no relay reachable the message stays queued (exit code 0); `sync` sends it later.
    A precedence (the hotline's FLASH, PRIORITY, ROUTINE) tells the counterpart how
    urgent it is; `--ack-within` sets a deadline for their `ack`, after which `sync` and
    `watch` escalate it: resent on every relay, marked overdue, and the escalation
    command run.

    Example: backchannel send beijing "Incident at sea; please confirm." --flash --ack-within 10m
    """
    state = cli_context(ctx, as_json)
    precedence = _precedence(flash, priority, routine)
    deadline_ms = 0 if ack_within is None else parse_duration(ack_within, option="--ack-within")
    with state.principal() as principal:
        name = principal.channel(channel).name
        with state.progress(f"Sending to {name}…"):
            result = asyncio.run(principal.send(name, text, precedence=precedence,
                                                ack_within_ms=deadline_ms))
    if state.json:
        emit_json({**send_json(name, result), "precedence": precedence.name.lower(),
                   "ack_within_ms": deadline_ms})
        return
    label = f"(id {short_id(result.message_id)})"
    urgency = precedence_label(precedence, deadline_ms)
    if urgency:
        label += f" [{urgency}]"
    if not result.stored_on:
        state.out.print(f"Queued for {name} {label}: no relay answered; "
                        "`backchannel sync` will send it.")
        return
    state.out.print(f"Sent to {name} {label}: stored on {', '.join(result.stored_on)}.")
    if result.queued_for:
        state.out.print(f"Still queued for {', '.join(result.queued_for)}; "
                        "`backchannel sync` will send it there.")


def _print_sync(
    state: CliContext, report: SyncReport, new: list[InboxEntry], dialogue: int
) -> None:
    # What the engine received besides notes and dialogue messages (acknowledgements,
    # line tests, ...): receipts, and one opening message per new channel.
    receipts = max(report.received - len(new) - dialogue - len(report.new_channels), 0)
    state.out.print(
        f"Synced: {len(new)} new message(s), {dialogue} dialogue message(s), "
        f"{receipts} receipt(s), {report.sent} sent"
        + (f", {report.duplicates} duplicate(s) dropped" if report.duplicates else "")
        + (f", {report.rejected} rejected (tampered or not for us)" if report.rejected else "")
        + "."
    )
    for name, count in Counter(e.channel for e in new).items():
        state.out.print(f"{count} new in '{name}': backchannel read {name}")
    for name in report.new_channels:
        state.out.print(f"New channel '{name}'. Compare the safety number: "
                        f"backchannel verify {name}")
    if report.escalated:
        state.err.print(f"Escalated {report.escalated} note(s) whose acknowledgement "
                        "deadline passed: resent on every relay; see backchannel status")
    if report.forks:
        state.err.print(f"FORK: {report.forks} message(s) show that a copy of the "
                        "counterpart's state sent beside it; see backchannel status")
    for claim in report.invite_claims:
        state.err.print(f"WARNING: invite used twice: {claim.describe()}", style="bold")
    if report.line_tests_answered:
        state.out.print(f"Answered {report.line_tests_answered} line test(s).")
    for url, reason in report.relays_down.items():
        state.err.print(f"relay {url} is unreachable ({reason}); "
                        "what is queued for it stays queued")


def _incoming(principal: Principal) -> dict[str, tuple[str, MessageRecord]]:
    """Every stored incoming message, by id, with its channel's name."""
    return {m.message_id: (c.name, m) for c in principal.channels()
            for m in principal.messages(c.name) if m.direction == "in"}


def sync(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Send everything queued, fetch and process everything waiting, send receipts, answer
    line tests, send ours when due, escalate missed deadlines, exit.

    Example: backchannel sync
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal, state.progress("Syncing with the relays…"):
        # The engine counts every message received, receipts included; people want to
        # know about notes and dialogue acts, so what is stored is compared before and
        # after.
        known = _incoming(principal)
        report = asyncio.run(principal.sync())
        arrived = [v for k, v in _incoming(principal).items() if k not in known]
        new = [e for e in principal.inbox() if e.message_id not in known]
    acts = [(name, m, line) for name, m in arrived
            if (line := describe(name, m)) is not None]
    if state.json:
        emit_json({**sync_json(report, len(new)),
                   "dialogue": [{"channel": name, "message_id": m.message_id, "text": line}
                                for name, m, line in acts]})
        return
    notes = {e.message_id for e in new}
    _print_sync(state, report, new, sum(1 for _, m in arrived if m.message_id not in notes))
    for _, _, line in acts:
        state.out.print(line)


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
    urgency = precedence_label(entry.precedence, entry.ack_within_ms)
    state.out.print(f"{entry.channel} #{entry.seq} · sent "
                    f"{local_time(entry.sent_at_ms)} · id {short_id(entry.message_id)}"
                    + (f" · {urgency}" if urgency else ""), style="bold")
    state.out.print(entry.text)
    if entry.ack_within_ms:
        # Reading sends a read receipt, which is not an acknowledgement: say what is.
        state.out.print(f"Acknowledge: backchannel ack {entry.channel} "
                        f"{short_id(entry.message_id)} (or hold it: backchannel hold ...)",
                        style="dim")
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


channels_app = typer.Typer(
    invoke_without_command=True, no_args_is_help=False, add_completion=False,
    rich_markup_mode="markdown",
)


def register(app: typer.Typer) -> None:
    """Add the messaging commands to the root app (`channels` is a group: `channels
    rename`, `channels remove`)."""
    for command in (send, sync, inbox, read):
        app.command()(reports_errors(command))
    channels_app.callback()(reports_errors(channels))
    channels_app.command("rename")(reports_errors(rename))
    channels_app.command("remove")(reports_errors(remove))
    app.add_typer(channels_app, name="channels")

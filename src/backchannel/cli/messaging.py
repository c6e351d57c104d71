"""`channels`, `send`, `sync`, `inbox` and `read`: using a channel (`status` is in
`board`)."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import typer

from backchannel.cli.context import (
    AGENT_REQUEST,
    JSON_OPTION,
    CliContext,
    cli_context,
    exit_with,
    read_stdin_text,
    reports_errors,
)
from backchannel.cli.durations import parse_duration
from backchannel.cli.exitcodes import ExitCode
from backchannel.cli.hints import command_hint, hint_for_home
from backchannel.cli.languageoptions import (
    AUTHORITATIVE_OPTION,
    LANG_OPTION,
    TRANSLATED_BY_OPTION,
    TRANSLATION_OPTION,
)
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
    shown,
    sync_json,
)
from backchannel.client.errors import ClientError

if TYPE_CHECKING:
    # Only for annotations: `send --help` and `sync --help` build these commands without
    # the engine, cryptography, websockets or the dialogue package (0.3 s together);
    # the functions that use them at run time import them there (asyncio too: 12 ms).
    from backchannel.cli.urgency import Bell
    from backchannel.client.engine import InboxEntry, Principal, SyncReport
    from backchannel.client.records import MessageRecord
    from backchannel.dialogue import Dialogue, PendingAck, Precedence, TextVersion

__all__ = ["HOLD_HINT_UNTIL", "register"]

# The `--until` a suggested holding reply carries: an hour is a plausible first promise,
# and the hint must be a complete command (it is edited, or sent as it is).
HOLD_HINT_UNTIL: Final = "1h"


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
        state.out.print("No channels yet: invite with `backchannel invite --relay URL`, "
                        "or accept a code with `backchannel accept CODE`.")
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
    import asyncio

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


_QUEUED = "no relay answered: the message is queued and `backchannel sync` will send it"


def _precedence(flash: bool, priority: bool, routine: bool) -> Precedence:
    from backchannel.dialogue import Precedence

    chosen = [p for p, flag in ((Precedence.FLASH, flash), (Precedence.PRIORITY, priority),
                                (Precedence.ROUTINE, routine)) if flag]
    if len(chosen) > 1:
        raise typer.BadParameter("give at most one of --flash, --priority and --routine")
    return chosen[0] if chosen else Precedence.ROUTINE


def send(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    text: str = typer.Argument(..., help="The message; `-` reads it from stdin."),
    flash: bool = typer.Option(False, "--flash", help="Precedence FLASH: act on it now."),
    priority: bool = typer.Option(False, "--priority", help="Precedence PRIORITY: act soon."),
    routine: bool = typer.Option(False, "--routine", help="Precedence ROUTINE (the default)."),
    ack_within: str | None = typer.Option(
        None, "--ack-within", metavar="DURATION",
        help="Ask for an explicit acknowledgement within this time (10m, 2h); missed, "
             "the note is escalated.",
    ),
    language: str | None = LANG_OPTION,
    translations: list[str] = TRANSLATION_OPTION,
    translated_by: str | None = TRANSLATED_BY_OPTION,
    authoritative: str | None = AUTHORITATIVE_OPTION,
    no_wait: bool = typer.Option(
        False, "--no-wait",
        help="Return once the message is in the outbox, without waiting for the relays: "
             "the agent sends it at once in the background (without an agent, `sync` "
             "does).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a message: kept in the outbox first, then stored on every relay of the channel.

    With no relay reachable the message stays queued (exit code 0); `sync` sends it later.
    `--no-wait` returns as soon as it is queued, for a script sending many: through
    the agent they leave together, several to a frame.
    A precedence (the hotline's FLASH, PRIORITY, ROUTINE) tells the counterpart how
    urgent it is; `--ack-within` sets a deadline for their `ack`, after which `sync` and
    `watch` escalate it: resent on every relay, marked overdue, and the escalation
    command run.

    With `--lang` the note says its language, and may carry `--translation`s, each
    attributed (`--translated-by`); the receiver reads them side by side.

    Example: backchannel send beijing "Incident at sea; please confirm." --flash --ack-within 10m
    """
    import asyncio

    from backchannel.cli.translations import parse_languages_block
    from backchannel.dialogue.kinds import MAX_ACK_WITHIN_MS

    state = cli_context(ctx, as_json)
    precedence = _precedence(flash, priority, routine)
    deadline_ms = 0 if ack_within is None else parse_duration(
        ack_within, option="--ack-within", maximum_ms=MAX_ACK_WITHIN_MS)
    block = parse_languages_block(language, translations, translated_by, authoritative)
    if text == "-":
        text = read_stdin_text()
    with state.principal() as principal:
        name = principal.channel(channel).name
        if no_wait:
            # Only the local commit: no event loop, no network.
            if block is None:
                queued = principal.queue(name, text, precedence=precedence,
                                         ack_within_ms=deadline_ms)
            else:
                from backchannel.client.strategic import StrategicChannel

                queued = StrategicChannel(principal, name).queue_note(
                    text, precedence, deadline_ms, block)
            result = principal.placement(name, queued)
        else:
            with state.progress(f"Sending to {name}…"):
                if block is None:
                    result = asyncio.run(principal.send(name, text, precedence=precedence,
                                                        ack_within_ms=deadline_ms))
                else:
                    from backchannel.client.strategic import StrategicChannel

                    result = asyncio.run(StrategicChannel(principal, name).note(
                        text, precedence, deadline_ms, block))
    # Asked not to wait: queued is the answer, not a failure (exit 0). Inside the agent
    # its watch sends it within a tick; a command run without an agent leaves it to `sync`.
    background = no_wait and AGENT_REQUEST.principal is not None
    if state.json:
        emit_json({**send_json(name, result), "precedence": precedence.name.lower(),
                   "ack_within_ms": deadline_ms, "waited": not no_wait,
                   **({} if block is None else {"languages": block.to_dict()})})
        if not result.stored_on and result.next_slot_s is None and not no_wait:
            raise exit_with(ExitCode.NOT_DELIVERED, _QUEUED, state)
        return
    label = f"(id {short_id(result.message_id)})"
    urgency = precedence_label(precedence, deadline_ms)
    if urgency:
        label += f" [{urgency}]"
    if no_wait and result.next_slot_s is None:
        where = ("the agent sends it now" if background
                 else "not sent yet; this sends it: " + command_hint(state, "sync"))
        state.out.print(f"Queued for {name} {label}: {where}.", soft_wrap=True)
        return
    if not result.stored_on and result.next_slot_s is not None:
        # The agent sends the channel in constant-rate slots (docs/threat-model.md).
        state.out.print(f"Queued for {name} {label}: the agent sends it in the channel's "
                        f"next slot, within {result.next_slot_s:g} s.", soft_wrap=True)
        return
    if not result.stored_on:
        state.out.print(f"Queued for {name} {label}: no relay answered; this sends it: "
                        + command_hint(state, "sync"), soft_wrap=True)
        raise exit_with(ExitCode.NOT_DELIVERED, _QUEUED, state)
    state.out.print(f"Sent to {name} {label}: stored on {', '.join(result.stored_on)}.")
    if result.queued_for:
        state.out.print(f"Still queued for {', '.join(result.queued_for)}; this sends it "
                        "there: " + command_hint(state, "sync"), soft_wrap=True)


@dataclass(frozen=True, slots=True)
class _SyncSeen:
    """What one sync changed in the store, counted by what each message is: the engine's
    `SyncReport.received` counts envelopes of every kind (receipts, line tests, pairing
    messages), and `sent` counts each message once per relay that stored it."""

    notes: list[InboxEntry]
    acts: list[tuple[str, MessageRecord, str]]  # (channel, message, the line shown)
    receipts: int
    sent: int


def _messages(principal: Principal) -> dict[str, tuple[str, MessageRecord]]:
    """Every stored message of every channel, by id, with its channel's name."""
    return {m.message_id: (c.name, m) for c in principal.channels()
            for m in principal.messages(c.name)}


def _seen(
    state: CliContext, principal: Principal, before: dict[str, tuple[str, MessageRecord]]
) -> _SyncSeen:
    from backchannel.cli.narrate import describe
    from backchannel.client.receipts import RECEIPT_KINDS

    after = _messages(principal)
    arrived = [(name, m) for key, (name, m) in after.items()
               if key not in before and m.direction == "in"]
    sent = sum(1 for key, (_, m) in after.items() if m.direction == "out"
               and len(m.stored_on) > (len(before[key][1].stored_on) if key in before else 0))
    notes = [e for e in principal.inbox() if e.message_id not in before]
    hint = hint_for_home(state.home)
    acts = [(name, m, line) for name, m in arrived
            if (line := describe(name, m, hint)) is not None]
    receipts = sum(1 for _, m in arrived if m.kind in RECEIPT_KINDS)
    return _SyncSeen(notes, acts, receipts, sent)


def _print_sync(state: CliContext, report: SyncReport, seen: _SyncSeen) -> None:
    from backchannel.cli.urgency import NEWLY_OVERDUE, Bell, note_urgency, print_urgent

    state.out.print(
        f"Synced: {len(seen.notes)} new message(s), {len(seen.acts)} dialogue message(s), "
        f"{seen.receipts} receipt(s), {seen.sent} sent"
        + (f", {report.duplicates} duplicate(s) dropped" if report.duplicates else "")
        + (f", {report.rejected} rejected (tampered or not for us)" if report.rejected else "")
        + "."
    )
    bell = Bell()  # once per sync, however many urgent lines it prints
    for entry in seen.notes:
        urgency = note_urgency(entry.precedence)
        if urgency.urgent:
            # The count line below does not say which note: an urgent one is named, with
            # the command that opens it.
            ref = short_id(entry.message_id)
            label = precedence_label(entry.precedence, entry.ack_within_ms)
            print_urgent(state.out, f"'{shown(entry.channel)}' sent a note [{label}], id "
                         f"{ref}; read it now: " + command_hint(state, "read", entry.channel,
                                                                ref),
                         urgency, bell=bell, soft_wrap=True)
    for name, count in Counter(e.channel for e in seen.notes).items():
        state.out.print(f"{count} new in '{shown(name)}': " + command_hint(state, "read", name),
                        soft_wrap=True)
    for name in report.new_channels:
        state.out.print(f"New channel '{shown(name)}'. Compare the safety number, all 12 "
                        "groups to the last: "
                        + command_hint(state, "verify", name), soft_wrap=True)
    if report.escalated:
        print_urgent(state.err, f"Escalated {report.escalated} note(s) whose "
                     "acknowledgement deadline passed: resent on every relay; see "
                     + command_hint(state, "status"), NEWLY_OVERDUE,
                     bell=bell, soft_wrap=True)
    if report.forks:
        state.err.print(f"FORK: {report.forks} message(s) show that a copy of the "
                        "counterpart's state sent beside it; see "
                        + command_hint(state, "status"), soft_wrap=True)
    for claim in report.invite_claims:
        state.err.print(f"WARNING: invite used twice: {claim.describe()}", style="bold")
    if report.line_tests_answered:
        state.out.print(f"Answered {report.line_tests_answered} line test(s).")
    for line in report.routes.values():
        state.err.print(f"routing: {shown(line)}", soft_wrap=True)  # the URL came from an invite
    for url, reason in report.relays_down.items():
        # The URL came from an invite; the reason is the client's own words for what the
        # relay did (`transport.relay_error_text`), escaped once more all the same.
        state.err.print(f"relay {shown(url)} is unreachable ({shown(reason)}); "
                        "what is queued for it stays queued")


def sync(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Send everything queued, fetch and process everything waiting, send receipts, answer
    line tests, send ours when due, escalate missed deadlines, exit.

    Example: backchannel sync
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.principal() as principal, state.progress("Syncing with the relays…"):
        # What is stored is compared before and after, so that each counter counts what
        # it names (see `_SyncSeen`).
        before = _messages(principal)
        report = asyncio.run(principal.sync())
        seen = _seen(state, principal, before)
    if state.json:
        emit_json({**sync_json(report, len(seen.notes)),
                   "receipts": seen.receipts,
                   "messages_sent": seen.sent,
                   "dialogue": [{"channel": name, "message_id": m.message_id, "text": line}
                                for name, m, line in seen.acts]})
    else:
        _print_sync(state, report, seen)
        for _, _, line in seen.acts:
            state.out.print(line)
    _sync_ending(state, report)


def _sync_ending(state: CliContext, report: SyncReport) -> None:
    """A sync that saw a fork, or reached no relay at all, does not exit 0 (a fork first:
    it is the graver news). Some relays down is still a sync: what it could do, it did."""
    if report.forks:
        raise exit_with(ExitCode.FORK_DETECTED,
                        f"{report.forks} message(s) show a fork; see "
                        + command_hint(state, "status"), state)
    if report.relays_down and not report.relays_up:
        raise exit_with(ExitCode.NOT_DELIVERED,
                        "no relay could be reached: nothing was sent or received; what is "
                        "queued stays queued", state)


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
        folded: dict[str, Dialogue] = {}
        texts: dict[str, tuple[TextVersion, ...]] = {}
        for name in sorted({e.channel for e in entries}):
            texts |= _texts(principal, name, folded)
        names = [principal.channel(channel).name] if channel else [
            c.name for c in principal.channels() if c.last_heard_ms]
        codes = [m for name in names for m in _code_messages(principal, name, folded)]
    if state.json:
        emit_json({"messages": [_with_texts(message_json(e), texts.get(e.message_id))
                                for e in entries], "codebook_messages": codes})  # fmt: skip
    elif entries:
        state.out.print(inbox_table(entries))
        for entry in entries:
            versions = texts.get(entry.message_id)
            if versions:
                languages = ", ".join(v.language or "?" for v in versions)
                state.out.print(f"{short_id(entry.message_id)}: texts in {languages} "
                                f"(authoritative: {versions[0].language}); side by side: "
                                + command_hint(state, "read", entry.channel,
                                               short_id(entry.message_id)),
                                style="dim", soft_wrap=True)  # fmt: skip
    elif not codes:
        state.out.print("No messages received yet; to fetch new ones: "
                        + command_hint(state, "sync"), soft_wrap=True)
    if codes and not state.json:
        state.out.print("Codebook messages (agreed texts, in your language where the entry "
                        "has it):", style="bold")  # fmt: skip
        for message in codes:
            _print_code(state, message)


def _dialogue(principal: Principal, channel: str, cache: dict[str, Dialogue]) -> Dialogue:
    """The channel's dialogue, folded once per command (receipts, which `read` sends, are
    not part of it)."""
    from backchannel.client.strategic import StrategicChannel

    if channel not in cache:
        cache[channel] = StrategicChannel(principal, channel).dialogue()
    return cache[channel]


def _code_messages(
    principal: Principal, channel: str, cache: dict[str, Dialogue]
) -> list[dict[str, Any]]:
    """Their codebook messages, rendered in this principal's language (`translate
    language`), else in the entry's first: for `inbox` and `read`."""
    from backchannel.cli.translations import principal_language
    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue import Precedence, Side

    strategic = StrategicChannel(principal, channel)
    dialogue = _dialogue(principal, strategic.name, cache)
    language = principal_language(principal)
    now = principal.now_ms()
    owed = {p.message_id for p in dialogue.pending_acks(now, Side.THEIRS)}
    found = []
    for record in principal.messages(strategic.name):
        code = dialogue.code_message(bytes.fromhex(record.message_id))
        if code is None or code.sent_by is not Side.THEIRS:
            continue
        text, rendered = code.render(language or code.entry.texts[0].language)
        entry = code.entry
        found.append({
            "channel": strategic.name, "message_id": record.message_id,
            "sent_at_ms": record.sent_at_ms, "number": entry.number,
            "code_word": entry.code_word, "version": entry.version,
            "precedence": (entry.precedence or Precedence.ROUTINE).name.lower(),
            "ack_within_ms": entry.ack_within_ms, "language": text.language,
            "text": rendered, "values": list(code.values),
            "acknowledged": dialogue.acknowledged_at(code.message_id) is not None,
            "owed_ack": code.message_id in owed,
        })  # fmt: skip
    return found


def _print_code(state: CliContext, message: dict[str, Any]) -> None:
    from backchannel.cli.urgency import note_urgency, print_urgent
    from backchannel.dialogue import Precedence

    precedence = Precedence[message["precedence"].upper()]
    label = precedence_label(precedence, message["ack_within_ms"])
    print_urgent(state.out, f"{shown(message['channel'])} · id {short_id(message['message_id'])}"
                 f" · codebook {message['number']} {shown(message['code_word'])} · sent "
                 f"{local_time(message['sent_at_ms'])}" + (f" · {label}" if label else ""),
                 note_urgency(precedence), style="bold")  # fmt: skip
    state.out.print(f"[{message['language']}] " + shown(message["text"], multiline=True),
                    markup=False)  # fmt: skip
    if message["owed_ack"]:
        state.out.print("Acknowledge: " + command_hint(state, "ack", message["channel"],
                                                        short_id(message["message_id"])),
                        style="dim", soft_wrap=True)  # fmt: skip


def _with_texts(shape: dict[str, Any], versions: tuple[TextVersion, ...] | None) -> dict[str, Any]:
    """A message's JSON, with its texts side by side when it has translations."""
    if not versions:
        return shape
    return {**shape, "texts": [v.to_dict() for v in versions]}


def _owed(
    principal: Principal, channel: str, cache: dict[str, Dialogue]
) -> dict[str, PendingAck]:
    """Their notes this side still owes an acknowledgement, by hex id (the fold knows)."""
    from backchannel.dialogue import Side

    dialogue = _dialogue(principal, channel, cache)
    return {p.message_id.hex(): p for p in dialogue.pending_acks(principal.now_ms(), Side.THEIRS)}


def _texts(
    principal: Principal, channel: str, cache: dict[str, Dialogue]
) -> dict[str, tuple[TextVersion, ...]]:
    """Their notes' texts side by side, by hex id: only those with translations."""
    from backchannel.dialogue import decode_body
    from backchannel.dialogue.bodies import versions_of
    from backchannel.protocol.errors import RemoteProtocolError

    dialogue = _dialogue(principal, channel, cache)
    found: dict[str, tuple[TextVersion, ...]] = {}
    for record in principal.messages(channel):
        if record.direction != "in" or record.kind != 1:
            continue
        try:
            body = decode_body(record.kind, bytes.fromhex(record.body))
        except RemoteProtocolError:
            continue
        versions = versions_of(body, dialogue.translations(bytes.fromhex(record.message_id)))
        if versions:
            found[record.message_id] = versions
    return found


def _print_message(
    state: CliContext, entry: InboxEntry, owed: PendingAck | None, bell: Bell,
    versions: tuple[TextVersion, ...] = (),
) -> None:
    from backchannel.cli.urgency import note_urgency, print_urgent

    label = precedence_label(entry.precedence, entry.ack_within_ms)
    # Overdue only while still owed: an acknowledged note is no longer anyone's worry.
    urgency = note_urgency(entry.precedence, overdue=owed is not None and owed.overdue)
    print_urgent(state.out, f"{shown(entry.channel)} · id {short_id(entry.message_id)} · sent "
                 f"{local_time(entry.sent_at_ms)}" + (f" · {label}" if label else ""),
                 urgency, bell=bell, style="bold")
    if versions:
        from backchannel.cli.translations import print_versions

        print_versions(state, versions, entry.channel)
    else:
        state.out.print(shown(entry.text, multiline=True))
    if owed is not None:
        # Reading sends a read receipt, which is not an acknowledgement: say what is, and
        # only while it is owed (an acknowledged note is not suggested again).
        ref = short_id(entry.message_id)
        state.out.print("Acknowledge: " + command_hint(state, "ack", entry.channel, ref),
                        style="dim", soft_wrap=True)
        if owed.hold is None:
            state.out.print("or, to answer later: " + command_hint(
                state, "hold", entry.channel, ref, "--until", HOLD_HINT_UNTIL),
                style="dim", soft_wrap=True)
        else:
            state.out.print(f"(held: answer expected by {local_time(owed.hold.expected_by_ms)})",
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
    import asyncio

    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        name = principal.channel(channel).name
        folded: dict[str, Dialogue] = {}
        codes = [m for m in _code_messages(principal, name, folded)
                 if message and m["message_id"].startswith(message.strip().lower())]
        if message and len(codes) == 1:
            # A codebook message: rendered from the agreed text (no read receipt: only
            # notes are marked read).
            if state.json:
                emit_json({"messages": [], "codebook_messages": codes})
            else:
                _print_code(state, codes[0])
            return
        entries = asyncio.run(principal.read(name, message))
        owed = _owed(principal, name, folded)
        texts = _texts(principal, name, folded)
    if state.json:
        emit_json({"messages": [_with_texts(message_json(e), texts.get(e.message_id))
                                for e in entries]})  # fmt: skip
        return
    if not entries:
        state.out.print(f"No unread messages in '{shown(name)}'; all of them: "
                        + command_hint(state, "history", name), soft_wrap=True)
        return
    from backchannel.cli.urgency import Bell

    bell = Bell()  # once per read, however many FLASH notes it opens
    for entry in entries:
        _print_message(state, entry, owed.get(entry.message_id), bell,
                       texts.get(entry.message_id, ()))


channels_app = typer.Typer(
    invoke_without_command=True, no_args_is_help=False, add_completion=False,
    rich_markup_mode="markdown",
)


# Wired here, not in `register`: the root group loads `channels_app` by itself when
# `channels` runs (cli/registry.py).
channels_app.callback()(reports_errors(channels))
channels_app.command("rename")(reports_errors(rename))
channels_app.command("remove")(reports_errors(remove))


def register(app: typer.Typer) -> None:
    """Add the messaging commands to the root app (`channels` is a group: `channels
    rename`, `channels remove`)."""
    for command in (send, sync, inbox, read):
        app.command()(reports_errors(command))
    app.add_typer(channels_app, name="channels")

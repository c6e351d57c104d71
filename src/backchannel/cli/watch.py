"""`watch`, `linetest` and `escalation`: the channel kept alive and watched over.

`watch` stays connected (`Principal.watch`): it receives as envelopes arrive, answers the
counterpart's line tests, sends ours when due and escalates notes whose acknowledgement
deadline passed, once a second. An observer beside it polls the state once a second and
prints what changed: dialogue acts that arrived, line-test answers, the line's state,
escalations. It stops cleanly on Ctrl-C or SIGTERM, after the work in hand is committed.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from typing import Final

import typer

from backchannel.cli.board import line_summary
from backchannel.cli.context import JSON_OPTION, cli_context, reports_errors
from backchannel.cli.durations import parse_duration
from backchannel.cli.hints import command_hint
from backchannel.cli.output import emit_json, send_json, short_id, shown
from backchannel.client.errors import ClientError

# The engine, cryptography and the observer (`cli/watching.py`) are imported by the
# commands that run, so that `--help` of these commands loads none of them.

__all__ = ["ESCALATION_SETTING", "escalation_app", "register"]

# The principal's setting that `perform_duties` runs on each escalation.
ESCALATION_SETTING: Final = "escalation_command"


def watch(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Stay connected and keep the channel's duties; Ctrl-C or SIGTERM stops it cleanly.

    Receives as messages arrive, answers line tests, sends ours when due, escalates missed
    deadlines. Prints each new note, each dialogue act of the counterpart (acknowledgements, holding
    replies, questions, answers, red lines, agenda decisions, signatures), line tests
    answered, changes of the line's state, and escalations. With `--json`, one JSON
    object per line (docs/cli.md).

    Example: backchannel --home ~/bc/washington watch
    """
    from backchannel.cli.watching import emit_json_line, emitter, serve_as_agent
    from backchannel.client.slotpolicy import slot_interval_or_default

    state = cli_context(ctx, as_json)
    # Without a running agent, watch *is* the agent, in the foreground.
    with state.principal(role="agent") as principal:
        names = [c.name for c in principal.channels()]
        relays = sorted({link.url for c in principal.channels() for link in c.links})
        # Each channel's slot interval (None: off), as the watch starts (docs/client.md).
        slots = {c.name: slot_interval_or_default(principal.setting, c.channel_id)
                 for c in principal.channels()}
        if state.json:
            emit_json_line({"event": "watching", "channels": names, "relays": relays,
                            "slots": slots})
        else:
            on = sorted({s for s in slots.values() if s is not None})
            rates = (f"; slots every {', '.join(f'{s:g}' for s in on)} s on "
                     f"{sum(1 for s in slots.values() if s is not None)} channel(s)"
                     if on else "; slots off")
            state.err.print(f"Watching {len(names)} channel(s) over {len(relays)} relay(s)"
                            f"{rates}; Ctrl-C to stop.")
        report = asyncio.run(serve_as_agent(principal, emitter(state)))
    summary = {"received": report.received, "sent": report.sent,
               "line_tests_sent": report.line_tests_sent,
               "line_tests_answered": report.line_tests_answered,
               "escalated": report.escalated, "relays_down": dict(report.relays_down),
               "routing": dict(report.routes)}
    if state.json:
        emit_json_line({"event": "stopped", **summary})
    else:
        state.err.print(f"Stopped: {report.received} received, {report.sent} sent, "
                        f"{report.line_tests_answered} line test(s) answered, "
                        f"{report.escalated} escalated.")
        # Sends not forwarded as the settings ask, as `sync` says them: a watch that ran
        # for hours should not hide that a relay saw this machine's address.
        for line in report.routes.values():
            state.err.print(f"routing: {shown(line)}", soft_wrap=True)  # URLs from invites


def linetest(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    every: str | None = typer.Option(
        None, "--every", metavar="DURATION",
        help="Test the line this often (1h is the default; 0 or off: never).",
    ),
    grace: str | None = typer.Option(
        None, "--grace", metavar="DURATION",
        help="How long an answer may take before the line shows as down (default 10m).",
    ),
    now: bool = typer.Option(False, "--now", help="Send a test now."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the line test's state, set how often this side tests the line, or test it now.

    Tests are sent and answered automatically by `sync` and `watch`, padded like any other
    message. A test unanswered for longer than the grace period shows the line as down.

    Example: backchannel linetest beijing --every 30m --grace 5m --now
    """
    from backchannel.client.strategic import line_grace_ms, line_period_ms

    state = cli_context(ctx, as_json)
    every_ms = None if every is None else parse_duration(every, option="--every",
                                                         allow_zero=True)
    grace_ms = None if grace is None else parse_duration(grace, option="--grace")
    with state.channel(channel) as strategic:
        if every_ms is not None or grace_ms is not None:
            current = line_period_ms(strategic.record)
            strategic.configure_line_test(current if every_ms is None else every_ms, grace_ms)
        sent = None
        if now:
            with state.progress("Sending a line test…"):
                sent = asyncio.run(strategic.test_line())
        line = strategic.board().line
        shape = strategic.board().to_dict()["line"]
        period, allowed = line_period_ms(strategic.record), line_grace_ms(strategic.record)
    if state.json:
        emit_json({"channel": strategic.name, "every_ms": period, "grace_ms": allowed,
                   "line": shape,
                   "sent": None if sent is None else send_json(strategic.name, sent)})
        return
    if sent is not None:
        where = ("stored on " + ", ".join(sent.stored_on) if sent.stored_on
                 else "queued; this sends it: " + command_hint(state, "sync"))
        state.out.print(f"Line test {short_id(sent.message_id)} sent to '{strategic.name}' "
                        f"({where}); their client answers it on its next sync or watch.")
    state.out.print(f"Line to '{strategic.name}': {line_summary(line, period, allowed)}")


def slots(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    every: str | None = typer.Option(
        None, "--every", metavar="SECONDS",
        help="Send one envelope this often while watch or the agent runs (15 is the "
             "default; 0.1 to 3600), or 'off': send each as soon as it is queued.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show or set the channel's constant-rate slots, and what they cost.

    While watch or the agent runs, this side writes to each of the channel's relays
    exactly once per slot: a queued note, receipt or line test, or cover (a sealed
    message only the counterpart can tell from a real one, which its client drops).
    A FLASH note takes the next slot. Off, a relay sees when this side writes and can
    pair a receipt with the note it answers (docs/threat-model.md).

    Example: backchannel slots beijing --every 30
    """
    from backchannel.cli.board import slots_json
    from backchannel.client.slotpolicy import (
        describe_cost,
        interval_key,
        parse_interval,
        slot_interval,
    )

    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        record = principal.channel(channel)
        if every is not None:
            chosen = parse_interval(every, source="--every")
            principal.set_setting(interval_key(record.channel_id),
                                  "off" if chosen is None else f"{chosen:g}")
        interval = slot_interval(principal.setting, record.channel_id)
        directions = sum(1 for link in record.links if link.outbound is not None)
        frames = principal.slot_frames(record.channel_id)
    if state.json:
        emit_json({"channel": record.name, **slots_json(interval, directions, frames)})
        return
    state.out.print(f"Slots to '{record.name}': "
                    f"{describe_cost(interval, directions, frames)}.")
    if every is not None:
        state.out.print("A running watch or agent follows the change within a second.")


escalation_app = typer.Typer(
    no_args_is_help=True,
    help="The command run when a note's acknowledgement deadline passes (to page a "
         "deputy).\n\nExample: backchannel escalation show",
)


def escalation_set(
    ctx: typer.Context,
    command: str = typer.Argument(..., help="The command line; empty to run none."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set the command run, once, for each note whose acknowledgement deadline passes.

    It runs without a shell, with BACKCHANNEL_CHANNEL, BACKCHANNEL_MESSAGE_ID,
    BACKCHANNEL_PRECEDENCE and BACKCHANNEL_DEADLINE_MS (ms since the epoch) in its
    environment, for at most 30 seconds; its output is discarded.

    Example: backchannel escalation set "/usr/local/bin/page-deputy --urgent"
    """
    state = cli_context(ctx, as_json)
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise ClientError(f"cannot read the command line: {error}") from None
    with state.principal() as principal:
        principal.set_setting(ESCALATION_SETTING, command.strip())
    if state.json:
        emit_json({"command": command.strip() or None})
        return
    if not argv:
        state.out.print("No escalation command: missed deadlines are resent and marked "
                        "overdue only.")
        return
    if shutil.which(argv[0]) is None:
        state.err.print(f"note: {argv[0]!r} is not an executable found now; it is kept and "
                        "will be run as written")
    state.out.print("Escalation command set; it runs once for each missed deadline.")


def escalation_show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show the escalation command.

    Example: backchannel escalation show
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        command = principal.setting(ESCALATION_SETTING)
    if state.json:
        emit_json({"command": command or None})
    elif command:
        state.out.print(command)
    else:
        state.out.print("No escalation command set: backchannel escalation set COMMAND")


escalation_app.command("set")(reports_errors(escalation_set))
escalation_app.command("show")(reports_errors(escalation_show))


def register(app: typer.Typer) -> None:
    """Add `watch`, `linetest` and `slots` to the root app (`escalation` is a group of its own)."""
    for command in (watch, linetest, slots):
        app.command()(reports_errors(command))

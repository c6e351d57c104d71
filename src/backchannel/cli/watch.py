"""`watch`, `linetest` and `escalation`: the channel kept alive and watched over.

`watch` stays connected (`Principal.watch`): it receives as envelopes arrive, answers the
counterpart's line tests, sends ours when due and escalates notes whose acknowledgement
deadline passed, once a second. An observer beside it polls the state once a second and
prints what changed: dialogue acts that arrived, line-test answers, the line's state,
escalations. It stops cleanly on Ctrl-C or SIGTERM, after the work in hand is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import typer

from backchannel.cli.board import line_summary
from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors
from backchannel.cli.durations import parse_duration
from backchannel.cli.hints import command_hint, hint_for_home
from backchannel.cli.narrate import describe
from backchannel.cli.output import (
    emit_json,
    json_text,
    local_time,
    message_json,
    precedence_label,
    send_json,
    short_id,
    shown,
)
from backchannel.cli.urgency import Bell, event_urgency, print_urgent
from backchannel.client.engine import InboxEntry, Principal, SyncReport
from backchannel.client.errors import ClientError
from backchannel.client.strategic import StrategicChannel, line_grace_ms, line_period_ms
from backchannel.dialogue import DialogueKind, LineState
from backchannel.protocol.message import MessageKind

__all__ = ["ESCALATION_SETTING", "escalation_app", "register"]

# The principal's setting that `perform_duties` runs on each escalation.
ESCALATION_SETTING: Final = "escalation_command"
# Seconds between the observer's looks at the state; the engine performs duties once a
# second, so looking more often would show nothing new.
_OBSERVE_INTERVAL: Final = 1.0
# The least time between two bells of one watch: a backlog of FLASH notes read on
# reconnecting rings once, and a new FLASH note a few seconds later rings again.
WATCH_BELL_EVERY_S: Final = 5.0
# Kinds a principal sees some other way: notes by `on_message`, receipts as the
# delivered/read counts, line tests as the line's state.
_NOT_NARRATED: Final = frozenset({
    MessageKind.NOTE, MessageKind.RECEIPT_DELIVERED, MessageKind.RECEIPT_READ,
    DialogueKind.LINETEST, DialogueKind.LINETEST_REPLY,
})

Emit = Callable[[dict[str, Any], str], None]


class _Observer:
    """Compares the principal's state with what it saw last, and reports the changes."""

    def __init__(self, principal: Principal, emit: Emit) -> None:
        self.principal = principal
        self.emit = emit
        self.hint = hint_for_home(principal.home)  # the commands it suggests name this home
        self.seen: set[str] = set()  # incoming dialogue messages already reported
        self.replies: dict[str, int] = {}  # our line-test answers, per channel id
        self.escalated: dict[str, set[bytes]] = {}
        self.line: dict[str, LineState] = {}
        self.channels: set[str] = set()
        self.forks: dict[str, int] = {}
        self.relays: dict[str, bool] = {}
        self.claims: int | None = None  # invite claims already seen (None: not looked yet)

    def _look_at_relays(self, report: bool) -> None:
        urls = sorted({link.url for c in self.principal.channels() for link in c.links})
        for url in urls:
            health = self.principal.relay_health(url)
            if health.last_ok_ms == 0 and health.last_error_ms == 0:
                continue  # not tried yet
            was = self.relays.get(url)
            if report and was is not None and was != health.up:
                state = "up" if health.up else "down"
                # The URL came from an invite and the reason partly from the relay: shown
                # with anything unprintable escaped, never as terminal control sequences.
                reason = "" if health.up else f" ({shown(health.last_error)})"
                self.emit({"event": "relay", "url": url, "up": health.up},
                          f"relay {shown(url)} is {state}{reason}")
            self.relays[url] = health.up

    def look(self, *, report: bool = True) -> None:
        """One look at every channel; with `report` False, only remember (at the start)."""
        now = self.principal.now_ms()
        self._look_at_relays(report)
        claims = self.principal.invite_claims()
        if report and self.claims is not None:
            for claim in claims[self.claims:]:
                self.emit({"event": "invite_claim", "channel": claim.channel_name,
                           "relay": claim.relay, "at_ms": claim.at_ms},
                          f"WARNING: invite used twice: {claim.describe()}")
        self.claims = len(claims)
        for record in self.principal.channels():
            if record.last_heard_ms == 0:
                continue  # not taken up yet: nothing to watch
            cid, peer = record.channel_id, record.name
            if cid not in self.channels:
                self.channels.add(cid)
                if report:
                    self.emit({"event": "channel", "channel": peer, "id": cid},
                              f"new channel: {peer}")
            forks = self.principal.forks(cid)
            if report:
                for fork in forks[self.forks.get(cid, len(forks)):]:
                    self.emit({"event": "fork", "channel": peer, "side": fork.side,
                               "seq": fork.seq, "reason": fork.reason.name.lower()},
                              f"FORK on {peer}: {fork.describe()}")
            self.forks[cid] = len(forks)
            messages = self.principal.messages(peer)
            replies = 0
            for m in messages:
                if m.direction == "out" and m.kind == DialogueKind.LINETEST_REPLY:
                    replies += 1
                elif (m.direction == "in" and m.kind not in _NOT_NARRATED
                      and m.message_id not in self.seen):
                    self.seen.add(m.message_id)
                    line = describe(peer, m, self.hint) if report else None
                    if line is not None:
                        self.emit({"event": "dialogue", "channel": peer,
                                   "message_id": m.message_id, "kind": _kind_name(m.kind),
                                   "text": line}, line)
            if report and replies > self.replies.get(cid, replies):
                self.emit({"event": "line_test_answered", "channel": peer,
                           "count": replies - self.replies[cid]},
                          f"answered {peer}'s line test")
            self.replies[cid] = replies
            board = StrategicChannel(self.principal, cid).board(now)
            escalated = self.principal.escalated_ids(cid)
            if report:
                for pending in board.awaiting_their_ack:
                    if pending.message_id in escalated - self.escalated.get(cid, set()):
                        self._escalation(peer, pending.message_id.hex(),
                                         pending.precedence.name, pending.deadline_ms)
            self.escalated[cid] = escalated
            state = board.line.state
            if report and self.line.get(cid) not in (None, state):
                summary = line_summary(board.line, line_period_ms(record),
                                       line_grace_ms(record)).splitlines()[0]
                self.emit({"event": "line", "channel": peer, "state": state.value,
                           "round_trip_ms": board.line.round_trip_ms},
                          f"line to {peer}: {summary}")
            self.line[cid] = state

    def _escalation(self, peer: str, message_id: str, precedence: str, deadline_ms: int) -> None:
        command = bool(self.principal.setting(ESCALATION_SETTING))
        self.emit(
            {"event": "escalated", "channel": peer, "message_id": message_id,
             "precedence": precedence.lower(), "deadline_ms": deadline_ms,
             "command_run": command, "urgent": True},
            f"ESCALATED: note {short_id(message_id)} to {peer} ({precedence}) was not "
            f"acknowledged by {local_time(deadline_ms)}; resent on every relay"
            + ("; escalation command run" if command else "; no escalation command set"),
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _OBSERVE_INTERVAL)
            self.look()


def _kind_name(kind: int) -> str:
    try:
        return DialogueKind(kind).name.lower()
    except ValueError:
        return str(kind)


def _emitter(state: CliContext) -> Emit:
    if state.json:
        return lambda event, _line: emit_json_line(event)
    # One console and one bell for the whole watch. The console flushes after each
    # line, so a process reading our stdout sees each event at once; counterpart text is
    # never read as markup, and anything in it a terminal would act on is escaped
    # (`shown`; the line already is, this is once more).
    console = state.out
    bell = Bell(every_s=WATCH_BELL_EVERY_S)

    def emit(event: dict[str, Any], line: str) -> None:
        print_urgent(console, f"{local_time(_now_ms())} {shown(line, multiline=True)}",
                     event_urgency(event), bell=bell, soft_wrap=True)
    return emit


def emit_json_line(event: dict[str, Any]) -> None:
    """One JSON object per line (`watch --json` prints a stream of events)."""
    typer.echo(json_text(event, indent=None))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _note_printer(emit: Emit) -> Callable[[InboxEntry], None]:
    def on_message(entry: InboxEntry) -> None:
        urgency = precedence_label(entry.precedence, entry.ack_within_ms)
        label = f" [{urgency}]" if urgency else ""
        emit({"event": "message", **message_json(entry)},
             f"{entry.channel} #{entry.seq}{label} id {short_id(entry.message_id)}: "
             f"{entry.text}")
    return on_message


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set `stop`, so the watch ends after committing its work."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            # Not the main thread, or a platform without them: Ctrl-C still interrupts.
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def serve_as_agent(principal: Principal, emit: Emit) -> SyncReport:
    """Be the principal's agent until SIGINT, SIGTERM or a `stop` request: keep the
    channels (`Principal.watch`), serve the local API on the home's socket, and send
    every event both to `emit` and to the API's subscribers."""
    from backchannel.cli.agent_requests import install_stream_routers, intent_argv, run_forwarded
    from backchannel.client.agent.server import AgentServer

    stop = asyncio.Event()
    install_stream_routers()
    server = AgentServer(principal, run_forwarded, on_stop=stop.set, intents=intent_argv)

    def both(event: dict[str, Any], line: str) -> None:
        line = shown(line, multiline=True)
        emit(event, line)
        # Subscribers get the text without colour (the launcher writes it as it is), so
        # an urgent line carries its word there; the event keeps what styling needs.
        urgency = event_urgency(event)
        stamped = f"{local_time(_now_ms())} {line}"
        server.broadcast(event, f"{urgency.word}: {stamped}" if urgency.word else stamped)

    # Listen first: a command that connects while the first look (a fold of every
    # transcript) runs is answered right after it, instead of finding no socket.
    await server.start()
    try:
        observer = _Observer(principal, both)
        observer.look(report=False)
        with _stop_on_signals(stop):
            looking = asyncio.create_task(observer.run(stop))
            try:
                return await principal.watch(stop, on_message=_note_printer(both))
            finally:
                stop.set()
                await looking
    finally:
        await server.close()


_watch = serve_as_agent


def watch(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Stay connected and keep the channel's duties; Ctrl-C or SIGTERM stops it cleanly.

    Receives as messages arrive, answers line tests, sends ours when due, escalates missed
    deadlines. Prints each new note, each dialogue act of the counterpart (acknowledgements, holding
    replies, questions, answers, red lines, agenda decisions, signatures), line tests
    answered, changes of the line's state, and escalations. With `--json`, one JSON
    object per line (docs/cli.md).

    Example: backchannel --home ~/bc/washington watch
    """
    state = cli_context(ctx, as_json)
    # Without a running agent, watch *is* the agent, in the foreground.
    with state.principal(role="agent") as principal:
        names = [c.name for c in principal.channels()]
        relays = sorted({link.url for c in principal.channels() for link in c.links})
        if state.json:
            emit_json_line({"event": "watching", "channels": names, "relays": relays})
        else:
            state.err.print(f"Watching {len(names)} channel(s) over {len(relays)} relay(s); "
                            "Ctrl-C to stop.")
        report = asyncio.run(_watch(principal, _emitter(state)))
    summary = {"received": report.received, "sent": report.sent,
               "line_tests_sent": report.line_tests_sent,
               "line_tests_answered": report.line_tests_answered,
               "escalated": report.escalated, "relays_down": dict(report.relays_down)}
    if state.json:
        emit_json_line({"event": "stopped", **summary})
    else:
        state.err.print(f"Stopped: {report.received} received, {report.sent} sent, "
                        f"{report.line_tests_answered} line test(s) answered, "
                        f"{report.escalated} escalated.")


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
    """Add `watch` and `linetest` to the root app (`escalation` is a group of its own)."""
    for command in (watch, linetest):
        app.command()(reports_errors(command))

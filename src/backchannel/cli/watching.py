"""The agent's loop behind `watch` and `agent`: the channels kept (`Principal.watch`), the
local API served, and an observer that polls the state once a second and reports what
changed (dialogue acts that arrived, line-test answers, the line's state, escalations,
forks, relays down or back, invites used twice).

Apart from `cli/watch.py` so that the commands' `--help` and argument parsing load neither
the client's engine nor cryptography: this module is imported when a watch starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Final

import typer

from backchannel.cli.board import line_summary
from backchannel.cli.hints import hint_for_home
from backchannel.cli.narrate import describe
from backchannel.cli.output import (
    json_text,
    local_time,
    message_json,
    precedence_label,
    short_id,
    shown,
)
from backchannel.cli.urgency import Bell, event_urgency, print_urgent
from backchannel.cli.watch import ESCALATION_SETTING
from backchannel.client.strategic import StrategicChannel, line_grace_ms, line_period_ms
from backchannel.dialogue import DialogueKind, LineState
from backchannel.protocol.message import MessageKind

if TYPE_CHECKING:
    from backchannel.cli.context import CliContext
    from backchannel.client.engine import InboxEntry, Principal, SyncReport

__all__ = ["WATCH_BELL_EVERY_S", "Emit", "emit_json_line", "emitter", "serve_as_agent"]
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
        # Per channel id: where the last look stopped reading its messages (each look
        # reads only those stored since: a long-lived channel holds tens of thousands).
        self.read_up_to: dict[str, tuple[int, bytes] | None] = {}

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
            messages, self.read_up_to[cid], everything = self.principal.messages_after(
                cid, self.read_up_to.get(cid))
            replies = 0 if everything else self.replies.get(cid, 0)
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


def emitter(state: CliContext) -> Emit:
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


async def serve_as_agent(principal: Principal, emit: Emit,
                         stop: asyncio.Event | None = None) -> SyncReport:
    """Be the principal's agent until SIGINT, SIGTERM, a `stop` request or `stop` is set
    (a console that runs the agent for its lifetime sets it on quitting): keep the
    channels (`Principal.watch`), serve the local API on the home's socket (its console
    methods too), and send every event both to `emit` and to the API's subscribers."""
    from backchannel.cli.agent_requests import install_stream_routers, intent_argv, run_forwarded
    from backchannel.client.agent.server import AgentServer
    from backchannel.tui.served import CONSOLE_METHODS, QUIET_METHODS

    stop = stop or asyncio.Event()
    install_stream_routers()
    server = AgentServer(principal, run_forwarded, on_stop=stop.set, intents=intent_argv,
                         methods=CONSOLE_METHODS, quiet=QUIET_METHODS)

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



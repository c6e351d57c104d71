"""`backchannel demo`: the scripted demonstration on the embedded default.

A relay on SQLite in a temporary folder (in this process, loopback only), two principals,
pairing by invite, the safety number compared, a short conversation both ways with one
stretch sent while the receiver is offline, receipts, the transcript, and a count of what
was lost, made by comparing message ids on both sides. Then the strategic round
(`demo_round`): a red line, a FLASH note held then acknowledged, a PRIORITY note escalated,
a clarification, the next round's agenda, an agreed record verified offline, a line test;
and the status board. The exit code is 1 if anything was lost or duplicated, if the two
sides disagree on the safety number, or if a step of the round did not do what it should.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from rich import box
from rich.console import Console
from rich.table import Table

from backchannel.cli.board import ChannelBoard, board_json, board_renderables, collect_boards
from backchannel.cli.context import plain_console
from backchannel.cli.demo_round import Narrator, RoundOutcome, play_round
from backchannel.cli.demo_script import CLOSING, INVITER, JOINER, OPENING, WHILE_OFFLINE, Line
from backchannel.cli.output import emit_json, utc_time
from backchannel.client.engine import InboxEntry, Principal
from backchannel.client.keystore import KdfParameters
from backchannel.client.relays import OPEN_JITTER_ENV
from backchannel.protocol.errors import BackchannelError
from backchannel.relay.limits import RelayLimits
from backchannel.relay.server import RelayServer
from backchannel.relay.store import open_store

__all__ = ["DEMO_KDF", "DemoOutcome", "DirectionSummary", "play", "run_demo"]

# Light Argon2id for throwaway principals, so that the demo runs in a few seconds; real
# principals use the default (64 MiB, 3 passes, 4 lanes). The output says so.
DEMO_KDF: Final = KdfParameters(memory_kib=8 * 1024, iterations=1, lanes=1)


@dataclass(frozen=True, slots=True)
class DirectionSummary:
    """What one side sent and what became of it on the other side."""

    sender: str
    receiver: str
    sent: int
    delivered: int
    read: int
    lost: int
    duplicated: int


@dataclass(slots=True)
class DemoOutcome:
    relay: str
    safety_digits: str
    safety_words: tuple[str, ...]
    safety_matches: bool
    transcript: list[InboxEntry] = field(default_factory=list)
    offline_ids: set[str] = field(default_factory=set)
    directions: list[DirectionSummary] = field(default_factory=list)
    strategic: RoundOutcome = field(default_factory=RoundOutcome)
    board: ChannelBoard | None = None  # washington's, at the end
    elapsed_s: float = 0.0

    @property
    def lost(self) -> int:
        return sum(d.lost for d in self.directions)

    @property
    def ok(self) -> bool:
        return self.safety_matches and self.strategic.ok and all(
            d.lost == 0 and d.duplicated == 0 for d in self.directions
        )


def _peer(name: str) -> str:
    return JOINER if name == INVITER else INVITER


class _Round:
    """Two principals on one relay; each names its channel after the other."""

    def __init__(self, principals: dict[str, Principal], tell: Narrator) -> None:
        self.p = principals
        self.tell = tell

    async def send(self, line: Line, *, receiver_online: bool = True) -> str:
        sender = self.p[line.speaker]
        # The sender is online: it first takes in what waits for it (receipts included).
        await sender.sync()
        result = await sender.send(_peer(line.speaker), line.text)
        where = "stored on the relay" if result.stored_on else "queued (no relay answered)"
        self.tell.say(f"{line.speaker} → {_peer(line.speaker)}: {where}", style="bold")
        self.tell.quote(line.text)
        if receiver_online:
            await self.receive(_peer(line.speaker))
        return result.message_id

    async def receive(self, name: str) -> int:
        """`name` syncs (delivered receipts go back) and reads everything (read receipts)."""
        principal = self.p[name]
        await principal.sync()
        opened = await principal.read(_peer(name))
        if opened:
            self.tell.detail(f"{name}: {len(opened)} received and read; receipts sent back")
        return len(opened)


async def _pair(p: dict[str, Principal], url: str, tell: Narrator) -> DemoOutcome:
    code = await p[INVITER].invite([url])
    tell.say(f"{INVITER} creates a one-time invite and hands it to {JOINER}.")
    tell.detail(f"the invite: {len(code)} characters, signed, valid 7 days: {code[:20]}…")
    await p[JOINER].accept(code)
    report = await p[INVITER].sync()
    tell.say(f"{JOINER} accepts it; {INVITER} sees the new channel "
             f"'{', '.join(report.new_channels)}'.")
    tell.detail("the handshake is PQXDH (X25519 and ML-KEM-768); the ratchet starts from it")
    w_digits, w_words, _ = p[INVITER].safety_number(JOINER)
    b_digits, b_words, _ = p[JOINER].safety_number(INVITER)
    matches = (w_digits, w_words) == (b_digits, b_words)
    tell.say()
    tell.say("Safety number, as both sides compute it:", style="bold")
    groups = w_digits.split()
    for row in range(0, len(groups), 4):
        tell.say("    " + " ".join(groups[row : row + 4]))
    tell.detail("as words: " + " ".join(w_words))
    if matches:
        # Every group compared, as `verify` asks: an impostor's number can share the
        # first ones with the genuine one.
        tell.say("Both sides see the same number, all 12 groups to the last: compared "
                 "and recorded as verified.")
        p[INVITER].confirm_verified(JOINER)
        p[JOINER].confirm_verified(INVITER)
    else:
        tell.say("The two sides see DIFFERENT numbers: do not trust this channel.", style="red")
    return DemoOutcome(url, "".join(groups), w_words, matches)


async def _converse(p: dict[str, Principal], outcome: DemoOutcome, tell: Narrator) -> None:
    turns = _Round(p, tell)
    tell.say()
    for line in OPENING:
        await turns.send(line)
    tell.say()
    tell.say(f"{JOINER} goes offline; {INVITER} keeps writing.", style="bold")
    before = p[INVITER].status(JOINER)[0].delivered
    for line in WHILE_OFFLINE:
        outcome.offline_ids.add(await turns.send(line, receiver_online=False))
    await p[INVITER].sync()
    waiting = p[INVITER].status(JOINER)[0]
    tell.quote(f"{INVITER}'s view: {waiting.delivered - before} of these "
               f"{len(WHILE_OFFLINE)} delivered so far; they wait on the relay", style="dim")
    tell.say(f"{JOINER} comes back online and syncs.", style="bold")
    await turns.receive(JOINER)
    tell.say()
    for line in CLOSING:
        await turns.send(line)
    # Everyone takes in the last receipts.
    await p[INVITER].sync()
    await p[JOINER].sync()


def _summarise(p: dict[str, Principal], outcome: DemoOutcome) -> None:
    """Count from both sides' records: a note is lost if its id never reached the peer."""
    for sender in (INVITER, JOINER):
        receiver = _peer(sender)
        sent = [e for e in p[sender].transcript(receiver) if e.direction == "out"]
        arrived = [e.message_id for e in p[receiver].inbox(sender)]
        outcome.transcript.extend(sent)
        outcome.directions.append(
            DirectionSummary(
                sender=sender,
                receiver=receiver,
                sent=len(sent),
                delivered=sum(1 for e in sent if e.delivered_at_ms),
                read=sum(1 for e in sent if e.read_at_ms),
                lost=len({e.message_id for e in sent} - set(arrived)),
                duplicated=len(arrived) - len(set(arrived)),
            )
        )
    outcome.transcript.sort(key=lambda e: (e.sent_at_ms, e.seq))


@contextmanager
def _principals(root: Path) -> Iterator[dict[str, Principal]]:
    # A fresh random passphrase each run: it protects throwaway state and is never shown.
    passphrase = secrets.token_urlsafe(16)
    made: dict[str, Principal] = {}
    try:
        for name in (INVITER, JOINER):
            made[name] = Principal.create(root / name, name, passphrase, kdf=DEMO_KDF)
        yield made
    finally:
        for principal in made.values():
            principal.close()


@contextmanager
def _no_open_delay() -> Iterator[bool]:
    """Connections open without their random delay for the demo's length, unless the user
    set `OPEN_JITTER_ENV`: the delay hides the order of a sync's connections from a relay,
    and the demo's relay is its own, on loopback, gone when it ends. With it, the demo's
    many syncs wait about 8 s in all for nothing. Yields whether it turned the delay off."""
    if os.environ.get(OPEN_JITTER_ENV, "").strip():
        yield False
        return
    os.environ[OPEN_JITTER_ENV] = "0"
    try:
        yield True
    finally:
        os.environ.pop(OPEN_JITTER_ENV, None)


async def play(root: Path, console: Console | None = None, *,
               verbose: bool = False) -> DemoOutcome:
    """Run the demonstration in `root` (a scratch folder) and return what happened.

    Args:
        root: an empty folder for the relay database and the two principals' homes.
        console: where to narrate, or None for silence.
        verbose: narrate the technical details too.

    Raises:
        BackchannelError: a step failed (the message says which).
    """
    started = time.perf_counter()
    tell = Narrator(console, verbose=verbose)
    limits = RelayLimits()
    server = RelayServer(open_store(f"sqlite:///{root / 'relay.db'}", limits), limits,
                         host="127.0.0.1", port=0)
    await server.start()
    try:
        tell.say(f"A relay on this machine, and two principals, {INVITER} and {JOINER}, "
                 "each with its own encrypted state.")
        tell.say("(The demo unlocks its throwaway state with a light setting, to run fast.)",
                 style="dim")
        tell.detail(f"relay {server.url}, SQLite in a temporary folder, loopback only; "
                    "key derivation Argon2id 8 MiB, 1 pass (real principals: 64 MiB, "
                    "3 passes)")
        with _no_open_delay() as undelayed, _principals(root) as principals:
            if undelayed:
                tell.detail("connections open without their random delay "
                            f"({OPEN_JITTER_ENV}=0): the relay is the demo's own")
            outcome = await _pair(principals, server.url, tell)
            await _converse(principals, outcome, tell)
            outcome.strategic = await play_round(principals, root, tell)
            _summarise(principals, outcome)
            (outcome.board,) = collect_boards(principals[INVITER], JOINER)
    finally:
        await server.stop()
    outcome.elapsed_s = time.perf_counter() - started
    return outcome


def _clock(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).astimezone().strftime("%H:%M:%S")


def _after(sent_ms: int, receipt_ms: int) -> str:
    # The whole exchange takes well under a second: the delay says more than the time.
    return f"+{receipt_ms - sent_ms} ms" if receipt_ms else "not yet"


def _transcript_table(outcome: DemoOutcome) -> Table:
    table = Table(title="Transcript (local time; receipts as the sender saw them)",
                  caption=f"* sent while {JOINER} was offline, delivered when it came back",
                  box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("Sent")
    table.add_column("From")
    table.add_column("Message", ratio=1)
    table.add_column("Delivered", justify="right")
    table.add_column("Read", justify="right")
    for number, e in enumerate(outcome.transcript, 1):
        mark = "*" if e.message_id in outcome.offline_ids else ""
        table.add_row(f"{number}{mark}", _clock(e.sent_at_ms), _peer(e.channel), e.text,
                      _after(e.sent_at_ms, e.delivered_at_ms), _after(e.sent_at_ms, e.read_at_ms))
    return table


def _summary_table(outcome: DemoOutcome) -> Table:
    table = Table(title="Per-channel summary")
    table.add_column("Channel")
    for heading in ("Sent", "Delivered", "Read", "Lost", "Duplicated"):
        table.add_column(heading, justify="right")
    for d in outcome.directions:
        table.add_row(f"{d.sender} → {d.receiver}", str(d.sent), str(d.delivered),
                      str(d.read), str(d.lost), str(d.duplicated))
    return table


def _as_json(outcome: DemoOutcome) -> dict[str, Any]:
    return {
        "ok": outcome.ok,
        "relay": outcome.relay,
        "kdf": {"memory_kib": DEMO_KDF.memory_kib, "iterations": DEMO_KDF.iterations,
                "lanes": DEMO_KDF.lanes, "light": True},
        "safety_number": {"digits": outcome.safety_digits,
                          "words": list(outcome.safety_words),
                          "matches": outcome.safety_matches},
        "transcript": [
            {"from": _peer(e.channel), "to": e.channel, "seq": e.seq,
             "message_id": e.message_id, "text": e.text,
             "receiver_offline": e.message_id in outcome.offline_ids,
             "sent_at": utc_time(e.sent_at_ms), "delivered_at": utc_time(e.delivered_at_ms),
             "read_at": utc_time(e.read_at_ms)}
            for e in outcome.transcript
        ],
        "channels": [asdict(d) for d in outcome.directions],
        "round": outcome.strategic.to_dict(),
        "board": None if outcome.board is None else board_json(outcome.board),
        "lost": outcome.lost,
        "elapsed_seconds": round(outcome.elapsed_s, 3),
    }


def _failed_steps(r: RoundOutcome) -> str:
    failed = [name for name, value in r.to_dict().items()
              if name != "ok" and (value is False or (name == "record" and value is None))]
    return ", ".join(failed) or "none failed"


def run_demo(console: Console | None = None, *, as_json: bool = False,
             verbose: bool = False) -> int:
    """Run the demonstration in a temporary folder and return the process exit code.

    Args:
        console: where to print [default: stdout, colour only on a terminal].
        as_json: print only the JSON summary (shape in docs/cli.md).
        verbose: also print the technical details, the transcript and the whole board.
    """
    console = console or plain_console()
    try:
        with tempfile.TemporaryDirectory(prefix="backchannel-demo-") as scratch:
            outcome = asyncio.run(play(Path(scratch), None if as_json else console,
                                       verbose=verbose))
    except (BackchannelError, OSError) as error:
        plain_console(stderr=True).print(f"error: demo failed: {error}")
        return 1
    if as_json:
        emit_json(_as_json(outcome))
        return 0 if outcome.ok else 1
    console.print()
    if verbose:
        console.print(_transcript_table(outcome))
    console.print(_summary_table(outcome))
    if outcome.board is not None:
        console.print()
        console.print(f"{INVITER}'s status board at the end:", style="bold")
        # The overview says it all; the sections (agenda, records) were told above.
        shown = board_renderables(outcome.board)
        for renderable in shown if verbose else shown[:1]:
            console.print(renderable)
        if not verbose:
            console.print("(backchannel demo --verbose: the transcript, the whole board "
                          "and the technical details)", style="dim")
    total = sum(d.sent for d in outcome.directions)
    verdict = (
        f"Nothing lost: {total} messages sent, {outcome.lost} lost, none duplicated; "
        "safety numbers matched; every step of the strategic round did what it should."
        if outcome.ok
        else f"PROBLEM: {outcome.lost} lost; strategic round "
             f"{'complete' if outcome.strategic.ok else 'INCOMPLETE'} "
             f"({_failed_steps(outcome.strategic)}); see above."
    )
    console.print(verdict, style="bold green" if outcome.ok else "bold red")
    console.print(f"Demo finished in {outcome.elapsed_s:.1f} s; the temporary folder is gone.",
                  style="dim")
    return 0 if outcome.ok else 1



"""A bounded, seeded fault-injection run of real Backchannel processes on loopback.

    PYTHONPATH=src python bench/chaos.py --quick          # 100 notes each way, 1-3 minutes
    PYTHONPATH=src python bench/chaos.py                  # 2,000 each way, at most ~25 minutes
    PYTHONPATH=src python bench/chaos.py --notes 500 --seed 7 --json
    python bench/chaos.py --backchannel "/path/to/backchannel" --agent ...

Not part of the test suite (it is a bench: minutes long, timing-dependent). It reproduces the
fault-injection run of `research/review-2026-12.md` §1, with the concurrency that forks a
session (§1a) on purpose.

What it starts (every process a real one, loopback only, all in a fresh work folder):

- two relays, `backchannel relay serve --host 127.0.0.1 --port P --db sqlite:////abs/relay-N.db`,
  each behind a fault proxy (`bench/faultproxy.py`, an asyncio TCP proxy in a thread of this
  process); clients know only the proxies' ports (`ws://127.0.0.1:PORT/`);
- two principals A and B (`init`, `invite --relay P1 --relay P2`, `accept`, `sync`,
  `verify --confirm` on both sides), with `BACKCHANNEL_PASSPHRASE` in the environment;
- per principal, at the same time on the same home: `--senders` (default 2) sender loops,
  each running `send --json` once per note, one after the other; a long-running
  `watch --json` (restarted when it dies); a `sync --json` every 2-6 s. With `--agent` (only
  when `backchannel agent --help` exists) a `backchannel --home H agent --foreground` per
  principal is started first and the other commands find it; without it, whatever the CLI
  does about two processes on one home (a lock, or today: nothing) is what is measured.

Each note's text is `A->B #000123 s1`: direction, a number unique in that direction, and the
sender loop ("slot") that sent it. Numbers are handed out in increasing order; a slot sends
its notes in increasing order.

Faults, at random from `--seed` (timing still varies from run to run; the decisions are
seeded), about one every `--fault-interval` seconds on average while notes are being sent:

- `relay_kill`: SIGKILL one relay, restarted 0.3-3 s later on the same port and database;
- `both_relays_down`: SIGKILL both, restarted 1-4 s later;
- `relay_disk_loss` (once, when 40% of the notes have been attempted or 40% of `--duration`
  has passed): a relay is killed, its
  database with `-wal` and `-shm` deleted, and it is restarted empty;
- `client_kill_send`, `client_kill_sync`, `client_kill_watch` (`client_kill_agent`): SIGKILL one
  running process of a random principal; its loop starts the next one;
- `proxy_stall`: a proxy stops forwarding for 2-5 s, keeping every socket open;
- `proxy_cut` (counted when it happens): a connection is aborted after 0.5-8 s;
- `proxy_delayed_conn`: a connection whose every chunk waits 0-300 ms.

Besides, under "Observed" (findings, not injected faults): `hung_*_killed`, commands that
had not returned after their timeout (`send` 45 s, `sync` 60 s) and that the harness killed;
`watch_exited_N`, a watch that stopped by itself with code N; `watch_sigterm_exit_N`, a watch
whose SIGTERM (at the end of the send phase) gave a code other than 0.

Then it settles: faults off, relays restarted, watchers and sync loops stopped, and
`sync` rounds on both sides (each side's `sync`, then both `inbox --json` and `status --json`)
until two consecutive rounds change nothing and nothing is queued, within `--settle`
seconds. A `sync` that exits non-zero in a round is followed by 5 s of `watch` on that side.

What each number means, per direction X->Y:

- `attempted`: `send` processes started; `confirmed`: those that exited 0 and printed the
  message id (a `send` killed by a fault, hung, or failed may legitimately never have queued
  its note; `interrupted`, `hung`, `failed` count them); `confirmed_queued`: confirmed but
  stored on no relay yet when `send` returned (the outbox holds it);
- `received`: distinct notes of X in Y's `inbox --json` after settling;
- `lost`: confirmed notes never received (the failure this bench exists to find);
- `duplicated`: notes whose tag appears more than once in Y's inbox (extra copies counted);
- `out_of_order`: in Y's inbox order (sequence order), per sender slot, notes whose number is
  lower than one of the same slot listed before them;
- `received_unconfirmed`: received notes whose `send` did not confirm (fine);
- `rejected`, `gaps`: Y's `status --json` fields for the channel (undecryptable or refused
  envelopes; sequence gaps still open);
- `forks`: Y's `status --json` `forks` field if the code has one, else "n/a";
  `seq_reused` is the sender-side evidence available on any version: confirmed sends
  (`send --json` prints `seq`) with different message ids and the same sequence number, i.e.
  the session forked at the sender;
- `delivered_receipts`: X's `status --json` `delivered` (of X's `sent`), i.e. receipts back;
- `queued_left`: X's outbox after settling.

Relays: a thread reads each relay's SQLite database every second, read-only
(`envelopes(mailbox_id, seq, body)`), and keeps sha256(body) per (relay incarnation,
mailbox, seq). `relay_envelopes_seen` counts distinct (incarnation, mailbox, seq);
`relay_retransmits` counts envelopes stored byte-identical under another sequence number of
the same mailbox (a client resending the same envelope after a lost "stored": legitimate,
the receiver deduplicates); `relay_seq_conflicts` counts one (mailbox, seq) seen with two
different bodies (never legitimate). Acked envelopes are deleted, so polling sees a sample.
Key reuse inside different envelopes cannot be seen here (headers and bodies are sealed
under fresh nonces); it shows as `seq_reused` and the receiver's `forks`.

Throughput: confirmed notes (both directions) per second of the send phase, and received
notes per second until the end of settling.

Bounds: the send phase stops after `--duration` seconds (default 1200; `--quick` 90) even
with notes left (in-flight `send`s finish, at most 45 s more), so `attempted` may be below
`--notes`: every `send` is a process that derives the state key (Argon2id) and connects to
both relays, a few per second at best on a small machine; settling takes at most `--settle`
(default 240; `--quick` 60) plus one round; every command has a timeout; every process is
stopped at the end (by its pid). A full run is thus bounded by about 25 minutes, `--quick` by
about 3. The work folder is deleted unless `--keep` or the run failed; it holds the relays'
and watchers' logs, `sends.jsonl` (every `send`: outcome, seq, start, seconds) and
`report.json`.

Slots and routing: every process runs with `BACKCHANNEL_SLOTS` from `--slots` (default 0.2 s,
so that faults hit the slot loops as well, and settling lasts long enough for them: calm
means nothing changed for two rounds *and* three slot intervals). The relays are served
with `--forward-to-local` where they have it: side by side on loopback they would refuse
to forward to each other, and forwarding is the route between relays on different machines.

Diagnosis switches: `--no-faults` (concurrency alone), `--no-watch`, `--no-sync`,
`--senders 1`: with all of them, one process per principal at a time.

Exit code: 1 if a note was lost or duplicated in either direction, else 0; 2 if the run
could not be set up (a relay that does not start, pairing that fails, `--agent` without an
`agent` command).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faultproxy import FaultProxy

PASSPHRASE = "chaos bench passphrase"
TAG = re.compile(r"^(A->B|B->A) #(\d{6}) s(\d+)$")
SEND_TIMEOUT = 45.0
SYNC_TIMEOUT = 60.0
SHORT_TIMEOUT = 60.0
NAMES = ("A", "B")
OTHER = {"A": "B", "B": "A"}


def slot_seconds(slots: str) -> float:
    """The slot interval `--slots` gives, in seconds (0 with slots off)."""
    if slots == "off":
        return 0.0
    if slots == "default":
        return 15.0
    return float(slots.removesuffix("s"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Relay:
    index: int
    port: int
    proxy_port: int
    db: Path
    log: Path
    command: list[str]
    env: dict[str, str]
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    incarnation: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.proxy_port}/"

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> bool:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "relay", "serve", "--host", "127.0.0.1", "--port",
                 str(self.port), "--db", f"sqlite:///{self.db}", "--no-metrics",
                 *self.extra],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            if port_open(self.port):
                return True
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def lose_disk(self) -> None:
        self.kill()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.db}{suffix}").unlink()
        self.incarnation += 1


@dataclass
class SendResult:
    number: int
    slot: int
    outcome: str  # confirmed | interrupted | hung | failed
    message_id: str = ""
    seq: int = 0
    queued: bool = False
    error: str = ""
    seconds: float = 0.0


@dataclass
class Direction:
    attempts: list[SendResult] = field(default_factory=list)
    next_number: int = 1


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(f"chaos-{args.seed}")
        self.command: list[str] = args.backchannel
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="bc-chaos-")).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, BACKCHANNEL_PASSPHRASE=PASSPHRASE)
        self.env.pop("BACKCHANNEL_HOME", None)
        if args.slots != "default":
            self.env["BACKCHANNEL_SLOTS"] = args.slots
        self.homes = {name: self.work / f"home-{name}" for name in NAMES}
        self.channel: dict[str, str] = {}
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.findings: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.live: dict[str, dict[int, tuple[str, subprocess.Popen[bytes]]]] = {
            name: {} for name in NAMES}
        self.killed: set[int] = set()
        self.directions = {f"{n}->{OTHER[n]}": Direction() for n in NAMES}
        self.sending_done = threading.Event()
        self.stop_background = threading.Event()
        self.stop_monitor = threading.Event()
        self.relays: list[Relay] = []
        self.proxies: list[FaultProxy] = []
        self.monitor: dict[tuple[int, int, bytes, int], str] = {}
        self.monitor_conflicts = 0
        self.settle_log: list[dict[str, Any]] = []
        self.agent = False
        self.relay_extra: tuple[str, ...] = ()
        self.t0 = 0.0
        self.settled = False

    # -- processes ----------------------------------------------------------------------

    def bc(self, name: str, *args: str) -> list[str]:
        return [*self.command, "--home", str(self.homes[name]), *args]

    def run(self, name: str, kind: str, argv: list[str], timeout: float,
            ) -> tuple[int, str, str, str]:
        """Run one command of principal `name`; returns (rc, stdout, stderr, how) with how
        one of ok / failed / interrupted (killed by a fault) / hung (killed on timeout)."""
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.env, stdin=subprocess.DEVNULL)
        with self.lock:
            self.live[name][proc.pid] = (kind, proc)
        hung = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            hung = True
            proc.kill()
            out, err = proc.communicate()
        with self.lock:
            self.live[name].pop(proc.pid, None)
            interrupted = proc.pid in self.killed
            self.killed.discard(proc.pid)
            if hung:
                self.findings[f"hung_{kind}_killed"] += 1
        how = ("hung" if hung else "interrupted" if interrupted
               else "ok" if proc.returncode == 0 else "failed")
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), how

    def must(self, name: str, *args: str) -> str:
        rc, out, err, _ = self.run(name, "setup", self.bc(name, *args), SHORT_TIMEOUT)
        if rc != 0:
            raise RuntimeError(f"{name} {' '.join(args[:2])} failed ({rc}): {err.strip()}")
        return out

    def count_error(self, kind: str, err: str) -> None:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        line = lines[-1][:160] if lines else "(no message)"
        with self.lock:
            self.errors[f"{kind}: {line}"] += 1

    # -- setup --------------------------------------------------------------------------

    def has_agent(self) -> bool:
        rc = subprocess.run([*self.command, "agent", "--help"], capture_output=True,
                            env=self.env, timeout=60).returncode
        return rc == 0

    def relay_options(self) -> tuple[str, ...]:
        """`--forward-to-local` where the relay has it: relays side by side refuse to
        forward to each other without it, and forwarding is the route between relays of
        different machines that this run is to exercise."""
        out = subprocess.run([*self.command, "relay", "serve", "--help"],
                             capture_output=True, env=self.env, timeout=60).stdout
        return ("--forward-to-local",) if b"--forward-to-local" in out else ()

    def setup(self) -> None:
        extra = self.relay_extra = self.relay_options()
        if self.args.agent:
            if not self.has_agent():
                raise RuntimeError("--agent: this backchannel has no `agent` command")
            self.agent = True
        for index in (1, 2):
            relay = Relay(index, free_port(), free_port(), self.work / f"relay-{index}.db",
                          self.work / f"relay-{index}.log", self.command, self.env, extra)
            if not relay.start():
                raise RuntimeError(f"relay {index} did not start; see {relay.log}")
            proxy = FaultProxy(relay.proxy_port, relay.port, seed=self.args.seed)
            proxy.faults = False
            proxy.start()
            self.relays.append(relay)
            self.proxies.append(proxy)
        for name in NAMES:
            self.must(name, "init", "--name", name, "--json")
        code = self.must("A", "invite", "--relay", self.relays[0].url,
                         "--relay", self.relays[1].url).strip()
        self.must("B", "accept", code, "--json")
        self.must("A", "sync", "--json")
        for name in NAMES:
            channels = json.loads(self.must(name, "channels", "--json"))["channels"]
            if len(channels) != 1:
                raise RuntimeError(f"{name} has {len(channels)} channels after pairing")
            self.channel[name] = channels[0]["name"]
            self.must(name, "verify", self.channel[name], "--confirm", "--json")

    # -- background loops ---------------------------------------------------------------

    def sender(self, name: str, slot: int) -> None:
        direction = f"{name}->{OTHER[name]}"
        state = self.directions[direction]
        deadline = self.t0 + self.args.duration
        while time.monotonic() < deadline:
            with self.lock:
                number = state.next_number
                if number > self.args.notes:
                    break
                state.next_number += 1
            text = f"{direction} #{number:06d} s{slot}"
            began = time.monotonic()
            _, out, err, how = self.run(
                name, "send", self.bc(name, "send", self.channel[name], text, "--json"),
                SEND_TIMEOUT)
            result = SendResult(number, slot, how)
            if how == "ok":
                try:
                    sent = json.loads(out)
                    result = SendResult(number, slot, "confirmed", sent["message_id"],
                                        int(sent["seq"]), bool(sent["queued"]))
                except (ValueError, KeyError, TypeError):
                    result.outcome = "failed"
                    result.error = "unreadable JSON"
            elif how == "failed":
                self.count_error("send", err)
            result.seconds = time.monotonic() - began
            with (self.work / "sends.jsonl").open("a") as log:
                log.write(json.dumps({"direction": direction, "number": number, "slot": slot,
                                      "outcome": result.outcome, "seq": result.seq,
                                      "queued": result.queued,
                                      "start": round(began - self.t0, 2),
                                      "seconds": round(result.seconds, 2)}) + "\n")
            with self.lock:
                state.attempts.append(result)

    def keep_running(self, name: str, kind: str, argv: list[str], log: Path) -> None:
        """Keep one long-running process (watch, agent) alive until told to stop."""
        stop = self.stop_monitor if kind == "agent" else self.stop_background
        while not stop.is_set():
            with log.open("ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=out, env=self.env,
                                        stdin=subprocess.DEVNULL)
            with self.lock:
                self.live[name][proc.pid] = (kind, proc)
            while proc.poll() is None and not stop.is_set():
                time.sleep(0.1)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    with self.lock:
                        self.findings[f"{kind}_ignored_sigterm"] += 1
                if proc.returncode != 0:
                    with self.lock:
                        self.findings[f"{kind}_sigterm_exit_{proc.returncode}"] += 1
            with self.lock:
                self.live[name].pop(proc.pid, None)
                killed = proc.pid in self.killed
                self.killed.discard(proc.pid)
            if not killed and not stop.is_set():
                with self.lock:
                    self.findings[f"{kind}_exited_{proc.returncode}"] += 1
            time.sleep(0.5)

    def syncer(self, name: str) -> None:
        rng = random.Random(f"sync-{self.args.seed}-{name}")
        while not self.stop_background.wait(rng.uniform(2, 6)):
            _, _, err, how = self.run(name, "sync", self.bc(name, "sync", "--json"),
                                       SYNC_TIMEOUT)
            if how == "failed":
                self.count_error("sync", err)

    def db_monitor(self) -> None:
        while not self.stop_monitor.wait(1.0):
            self.poll_relays()

    def poll_relays(self) -> None:
        for relay in self.relays:
            if not relay.db.exists():
                continue
            try:
                db = sqlite3.connect(f"file:{relay.db}?mode=ro", uri=True, timeout=1)
                try:
                    rows = db.execute("SELECT mailbox_id, seq, body FROM envelopes").fetchall()
                finally:
                    db.close()
            except sqlite3.Error:
                continue
            with self.lock:
                for mailbox, seq, body in rows:
                    key = (relay.index, relay.incarnation, bytes(mailbox), int(seq))
                    digest = hashlib.sha256(bytes(body)).hexdigest()
                    seen = self.monitor.setdefault(key, digest)
                    if seen != digest:
                        self.monitor_conflicts += 1
                        self.monitor[key] = digest

    # -- faults -------------------------------------------------------------------------

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def kill_client(self) -> None:
        name = self.rng.choice(NAMES)
        with self.lock:
            targets = sorted((pid, kind, proc) for pid, (kind, proc) in self.live[name].items()
                             if kind != "setup" and proc.poll() is None)
        if not targets:
            return
        pid, kind, proc = self.rng.choice(targets)
        with self.lock:
            self.killed.add(pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        self.fault(f"client_kill_{kind}")

    def chaos_loop(self, threads: list[threading.Thread]) -> None:
        restarts: list[tuple[float, Relay]] = []
        disk_lost = False
        mean = self.args.fault_interval
        next_fault = time.monotonic() + self.rng.uniform(0.5, 2 * mean)
        total = 2 * self.args.notes
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            for due, relay in list(restarts):
                if now >= due:
                    restarts.remove((due, relay))
                    if not relay.start():
                        self.fault("relay_restart_failed")
                        restarts.append((now + 1, relay))
            with self.lock:
                attempted = sum(d.next_number - 1 for d in self.directions.values())
            if self.args.no_faults:
                pass
            elif not disk_lost and (attempted >= 0.4 * total
                                    or now - self.t0 >= 0.4 * self.args.duration):
                disk_lost = True
                relay = self.rng.choice(self.relays)
                restarts = [(d, r) for d, r in restarts if r is not relay]
                relay.lose_disk()
                self.fault("relay_disk_loss")
                restarts.append((now + 1, relay))
            elif now >= next_fault:
                next_fault = now + self.rng.uniform(0, 2 * mean)
                choice = self.rng.choices(
                    ["relay_kill", "both_relays_down", "client_kill", "proxy_stall"],
                    weights=[3, 1, 5, 2])[0]
                if choice == "relay_kill":
                    relay = self.rng.choice(self.relays)
                    if relay.up:
                        relay.kill()
                        self.fault("relay_kill")
                        restarts.append((now + self.rng.uniform(0.3, 3), relay))
                elif choice == "both_relays_down":
                    up = [r for r in self.relays if r.up]
                    if up:
                        back = now + self.rng.uniform(1, 4)
                        for relay in up:
                            relay.kill()
                            restarts.append((back, relay))
                        self.fault("both_relays_down")
                elif choice == "client_kill":
                    self.kill_client()
                else:
                    self.rng.choice(self.proxies).stall(self.rng.uniform(2, 5))
            time.sleep(0.05)
        for proxy in self.proxies:
            proxy.calm()
        for _, relay in restarts:
            if not relay.up:
                relay.start()
        for relay in self.relays:
            if not relay.up and not relay.start():
                raise RuntimeError(f"relay {relay.index} does not restart; see {relay.log}")

    # -- settling and reading -----------------------------------------------------------

    def read_side(self, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        rc, out, err, _ = self.run(name, "read", self.bc(name, "inbox", "--json"),
                                   SHORT_TIMEOUT)
        messages = json.loads(out)["messages"] if rc == 0 else []
        if rc != 0:
            self.count_error("inbox", err)
        rc, out, err, _ = self.run(name, "read", self.bc(name, "status", "--json"),
                                   SHORT_TIMEOUT)
        boards = json.loads(out)["channels"] if rc == 0 else []
        if rc != 0:
            self.count_error("status", err)
        board = next((b for b in boards if b.get("name") == self.channel[name]), {})
        return messages, board

    def settle(self) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
        deadline = time.monotonic() + self.args.settle
        previous: Any = None
        calm_rounds = 0
        # Receipts and the last notes ride in slots: calm means unchanged for longer
        # than a few of them, not only for two rounds (each shorter than a slot).
        calm_for = 3 * slot_seconds(self.args.slots)
        calm_since = time.monotonic()
        sides: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
        round_no = 0
        while time.monotonic() < deadline:
            round_no += 1
            entry: dict[str, Any] = {"round": round_no}
            for name in NAMES:
                _, _, err, how = self.run(name, "settle", self.bc(name, "sync", "--json"),
                                           SYNC_TIMEOUT)
                entry[f"sync_{name}"] = how
                if how != "ok":
                    self.count_error("settle sync", err)
                    self.watch_for(name, 5.0)
            for name in NAMES:
                sides[name] = self.read_side(name)
            fingerprint = tuple(
                (len(sides[n][0]), sides[n][1].get("queued"), sides[n][1].get("delivered"),
                 sides[n][1].get("received"))
                for n in NAMES)
            entry["state"] = fingerprint
            self.settle_log.append(entry)
            queued = sum(int(sides[n][1].get("queued") or 0) for n in NAMES)
            calm_rounds = calm_rounds + 1 if fingerprint == previous and queued == 0 else 0
            if fingerprint != previous or queued:
                calm_since = time.monotonic()
            previous = fingerprint
            if calm_rounds >= 2 and time.monotonic() - calm_since >= calm_for:
                self.settled = True
                break
        if not sides:
            sides = {name: self.read_side(name) for name in NAMES}
        return sides

    def watch_for(self, name: str, seconds: float) -> None:
        proc = subprocess.Popen(self.bc(name, "watch", "--json"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=self.env,
                                stdin=subprocess.DEVNULL)
        time.sleep(seconds)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- the run ------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        self.setup()
        setup_seconds = time.monotonic() - started
        monitor = threading.Thread(target=self.db_monitor, daemon=True)
        monitor.start()
        long_running: list[threading.Thread] = []
        if self.agent:
            for name in NAMES:
                long_running.append(threading.Thread(
                    target=self.keep_running, daemon=True,
                    args=(name, "agent", self.bc(name, "agent", "--foreground"),
                          self.work / f"agent-{name}.log")))
            for thread in long_running:
                thread.start()
            time.sleep(2)
        for proxy in self.proxies:
            proxy.faults = not self.args.no_faults
        self.t0 = time.monotonic()
        background = []
        for name in NAMES:
            if not self.args.no_watch:
                background.append(threading.Thread(
                    target=self.keep_running, daemon=True,
                    args=(name, "watch", self.bc(name, "watch", "--json"),
                          self.work / f"watch-{name}.log")))
            if not self.args.no_sync:
                background.append(threading.Thread(target=self.syncer, args=(name,),
                                                   daemon=True))
        senders = [threading.Thread(target=self.sender, args=(name, slot), daemon=True)
                   for name in NAMES for slot in range(1, self.args.senders + 1)]
        for thread in background + senders:
            thread.start()
        self.chaos_loop(senders)
        send_seconds = time.monotonic() - self.t0
        self.stop_background.set()
        for thread in background:
            thread.join(60)
        settle_started = time.monotonic()
        sides = self.settle()
        settle_seconds = time.monotonic() - settle_started
        self.poll_relays()
        self.stop_monitor.set()
        for thread in long_running:
            thread.join(30)
        return self.report(sides, setup_seconds, send_seconds, settle_seconds,
                           time.monotonic() - self.t0)

    def cleanup(self) -> None:
        self.stop_background.set()
        self.stop_monitor.set()
        with self.lock:
            procs = [proc for table in self.live.values() for _, proc in table.values()]
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for relay in self.relays:
            if relay.up and relay.proc is not None:
                relay.proc.send_signal(signal.SIGTERM)
                try:
                    relay.proc.wait(10)
                except subprocess.TimeoutExpired:
                    relay.kill()
        for proxy in self.proxies:
            proxy.stop()

    # -- the report ---------------------------------------------------------------------

    def report(self, sides: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]],
               setup_s: float, send_s: float, settle_s: float, total_s: float,
               ) -> dict[str, Any]:
        directions: dict[str, Any] = {}
        confirmed_total = received_total = 0
        for sender in NAMES:
            receiver = OTHER[sender]
            key = f"{sender}->{receiver}"
            attempts = self.directions[key].attempts
            outcomes = Counter(a.outcome for a in attempts)
            confirmed = {a.number: a for a in attempts if a.outcome == "confirmed"}
            inbox, receiver_board = sides[receiver]
            _, sender_board = sides[sender]
            tags: Counter[int] = Counter()
            by_slot: dict[int, list[int]] = defaultdict(list)
            foreign = 0
            for message in inbox:
                match = TAG.match(str(message.get("text", "")))
                if not match or match.group(1) != key:
                    foreign += 1
                    continue
                number, slot = int(match.group(2)), int(match.group(3))
                tags[number] += 1
                by_slot[slot].append(number)
            out_of_order = 0
            for numbers in by_slot.values():
                highest = 0
                for number in numbers:
                    if number < highest:
                        out_of_order += 1
                    highest = max(highest, number)
            seqs: dict[int, set[str]] = defaultdict(set)
            for a in confirmed.values():
                seqs[a.seq].add(a.message_id)
            lost = sorted(set(confirmed) - set(tags))
            took = sorted(a.seconds for a in confirmed.values()) or [0.0]
            directions[key] = {
                "attempted": len(attempts),
                "confirmed": len(confirmed),
                "confirmed_queued": sum(1 for a in confirmed.values() if a.queued),
                "interrupted": outcomes["interrupted"],
                "hung": outcomes["hung"],
                "failed": outcomes["failed"],
                "received": len(tags),
                "lost": len(lost),
                "lost_sample": lost[:20],
                "duplicated": sum(n - 1 for n in tags.values() if n > 1),
                "out_of_order": out_of_order,
                "received_unconfirmed": len(set(tags) - set(confirmed)),
                "unrecognised_in_inbox": foreign,
                "rejected": receiver_board.get("rejected", "n/a"),
                "gaps": receiver_board.get("gaps", "n/a"),
                "forks": receiver_board.get("forks", "n/a"),
                "seq_reused": sum(len(ids) - 1 for ids in seqs.values() if len(ids) > 1),
                "sender_status_sent": sender_board.get("sent", "n/a"),
                "delivered_receipts": sender_board.get("delivered", "n/a"),
                "queued_left": sender_board.get("queued", "n/a"),
                "send_seconds_p50": round(took[len(took) // 2], 2),
                "send_seconds_p90": round(took[int(len(took) * 0.9)], 2),
                "send_seconds_max": round(took[-1], 2),
            }
            confirmed_total += len(confirmed)
            received_total += len(tags)
        faults: Counter[str] = Counter(self.faults)
        for proxy in self.proxies:
            faults.update(proxy.snapshot())
        bodies: dict[tuple[int, int, bytes], Counter[str]] = defaultdict(Counter)
        for (index, incarnation, mailbox, _seq), digest in self.monitor.items():
            bodies[(index, incarnation, mailbox)][digest] += 1
        retransmits = sum(n - 1 for c in bodies.values() for n in c.values() if n > 1)
        return {
            "seed": self.args.seed,
            "notes_each_way": self.args.notes,
            "senders_per_principal": self.args.senders,
            "agent": self.agent,
            "slots": self.args.slots,
            "relay_options": list(self.relay_extra),
            "directions": directions,
            "faults": dict(sorted(faults.items())),
            "findings": dict(sorted(self.findings.items())),
            "command_errors": dict(self.errors.most_common(12)),
            "relays": {
                "relay_envelopes_seen": len(self.monitor),
                "relay_retransmits": retransmits,
                "relay_seq_conflicts": self.monitor_conflicts,
            },
            "settle_rounds": len(self.settle_log),
            "settled": self.settled,
            "seconds": {"setup": round(setup_s, 1), "send_phase": round(send_s, 1),
                        "settle": round(settle_s, 1), "total": round(total_s, 1)},
            "throughput": {
                "confirmed_per_second": round(confirmed_total / max(send_s, 1e-9), 2),
                "received_per_second": round(received_total / max(total_s, 1e-9), 2),
            },
            "work_folder": str(self.work),
            "ok": all(d["lost"] == 0 and d["duplicated"] == 0 for d in directions.values()),
        }


def print_report(report: dict[str, Any]) -> None:
    rows = [
        ("attempted", "send processes started"),
        ("confirmed", "send exited 0 with the message id"),
        ("confirmed_queued", "  of which queued only (no relay stored it yet)"),
        ("interrupted", "send killed by a fault"),
        ("hung", "send killed after its timeout"),
        ("failed", "send exited non-zero"),
        ("received", "distinct notes in the receiver's inbox"),
        ("lost", "confirmed, never received"),
        ("duplicated", "extra copies of a note in the inbox"),
        ("out_of_order", "inversions per sender slot, inbox order"),
        ("received_unconfirmed", "received, though send did not confirm"),
        ("rejected", "receiver status: rejected envelopes"),
        ("gaps", "receiver status: open sequence gaps"),
        ("forks", "receiver status: forks"),
        ("seq_reused", "sender: confirmed notes sharing a seq (fork)"),
        ("delivered_receipts", "sender status: delivered receipts back"),
        ("sender_status_sent", "sender status: sent"),
        ("queued_left", "sender outbox after settling"),
        ("send_seconds_p50", "confirmed send: median seconds"),
        ("send_seconds_p90", "confirmed send: 90th percentile seconds"),
        ("send_seconds_max", "confirmed send: slowest, seconds"),
    ]
    keys = list(report["directions"])
    print(f"Backchannel chaos run: seed {report['seed']}, {report['notes_each_way']} notes each "
          f"way, {report['senders_per_principal']} senders per principal, "
          f"agent {'on' if report['agent'] else 'off'}, slots {report['slots']}, relays "
          f"{' '.join(report['relay_options']) or 'as served by default'}")
    print()
    print(f"{'':22}" + "".join(f"{k:>10}" for k in keys) + "   meaning")
    for key, meaning in rows:
        cells = []
        for k in keys:
            value = report["directions"][k][key]
            cells.append(f"{len(value) if isinstance(value, list) else value!s:>10}")
        print(f"{key:22}" + "".join(cells) + f"   {meaning}")
    for k in keys:
        if report["directions"][k]["lost_sample"]:
            print(f"  lost {k} (first 20): {report['directions'][k]['lost_sample']}")
    print()
    print("Faults injected: " + (", ".join(f"{k} {v}" for k, v in report["faults"].items())
                                 or "none"))
    if report["findings"]:
        print("Observed: " + ", ".join(f"{k} {v}" for k, v in report["findings"].items()))
    if report["command_errors"]:
        print("Command errors (most frequent):")
        for line, count in report["command_errors"].items():
            print(f"  {count:5} x {line}")
    relays = report["relays"]
    print(f"Relays (polled): {relays['relay_envelopes_seen']} envelopes seen, "
          f"{relays['relay_retransmits']} byte-identical retransmits, "
          f"{relays['relay_seq_conflicts']} (mailbox, seq) with two different bodies")
    s, t = report["seconds"], report["throughput"]
    print(f"Time: setup {s['setup']} s, send phase {s['send_phase']} s, settle {s['settle']} s "
          f"({report['settle_rounds']} rounds, {'settled' if report['settled'] else 'NOT settled'}"
          f"), total {s['total']} s")
    print(f"Throughput: {t['confirmed_per_second']} confirmed notes/s (send phase, both ways), "
          f"{t['received_per_second']} received notes/s (overall)")
    print(f"Result: {'OK: nothing lost or duplicated' if report['ok'] else 'FAIL'}"
          f"   (work folder {report['work_folder']})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Bounded, seeded fault injection against real Backchannel processes "
                    "on loopback (see the module docstring for every number).")
    parser.add_argument("--notes", type=int, default=None,
                        help="notes each way (default 2000; --quick: 100)")
    parser.add_argument("--quick", action="store_true",
                        help="100 notes each way, send phase at most 90 s, settle 60 s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=None,
                        help="cap on the send phase in seconds (default 1200; --quick 90)")
    parser.add_argument("--settle", type=float, default=None,
                        help="cap on settling in seconds (default 240; --quick 60)")
    parser.add_argument("--senders", type=int, default=2,
                        help="concurrent sender processes per principal (default 2)")
    parser.add_argument("--fault-interval", type=float, default=2.0,
                        help="mean seconds between injected faults (default 2)")
    parser.add_argument("--no-faults", action="store_true",
                        help="inject nothing: concurrency alone (proxies pass through)")
    parser.add_argument("--no-watch", action="store_true",
                        help="diagnosis: run no watch process during the send phase")
    parser.add_argument("--no-sync", action="store_true",
                        help="diagnosis: run no sync loop during the send phase")
    parser.add_argument("--agent", action="store_true",
                        help="run `backchannel agent --foreground` per principal")
    parser.add_argument("--slots", default="0.2",
                        help="BACKCHANNEL_SLOTS for every process: seconds between slots, "
                             "'off', or 'default' (leave the environment's; 15 s) "
                             "(default 0.2: faults hit the slots as well, and a backlog of a "
                             "few hundred envelopes drains within the settle)")
    parser.add_argument("--backchannel", type=shlex.split, default=None,
                        help="the backchannel command (default: this Python with "
                             "backchannel.cli.main)")
    parser.add_argument("--workdir", default=None, help="work folder (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    args.notes = args.notes or (100 if args.quick else 2000)
    args.duration = args.duration or (90.0 if args.quick else 1200.0)
    args.settle = args.settle or (60.0 if args.quick else 240.0)
    args.backchannel = args.backchannel or [
        sys.executable, "-c", "from backchannel.cli.main import main; main()"]
    chaos = Chaos(args)
    try:
        report = chaos.execute()
    except RuntimeError as error:
        print(f"error: {error} (work folder {chaos.work})", file=sys.stderr)
        sys.exit(2)
    finally:
        chaos.cleanup()
    with contextlib.suppress(OSError):
        (chaos.work / "report.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    if report["ok"] and not args.keep:
        shutil.rmtree(chaos.work, ignore_errors=True)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()

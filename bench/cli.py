"""Wall time of whole `backchannel` processes, with and without a running agent.

    python bench/cli.py [--runs N]

Starts `backchannel relay serve` (SQLite) on a free loopback port, creates two principals
with the default key-derivation cost (what a principal really pays to unlock without an
agent), pairs them, and times N runs (default 20) each of:

- `python -c pass`: the floor, the bare interpreter start;
- `backchannel --help`, `--version` (answered by the launcher from the command registry,
  standard library only) and each command's own help, `send --help`, `sync --help`,
  `status --help`, `history --help`, `record --help`, `relay serve --help`, `meet suggest
  --help` (Typer builds that one command, without the client or the venue planner);
- `backchannel send bob "..."` and `backchannel status`, run in-process (no agent: the
  command unlocks the state with Argon2id, imports the client, and connects to the relay);
- the same two commands while `backchannel agent` runs (the command is forwarded on the
  agent's socket by a launcher that imports the standard library only).

It prints p50 and p95 of each, and each p50 as a multiple of the floor's p50, measured in
this same run. The targets: `send` through the agent, `--help` and `--version` at most
8x the floor.

    python bench/cli.py --help-only [--runs N]

times only the floor and the helps (no relay, no principals: a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backchannel.client.engine import Principal

PASSPHRASE = "bench passphrase"
# What the console script runs (`backchannel = backchannel.cli.launcher:main`).
CLI = [sys.executable, "-c", "from backchannel.cli.launcher import main; main()"]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{command[-3:]} failed: {done.stderr}")
    return samples


async def pair(root: Path, url: str) -> None:
    alice = Principal.create(root / "alice", "alice", PASSPHRASE)
    bob = Principal.create(root / "bob", "bob", PASSPHRASE)
    code = await alice.invite([url])
    await bob.accept(code)
    await alice.sync()
    await bob.sync()
    await alice.sync()
    alice.close()
    bob.close()


# Each command's own `--help` (review §4 row 10: `send --help` was 32x the floor).
COMMAND_HELPS = (["send"], ["sync"], ["status"], ["history"], ["record"], ["relay", "serve"],
                 ["meet", "suggest"])


def help_rows(env: dict[str, str], runs: int) -> list[tuple[str, list[float]]]:
    """The floor, the root `--help` and `--version`, and every command's own help."""
    rows = [
        ("python -c pass (floor)", timed([sys.executable, "-c", "pass"], env, runs)),
        ("--help", timed([*CLI, "--help"], env, runs)),
        ("--version", timed([*CLI, "--version"], env, runs)),
    ]
    for command in COMMAND_HELPS:
        name = " ".join([*command, "--help"])
        rows.append((name, timed([*CLI, *command, "--help"], env, runs)))
    return rows


def report(rows: list[tuple[str, list[float]]], runs: int) -> None:
    floor = statistics.median(rows[0][1])
    print(f"{'command':<28} {'p50 ms':>8} {'p95 ms':>8} {'p50 / floor':>12}   ({runs} runs)")
    for name, samples in rows:
        p50, p95 = statistics.median(samples), percentile(samples, 0.95)
        print(f"{name:<28} {p50 * 1000:8.1f} {p95 * 1000:8.1f} {p50 / floor:11.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--help-only", action="store_true",
                        help="Time only the floor and the helps (no relay, no principals).")
    args = parser.parse_args()
    env = {**os.environ, "BACKCHANNEL_PASSPHRASE": PASSPHRASE}
    if args.help_only:
        report(help_rows(env, args.runs), args.runs)
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        relay = subprocess.Popen(
            [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0",
             "--db", f"sqlite:///{root / 'relay.db'}", "--no-metrics"],
            stderr=subprocess.PIPE, text=True, env={**env, "PYTHONUNBUFFERED": "1"})
        try:
            assert relay.stderr is not None
            url = str(json.loads(relay.stderr.readline())["url"])
            asyncio.run(pair(root, url))
            home = ["--home", str(root / "alice")]
            send = [*CLI, *home, "send", "bob", "a note timed by bench/cli.py"]
            status = [*CLI, *home, "status"]
            rows = help_rows(env, args.runs)
            rows.append(("send, no agent", timed(send, env, args.runs)))
            rows.append(("status, no agent", timed(status, env, args.runs)))
            subprocess.run([*CLI, *home, "agent"], env=env, check=True, capture_output=True)
            try:
                rows.append(("send, through the agent", timed(send, env, args.runs)))
                rows.append(("status, through the agent", timed(status, env, args.runs)))
            finally:
                subprocess.run([*CLI, *home, "agent", "--stop"], env=env, capture_output=True)
        finally:
            relay.terminate()
            relay.wait(30)
    report(rows, args.runs)


if __name__ == "__main__":
    main()

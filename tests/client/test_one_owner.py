"""Several real processes on one home, through a real relay: one owner, nothing forks.

This is the interleaving that used to fork the ratchet (two senders and a sync on one
home at once): sequence numbers and message keys reused, notes lost without a trace.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.protocol.envelope import Envelope

from .conftest import FAST_KDF, pair

pytestmark = pytest.mark.timeout(300)

WORKER = Path(__file__).with_name("one_owner_worker.py")
CLI = [sys.executable, "-c", "from backchannel.cli.main import main; main()"]
ENV = {**os.environ, "BACKCHANNEL_PASSPHRASE": "passphrase", "PYTHONUNBUFFERED": "1"}


@pytest.fixture()
def relay(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "relay.db"
    proc = subprocess.Popen(
        [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0", "--db", f"sqlite:///{db}",
         "--no-metrics"],
        stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["event"] == "listening", first
        yield str(first["url"]), db
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


async def _paired(tmp_path: Path, url: str) -> tuple[Path, Path]:
    alice = Principal.create(tmp_path / "alice", "alice", "passphrase", kdf=FAST_KDF)
    bob = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
    await pair(alice, bob, [url])
    await alice.sync()
    alice.close()
    bob.close()
    return tmp_path / "alice", tmp_path / "bob"


def _held_payloads(relay_db: Path) -> list[bytes]:
    with sqlite3.connect(f"file:{relay_db}?mode=ro", uri=True) as db:
        return [Envelope.decode(bytes(r[0])).payload
                for r in db.execute("SELECT body FROM envelopes")]


async def _run(*commands: list[str]) -> None:
    procs = [await asyncio.create_subprocess_exec(*c, env=ENV,
                                                  stderr=asyncio.subprocess.PIPE)
             for c in commands]
    for proc in procs:
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()


async def _everything_arrives(bob_home: Path, expected: set[str]) -> None:
    bob = Principal.open(bob_home, "passphrase")
    try:
        for _ in range(40):
            await bob.sync()
            texts = [e.text for e in bob.inbox("alice")]
            if len(texts) >= len(expected):
                break
        assert len(texts) == len(set(texts)), "a note arrived twice"
        assert set(texts) == expected, f"{len(expected - set(texts))} lost"
        (status,) = bob.status("alice")
        assert status.forks == ()
        assert status.rejected == 0
        assert status.gaps == ()
    finally:
        bob.close()


async def test_two_senders_and_syncs_through_the_agent_lose_and_fork_nothing(
    tmp_path: Path, relay: tuple[str, Path]
) -> None:
    url, relay_db = relay
    alice, bob = await _paired(tmp_path, url)
    subprocess.run([*CLI, "--home", str(alice), "agent"], env=ENV, check=True,
                   capture_output=True, timeout=60)
    try:
        per_sender = 500
        await _run(
            [sys.executable, str(WORKER), "agent", str(alice), "first", str(per_sender)],
            [sys.executable, str(WORKER), "agent", str(alice), "second", str(per_sender)],
            [sys.executable, str(WORKER), "sync", str(alice), "20"],
        )
        # Bob has not read anything yet: the relay holds every envelope alice sent.
        # The relay's per-mailbox quota (1,000 envelopes) holds back the rest in alice's
        # outbox, and byte-identical copies are retransmits of one sealed message (the
        # agent's loop and a request both flushed it), deduplicated by the receiver. A
        # message sealed twice would be a fork at bob's, checked below.
        assert _held_payloads(relay_db)
        expected = {f"{p} {i:05d}" for p in ("first", "second") for i in range(per_sender)}
        await _everything_arrives(bob, expected)
    finally:
        subprocess.run([*CLI, "--home", str(alice), "agent", "--stop"], env=ENV,
                       capture_output=True, timeout=60)


async def test_two_processes_without_an_agent_take_turns_on_the_home(
    tmp_path: Path, relay: tuple[str, Path]
) -> None:
    url, relay_db = relay
    alice, bob = await _paired(tmp_path, url)
    per_sender = 100
    await _run(
        [sys.executable, str(WORKER), "direct", str(alice), "first", str(per_sender)],
        [sys.executable, str(WORKER), "direct", str(alice), "second", str(per_sender)],
    )
    payloads = _held_payloads(relay_db)
    assert len(set(payloads)) == len(payloads) >= 2 * per_sender, "a ciphertext sent twice"
    expected = {f"{p} {i:05d}" for p in ("first", "second") for i in range(per_sender)}
    await _everything_arrives(bob, expected)


def test_a_second_agent_on_one_home_is_refused(tmp_path: Path, relay: tuple[str, Path]) -> None:
    url, _ = relay
    alice, _bob = asyncio.run(_paired(tmp_path, url))
    subprocess.run([*CLI, "--home", str(alice), "agent"], env=ENV, check=True,
                   capture_output=True, timeout=60)
    try:
        again = subprocess.run([*CLI, "--home", str(alice), "agent", "--foreground"], env=ENV,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 1
        assert "an agent already runs" in again.stderr
        mode = (alice / "agent.sock").stat().st_mode & 0o777
        assert mode == 0o600
        # A command goes through it and prints what it would have printed here.
        status = subprocess.run([*CLI, "--home", str(alice), "status", "--json"], env=ENV,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["channels"][0]["name"] == "bob"
    finally:
        subprocess.run([*CLI, "--home", str(alice), "agent", "--stop"], env=ENV,
                       capture_output=True, timeout=60)

"""Crash safety: a client killed with SIGKILL at random instants loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from backchannel.client.engine import Principal
from backchannel.relay.limits import RelayLimits

from .conftest import MakePrincipal, pair, running_relay

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 6
BURST = 2000
SEND_BURST = 400


def _progress(mode: str, home: Path) -> int:
    principal = Principal.open(home, "passphrase")
    try:
        if mode == "receive":
            return len(principal.inbox())
        channel = principal.channels()[0].name
        return sum(1 for e in principal.transcript(channel) if e.direction == "out")
    finally:
        principal.close()


async def _run_and_kill(mode: str, home: Path, count: int, rnd: random.Random) -> list[int]:
    """Start the worker KILLS times and SIGKILL it at a random moment; then let it finish.

    Returns the progress (messages received or sent) seen after each kill.
    """
    seen = []
    for _ in range(KILLS):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            mode,
            str(home),
            str(count),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        # Start-up time varies with the machine's load; the kill is timed from the moment
        # the worker reports it is working, so it lands in the middle of the work.
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() == b"working":
            try:
                await asyncio.wait_for(proc.wait(), rnd.uniform(0.05, 0.5))
            except TimeoutError:
                proc.kill()
                seen.append(-1)
        await proc.wait()
        if seen and seen[-1] == -1:
            seen[-1] = _progress(mode, home)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        mode,
        str(home),
        str(count),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:  # never leave a worker running after the test
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"finished" in out
    return seen


async def test_receiver_killed_while_processing_a_burst_loses_nothing(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    limits = RelayLimits(mailbox_max_envelopes=10 * BURST)
    async with running_relay(tmp_path / "relay.db", limits=limits) as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        for i in range(BURST):
            w.queue("b", f"burst {i}")
        await w.flush()
        b.close()
        seen = await _run_and_kill("receive", tmp_path / "b", BURST, random.Random(1))
    b = Principal.open(tmp_path / "b", "passphrase")
    texts = [e.text for e in b.inbox()]
    assert sorted(texts) == sorted(f"burst {i}" for i in range(BURST))
    assert len(texts) == len(set(texts)) == BURST
    assert b.status("w")[0].gaps == ()
    # At least one kill landed in the middle of the burst, not before or after it.
    assert any(0 < n < BURST for n in seen), seen


async def test_sender_killed_while_sending_loses_nothing(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        w.close()
        seen = await _run_and_kill("send", tmp_path / "w", SEND_BURST, random.Random(2))
        await b.sync()
    texts = [e.text for e in b.inbox()]
    assert sorted(texts) == sorted(f"note {i}" for i in range(SEND_BURST))
    assert len(texts) == len(set(texts))
    assert b.status("w")[0].gaps == ()
    assert any(0 < n < SEND_BURST for n in seen), seen

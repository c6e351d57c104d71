"""The console headless: time to first paint on a 10,000-message channel (against a home
without channels and a paired channel without messages, in the same run), to page from
the latest page to the top of that channel, and to apply 1,000 incoming events.

    python bench/tui.py [--messages N] [--events N] [--runs N]

Starts `backchannel relay serve` (SQLite, its own process) on a free loopback port to pair
two principals, queues N notes on one side (one transaction), then opens the console
headless (Textual's `run_test`) over each home and times mount to the first screen
drawn with its data. Scrolling to the top is timed as the pages read back one by one
(each read in the console's thread, then drawn), with the longest single step, which is
what a user waits for; `<` jumps to the first page at once. Incoming events: the other
side sends `--events` notes, and one refresh (sync, duties, read, draw) takes them in.
Prints medians and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backchannel.client.engine import Principal
from backchannel.client.keystore import KdfParameters
from backchannel.tui.app import ConsoleApp
from backchannel.tui.live import ConsoleData

sys.path.insert(0, str(Path(__file__).parent))
from client import free_port, wait_for_relay

KDF = KdfParameters(memory_kib=8 * 1024, iterations=1, lanes=1)
SIZE = (160, 48)


async def first_paint(principal: Principal) -> float:
    """Seconds from starting the app to its first screen with data, headless."""
    started = time.perf_counter()
    app = ConsoleApp(ConsoleData(principal), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        return time.perf_counter() - started


class Stalls:
    """The event loop's longest stall while it runs: a task that asks to wake every
    10 ms and records how late it woke (what a key press would wait for)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.01)
            self.longest = max(self.longest, time.perf_counter() - asked - 0.01)

    def __enter__(self) -> Stalls:
        self._task = asyncio.get_running_loop().create_task(self._probe())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def to_the_top(principal: Principal) -> tuple[float, float, float, int]:
    """Seconds to page from the latest page to the first entry, the longest step, the
    event loop's longest stall meanwhile, and the lines then shown."""
    app = ConsoleApp(ConsoleData(principal), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        longest = 0.0
        with Stalls() as stalls:
            while app.snapshot.earlier:
                step = time.perf_counter()
                await app.page(-1)
                await pilot.pause()
                longest = max(longest, time.perf_counter() - step)
        return time.perf_counter() - started, longest, stalls.longest, len(app._lines)


async def jump_to_the_top(principal: Principal) -> float:
    """Seconds for `<`: from the latest page straight to the first."""
    app = ConsoleApp(ConsoleData(principal), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        started = time.perf_counter()
        await app.page(-2)
        await pilot.pause()
        assert app.snapshot.earlier == 0
        return time.perf_counter() - started


async def incoming(principal: Principal, sender: Principal, events: int) -> float:
    """Seconds for one refresh to take in `events` notes from the other side."""
    app = ConsoleApp(ConsoleData(principal), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        sender.queue_many(principal.name, [f"incoming {i}" for i in range(events)])
        await sender.sync()
        started = time.perf_counter()
        await app.reload(sync=True)
        await pilot.pause()
        took = time.perf_counter() - started
        assert app.snapshot.total >= events, app.snapshot.total
        return took


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-tui-"))
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    relay = subprocess.Popen(
        [sys.executable, "-c", "from backchannel.cli.main import main; main()", "relay",
         "serve", "--no-metrics", "--port", str(port), "--db", f"sqlite:///{folder / 'r.db'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_relay(url, relay)
        empty = Principal.create(folder / "e", "e", "bench", kdf=KDF)
        w = Principal.create(folder / "w", "w", "bench", kdf=KDF)
        b = Principal.create(folder / "b", "b", "bench", kdf=KDF)
        await b.accept(await w.invite([url]))
        await w.sync()
        timings: dict[str, list[float]] = {"empty home": [], "empty channel": [],
                                           f"{args.messages} messages": []}
        for _ in range(args.runs):
            timings["empty home"].append(await first_paint(empty))
            timings["empty channel"].append(await first_paint(b))
        w.queue_many("b", [f"note {i}" for i in range(args.messages)])
        for _ in range(args.runs):
            timings[f"{args.messages} messages"].append(await first_paint(w))
        base = statistics.median(timings["empty home"])
        for name, samples in timings.items():
            median = statistics.median(samples)
            print(f"first paint, {name}: {median * 1000:.0f} ms (x{median / base:.2f})")
        total, longest, stall, lines = await to_the_top(w)
        print(f"page to the top of {args.messages} messages: {total * 1000:.0f} ms in all, "
              f"longest step {longest * 1000:.0f} ms, longest event-loop stall "
              f"{stall * 1000:.0f} ms, {lines} lines shown")
        print(f"jump to the top (<) of {args.messages} messages: "
              f"{await jump_to_the_top(w) * 1000:.0f} ms")
        took = [await incoming(b, w, args.events) for _ in range(1)]
        print(f"apply {args.events} incoming notes (one refresh: sync, duties, read, draw): "
              f"{statistics.median(took) * 1000:.0f} ms")
        for p in (empty, w, b):
            p.close()
    finally:
        relay.terminate()
        relay.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))

"""The console's time to first paint on a 10,000-message channel, against a home without
channels and a paired channel without messages, measured in the same run.

    python bench/tui.py [--messages N] [--runs N]

Starts `backchannel relay serve` (SQLite, its own process) on a free loopback port to pair
two principals, queues N notes on one side (one transaction), then opens the console
headless (Textual's `run_test`) over each home and times mount to the first screen
drawn with its data. Prints each median and the ratios to the empty-home baseline.
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
        for p in (empty, w, b):
            p.close()
    finally:
        relay.terminate()
        relay.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(main(parser.parse_args()))

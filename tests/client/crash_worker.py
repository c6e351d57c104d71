"""Run by the crash tests in a subprocess that is killed with SIGKILL at random moments.

python crash_worker.py receive HOME      sync in a loop until the inbox holds COUNT
python crash_worker.py send HOME COUNT   send notes 0..COUNT-1 that are not yet sent
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from backchannel.client.engine import Principal

# A test waits two minutes at most; the worker stops on its own soon after.
GIVE_UP_AFTER = 150.0


async def main(mode: str, home: Path, count: int) -> None:
    principal = Principal.open(home, "passphrase")
    channel = principal.channels()[0].name
    print("working", flush=True)
    if mode == "receive":
        deadline = time.monotonic() + GIVE_UP_AFTER
        while len(principal.inbox()) < count:
            if time.monotonic() > deadline:
                sys.exit(f"gave up: {len(principal.inbox())} of {count} arrived")
            await principal.sync()
    else:
        done = {e.text for e in principal.transcript(channel) if e.direction == "out"}
        for i in range(count):
            if f"note {i}" not in done:
                await principal.send(channel, f"note {i}")
        await principal.flush()
    print("finished", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])))

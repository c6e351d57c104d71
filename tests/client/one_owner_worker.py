"""A process that sends notes on a home another process is using at the same time.

python one_owner_worker.py agent HOME PREFIX COUNT   each note through the running agent
python one_owner_worker.py direct HOME PREFIX COUNT  open the home itself (waits on its lock)
python one_owner_worker.py sync HOME ROUNDS          `sync` ROUNDS times through the agent
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from backchannel.cli.exitcodes import ExitCode
from backchannel.client.agent.client import connect
from backchannel.client.engine import Principal

# A send no relay stored in time is queued, not lost (exit 6); the test checks at the end
# that every note arrives. A fork (exit 7) or any other failure fails the worker.
_QUEUED_OR_DONE = (ExitCode.OK, ExitCode.NOT_DELIVERED)


def through_agent(home: Path, prefix: str, count: int) -> None:
    with connect(home) as agent:
        for i in range(count):
            result = agent.call("cli", {"argv": ["send", "bob", f"{prefix} {i:05d}", "--json"]})
            if result["code"] not in _QUEUED_OR_DONE:
                sys.exit(f"send {i} failed: {result['stderr']}")


def sync_through_agent(home: Path, rounds: int) -> None:
    with connect(home) as agent:
        for _ in range(rounds):
            result = agent.call("cli", {"argv": ["sync", "--json"]})
            if result["code"] not in _QUEUED_OR_DONE:
                sys.exit(f"sync failed: {result['stderr']}")


async def direct(home: Path, prefix: str, count: int) -> None:
    batch = 10
    for start in range(0, count, batch):
        # Open and close each time, so that the other worker gets its turns.
        principal = Principal.open(home, "passphrase", lock_timeout=60)
        try:
            principal.queue_many("bob", [f"{prefix} {i:05d}" for i in
                                         range(start, min(start + batch, count))])
            await principal.flush()
        finally:
            principal.close()


if __name__ == "__main__":
    mode, home = sys.argv[1], Path(sys.argv[2])
    if mode == "agent":
        through_agent(home, sys.argv[3], int(sys.argv[4]))
    elif mode == "direct":
        asyncio.run(direct(home, sys.argv[3], int(sys.argv[4])))
    else:
        sync_through_agent(home, int(sys.argv[3]))

"""Holds a home as a plain command, then, when told on stdin, becomes its agent.

python agent_takeover_worker.py HOME
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from backchannel.cli.watching import serve_as_agent
from backchannel.client.engine import Principal


def main(home: Path) -> None:
    principal = Principal.open(home, "passphrase", lock_role="command")
    print("holding", flush=True)
    sys.stdin.readline()
    # The same lock, now announced as the agent's (what `backchannel agent` writes).
    fd = os.open(home / "lock", os.O_WRONLY)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} agent\n".encode(), 0)
    os.close(fd)

    def quiet(event: dict[str, Any], line: str) -> None:
        pass

    with principal:
        asyncio.run(serve_as_agent(principal, quiet))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

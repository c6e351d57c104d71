"""`status` while the agent runs shows the agent's held slot rows (`state.slotstatus`):
real processes (a relay whose mailboxes hold three envelopes, the agent, the CLI)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from backchannel.client.engine import Principal
from tests.cli.test_agent import CLI, ENV, bc
from tests.client.conftest import FAST_KDF, pair

# Real processes take about 7 s: kept out of the default run (the in-process tests in
# tests/client/test_slot_status.py show the same records through `status`).
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def _directions(home: Path) -> list[dict[str, Any]]:
    (channel,) = json.loads(bc("--home", str(home), "status", "--json").stdout)["channels"]
    directions: list[dict[str, Any]] = channel["slots"]["directions"]
    return directions


def test_status_through_the_agent_shows_a_held_slot_row(tmp_path: Path) -> None:
    relay = subprocess.Popen(
        [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0", "--db",
         f"sqlite:///{tmp_path / 'relay.db'}", "--no-metrics", "--max-envelopes", "3"],
        stderr=subprocess.PIPE, text=True, env=ENV)
    alice = tmp_path / "alice"
    try:
        assert relay.stderr is not None
        url = str(json.loads(relay.stderr.readline())["url"])

        async def paired() -> None:
            a = Principal.create(alice, "alice", "passphrase", kdf=FAST_KDF)
            b = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
            await pair(a, b, [url])
            await a.sync()
            a.close()
            b.close()

        asyncio.run(paired())
        bc("--home", str(alice), "slots", "bob", "--every", "0.1")
        bc("--home", str(alice), "agent")
        # Bob reads nothing: the agent's cover fills his mailbox within a few slots, and
        # the note then waits, refused for the quota, held back between offers.
        time.sleep(1.0)
        bc("--home", str(alice), "send", "bob", "waits for room")
        deadline = time.monotonic() + 30
        directions = _directions(alice)
        while not directions and time.monotonic() < deadline:
            time.sleep(0.3)
            directions = _directions(alice)
        assert [(d["relay"], d["held"]) for d in directions] == [(url, 1)]
        assert directions[0]["held_until_ms"] > 0
        board = bc("--home", str(alice), "status").stdout
        assert "held: 1 message(s) to " + url in " ".join(board.split())
    finally:
        bc("--home", str(alice), "agent", "--stop", ok=False)
        relay.send_signal(signal.SIGTERM)
        relay.wait(30)

"""The typed intents of the round, over a real agent and relay: each is its command with
`--json`, so a UI asks the agent without building command lines."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backchannel.cli.agent_requests import intent_argv
from backchannel.client.agent.client import connect
from tests.cli.test_agent import bc, homes

__all__ = ["homes"]

pytestmark = pytest.mark.timeout(180)


def eventually(attempt: Callable[[], Any]) -> Any:
    """`attempt()` once it stops raising (the counterpart's answer has to arrive)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return attempt()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_round_runs_through_typed_intents(homes: tuple[Path, Path, str],
                                              tmp_path: Path) -> None:
    alice, bob, url = homes
    bc("--home", str(alice), "agent")
    with connect(alice) as agent:
        red = agent.call("redline.add", {"channel": "bob", "title": "No live fire",
                                         "text": "Not in the strait."})
        assert red["stored_on"] == [url]
        item = agent.call("agenda.propose", {"channel": "bob", "title": "Maritime incidents",
                                             "round": 1, "detail": "Vienna"})
        record = agent.call("record.propose", {"channel": "bob", "title": "Vienna round",
                                               "text": "Both sides met."})
        agent.call("codebook.propose", {"channel": "bob", "number": 1, "word": "ALPHA",
                                        "texts": ["en=Meet at {place}"], "params": ["place"]})
        # The lists are the commands' own --json.
        for method, command in (("redline.list", ["redline", "list", "bob"]),
                                ("agenda.show", ["agenda", "show", "bob"]),
                                ("codebook.list", ["codebook", "list", "bob"]),
                                ("verify", ["verify", "bob"])):
            assert agent.call(method, {"channel": "bob"}) == json.loads(
                bc("--home", str(alice), *command, "--json").stdout), method
        with pytest.raises(OSError, match="positive integer"):
            agent.call("agenda.propose", {"channel": "bob", "title": "x", "round": 0})
        with pytest.raises(OSError, match="absolute path"):
            agent.call("record.export", {"channel": "bob", "record": "ab", "output": "r.txt"})
    # Bob answers each act from his own command line (no agent there).
    bc("--home", str(bob), "sync")
    bc("--home", str(bob), "redline", "ack", "alice", red["redline_id"])
    bc("--home", str(bob), "agenda", "accept", "alice", item["item_id"])
    bc("--home", str(bob), "record", "sign", "alice", record["record_id"])
    bc("--home", str(bob), "codebook", "accept", "alice", "1")
    with connect(alice) as agent:
        exported = tmp_path / "vienna.txt"
        eventually(lambda: agent.call("record.export", {
            "channel": "bob", "record": record["record_id"], "output": str(exported)}))
        assert exported.read_bytes()
        assert "VALID" in bc("--home", str(alice), "record", "verify", str(exported)).stdout
        eventually(lambda: agent.call("codebook.send", {"channel": "bob", "entry": "ALPHA",
                                                        "values": ["place=Vienna"]}))
        verified = agent.call("verify", {"channel": "bob", "confirm": True})
        assert verified == json.loads(bc("--home", str(alice), "verify", "bob", "--json").stdout)
        invite = agent.call("invite", {"relays": [url], "ttl": "1h"})
        _their_own_side(bob, invite)
        with pytest.raises(OSError, match="agent: "):
            agent.call("agenda.accept", {"channel": "bob", "item": "ffffffff"})


def _their_own_side(bob: Path, invite: dict[str, Any]) -> None:
    joined = bc("--home", str(bob), "accept", str(invite["code"]), "--name", "alice-two",
                "--json")
    assert json.loads(joined.stdout)


@pytest.mark.parametrize("method, params, argv", [
    ("meet.suggest", {"between": ["Washington", "Beijing"], "top": 3},
     ["meet", "suggest", "--between", "Washington", "--between", "Beijing", "--top", "3"]),
    ("accept", {"code": "BC1-X", "name": "b"}, ["accept", "BC1-X", "--name", "b"]),
    ("codebook.send", {"channel": "b", "entry": "1", "values": ["a=1"]},
     ["codebook", "send", "b", "1", "a=1"]),
    ("redline.ack", {"channel": "b", "redline": "ab", "version": 2},
     ["redline", "ack", "b", "ab", "--version", "2"]),
])
def test_each_intent_is_its_command_with_json(method: str, params: dict[str, Any],
                                              argv: list[str]) -> None:
    assert intent_argv(method, params) == [*argv, "--json"]


def test_meet_suggest_is_served_by_the_agent(homes: tuple[Path, Path, str]) -> None:
    alice, _bob, _ = homes
    bc("--home", str(alice), "agent")
    with connect(alice) as agent:
        ranked = agent.call("meet.suggest", {"between": ["Washington", "Beijing"], "top": 2})
    assert ranked == json.loads(bc("meet", "suggest", "--between", "Washington", "--between",
                                   "Beijing", "--top", "2", "--json").stdout)

"""Every command explains itself with an example; the demo plays and loses nothing."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from backchannel.cli.main import app

COMMANDS = [
    [], ["init"], ["invite"], ["accept"], ["channels"], ["send"], ["sync"], ["inbox"],
    ["read"], ["verify"], ["status"], ["demo"], ["relay", "serve"], ["meet", "suggest"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "backchannel")
def test_help_shows_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout


def test_root_help_lists_the_principal_commands() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    for name in ("init", "invite", "accept", "channels", "send", "sync", "inbox", "read",
                 "verify", "status", "demo", "relay", "meet", "--home", "--json"):
        assert name in result.stdout


def test_demo_json_reports_nothing_lost() -> None:
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["lost"] == 0
    assert summary["safety_number"]["matches"] is True
    assert summary["kdf"]["light"] is True
    by_sender = {c["sender"]: c for c in summary["channels"]}
    for side in ("washington", "beijing"):
        c = by_sender[side]
        assert c["sent"] == c["delivered"] == c["read"] > 0
        assert c["lost"] == 0 and c["duplicated"] == 0
    offline = [m for m in summary["transcript"] if m["receiver_offline"]]
    assert offline and all(m["delivered_at"] and m["read_at"] for m in offline)
    assert summary["elapsed_seconds"] < 10


def test_demo_tells_the_story_in_plain_text() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "light key-derivation setting" in out
    assert "Safety number" in out and "goes offline" in out
    assert "Transcript" in out and "Per-channel summary" in out
    assert "Nothing lost" in out and "\x1b[" not in out  # no colour without a terminal

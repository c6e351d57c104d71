"""Every command explains itself with an example; the demo plays and loses nothing."""

from __future__ import annotations

import json
import os
import re

import pytest
from typer.testing import CliRunner

from backchannel.cli.main import app

COMMANDS = [
    [], ["init"], ["invite"], ["accept"], ["channels"], ["send"], ["sync"], ["inbox"],
    ["read"], ["verify"], ["status"], ["demo"], ["relay", "serve"], ["meet", "suggest"],
    ["ack"], ["hold"], ["clarify"], ["answer"], ["redline"], ["redline", "add"],
    ["redline", "list"], ["redline", "ack"], ["agenda"], ["agenda", "propose"],
    ["agenda", "accept"], ["agenda", "decline"], ["agenda", "show"], ["record"],
    ["record", "propose"], ["record", "sign"], ["record", "show"], ["record", "export"],
    ["record", "verify"], ["linetest"], ["watch"], ["escalation"], ["escalation", "set"],
    ["escalation", "show"], ["invite", "revoke"], ["channels", "rename"],
    ["channels", "remove"], ["passphrase"], ["passphrase", "change"], ["codebook"],
    ["codebook", "propose"], ["codebook", "accept"], ["codebook", "withdraw"],
    ["codebook", "list"], ["codebook", "send"], ["translate"], ["translate", "add"],
    ["translate", "suggest"], ["translate", "draft"], ["translate", "show"],
    ["translate", "language"], ["translate", "command", "set"], ["translate", "command", "show"],
    ["duty"], ["duty", "propose"], ["duty", "accept"], ["duty", "notify"], ["duty", "request"],
    ["duty", "list"], ["review"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "backchannel")
def test_help_shows_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout


def test_root_help_lists_the_principal_commands() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    for name in ("init", "invite", "accept", "channels", "send", "sync", "inbox", "read",
                 "verify", "status", "demo", "relay", "meet", "--home", "--json", "ack",
                 "hold", "clarify", "answer", "redline", "agenda", "record", "linetest",
                 "watch", "escalation", "passphrase", "codebook", "translate", "duty", "review"):
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
    # How long it takes is bench/'s to measure (farm-bench on `backchannel demo`), not a
    # test's: the machine's load decides it as much as the code.
    assert summary["elapsed_seconds"] > 0
    played = summary["round"]
    assert played["ok"] is True
    for step in ("red_line_understood", "flash_held", "flash_acknowledged_in_time",
                 "escalated", "escalation_command_ran", "acknowledged_late",
                 "clarification_answered"):
        assert played[step] is True, step
    assert played["venue"] == "Vienna" and len(played["agreed_agenda"]) == 3
    # The codebook FLASH travelled as a number and two values; each side read it in its
    # own language from the agreed text.
    read = played["codebook_flash_read"]
    assert read["beijing"].startswith("通知：06:00Z将从Jiuquan")
    assert read["washington"].startswith("Notice: a test launch at 06:00Z from Jiuquan")
    assert played["record"]["languages"] == ["en", "zh"] and played["line"]["state"] == "up"
    # Both texts of the record are equally authentic, and that is inside what both signed.
    assert played["record"]["authentic_languages"] == ["en", "zh"]
    assert played["record"]["prevailing_language"] is None
    # Beijing wrote in Chinese; Washington's interpreter shared the English, attributed.
    bilingual = played["bilingual"]
    assert (bilingual["original_language"], bilingual["translation_language"]) == ("zh-Hans", "en")
    assert bilingual["by"] == "staff (Washington interpreter)"
    # An agreed notification duty, kept: the incident was notified within the hour.
    assert played["duty_notified"] == "notified_in_time"
    board = summary["board"]
    # The escalated note was acknowledged late: nothing is left overdue at the end.
    assert board["name"] == "beijing" and board["overdue"] == []
    assert board["line"]["state"] == "up"
    assert [r["owner"] for r in board["red_lines"]] == ["theirs"]
    assert not board["red_lines"][0]["awaiting_acknowledgement"]
    assert board["records"][0]["status"] == "agreed"


def test_demo_tells_the_story_in_plain_text() -> None:
    result = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "light setting" in out
    assert "Safety number" in out and "goes offline" in out
    assert "Per-channel summary" in out and "Transcript" not in out
    assert "Taiwan is the first red line that must not be crossed." in out
    assert "holding reply" in out and "paged the deputy about the overdue PRIORITY" in out
    assert "acknowledges it, late" in out
    assert "verifies offline" in out and "the line is UP" in out
    assert "status board" in out and "OVERDUE" not in out
    assert "Nothing lost" in out and "\x1b[" not in out  # no colour without a terminal
    # No jargon, ids or raw milliseconds in the story unless asked for.
    for jargon in ("PQXDH", "Argon2id", "signing key", "bound to note"):
        assert jargon not in out, jargon
    assert not re.search(r"\b1[0-9]{12}\b", out)  # a millisecond timestamp


def test_demo_verbose_adds_the_details_and_the_transcript() -> None:
    result = CliRunner().invoke(app, ["demo", "--verbose"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "PQXDH" in out and "Argon2id" in out and "signing key" in out
    assert "Transcript" in out and "Next meeting" in out


def test_demo_at_80_columns_is_short_and_unpadded() -> None:
    result = CliRunner().invoke(app, ["demo"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) < 160
    story = lines[:next(i for i, line in enumerate(lines) if "Per-channel summary" in line)]
    quoted = [line for line in story if line.startswith("    ")]
    assert quoted and not [line for line in quoted if line.endswith(" ")]


def test_the_demo_opens_connections_without_delay_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backchannel.cli.demo import _no_open_delay
    from backchannel.client.relays import OPEN_JITTER_ENV, RelayPool

    monkeypatch.delenv(OPEN_JITTER_ENV, raising=False)
    with _no_open_delay() as undelayed:
        assert undelayed and RelayPool().open_jitter == 0.0
    assert OPEN_JITTER_ENV not in os.environ  # the user's environment is as it was
    monkeypatch.setenv(OPEN_JITTER_ENV, "0.3")
    with _no_open_delay() as undelayed:
        assert not undelayed and RelayPool().open_jitter == 0.3

"""The account commands through the CLI: the passphrase policy at `init`, `passphrase
change`, `invite revoke`, expired invites, `channels rename|remove`, and the alarm when a
second joiner uses a spent invite."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from backchannel.cli.context import AGENT_REQUEST, CliContext, ask_passphrase
from backchannel.cli.main import app
from backchannel.cli.watching import _Observer
from backchannel.client.engine import Principal

from .conftest import PASSPHRASE, Pair, ThreadRelay, one_error_line, run


def invoke(home: Path, *args: str, code: int = 0, **env: str | None) -> Result:
    environment: dict[str, str | None] = {
        "BACKCHANNEL_PASSPHRASE": PASSPHRASE, "BACKCHANNEL_HOME": None, "COLUMNS": "200",
        "BACKCHANNEL_ALLOW_WEAK_PASSPHRASE": None, **env,
    }
    result = CliRunner().invoke(app, ["--home", str(home), *args], env=environment)
    assert result.exit_code == code, (args, result.output, result.exception)
    return result


@pytest.mark.parametrize("weak", ["a", "1234", " ", "password1234"])
def test_init_refuses_a_weak_passphrase_and_says_why(tmp_path: Path, weak: str) -> None:
    home = tmp_path / "w"
    result = invoke(home, "init", "--name", "w", code=1, BACKCHANNEL_PASSPHRASE=weak)
    line = one_error_line(result)
    assert "passphrase refused: it" in line and "--allow-weak-passphrase" in line
    assert not (home / "state.db").exists()


def test_the_weak_passphrase_override_by_flag_or_environment(tmp_path: Path) -> None:
    invoke(tmp_path / "a", "init", "--name", "a", "--allow-weak-passphrase",
           BACKCHANNEL_PASSPHRASE="1234")
    invoke(tmp_path / "b", "init", "--name", "b", BACKCHANNEL_PASSPHRASE="1234",
           BACKCHANNEL_ALLOW_WEAK_PASSPHRASE="1")
    Principal.open(tmp_path / "b", "1234").close()


def test_passphrase_change_then_only_the_new_one_opens(pair: Pair) -> None:
    home, new = pair.washington, "a new and longer passphrase"
    run(home, "send", "beijing", "before the change")
    weak = invoke(home, "passphrase", "change", code=1, BACKCHANNEL_NEW_PASSPHRASE="short")
    assert "passphrase refused" in one_error_line(weak)
    same = invoke(home, "passphrase", "change", code=1, BACKCHANNEL_NEW_PASSPHRASE=PASSPHRASE)
    assert "is the current one" in one_error_line(same)
    wrong = invoke(home, "passphrase", "change", code=4,
                   BACKCHANNEL_PASSPHRASE="not the passphrase", BACKCHANNEL_NEW_PASSPHRASE=new)
    assert "wrong passphrase" in one_error_line(wrong)
    done = invoke(home, "passphrase", "change", BACKCHANNEL_NEW_PASSPHRASE=new)
    assert "Passphrase changed" in done.stdout
    assert "wrong passphrase" in one_error_line(run(home, "status", code=4))
    status = json.loads(invoke(home, "status", "--json", BACKCHANNEL_PASSPHRASE=new).stdout)
    assert status["channels"][0]["sent"] == 1


def test_passphrase_change_is_refused_inside_the_agent(pair: Pair) -> None:
    principal = Principal.open(pair.washington, PASSPHRASE)
    AGENT_REQUEST.principal = principal
    try:
        result = invoke(pair.washington, "passphrase", "change", code=1,
                        BACKCHANNEL_NEW_PASSPHRASE="a new and longer passphrase")
    finally:
        AGENT_REQUEST.principal = None
        principal.close()
    assert "agent --stop" in one_error_line(result)


def test_expired_invites_are_not_waiting_and_revoke_refuses_the_code(
    tmp_path: Path, relay: ThreadRelay
) -> None:
    w, b = tmp_path / "w", tmp_path / "b"
    run(w, "init", "--name", "w")
    run(b, "init", "--name", "b")
    code = run(w, "invite", "--relay", relay.url, "--ttl", "1s").stdout.strip()
    pending = json.loads(run(w, "channels", "--json").stdout)["pending_invites"]
    assert [i["expired"] for i in pending] == [False]
    ref = pending[0]["id"]
    time.sleep(1.1)  # the code's one-second life is over
    text = run(w, "channels").stdout
    assert "waiting" not in text and f"Invite {ref} expired" in text
    assert f"backchannel invite revoke {ref}" in text
    assert json.loads(run(w, "channels", "--json").stdout)["pending_invites"][0]["expired"]
    # A fresh one, revoked before use: the joiner is refused and no channel appears.
    code = run(w, "invite", "--relay", relay.url).stdout.strip()
    listed = json.loads(run(w, "channels", "--json").stdout)["pending_invites"]
    fresh = next(i["id"] for i in listed if not i["expired"])
    assert "Revoked invite" in run(w, "invite", "revoke", fresh).stdout
    assert "no waiting invite" in one_error_line(run(w, "invite", "revoke", fresh, code=3))
    refused = run(b, "accept", code, code=1)
    assert "already used" in one_error_line(refused)
    assert json.loads(run(b, "channels", "--json").stdout)["channels"] == []
    assert "give at least one relay" in run(w, "invite", code=2).output


def test_rename_and_remove(pair: Pair) -> None:
    w = pair.washington
    refused = one_error_line(run(w, "channels", "rename", "beijing", "chi\u202ena", code=1))
    assert "U+202E" in refused and "\u202e" not in refused
    assert "to 'china'" in run(w, "channels", "rename", "beijing", "china").stdout
    run(w, "send", "china", "renamed, same channel")
    run(pair.beijing, "sync")
    assert "renamed, same channel" in run(pair.beijing, "read", "washington").stdout
    refused = run(w, "channels", "remove", "china", code=1)  # no terminal, no --yes
    assert "--yes" in one_error_line(refused)
    removed = json.loads(run(w, "channels", "remove", "china", "--yes", "--json").stdout)
    assert removed["removed"]["name"] == "china" and removed["mailboxes_left"] == []
    assert json.loads(run(w, "channels", "--json").stdout)["channels"] == []
    assert "no channel 'china'" in one_error_line(run(w, "read", "china", code=3))


def test_a_second_joiner_on_one_invite_raises_the_alarm(
    tmp_path: Path, relay: ThreadRelay
) -> None:
    w, b, m = tmp_path / "w", tmp_path / "b", tmp_path / "m"
    for home in (w, b, m):
        run(home, "init", "--name", home.name)
    code = run(w, "invite", "--relay", relay.url).stdout.strip()
    run(b, "accept", code)
    assert "Joined channel" in run(m, "accept", code).stdout  # told it joined
    assert "someone else may have used it" in run(m, "status").stdout
    synced = run(w, "sync")
    assert "New channel 'b'" in synced.stdout
    assert "WARNING: invite used twice" in synced.stderr and "'b'" in synced.stderr
    board = run(w, "status").stdout
    assert "INVITE USED TWICE" in board
    status = json.loads(run(w, "status", "--json").stdout)["channels"][0]
    assert len(status["invite_claims"]) == 1
    # A later sync does not count it again; status still shows it.
    assert "invite used twice" not in run(w, "sync").stderr
    assert "INVITE USED TWICE" in run(w, "status").stdout


def test_the_prompt_says_why_it_asks_again(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["", "one two three four", "one two three fourr",
                    "one two three four", "one two three four"])
    monkeypatch.setattr(typer, "prompt", lambda *args, **kwargs: next(answers))
    assert ask_passphrase("Passphrase", confirm=True) == "one two three four"
    err = capsys.readouterr().err
    assert "cannot be empty" in err and "differ" in err


def test_a_weak_answer_at_the_terminal_is_explained_and_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["1234", "1234", "one two three four", "one two three four"])
    monkeypatch.setattr(typer, "prompt", lambda *args, **kwargs: next(answers))
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.delenv("BACKCHANNEL_PASSPHRASE", raising=False)
    monkeypatch.delenv("BACKCHANNEL_ALLOW_WEAK_PASSPHRASE", raising=False)
    chosen = CliContext(tmp_path).new_passphrase(
        env="BACKCHANNEL_PASSPHRASE", prompt="Passphrase", allow_weak=False
    )
    assert chosen == "one two three four"
    assert "passphrase refused: it is a run" in capsys.readouterr().err


def test_watch_reports_an_invite_used_twice(tmp_path: Path, relay: ThreadRelay) -> None:
    w, b, m = tmp_path / "w", tmp_path / "b", tmp_path / "m"
    for home in (w, b, m):
        run(home, "init", "--name", home.name)
    code = run(w, "invite", "--relay", relay.url).stdout.strip()
    run(b, "accept", code)
    run(m, "accept", code)
    events: list[tuple[dict[str, Any], str]] = []
    principal = Principal.open(w, PASSPHRASE)
    try:
        observer = _Observer(principal, lambda data, line: events.append((data, line)))
        observer.look(report=False)
        asyncio.run(principal.sync())  # what watch's loop does between looks
        observer.look()
        observer.look()  # seen once, reported once
    finally:
        principal.close()
    claims = [(d, line) for d, line in events if d["event"] == "invite_claim"]
    assert len(claims) == 1
    data, line = claims[0]
    assert data["channel"] == "b" and data["relay"] == relay.url
    assert line.startswith("WARNING: invite used twice")

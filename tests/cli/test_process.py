"""The installed `backchannel` console script, two homes, a real `relay serve` subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import PASSPHRASE

pytestmark = pytest.mark.timeout(120)

_EXE = Path(sys.executable).parent / "backchannel"
_CMD = [str(_EXE)] if _EXE.exists() else [
    sys.executable, "-c", "from backchannel.cli.main import main; main()"]


@pytest.fixture()
def relay_url(tmp_path: Path) -> Iterator[str]:
    """`backchannel relay serve --port 0`; its first log line says where it listens."""
    proc = subprocess.Popen(
        [*_CMD, "relay", "serve", "--host", "127.0.0.1", "--port", "0",
         "--db", f"sqlite:///{tmp_path / 'relay.db'}", "--no-metrics"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        first = json.loads(proc.stderr.readline())
        assert first["event"] == "listening", first
        yield str(first["url"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def bc(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKCHANNEL_PASSPHRASE": PASSPHRASE, "BACKCHANNEL_HOME": str(home)}
    done = subprocess.run([*_CMD, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def test_two_principals_through_the_console_script(tmp_path: Path, relay_url: str) -> None:
    w, b = tmp_path / "washington", tmp_path / "beijing"
    bc(w, "init", "--name", "washington")
    bc(b, "init", "--name", "beijing")
    code = bc(w, "invite", "--relay", relay_url).stdout.strip()
    assert code.startswith("BC1-") and "\n" not in code
    bc(b, "accept", code)
    assert json.loads(bc(w, "--json", "sync").stdout)["new_channels"] == ["beijing"]

    sent = json.loads(bc(w, "send", "beijing", "A red line, stated plainly.", "--json").stdout)
    assert sent["stored_on"] == [relay_url]
    assert json.loads(bc(b, "sync", "--json").stdout)["new_messages"] == 1
    inbox = json.loads(bc(b, "inbox", "--json").stdout)["messages"]
    assert [(m["channel"], m["text"]) for m in inbox] == [
        ("washington", "A red line, stated plainly.")]
    assert "A red line, stated plainly." in bc(b, "read", "washington").stdout

    bc(w, "sync")
    (status,) = json.loads(bc(w, "status", "--json").stdout)["channels"]
    assert status["name"] == "beijing"
    assert (status["sent"], status["delivered"], status["read"], status["queued"]) == (1, 1, 1, 0)
    assert status["relays"] == [relay_url]

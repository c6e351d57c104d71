"""Fixtures for CLI tests: a real relay on 127.0.0.1 and principals driven through the CLI.

The relay runs in a thread with its own event loop, because each CLI command runs its own
`asyncio.run` in the test's thread. Principals use the default Argon2id cost (about 0.2 s
per command), so the tests keep the number of invocations modest.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from backchannel.cli.main import app
from backchannel.relay import RelayLimits, RelayServer, open_store

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def no_configuration_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty configuration file for every CLI test: the developer's own file (a
    `home`, `json = true`) must not change what the commands do. Tests of the file set
    BACKCHANNEL_CONFIG themselves."""
    monkeypatch.setenv("BACKCHANNEL_CONFIG", os.devnull)


class ThreadRelay:
    """A relay on SQLite, served from a background thread; it can stop and come back on
    the same port with the same database."""

    def __init__(self, db: Path) -> None:
        self.db_url = f"sqlite:///{db}"
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: RelayServer | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        limits = RelayLimits()
        server = RelayServer(open_store(self.db_url, limits), limits, port=self.port)
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        self._loop, self._thread, self._server = loop, thread, server
        self.port = server.port

    def stop(self) -> None:
        assert self._loop is not None and self._thread is not None and self._server
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = self._thread = self._server = None


@pytest.fixture()
def relay(tmp_path: Path) -> Iterator[ThreadRelay]:
    server = ThreadRelay(tmp_path / "relay.db")
    server.start()
    yield server
    if server._server is not None:
        server.stop()


def run(
    home: Path | None,
    *args: str,
    input: str | None = None,
    passphrase: str | None = PASSPHRASE,
    code: int | None = 0,
) -> Result:
    """Run `backchannel [--home HOME] ARGS` in-process; check the exit code unless None."""
    env = {"BACKCHANNEL_PASSPHRASE": passphrase, "BACKCHANNEL_HOME": None, "COLUMNS": "200"}
    argv = ["--home", str(home), *args] if home is not None else list(args)
    result = CliRunner().invoke(app, argv, input=input, env=env)
    if code is not None:
        assert result.exit_code == code, (argv, result.output, result.exception)
    return result


def one_error_line(result: Result) -> str:
    """The single `error: ...` line a failed command printed on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@dataclass
class Pair:
    washington: Path
    beijing: Path
    relay: ThreadRelay


@pytest.fixture()
def pair(tmp_path: Path, relay: ThreadRelay) -> Pair:
    """Two principals paired through the CLI: each names the channel after the other."""
    w, b = tmp_path / "washington", tmp_path / "beijing"
    run(w, "init", "--name", "washington")
    run(b, "init", "--name", "beijing")
    code = run(w, "invite", "--relay", relay.url).stdout.strip()
    run(b, "accept", code)
    assert "New channel 'beijing'" in run(w, "sync").stdout
    return Pair(w, b, relay)

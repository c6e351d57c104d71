"""`backchannel watch` as a real process: it receives as messages arrive, answers line
tests, reports the line's state and escalations, and stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pytest

from tests.cli.conftest import PASSPHRASE, Pair, run
from tests.cli.test_process import _CMD

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

# Generous: the engine performs duties once a second, a loaded machine may be slower.
WAIT_S = 15.0


class Watcher:
    """A `watch` process whose stdout lines are collected by a thread as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, wanted: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"watch did not report {what}; it printed {self.seen}")

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        def matches(line: str) -> bool:
            event = json.loads(line)
            return bool(event["event"] == name
                        and all(event.get(k) == v for k, v in fields.items()))
        found: dict[str, Any] = json.loads(self.wait_for(matches, f"{name} {fields}"))
        return found

    def stop(self, sig: signal.Signals) -> tuple[int, list[str]]:
        """Send `sig`; the exit code and the rest of stdout."""
        self.proc.send_signal(sig)
        code = self.proc.wait(WAIT_S)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return code, rest


@contextmanager
def watching(home: Path, *args: str, env: dict[str, str | None] | None = None
             ) -> Iterator[Watcher]:
    """`watch` on `home`; `env` adds to (a value) or removes from (None) the environment."""
    changes = {"BACKCHANNEL_PASSPHRASE": PASSPHRASE, "BACKCHANNEL_HOME": str(home),
               "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
    env = {k: v for k, v in {**os.environ, **changes}.items() if v is not None}
    proc = subprocess.Popen([*_CMD, "watch", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield Watcher(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)


def test_watch_receives_answers_a_line_test_and_stops_on_sigint(pair: Pair) -> None:
    w = pair.washington
    with watching(pair.beijing, "--json") as watcher:
        assert watcher.event("watching")["channels"] == ["washington"]
        note = json.loads(run(w, "send", "beijing", "Are you there?", "--flash",
                              "--json").stdout)
        arrived = watcher.event("message", message_id=note["message_id"])
        assert arrived["text"] == "Are you there?" and arrived["precedence"] == "flash"

        run(w, "linetest", "beijing", "--now")
        watcher.event("line_test_answered", channel="washington")
        run(w, "agenda", "propose", "beijing", "--round", "2", "Taiwan Strait")
        proposed = watcher.event("dialogue", kind="agenda_propose")
        assert "Taiwan Strait" in proposed["text"]

        # Washington's sync brings in the answer, and answers Beijing's own test, which
        # the watch reports as the line coming up.
        deadline = time.monotonic() + WAIT_S
        while json.loads(run(w, "linetest", "beijing", "--json").stdout)["line"][
                "state"] != "up":
            assert time.monotonic() < deadline, "the line never came up"
            run(w, "sync")
            time.sleep(0.2)
        watcher.event("line", channel="washington", state="up")

        code, rest = watcher.stop(signal.SIGINT)
    assert code == 0, rest
    stopped = json.loads(rest[-1])
    assert stopped["event"] == "stopped"
    assert stopped["line_tests_answered"] >= 1 and stopped["received"] >= 3
    # Its answers went to the one relay directly (there is no other to forward through),
    # and the last line says so.
    (url,) = stopped["routing"]
    assert stopped["routing"][url].startswith(f"sent directly to {url}")


def test_watch_escalates_a_missed_deadline_and_stops_on_sigterm(
    pair: Pair, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    marker = tmp_path / "paged"
    pager = tmp_path / "page.py"
    pager.write_text("import os, pathlib, sys\n"
                     "pathlib.Path(sys.argv[1]).write_text(os.environ['BACKCHANNEL_CHANNEL'])\n")
    run(w, "escalation", "set", shlex.join([sys.executable, "-I", str(pager), str(marker)]))
    run(w, "send", "beijing", "Please acknowledge.", "--priority", "--ack-within", "300ms")
    run(b, "sync")
    with watching(w) as watcher:
        line = watcher.wait_for(lambda s: "ESCALATED" in s, "the escalation")
        assert "to beijing (PRIORITY)" in line and "escalation command run" in line
        code, _ = watcher.stop(signal.SIGTERM)
        assert watcher.proc.stderr is not None
        stderr = watcher.proc.stderr.read()
    assert code == 0, stderr
    assert "Stopped:" in stderr and "1 escalated" in stderr
    assert marker.read_text() == "beijing"


def test_relay_text_in_watch_events_cannot_drive_the_terminal() -> None:
    from backchannel.cli.output import shown

    hostile = "ws://relay/\x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b[2J\u202e1000\u200b\x9b"
    safe = shown(hostile)
    assert all(c.isprintable() for c in safe)
    assert "\\x1b" in safe and "<U+202E>" in safe and "\\x9b" in safe

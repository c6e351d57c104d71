"""`backchannel relay serve` that cannot start says where and why (review §4 row 21): a
busy port names the address and the port, not the database, and the process exits 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.relay.test_relay_process import _CMD

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket of this test holds."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def _serve(tmp_path: Path, *args: str) -> tuple[int, list[dict[str, object]], str]:
    done = subprocess.run(
        [*_CMD, "relay", "serve", "--db", f"sqlite:///{tmp_path / 'relay.db'}", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def test_a_busy_port_is_named_with_its_address(tmp_path: Path, occupied: int) -> None:
    code, lines, stderr = _serve(tmp_path, "--port", str(occupied), "--no-metrics")
    assert code == 1 and "Traceback" not in stderr
    (failure,) = [line for line in lines if line["event"] == "cannot start"]
    assert failure["listen"] == f"127.0.0.1:{occupied}"
    assert str(failure["reason"]).startswith(f"127.0.0.1:{occupied} is in use")
    assert "db" not in failure and "relay.db" not in stderr


def test_a_busy_metrics_port_is_named_as_the_metrics_listener(
    tmp_path: Path, occupied: int
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        public = int(probe.getsockname()[1])
    code, lines, _ = _serve(tmp_path, "--port", str(public),
                            "--metrics-listen", f"127.0.0.1:{occupied}")
    (failure,) = [line for line in lines if line["event"] == "cannot start"]
    assert code == 1
    assert failure["reason"] == (
        f"127.0.0.1:{occupied} (--metrics-listen) is in use (another relay or program"
        " listens there: stop it, or choose another port)"
    )

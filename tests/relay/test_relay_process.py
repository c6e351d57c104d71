"""`backchannel relay serve` as a real process: SIGKILL, SIGTERM, logs, two nodes on one
PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backchannel.client.transport import RelayClient
from tests.relay.conftest import envelope, number

pytestmark = pytest.mark.timeout(120)

_EXE = Path(sys.executable).parent / "backchannel"
_CMD = [str(_EXE)] if _EXE.exists() else [sys.executable, "-c",
                                          "from backchannel.cli.main import main; main()"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RelayProcess:
    """A `backchannel relay serve` subprocess; `lines` holds its JSON log lines."""

    def __init__(self, db: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        started = time.monotonic()
        self.proc = subprocess.Popen(
            # Port 0 for the metrics listener: tests run side by side on one machine.
            [*_CMD, "relay", "serve", "--port", str(self.port), "--db", db,
             "--metrics-listen", "127.0.0.1:0", *extra],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stderr is not None
        self.lines: list[dict[str, object]] = []
        line = self.proc.stderr.readline()
        self.startup = time.monotonic() - started
        self.lines.append(json.loads(line))
        assert self.lines[0]["event"] == "listening", line

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        assert self.proc.stderr is not None
        self.lines.extend(json.loads(line) for line in self.proc.stderr if line.strip())
        return code


@pytest.fixture
def processes() -> Iterator[list[RelayProcess]]:
    started: list[RelayProcess] = []
    yield started
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)


async def send_some(url: str, count: int) -> tuple[object, list[int]]:
    async with await RelayClient.connect(url) as client:
        caps = await client.create_mailbox()
        seqs = list(await asyncio.gather(*(
            client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
            for i in range(count))))
        return caps, seqs


async def test_sigkill_loses_no_stored_envelope(tmp_path: Path,
                                                processes: list[RelayProcess]) -> None:
    db = f"sqlite:///{tmp_path / 'relay.db'}"
    first = RelayProcess(db)
    processes.append(first)
    assert first.startup < 5
    caps, seqs = await send_some(first.url, 100)
    async with await RelayClient.connect(first.url) as client:
        await client.ack(caps.mailbox_id, caps.receive_token, tuple(range(1, 11)))  # type: ignore[attr-defined]
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = RelayProcess(db)
    processes.append(second)
    async with await RelayClient.connect(second.url) as client:
        assert await client.subscribe(caps.mailbox_id, caps.receive_token) == 90  # type: ignore[attr-defined]
        got = []
        for _ in range(90):
            _, item = await client.receive(timeout=10)
            got.append(item)
        assert [d.seq for d in got] == list(range(11, 101))
        assert sorted(number(d.envelope) for d in got) == sorted(
            n for s, n in zip(seqs, range(100), strict=True) if s > 10)
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.2)


async def test_sigterm_stops_cleanly_and_logs_no_secrets(tmp_path: Path,
                                                         processes: list[RelayProcess]) -> None:
    relay = RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}")
    processes.append(relay)
    caps, _ = await send_some(relay.url, 5)
    assert relay.stop(signal.SIGTERM) == 0
    events = [line["event"] for line in relay.lines]
    assert events == ["listening", "stopped"]
    text = json.dumps(relay.lines)
    for secret in (caps.send_token, caps.receive_token, caps.mailbox_id):  # type: ignore[attr-defined]
        assert secret.hex() not in text


async def test_address_logging_is_opt_in(tmp_path: Path, processes: list[RelayProcess]) -> None:
    relay = RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", "--log-addresses")
    processes.append(relay)
    async with await RelayClient.connect(relay.url) as client:
        await client.ping()
    await asyncio.sleep(0.1)
    relay.stop()
    assert any(line.get("address") == "127.0.0.1" for line in relay.lines)


async def test_two_nodes_on_one_postgres(pg_url: str, processes: list[RelayProcess]) -> None:
    node_a = RelayProcess(pg_url)
    node_b = RelayProcess(pg_url)
    processes.extend([node_a, node_b])
    async with await RelayClient.connect(node_a.url) as sender, \
            await RelayClient.connect(node_b.url) as receiver:
        caps = await receiver.create_mailbox()
        await receiver.subscribe(caps.mailbox_id, caps.receive_token)
        latencies = []
        for i in range(20):
            started = time.monotonic()
            await sender.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
            _, item = await receiver.receive(timeout=5)
            latencies.append(time.monotonic() - started)
            assert number(item.envelope) == i and item.seq == i + 1
        await receiver.ack(caps.mailbox_id, caps.receive_token, tuple(range(1, 21)))
        # A burst through node A arrives complete and in order on node B.
        await asyncio.gather(*(sender.send(caps.mailbox_id, caps.send_token,
                                           envelope(caps.mailbox_id, i))
                               for i in range(20, 220)))
        got = [(await receiver.receive(timeout=5))[1].seq for _ in range(200)]
        assert got == list(range(21, 221))
    assert sorted(latencies)[len(latencies) // 2] < 0.1  # "promptly": well under 100 ms
    assert node_a.stop() == 0 and node_b.stop() == 0


async def test_metrics_are_served_on_their_own_listener(tmp_path: Path,
                                                        processes: list[RelayProcess]) -> None:
    import urllib.error
    import urllib.request

    relay = RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}")
    processes.append(relay)
    metrics_url = str(relay.lines[0]["metrics"])
    assert metrics_url.startswith("http://127.0.0.1:")  # loopback unless told otherwise

    def status(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""

    code, body = await asyncio.to_thread(status, metrics_url)
    assert code == 200 and "backchannel_relay_sockets" in body
    code, _ = await asyncio.to_thread(status, f"http://127.0.0.1:{relay.port}/metrics")
    assert code == 404
    assert relay.stop() == 0
    bare = RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}", "--no-metrics")
    processes.append(bare)
    assert "metrics" not in bare.lines[0]
    assert bare.stop() == 0

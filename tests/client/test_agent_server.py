"""The agent's socket: only this user, bounded for subscribers that never read."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from backchannel.client.agent.server import AgentServer
from backchannel.client.agent.wire import encode_line
from backchannel.client.engine import Principal

from .conftest import FAST_KDF, MakePrincipal


async def _ask(path: Path, line: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(line)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return answer


async def test_the_socket_is_private_and_answers_its_owner(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    server = AgentServer(make_principal("alice"))
    await server.start()
    try:
        assert server.path.stat().st_mode & 0o777 == 0o600
        answer = json.loads(await _ask(server.path, encode_line({"id": 1, "method": "hello"})))
        assert answer["result"]["name"] == "alice"
        assert answer["result"]["pid"] == os.getpid()
    finally:
        await server.close()
    assert not server.path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
async def test_a_process_of_another_user_is_refused_even_through_an_open_socket(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    # A home another user can reach (pytest's own folders are 0700 all the way down).
    open_root = Path(tempfile.mkdtemp(prefix="bc-peercred-", dir="/tmp"))
    open_root.chmod(0o755)
    alice = Principal.create(open_root / "alice", "alice", "passphrase", kdf=FAST_KDF)
    server = AgentServer(alice)
    await server.start()
    try:
        # Open the file modes wide, so that only the peer-credential check stands.
        (open_root / "alice").chmod(0o755)
        server.path.chmod(0o666)
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            got = b"connect failed"
            try:
                with socket.socket(socket.AF_UNIX) as raw:
                    raw.settimeout(5)
                    raw.connect(str(server.path))
                    raw.sendall(encode_line({"id": 1, "method": "hello"}))
                    got = raw.recv(4096) or b"closed"
            except OSError as error:
                got = f"error {error}".encode()
            os.write(write_end, got)
            os._exit(0)
        os.close(write_end)
        loop = asyncio.get_running_loop()
        got = await loop.run_in_executor(None, os.read, read_end, 4096)
        await loop.run_in_executor(None, os.waitpid, child, 0)
        os.close(read_end)
        # Closed without an answer: a reset when our request was still unread, a broken
        # pipe when the agent had closed before the request was written.
        assert got == b"closed" or b"Connection reset by peer" in got or b"Broken pipe" in got, got
    finally:
        await server.close()
        alice.close()
        shutil.rmtree(open_root)


async def test_a_subscriber_that_never_reads_is_dropped(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    server = AgentServer(make_principal("alice"))
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    server._subscribers.add(queue)
    for i in range(1000):
        server.broadcast({"event": "message", "n": i}, f"message {i}")
    assert queue in server._subscribers
    server.broadcast({"event": "message", "n": 1000}, "one too many")
    assert queue not in server._subscribers
    assert queue.qsize() == 1001  # the 1,000 events and the end-of-stream marker

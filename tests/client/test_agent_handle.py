"""The agent's handle: a request's `send` goes over the watching agent's connections."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from backchannel.client.agent.handle import AgentPrincipal
from backchannel.client.agent.server import AgentServer, MethodRefused
from backchannel.client.agent.wire import encode_line
from backchannel.client.engine import Principal
from backchannel.client.reports import SendResult

from .conftest import FAST_KDF, pair, running_relay


def _send_on_worker(agent: AgentPrincipal, text: str) -> SendResult:
    """What the agent does for a `send` request: a worker handle, in a thread of its own,
    under an event loop of its own."""
    worker = agent.worker()
    try:
        return asyncio.run(worker.send("bob", text))
    finally:
        worker.close()


async def test_a_workers_sends_are_stored_over_the_agents_connections(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        alice = AgentPrincipal.create(tmp_path / "alice", "alice", "passphrase", kdf=FAST_KDF)
        bob = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
        try:
            await pair(alice, bob, [relay.url])
            stop = asyncio.Event()
            watching = asyncio.create_task(alice.watch(stop))
            try:
                # The first opens the outbound lane of the watch's pool (if not yet open).
                first = await asyncio.to_thread(_send_on_worker, alice, "first")
                assert first.stored_on == (relay.url,)
                opened = relay.metrics.connections_total.value()
                # Sends for several watch ticks: the watch's own flush of the outbox runs
                # meanwhile, and a message it claims first is still reported stored (it
                # is, a moment later), never queued.
                loop = asyncio.get_running_loop()
                until = loop.time() + 1.5
                results: list[SendResult] = []
                while loop.time() < until:
                    text = f"note {len(results)}"
                    results.append(await asyncio.to_thread(_send_on_worker, alice, text))
                assert [r.stored_on for r in results] == [(relay.url,)] * len(results)
                assert all(not r.queued_for for r in results)
                # No request opened a connection of its own.
                assert relay.metrics.connections_total.value() == opened
            finally:
                stop.set()
                await watching
            await bob.sync()
            sent = {"first", *(f"note {i}" for i in range(len(results)))}
            assert {e.text for e in bob.inbox("alice")} >= sent
        finally:
            alice.close()
            bob.close()


async def test_without_a_watch_a_worker_delivers_on_its_own(tmp_path: Path) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        alice = AgentPrincipal.create(tmp_path / "alice", "alice", "passphrase", kdf=FAST_KDF)
        bob = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
        try:
            await pair(alice, bob, [relay.url])
            result = await asyncio.to_thread(_send_on_worker, alice, "no watch")
            assert result.stored_on == (relay.url,)
        finally:
            alice.close()
            bob.close()


async def test_a_send_tries_a_relay_the_watch_counts_down_at_once(tmp_path: Path) -> None:
    """The watch waits out a backoff before it tries a relay again (here 30 s); a `send`
    request does not: it asks the relay at once, as a `send` outside the agent would."""
    db = tmp_path / "relay.db"
    alice = AgentPrincipal.create(tmp_path / "alice", "alice", "passphrase", kdf=FAST_KDF)
    bob = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
    try:
        async with running_relay(db) as relay:
            url, port = relay.url, relay.port
            await pair(alice, bob, [url])
            stop = asyncio.Event()
            watching = asyncio.create_task(alice.watch(stop, reconnect_after=30.0))
            try:
                first = await asyncio.to_thread(_send_on_worker, alice, "first")
                assert first.stored_on == (url,)
                await relay.stop()
                live = alice._sender.live
                assert live is not None
                for _ in range(200):  # the watch's reader sees the relay go
                    if url in live.failures:
                        break
                    await asyncio.sleep(0.025)
                assert url in live.failures
                down = await asyncio.to_thread(_send_on_worker, alice, "while down")
                assert down.stored_on == () and down.queued_for == (url,)
                async with running_relay(db, port=port):
                    back = await asyncio.to_thread(_send_on_worker, alice, "back")
                    assert back.stored_on == (url,)  # not "queued" for 30 s
                    await bob.sync()
            finally:
                stop.set()
                await watching
        assert [e.text for e in bob.inbox("alice")] == ["first", "while down", "back"]
    finally:
        alice.close()
        bob.close()


async def test_a_handle_kept_between_requests_sees_what_the_agent_wrote_meanwhile(
    tmp_path: Path,
) -> None:
    """The agent keeps a request's worker handle for the next request. Between two, the
    agent's own handle sends (its session moves on): the kept handle sends from the stored
    session, not its cached one, so nothing forks. A request that fails leaves no handle
    to keep, and closing the server closes the one kept."""
    workers: list[Principal] = []

    def send(worker: Principal, params: dict[str, Any],
             _memory: dict[str, Any]) -> dict[str, Any]:
        workers.append(worker)
        if params.get("fail"):
            raise MethodRefused("failed", "this request fails", 1)
        result = asyncio.run(worker.send("bob", str(params["text"])))
        return {"stored_on": list(result.stored_on)}

    async def ask(server: AgentServer, params: dict[str, Any]) -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        try:
            writer.write(encode_line({"id": 1, "method": "send", "params": params}))
            await writer.drain()
            answer: dict[str, Any] = json.loads(await reader.readline())
            return answer
        finally:
            writer.close()

    async with running_relay(tmp_path / "relay.db") as relay:
        alice = AgentPrincipal.create(tmp_path / "alice", "alice", "passphrase", kdf=FAST_KDF)
        bob = Principal.create(tmp_path / "bob", "bob", "passphrase", kdf=FAST_KDF)
        server = AgentServer(alice, methods={"send": send})
        await server.start()
        try:
            await pair(alice, bob, [relay.url])
            assert (await ask(server, {"text": "one"}))["result"] == {"stored_on": [relay.url]}
            await alice.send("bob", "two, from the agent's own handle")
            assert (await ask(server, {"text": "three"}))["result"] == {"stored_on": [relay.url]}
            await alice.send("bob", "four, from the agent's own handle")
            assert (await ask(server, {"text": "five"}))["result"] == {"stored_on": [relay.url]}
            assert workers[0] is workers[1] is workers[2]
            assert "error" in await ask(server, {"fail": True})
            assert (await ask(server, {"text": "six"}))["result"] == {"stored_on": [relay.url]}
            assert workers[4] is not workers[3]  # the failed request's handle was closed
            with pytest.raises(sqlite3.ProgrammingError):
                workers[3]._store.db.execute("SELECT 1")
            await bob.sync()
            texts = [e.text.split(",")[0] for e in bob.inbox("alice")]
            assert texts[-6:] == ["one", "two", "three", "four", "five", "six"]
            assert bob.status()[0].forks == ()
        finally:
            await server.close()
            alice.close()
            bob.close()
    with pytest.raises(sqlite3.ProgrammingError):  # the kept handle closed with the server
        workers[4]._store.db.execute("SELECT 1")

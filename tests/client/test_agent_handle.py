"""The agent's handle: a request's `send` goes over the watching agent's connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

from backchannel.client.agent.handle import AgentPrincipal
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

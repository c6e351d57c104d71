"""End to end over a real WebSocket, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest

from backchannel.client.transport import MailboxCaps, RelayClient, RelayRequestError
from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay import RelayLimits
from tests.relay.conftest import FakeClock, RelayFactory, envelope, number

pytestmark = pytest.mark.timeout(60)


async def receive_numbers(client: RelayClient, count: int) -> list[tuple[int, int]]:
    """`count` deliveries as (seq, number) pairs."""
    got = []
    for _ in range(count):
        _mid, item = await client.receive(timeout=10)
        got.append((item.seq, number(item.envelope)))
    return got


async def test_create_send_subscribe_ack_in_order(db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server:
        async with await RelayClient.connect(server.url) as alice, \
                await RelayClient.connect(server.url) as bob:
            caps = await bob.create_mailbox()
            assert await bob.subscribe(caps.mailbox_id, caps.receive_token) == 0
            seqs = await asyncio.gather(*(
                alice.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
                for i in range(40)))
            assert sorted(seqs) == list(range(1, 41))
            got = await receive_numbers(bob, 40)
            assert [s for s, _ in got] == list(range(1, 41))  # in order, each once
            by_seq = dict(zip(seqs, range(40), strict=True))
            assert all(by_seq[s] == n for s, n in got)
            assert await bob.ack(caps.mailbox_id, caps.receive_token,
                                 tuple(s for s, _ in got)) == 40
            items, more = await bob.fetch(caps.mailbox_id, caps.receive_token)
            assert items == () and not more
        assert server.metrics.stored.value() == 40
        assert server.metrics.acked.value() == 40


async def test_backlog_then_live_and_large_envelopes(db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        for i in range(5):
            await client.send(caps.mailbox_id, caps.send_token,
                              envelope(caps.mailbox_id, i, size=65536))
        assert await client.subscribe(caps.mailbox_id, caps.receive_token) == 5
        sender = asyncio.gather(*(
            client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
            for i in range(5, 305)))
        got = await receive_numbers(client, 305)
        await sender
        assert [n for _, n in got] == list(range(305))
        assert [s for s, _ in got] == list(range(1, 306))


async def test_unacked_are_redelivered_after_reconnect(db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server:
        async with await RelayClient.connect(server.url) as client:
            caps = await client.create_mailbox()
            for i in range(6):
                await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
            await client.subscribe(caps.mailbox_id, caps.receive_token)
            got = await receive_numbers(client, 6)
            await client.ack(caps.mailbox_id, caps.receive_token, (got[0][0], got[1][0]))
        async with await RelayClient.connect(server.url) as client:
            assert await client.subscribe(caps.mailbox_id, caps.receive_token) == 4
            again = await receive_numbers(client, 4)
            assert [n for _, n in again] == [2, 3, 4, 5]
            with pytest.raises(TimeoutError):
                await client.receive(timeout=0.2)


async def test_expired_envelopes_are_not_delivered_and_are_swept(
    db_url: str, relay: RelayFactory
) -> None:
    clock = FakeClock()
    limits = RelayLimits(envelope_ttl=60.0)
    async with relay(db_url, limits=limits, clock=clock) as server, \
            await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 1))
        clock.now += 30
        await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 2))
        clock.now += 45  # the first is 75 s old, the second 45 s
        items, _ = await client.fetch(caps.mailbox_id, caps.receive_token)
        assert [number(d.envelope) for d in items] == [2]
        result = await server.store.sweep(clock())
        assert result.envelopes == 1
        assert server.metrics.expired.value() == 1
        await client.subscribe(caps.mailbox_id, caps.receive_token)
        assert [n for _, n in await receive_numbers(client, 1)] == [2]


async def test_quota_on_count_and_bytes(db_url: str, relay: RelayFactory) -> None:
    limits = RelayLimits(mailbox_max_envelopes=3, mailbox_max_bytes=8 * 1024)
    async with relay(db_url, limits=limits) as server, \
            await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        for i in range(3):
            await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
        with pytest.raises(RelayRequestError) as refused:
            await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 3))
        assert refused.value.code == ErrorCode.QUOTA_EXCEEDED
        assert await client.ack(caps.mailbox_id, caps.receive_token, (1, 2, 3)) == 3
        with pytest.raises(RelayRequestError) as too_big:
            await client.send(caps.mailbox_id, caps.send_token,
                              envelope(caps.mailbox_id, 4, size=16384))
        assert too_big.value.code == ErrorCode.QUOTA_EXCEEDED
        assert await client.send(caps.mailbox_id, caps.send_token,
                                 envelope(caps.mailbox_id, 5, size=4096)) == 4


async def test_wrong_tokens_and_bad_requests_are_refused(
    db_url: str, relay: RelayFactory
) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 1))
        stranger = MailboxCaps.generate()

        async def code_of(call: object) -> int:
            with pytest.raises(RelayRequestError) as refused:
                await call  # type: ignore[misc]
            return refused.value.code

        unauthorized = ErrorCode.UNAUTHORIZED
        mid = caps.mailbox_id
        # The send token does not open the mailbox for reading, nor the receive token
        # for depositing, and an unknown mailbox looks exactly like a wrong token.
        assert await code_of(client.send(mid, caps.receive_token, envelope(mid, 2))) \
            == unauthorized
        assert await code_of(client.subscribe(mid, caps.send_token)) == unauthorized
        assert await code_of(client.fetch(mid, stranger.receive_token)) == unauthorized
        assert await code_of(client.ack(mid, caps.send_token, (1,))) == unauthorized
        assert await code_of(client.delete(mid, caps.send_token)) == unauthorized
        assert await code_of(client.send(stranger.mailbox_id, stranger.send_token,
                                         envelope(stranger.mailbox_id, 1))) == unauthorized
        assert await code_of(client.create_mailbox(caps)) == ErrorCode.MAILBOX_EXISTS
        # An envelope addressed to another mailbox, or not an envelope at all.
        assert await code_of(client.send(mid, caps.send_token,
                                         envelope(stranger.mailbox_id, 3))) \
            == ErrorCode.BAD_ENVELOPE
        assert await code_of(client.send(mid, caps.send_token, b"\x01" * 100)) \
            == ErrorCode.BAD_ENVELOPE
        # Nothing of that touched the stored envelope.
        items, _ = await client.fetch(mid, caps.receive_token)
        assert [number(d.envelope) for d in items] == [1]
        assert server.metrics.errors.value(str(int(unauthorized))) == 6


async def test_delete_removes_mailbox_and_envelopes(db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 1))
        await client.delete(caps.mailbox_id, caps.receive_token)
        with pytest.raises(RelayRequestError) as gone:
            await client.fetch(caps.mailbox_id, caps.receive_token)
        assert gone.value.code == ErrorCode.UNAUTHORIZED
        # The id is free again: a fresh mailbox may take it.
        await client.create_mailbox(caps)
        items, _ = await client.fetch(caps.mailbox_id, caps.receive_token)
        assert items == ()


async def test_delivery_window_resumes_after_acks(db_url: str, relay: RelayFactory) -> None:
    limits = RelayLimits(delivery_window=8)
    async with relay(db_url, limits=limits) as server, \
            await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        await client.subscribe(caps.mailbox_id, caps.receive_token)
        await asyncio.gather(*(client.send(caps.mailbox_id, caps.send_token,
                                           envelope(caps.mailbox_id, i)) for i in range(30)))
        seen: list[int] = []
        while len(seen) < 30:
            batch = await receive_numbers(client, 8 if len(seen) < 24 else 6)
            with pytest.raises(TimeoutError):  # the window is full: nothing more comes
                await client.receive(timeout=0.05)
            seen.extend(n for _, n in batch)
            await client.ack(caps.mailbox_id, caps.receive_token, tuple(s for s, _ in batch))
        assert seen == list(range(30))


async def test_restart_keeps_unacked_and_forgets_acked(db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        for i in range(10):
            await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, i))
        await client.ack(caps.mailbox_id, caps.receive_token, (1, 2, 3))
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        assert await client.subscribe(caps.mailbox_id, caps.receive_token) == 7
        got = await receive_numbers(client, 7)
        assert [n for _, n in got] == list(range(3, 10))
        await client.ack(caps.mailbox_id, caps.receive_token, tuple(s for s, _ in got[:4]))
        await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 10))
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        await client.subscribe(caps.mailbox_id, caps.receive_token)
        assert [n for _, n in await receive_numbers(client, 4)] == [7, 8, 9, 10]
        with pytest.raises(TimeoutError):
            await client.receive(timeout=0.2)


async def test_graceful_stop_answers_or_refuses_every_send(
    db_url: str, relay: RelayFactory
) -> None:
    async with relay(db_url) as server:
        client = await RelayClient.connect(server.url)
        caps = await client.create_mailbox()
        sends = [asyncio.ensure_future(client.send(caps.mailbox_id, caps.send_token,
                                                   envelope(caps.mailbox_id, i)))
                 for i in range(200)]
        await asyncio.sleep(0.005)
    # The relay has stopped: every send got its receipt, an UNAVAILABLE refusal, or the
    # connection closed before it was read. Whatever got a receipt is stored.
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    await client.close()
    stored = {o for o in outcomes if isinstance(o, int)}
    assert stored, "some sends were committed before the stop"
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        await client.subscribe(caps.mailbox_id, caps.receive_token)
        pending, _ = await client.fetch(caps.mailbox_id, caps.receive_token, limit=256)
        assert stored <= {d.seq for d in pending}


async def test_healthz_and_metrics(db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url, metrics_listen=("127.0.0.1", 0)) as server, \
            await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 1))
        await client.ping()
        public = f"http://127.0.0.1:{server.port}"
        private = f"http://127.0.0.1:{server.metrics_port}"

        def get(url: str) -> tuple[int, str, str]:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    return (response.status, response.headers["Content-Type"],
                            response.read().decode())
            except urllib.error.HTTPError as error:
                return error.code, error.headers["Content-Type"], error.read().decode()

        status, _, body = await asyncio.to_thread(get, public + "/healthz")
        assert (status, body) == (200, "ok\n")
        status, _, body = await asyncio.to_thread(get, private + "/healthz")
        assert (status, body) == (200, "ok\n")
        # Metrics are timing metadata: never on the public port (review 2026-12 §2j).
        status, _, _ = await asyncio.to_thread(get, public + "/metrics")
        assert status == 404
        status, _, _ = await asyncio.to_thread(get, private + "/nothing")
        assert status == 404
        status, ctype, body = await asyncio.to_thread(get, private + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        assert "backchannel_relay_envelopes_stored_total 1" in body
        assert "backchannel_relay_connections 1" in body
        assert "backchannel_relay_commit_seconds_count" in body
        assert caps.mailbox_id.hex() not in body

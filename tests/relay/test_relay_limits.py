"""Relay limits that hold under attack (review 2026-12 §2f): the relay-wide connection cap
and handshake deadline, slow readers aborted, floods judged by their share of refused
frames, creation budgets per address key that a few addresses cannot drain for everyone.

The pure rules are tested directly; each limit is also tested on a real relay on
127.0.0.1 with a real SQLite file. Clients that need distinct addresses bind to
127.0.0.2 and up (loopback only)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from backchannel.client.transport import RelayClient
from backchannel.protocol import relayframes as rf
from backchannel.relay import RelayLimits
from backchannel.relay.addresses import budget_key
from backchannel.relay.ratelimit import (
    AddressBook,
    ConnectionCap,
    ConnectionGuard,
    SharedPace,
    Verdict,
)
from tests.relay.conftest import RelayFactory, envelope

pytestmark = pytest.mark.timeout(60)


# --- the flood rule (pure) ---------------------------------------------------------------


def test_an_alternating_flooder_is_closed() -> None:
    # Twice the rate: accepted and refused frames alternate, so refusals are never two in a
    # row, which is how the old "refused in a row" rule missed it. (Binary fractions keep
    # the refill exact: half a token per frame.)
    limits = RelayLimits(frames_per_second=128, frame_burst=10)
    guard = ConnectionGuard(limits, 0.0)
    verdicts = [guard.on_frame(i / 256) for i in range(2000)]
    assert Verdict.CLOSE in verdicts
    closed_at = verdicts.index(Verdict.CLOSE)
    assert closed_at < 20 + 2 * limits.flood_refused  # judged as soon as the share is met
    before = verdicts[:closed_at]
    assert Verdict.REFUSE in before
    assert all(not (a is b is Verdict.REFUSE) for a, b in itertools.pairwise(before))


def test_a_flooder_at_a_third_over_the_rate_is_closed() -> None:
    limits = RelayLimits(frames_per_second=300, frame_burst=10)
    guard = ConnectionGuard(limits, 0.0)
    verdicts = [guard.on_frame(i / 400) for i in range(3000)]  # 4/3 of the rate
    assert Verdict.CLOSE in verdicts


def test_an_honest_bursty_client_is_not_closed() -> None:
    # Bursts a little over the burst size, backing off after refusals as the client does
    # (0.1 s, doubling), for a minute: refused now and then, never closed.
    limits = RelayLimits(frames_per_second=100, frame_burst=200)
    guard = ConnectionGuard(limits, 0.0)
    now, refused = 0.0, 0
    while now < 60.0:
        delay = 0.1
        for _ in range(220):  # one burst: 10% over the bucket
            verdict = guard.on_frame(now)
            assert verdict is not Verdict.CLOSE
            if verdict is Verdict.REFUSE:
                refused += 1
                now += delay
                delay = min(2.0, delay * 2)
        now += 2.5  # the bucket refills between bursts
    assert refused > 0


def test_a_client_at_its_rate_is_never_refused() -> None:
    limits = RelayLimits(frames_per_second=128, frame_burst=2)
    guard = ConnectionGuard(limits, 0.0)
    assert all(guard.on_frame(i / 128) is Verdict.ACCEPT for i in range(5000))


def test_refusals_of_accepted_frames_count_towards_the_flood_share() -> None:
    # A client that keeps creating mailboxes past its budget: its frames are within the
    # frame rate, but every other one is refused for the creation budget.
    guard = ConnectionGuard(RelayLimits(), 0.0)
    verdicts = []
    for i in range(400):
        verdicts.append(guard.on_frame(i / 1000))
        if i % 2:
            verdicts.append(guard.on_refused())
    assert Verdict.CLOSE in verdicts
    honest = ConnectionGuard(RelayLimits(), 0.0)
    for i in range(2000):  # one refused creation among many frames: never closed
        assert honest.on_frame(i / 1000) is Verdict.ACCEPT
        if i % 100 == 0:
            assert honest.on_refused() is Verdict.REFUSE


# --- the connection cap and address keys (pure) -------------------------------------------


def test_connection_cap_counts_reservations_and_lets_stale_ones_lapse() -> None:
    cap = ConnectionCap(limit=2, pending_ttl=5.0)
    first, second = cap.reserve(0.0), cap.reserve(1.0)
    assert first is not None and second is not None
    assert cap.reserve(1.0) is None  # full, handshakes included
    assert cap.open(first)
    assert cap.reserve(6.5) is not None  # `second` never opened (a failed TLS handshake)
    assert not cap.open(second)  # it lapsed: refused, not counted
    cap.close()
    assert cap.count == 1


def test_budget_keys() -> None:
    assert budget_key("192.0.2.7") == "192.0.2.7"
    assert budget_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert budget_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert budget_key("2001:db8:1:2:ffff::9") == budget_key("2001:db8:1:2::1")
    assert budget_key("2001:db8:1:3::1") != budget_key("2001:db8:1:2::1")
    assert budget_key("[2001:db8::1]") == "2001:db8::/64"
    assert budget_key("unknown") == "unknown"


def test_a_dozen_addresses_at_full_speed_do_not_shut_out_a_fresh_one() -> None:
    limits = RelayLimits()  # the defaults are what must hold
    book = AddressBook(limits, 0.0)
    attackers = [f"198.51.100.{i}" for i in range(1, 17)]
    refused_fresh = 0
    now = 0.0
    for step in range(6000):  # a minute, every attacker asking 100 times a second
        now = step / 100
        for key in attackers:
            book.may_create(key, now)
        if step % 500 == 0:  # now and then a new honest address creates a mailbox
            refused_fresh += not book.may_create(f"203.0.113.{step // 500}", now)
    assert refused_fresh == 0


def test_many_addresses_draining_the_budget_still_leave_the_reserve() -> None:
    limits = RelayLimits()
    book = AddressBook(limits, 0.0)
    # 60 addresses spend their whole bursts at once: the relay-wide burst is drained down
    # to its reserve, which only addresses that have created little may use.
    for i in range(60):
        while book.may_create(f"198.51.100.{i}", 0.0):
            pass
    assert book.may_create("203.0.113.1", 0.0)


# --- on a real relay ---------------------------------------------------------------------


async def _raw_socket(port: int, source: str = "127.0.0.1",
                      rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # set before connecting, so the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def _recv_head(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read an HTTP response head (or whatever comes before the peer closes)."""
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(timeout):
        while b"\r\n\r\n" not in data:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                break
            data += chunk
    return data


_UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n")


def _client_frame(payload: bytes) -> bytes:
    """One binary WebSocket frame as a client sends it (masked, with a zero mask)."""
    if len(payload) < 126:
        head = bytes([0x82, 0x80 | len(payload)])
    else:
        head = bytes([0x82, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    return head + b"\x00\x00\x00\x00" + payload


async def _wait(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def test_sockets_in_their_handshake_count_against_the_cap_and_are_reaped(
        tmp_path: Path, relay: RelayFactory) -> None:
    limits = RelayLimits(max_connections=8, handshake_timeout=1.0)
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server:
        # Slowloris: eight sockets that never finish a request, from eight addresses.
        idle = [await _raw_socket(server.port, f"127.0.0.{i}") for i in range(2, 10)]
        await _wait(lambda: server.metrics.sockets.value == 8)
        assert server.metrics.connections.value == 0  # never counted as connected
        refused = await _raw_socket(server.port, "127.0.0.20")
        await asyncio.get_running_loop().sock_sendall(refused, _UPGRADE)
        assert (await _recv_head(refused)).startswith(b"HTTP/1.1 503")
        refused.close()
        assert server.metrics.connections_refused.value("relay_full") == 1
        with pytest.raises(InvalidStatus) as full:
            await RelayClient.connect(server.url)
        assert full.value.response.status_code == 503
        # Past the deadline every one of them is closed and its slot is free again.
        for sock in idle:
            assert await _recv_head(sock, timeout=3.0) == b""
            sock.close()
        await _wait(lambda: server.metrics.sockets.value == 0)
        assert server.metrics.handshakes_abandoned.value() == 8
        async with await RelayClient.connect(server.url) as client:
            await client.ping()


async def test_the_per_address_limit_counts_from_accept(tmp_path: Path,
                                                        relay: RelayFactory) -> None:
    limits = RelayLimits(max_connections_per_address=2)
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server:
        idle = [await _raw_socket(server.port, "127.0.0.5") for _ in range(2)]
        over = await _raw_socket(server.port, "127.0.0.5")
        assert (await _recv_head(over)).startswith(b"HTTP/1.1 429")  # before any request
        over.close()
        async with await RelayClient.connect(server.url) as client:  # another address
            await client.ping()
        for sock in idle:
            sock.close()


async def _non_reader(port: int, source: str, caps: object) -> socket.socket:
    """A client that upgrades, subscribes, and then never reads again."""
    sock = await _raw_socket(port, source, rcvbuf=4096)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, _UPGRADE)
    assert (await _recv_head(sock)).startswith(b"HTTP/1.1 101")
    subscribe = rf.encode(rf.Subscribe(1, caps.mailbox_id, caps.receive_token))  # type: ignore[attr-defined]
    await loop.sock_sendall(sock, _client_frame(subscribe))
    return sock


async def test_subscribers_that_never_read_are_aborted_and_memory_stays_bounded(
        tmp_path: Path, relay: RelayFactory) -> None:
    cap = 256 * 1024
    limits = RelayLimits(max_outbox_bytes=cap)
    readers = 6
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server, \
            await RelayClient.connect(server.url) as sender:
        caps = await sender.create_mailbox()
        socks = [await _non_reader(server.port, f"127.0.0.{10 + i}", caps)
                 for i in range(readers)]
        await _wait(lambda: server.metrics.subscriptions.value == readers)
        peak = 0
        # 64 KiB envelopes: far more than the cap and the kernel's buffers together.
        for n in range(400):
            await sender.send(caps.mailbox_id, caps.send_token,
                              envelope(caps.mailbox_id, n, size=65536))
            held = sum(server._queued(c) for c in server._conns)
            peak = max(peak, held)
            if server.metrics.connections_closed.value("slow_reader") == readers:
                break
        await _wait(lambda: server.metrics.connections.value == 1)  # only the sender is left
        assert server.metrics.connections_closed.value("slow_reader") == readers
        assert server.metrics.subscriptions.value == 0
        # Never more than the cap (plus the frame that crossed it) per reader.
        assert peak <= readers * (cap + rf.MAX_RESPONSE_FRAME_SIZE)
        for sock in socks:
            sock.close()


async def _creator(url: str, source: str) -> ClientConnection:
    return await connect(url, compression=None, max_size=rf.MAX_RESPONSE_FRAME_SIZE,
                         local_addr=(source, 0))


async def _create(ws: ClientConnection, rid: int) -> bool:
    mid = os.urandom(16)
    await ws.send(rf.encode(rf.Create(rid, mid, os.urandom(32), os.urandom(32))))
    answer = rf.decode_response(await ws.recv())  # type: ignore[arg-type]
    return isinstance(answer, rf.Created)


async def test_creation_from_many_addresses_leaves_room_for_a_fresh_one(
        tmp_path: Path, relay: RelayFactory) -> None:
    async with relay(f"sqlite:///{tmp_path / 'r.db'}") as server:
        attackers = [await _creator(server.url, f"127.0.0.{i}") for i in range(2, 18)]

        async def exhaust(ws: ClientConnection) -> int:
            made = 0
            for rid in range(1, 41):  # twice its burst, as fast as the relay answers
                made += await _create(ws, rid)
            return made

        made = await asyncio.gather(*(exhaust(ws) for ws in attackers))
        assert all(m <= 21 for m in made)  # each got its own burst (and a little refill)
        fresh = await _creator(server.url, "127.0.0.30")
        assert await _create(fresh, 1)
        for ws in [*attackers, fresh]:
            await ws.close()


async def test_non_readers_together_stay_within_the_relay_wide_budget(
        tmp_path: Path, relay: RelayFactory) -> None:
    from backchannel.relay.server import HEAVY_QUEUE

    budget = 1024 * 1024
    limits = RelayLimits(max_queued_bytes=budget)  # each one's own cap stays 8 MiB
    readers = 6
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server, \
            await RelayClient.connect(server.url) as sender:
        caps = await sender.create_mailbox()
        socks = [await _non_reader(server.port, f"127.0.0.{20 + i}", caps)
                 for i in range(readers)]
        await _wait(lambda: server.metrics.subscriptions.value == readers)
        peak = 0
        for n in range(200):
            await sender.send(caps.mailbox_id, caps.send_token,
                              envelope(caps.mailbox_id, n, size=65536))
            peak = max(peak, sum(server._queued(c) for c in server._conns))
            if server.metrics.connections_closed.value("slow_reader") == readers:
                break
        await _wait(lambda: server.metrics.connections.value == 1)
        # The budget, plus what connections under the heavy mark hold uncounted.
        assert peak <= budget + readers * (HEAVY_QUEUE + rf.MAX_RESPONSE_FRAME_SIZE)
        assert peak < readers * limits.max_outbox_bytes / 4
        for sock in socks:
            sock.close()


def test_a_penalized_key_cools_down() -> None:
    book = AddressBook(RelayLimits(abuse_cooldown=10.0), 0.0)
    book.penalize("198.51.100.1", 0.0)
    assert not book.may_connect("198.51.100.1", 5.0)
    assert book.may_connect("198.51.100.2", 5.0)
    assert book.may_connect("198.51.100.1", 10.5)


async def test_an_address_closed_for_abuse_waits_before_it_reconnects(
        tmp_path: Path, relay: RelayFactory) -> None:
    limits = RelayLimits(abuse_cooldown=0.5, max_frame_size=2048)
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server:
        ws = await _creator(server.url, "127.0.0.40")
        await ws.send(b"\x01\x02" + b"\x00" * 5000)
        await ws.wait_closed()
        assert ws.close_code == 1009
        with pytest.raises(InvalidStatus) as refused:
            await _creator(server.url, "127.0.0.40")
        assert refused.value.response.status_code == 429
        other = await _creator(server.url, "127.0.0.41")  # another address is welcome
        await other.close()
        await asyncio.sleep(0.6)
        again = await _creator(server.url, "127.0.0.40")
        await again.close()


async def test_a_client_creating_regardless_of_refusals_is_closed(
        tmp_path: Path, relay: RelayFactory) -> None:
    async with relay(f"sqlite:///{tmp_path / 'r.db'}") as server:
        ws = await _creator(server.url, "127.0.0.50")
        for rid in range(1, 121):  # 20 are its burst; the rest are refused
            await ws.send(rf.encode(rf.Create(rid, os.urandom(16), os.urandom(32),
                                              os.urandom(32))))
        with pytest.raises(ConnectionClosed):
            while True:  # read the answers, then the close
                await ws.recv()
        assert ws.close_code == 1008
        assert server.metrics.connections_closed.value("flood") == 1


# --- the pace shared by backlogged connections (pure) ------------------------------------


def test_the_shared_pace_lets_a_burst_through_then_spaces_events() -> None:
    pace = SharedPace(rate=100.0, burst=4, now=0.0)
    assert [pace.wait(0.0) for _ in range(4)] == [0.0] * 4  # the burst: at once
    waits = [pace.wait(0.0) for _ in range(3)]
    assert waits == pytest.approx([0.01, 0.02, 0.03])  # then one every 1/rate
    assert pace.wait(10.0) == 0.0  # idle long enough: the burst is back


def test_the_shared_pace_serves_askers_in_turn() -> None:
    # Two flooders asking as fast as they can share the pace evenly: each booking waits
    # behind every earlier one, whoever made it, so asking more often buys nothing.
    pace = SharedPace(rate=1000.0, burst=1, now=0.0)
    due: dict[str, list[float]] = {"a": [], "b": []}
    for _ in range(100):
        for who in ("a", "b"):
            due[who].append(pace.wait(0.0))
    assert due["a"][-1] == pytest.approx(0.198)
    assert due["b"][-1] == pytest.approx(0.199)
    assert all(w > v for v, w in itertools.pairwise(due["a"]))

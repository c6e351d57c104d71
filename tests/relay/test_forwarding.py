"""Private routing end to end: two real relays on 127.0.0.1, a client forwarding through
one (F) to the other (D), the receiver reading from D (docs/relay.md "Private routing")."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from backchannel.client.routing import (
    ForgedForwardReply,
    ForwardRefused,
    RelayChoice,
    choose_forwarder,
    fetch_relay_key,
    forward_send,
)
from backchannel.client.transport import MailboxCaps, RelayClient, RelayClosed
from backchannel.protocol.forwarding import (
    KEY_SEED_SIZE,
    ForwardOutcome,
    InnerSend,
    RelayKeyPair,
    seal_bytes,
    seal_reply,
    seal_send,
)
from backchannel.protocol.relayconn import Answer, ClientConnection, Refusal
from backchannel.protocol.relayframes import (
    REPLY_KEY_SIZE,
    ErrorCode,
    Forward,
    Ping,
    SealedResult,
    SealedSend,
    decode_request,
    encode,
)
from backchannel.relay import RelayLimits, RelayServer, open_store
from backchannel.relay.outbound import (
    DestinationUnavailable,
    ForwardPool,
    LocalDestination,
    is_local_address,
)
from backchannel.relay.relaykey import BadKeyFile, load_or_create_key
from tests.relay.conftest import envelope

pytestmark = pytest.mark.timeout(60)


def keypair() -> RelayKeyPair:
    return RelayKeyPair(os.urandom(KEY_SEED_SIZE))


class Pair:
    """A forwarding relay F and a destination relay D, each with its own SQLite file."""

    def __init__(self, f: RelayServer, d: RelayServer, f_key: RelayKeyPair,
                 d_key: RelayKeyPair, f_db: Path) -> None:
        self.f, self.d, self.f_key, self.d_key, self.f_db = f, d, f_key, d_key, f_db

    async def forward(self, caps: MailboxCaps, env: bytes, **kw: object) -> int:
        return await forward_send(self.f.url, self.d.url, self.d_key.public,
                                  caps.mailbox_id, caps.send_token, env, **kw)  # type: ignore[arg-type]


async def start(db: Path, key: RelayKeyPair | None, limits: RelayLimits | None = None,
                **options: object) -> RelayServer:
    limits = limits or RelayLimits()
    # Every relay of these tests is on 127.0.0.1: forwarding to loopback is allowed.
    options.setdefault("forward_to_local", True)
    server = RelayServer(open_store(f"sqlite:///{db}", limits), limits, host="127.0.0.1",
                         port=0, forward_key=key, **options)  # type: ignore[arg-type]
    await server.start()
    return server


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    f_key, d_key = keypair(), keypair()
    d = await start(tmp_path / "d.db", d_key, RelayLimits(mailbox_max_envelopes=3))
    # F logs what it may (client addresses included): the test reads all of it.
    f = await start(tmp_path / "f.db", f_key, log_addresses=True)
    try:
        yield Pair(f, d, f_key, d_key, tmp_path / "f.db")
    finally:
        await f.stop()
        await d.stop()


async def test_forwarded_deposit_is_fetched_from_the_destination(
        pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="backchannel")
    async with await RelayClient.connect(pair.d.url) as receiver:
        caps = await receiver.create_mailbox()
    env = envelope(caps.mailbox_id, 7)
    assert await pair.forward(caps, env) == 1
    assert await pair.forward(caps, envelope(caps.mailbox_id, 8)) == 2
    # D saw one peer: F's pooled connection (by its local port), not the client, which
    # never connected to D (its own connection was to F, and is closed).
    f_ports = pair.f.pool.local_ports
    assert list(f_ports) == [pair.d.url]
    assert pair.d.connection_peers() == [("127.0.0.1", f_ports[pair.d.url])]
    async with await RelayClient.connect(pair.d.url) as receiver:
        items, more = await receiver.fetch(caps.mailbox_id, caps.receive_token)
    assert [d.envelope for d in items] == [env, envelope(caps.mailbox_id, 8)] and not more
    # F never had the mailbox id nor the send token: not in its logs, nor its database,
    # nor its metrics (the envelope starts with the mailbox id, so it is covered too).
    secrets_ = (caps.mailbox_id, caps.mailbox_id.hex().encode(), caps.send_token)
    stored = b"".join(p.read_bytes() for p in pair.f_db.parent.glob("f.db*"))
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'fields', '')}"
                       for r in caplog.records if r.name.startswith("backchannel")).encode()
    shown = pair.f.metrics.render()
    # What was read is not empty: F logged its client, and counted two forwards.
    assert b"connected" in logged and b'forwards_total{outcome="answered"} 2' in shown
    for secret in secrets_:
        assert secret not in stored and secret not in logged and secret not in shown
    assert pair.f.metrics.stored.value() == 0 and pair.d.metrics.stored.value() == 2
    assert pair.d.metrics.sealed_sends.value() == 2


async def test_refusals_come_back_sealed_by_the_destination(pair: Pair) -> None:
    async with await RelayClient.connect(pair.d.url) as receiver:
        caps = await receiver.create_mailbox()
    wrong_token = MailboxCaps(caps.mailbox_id, os.urandom(32), caps.receive_token)
    with pytest.raises(ForwardRefused) as refused:
        await pair.forward(wrong_token, envelope(caps.mailbox_id, 1))
    assert refused.value.code == ErrorCode.UNAUTHORIZED and refused.value.by_destination
    with pytest.raises(ForwardRefused) as refused:  # an envelope for another mailbox
        await pair.forward(caps, envelope(os.urandom(16), 1))
    assert refused.value.code == ErrorCode.BAD_ENVELOPE and refused.value.by_destination
    for i in range(3):  # D's quota is 3 envelopes
        await pair.forward(caps, envelope(caps.mailbox_id, i))
    with pytest.raises(ForwardRefused) as refused:
        await pair.forward(caps, envelope(caps.mailbox_id, 9))
    assert refused.value.code == ErrorCode.QUOTA_EXCEEDED and refused.value.by_destination


async def test_no_forward_loops(pair: Pair) -> None:
    caps = MailboxCaps.generate()
    env = envelope(caps.mailbox_id, 1)
    # F refuses a forward sealed to its own key, whatever URL it names.
    for url in (pair.f.url, pair.d.url):
        with pytest.raises(ForwardRefused) as refused:
            await forward_send(pair.f.url, url, pair.f_key.public, caps.mailbox_id,
                               caps.send_token, env)
        assert refused.value.code == ErrorCode.BAD_DESTINATION
        assert not refused.value.by_destination
    # A forward inside a forward: D opens the seal, finds no deposit, and refuses it.
    inner_forward = encode(Forward(1, pair.f_key.public.key_id, pair.f.url, b"x" * 64))
    rid_conn = ClientConnection()
    sealed = seal_bytes(pair.d_key.public, inner_forward)
    _, data = rid_conn.send_request(Forward(0, pair.d_key.public.key_id, pair.d.url, sealed))
    events = await one_request(pair.f.url, rid_conn, data)
    assert [type(e) for e in events] == [Refusal]
    assert events[0].code == ErrorCode.MALFORMED  # type: ignore[union-attr]
    # A send sealed to a key D does not hold: D refuses it, F passes the code on.
    with pytest.raises(ForwardRefused) as refused:
        await forward_send(pair.f.url, pair.d.url, keypair().public, caps.mailbox_id,
                           caps.send_token, env)
    assert refused.value.code == ErrorCode.UNKNOWN_KEY
    assert pair.d.metrics.stored.value() == 0


async def one_request(url: str, conn: ClientConnection, *frames: bytes) -> list[object]:
    """Send `frames` on one connection and gather the events of as many answers."""
    events: list[object] = []
    async with connect(url, compression=None) as ws:
        for data in frames:
            await ws.send(data)
        for _ in frames:
            message = await asyncio.wait_for(ws.recv(), 30)
            assert isinstance(message, bytes)
            events.extend(conn.receive(message))
    return events


async def test_destination_urls_that_are_refused(pair: Pair) -> None:
    caps = MailboxCaps.generate()
    sealed = seal_send(pair.d_key.public, InnerSend(caps.mailbox_id, caps.send_token,
                                                    os.urandom(REPLY_KEY_SIZE), b""))
    for url in ("http://127.0.0.1:1/", "ws://192.0.2.1:8470/", "ftp://x/", "ws://a b/"):
        conn = ClientConnection()
        _, data = conn.send_request(Forward(0, pair.d_key.public.key_id, url, sealed))
        [event] = await one_request(pair.f.url, conn, data)
        assert isinstance(event, Refusal) and event.code == ErrorCode.BAD_DESTINATION, url


async def test_local_destinations_are_refused_by_default(tmp_path: Path) -> None:
    d_key = keypair()
    f = await start(tmp_path / "f.db", keypair(), forward_to_local=False)
    try:
        caps = MailboxCaps.generate()
        sealed = seal_send(d_key.public, InnerSend(caps.mailbox_id, caps.send_token,
                                                   os.urandom(REPLY_KEY_SIZE), b""))
        for url in ("ws://127.0.0.1:9470/", "ws://localhost:1/", "ws://[::1]:1/",
                    "wss://10.0.0.1/", "wss://192.168.1.1:8470/", "wss://169.254.169.254/",
                    "wss://[fd00::1]/", "wss://0.0.0.0/"):
            conn = ClientConnection()
            _, data = conn.send_request(Forward(0, d_key.public.key_id, url, sealed))
            [event] = await one_request(f.url, conn, data)
            assert isinstance(event, Refusal) and event.code == ErrorCode.BAD_DESTINATION, url
        assert f.metrics.forwards.value(label_value="unavailable") == 0  # none was tried
    finally:
        await f.stop()


async def test_forwarding_relay_is_bounded_and_stays_up(tmp_path: Path) -> None:
    # A destination that accepts connections and never answers.
    async def silent(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    d_key = keypair()
    async with serve(silent, "127.0.0.1", 0) as mute:
        mute_url = f"ws://127.0.0.1:{mute.sockets[0].getsockname()[1]}/"
        limits = RelayLimits(forward_max_in_flight_per_connection=2, forward_timeout=1.0,
                             forwards_per_second_per_address=0.001,
                             forward_burst_per_address=3)
        f = await start(tmp_path / "f.db", keypair(), limits)
        try:
            caps = MailboxCaps.generate()
            sealed = seal_send(d_key.public, InnerSend(caps.mailbox_id, caps.send_token,
                                                       os.urandom(REPLY_KEY_SIZE), b""))
            conn = ClientConnection()
            frames = [conn.send_request(Forward(0, d_key.public.key_id, mute_url, sealed))[1]
                      for _ in range(3)]
            events = await one_request(f.url, conn, *frames)
            codes = sorted(e.code for e in events if isinstance(e, Refusal))
            # Two in flight time out at the destination; the third is over the limit.
            assert codes == [ErrorCode.TOO_MANY_FORWARDS, ErrorCode.DESTINATION_UNAVAILABLE,
                             ErrorCode.DESTINATION_UNAVAILABLE]
            # The address's burst of 3 is spent (2 carried above, on another connection; the
            # one refused took none; and this one's first): its second is rate limited.
            conn = ClientConnection()
            unreachable = "ws://127.0.0.1:1/"
            frames = [conn.send_request(Forward(0, d_key.public.key_id, unreachable,
                                                sealed))[1] for _ in range(2)]
            events = await one_request(f.url, conn, *frames)
            codes = sorted(e.code for e in events if isinstance(e, Refusal))
            assert codes == [ErrorCode.RATE_LIMITED, ErrorCode.DESTINATION_UNAVAILABLE]
            # F still answers.
            conn = ClientConnection()
            [pong] = await one_request(f.url, conn, conn.send_request(Ping(0))[1])
            assert isinstance(pong, Answer)
        finally:
            await f.stop()


async def test_relay_wide_forward_limit(tmp_path: Path) -> None:
    async def silent(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    d_key = keypair()
    async with serve(silent, "127.0.0.1", 0) as mute:
        mute_url = f"ws://127.0.0.1:{mute.sockets[0].getsockname()[1]}/"
        f = await start(tmp_path / "f.db", keypair(),
                        RelayLimits(forward_max_in_flight=1, forward_timeout=1.0))
        try:
            caps = MailboxCaps.generate()
            sealed = seal_send(d_key.public, InnerSend(caps.mailbox_id, caps.send_token,
                                                       os.urandom(REPLY_KEY_SIZE), b""))
            first, second = ClientConnection(), ClientConnection()
            one = first.send_request(Forward(0, d_key.public.key_id, mute_url, sealed))[1]
            two = second.send_request(Forward(0, d_key.public.key_id, mute_url, sealed))[1]
            slow = asyncio.create_task(one_request(f.url, first, one))
            while f._forwards == 0:  # the first is in flight
                await asyncio.sleep(0.01)
            [event] = await one_request(f.url, second, two)
            assert isinstance(event, Refusal) and event.code == ErrorCode.TOO_MANY_FORWARDS
            [event] = await slow
            assert isinstance(event, Refusal)
            assert event.code == ErrorCode.DESTINATION_UNAVAILABLE
        finally:
            await f.stop()


async def test_forwarding_can_be_turned_off(tmp_path: Path) -> None:
    d_key = keypair()
    f = await start(tmp_path / "f.db", keypair(), forwarding=False)
    try:
        caps = MailboxCaps.generate()
        with pytest.raises(ForwardRefused) as refused:
            await forward_send(f.url, "ws://127.0.0.1:1/", d_key.public, caps.mailbox_id,
                               caps.send_token, envelope(caps.mailbox_id, 1))
        assert refused.value.code == ErrorCode.FORWARDING_DISABLED
    finally:
        await f.stop()


@pytest.mark.parametrize("lie", ["random", "replayed", "stored-unsealed"])
async def test_a_forwarding_relay_cannot_forge_stored(tmp_path: Path, lie: str) -> None:
    """A hostile F answers every forward with a "stored" it made up: the client finds out."""
    d_key = keypair()

    async def liar(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, bytes)
            frame = decode_request(message)
            if lie == "random":
                sealed = os.urandom(38)
            else:  # a genuine answer, but under another reply key (another forward's)
                sealed = seal_reply(os.urandom(32), ForwardOutcome(1, 0), os.urandom(12))
            await ws.send(encode(SealedResult(frame.request_id, sealed)))

    async with serve(liar, "127.0.0.1", 0) as fake:
        url = f"ws://127.0.0.1:{fake.sockets[0].getsockname()[1]}/"
        caps = MailboxCaps.generate()
        with pytest.raises(ForgedForwardReply):
            await forward_send(url, "ws://127.0.0.1:2/", d_key.public, caps.mailbox_id,
                               caps.send_token, envelope(caps.mailbox_id, 1))


async def test_the_relay_publishes_its_key(pair: Pair, tmp_path: Path) -> None:
    assert await fetch_relay_key(pair.d.url) == pair.d_key.public
    assert await fetch_relay_key(pair.f.url) == pair.f_key.public
    keyless = await start(tmp_path / "k.db", None)
    try:
        with pytest.raises(RelayClosed):
            await fetch_relay_key(keyless.url)
    finally:
        await keyless.stop()


def test_the_key_file_is_made_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "relay.key"
    first = load_or_create_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path).public == first.public
    path.write_bytes(b"short")
    with pytest.raises(BadKeyFile):
        load_or_create_key(path)


async def test_the_pool_keeps_its_size_and_reconnects(tmp_path: Path) -> None:
    d1_key, d2_key = keypair(), keypair()
    d1 = await start(tmp_path / "d1.db", d1_key)
    d2 = await start(tmp_path / "d2.db", d2_key)
    f = await start(tmp_path / "f.db", keypair(), RelayLimits(forward_max_destinations=1))
    try:
        for server, key in ((d1, d1_key), (d2, d2_key), (d1, d1_key)):
            async with await RelayClient.connect(server.url) as receiver:
                caps = await receiver.create_mailbox()
            seq = await forward_send(f.url, server.url, key.public, caps.mailbox_id,
                                     caps.send_token, envelope(caps.mailbox_id, 1))
            assert seq == 1
            # One pooled connection at a time: the idle one to the other relay was closed.
            assert list(f.pool.local_ports) == [server.url]
    finally:
        for server in (f, d1, d2):
            await server.stop()


async def test_the_listening_line_names_the_key(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="backchannel.relay")
    key = keypair()
    server = await start(tmp_path / "r.db", key)
    await server.stop()
    [line] = [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "listening"]
    assert line["key_id"] == key.public.key_id.hex()
    assert line["key_fingerprint"] == key.public.fingerprint
    assert line["forwarding"] is True


@pytest.mark.parametrize("answer", [b"garbage", encode(Ping(1)),
                                    encode(SealedResult(12345, b"\x00" * 38))])
async def test_a_destination_that_breaks_the_protocol(tmp_path: Path, answer: bytes) -> None:
    """An answer that does not decode, a request sent back, an answer to no request: F
    drops that destination's connection, says DESTINATION_UNAVAILABLE, and serves on."""
    async def broken(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(answer)

    d_key = keypair()
    async with serve(broken, "127.0.0.1", 0) as bad:
        url = f"ws://127.0.0.1:{bad.sockets[0].getsockname()[1]}/"
        f = await start(tmp_path / "f.db", keypair())
        try:
            caps = MailboxCaps.generate()
            for _ in range(2):
                with pytest.raises(ForwardRefused) as refused:
                    await forward_send(f.url, url, d_key.public, caps.mailbox_id,
                                       caps.send_token, envelope(caps.mailbox_id, 1))
                assert refused.value.code == ErrorCode.DESTINATION_UNAVAILABLE
            async with await RelayClient.connect(f.url) as client:
                await client.ping()
        finally:
            await f.stop()


def test_the_forwarder_is_of_another_operator_where_there_is_one() -> None:
    dest = RelayChoice("wss://d.example/", "acme")
    same = RelayChoice("wss://d2.example/", "acme")
    unknown = RelayChoice("wss://u.example/")
    other = [RelayChoice(f"wss://o{i}.example/", "zeta") for i in range(3)]
    rng = random.Random(1)
    picks = {choose_forwarder(dest, [dest, same, unknown, *other], rng) for _ in range(60)}
    assert picks == set(other)  # known to be another operator's, spread among them
    assert choose_forwarder(dest, [dest, same, unknown], rng) == unknown
    assert choose_forwarder(dest, [dest, same], rng) == same  # another relay at least
    assert choose_forwarder(dest, [dest], rng) is None
    # The destination's operator unknown: any other relay, never the destination.
    anon = RelayChoice("wss://d.example/")
    assert choose_forwarder(anon, [anon, same], rng) == same


async def test_a_host_name_resolving_to_a_local_address_is_refused(tmp_path: Path) -> None:
    name = socket.gethostname()
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(name, 1, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if not all(is_local_address(str(a)) for a in resolved):
        pytest.skip(f"this machine's name {name!r} resolves to a public address")
    d_key = keypair()
    f = await start(tmp_path / "f.db", keypair(), forward_to_local=False)
    try:
        caps = MailboxCaps.generate()
        with pytest.raises(ForwardRefused) as refused:
            await forward_send(f.url, f"wss://{name}:1/", d_key.public, caps.mailbox_id,
                               caps.send_token, envelope(caps.mailbox_id, 1))
        assert refused.value.code == ErrorCode.BAD_DESTINATION
    finally:
        await f.stop()


async def test_the_pool_refuses_names_resolving_to_local_addresses() -> None:
    asked: list[tuple[str, int]] = []

    def resolver(answer: list[str]) -> Callable[[str, int], Awaitable[list[str]]]:
        async def resolve(host: str, port: int) -> list[str]:
            asked.append((host, port))
            return answer
        return resolve

    frame = SealedSend(0, b"\x01" * 8, b"")
    # One local address among public ones is enough to refuse.
    pool = ForwardPool(4, 1.0, 60.0, time.monotonic,
                       resolve=resolver(["8.8.8.8", "10.1.2.3"]))
    with pytest.raises(LocalDestination):
        await pool.forward("wss://relay.example:8470/", frame)
    assert asked == [("relay.example", 8470)]
    # The documentation ranges count as private; wss:// without a port resolves port 443.
    pool = ForwardPool(4, 1.0, 60.0, time.monotonic, resolve=resolver(["192.0.2.200"]))
    with pytest.raises(LocalDestination):
        await pool.forward("wss://relay.example/", frame)
    assert asked[-1] == ("relay.example", 443)
    # A name without addresses cannot be reached. (A public address would be connected to
    # as resolved; tests reach no network beyond loopback, so that path is not run here.)
    pool = ForwardPool(4, 0.5, 60.0, time.monotonic, resolve=resolver([]))
    with pytest.raises(DestinationUnavailable):
        await pool.forward("wss://nowhere.example/", frame)
    await pool.close()


async def test_a_destination_that_hangs_up_during_the_handshake(tmp_path: Path) -> None:
    """A destination that closes the TCP connection before its HTTP answer (a relay killed
    or cut mid-connect): F says DESTINATION_UNAVAILABLE at once, rather than leaving the
    forward unanswered until the client's own timeout."""
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    d_key = keypair()
    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    f = await start(tmp_path / "f.db", keypair())
    try:
        caps = MailboxCaps.generate()
        for _ in range(2):
            with pytest.raises(ForwardRefused) as refused:
                await forward_send(f.url, url, d_key.public, caps.mailbox_id,
                                   caps.send_token, envelope(caps.mailbox_id, 1), timeout=5.0)
            assert refused.value.code == ErrorCode.DESTINATION_UNAVAILABLE
    finally:
        await f.stop()
        server.close()
        await server.wait_closed()

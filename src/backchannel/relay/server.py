"""The relay's network adapter: WebSocket frames in, store operations and pushes out.

A thin layer (design §4) over the pure mailbox logic and a `RelayStore`: each connection's
sans-I/O `relayconn.ServerConnection` decodes its binary messages, checks that every
request is answered exactly once, batches receipts and splits deliveries; this layer
applies the limits, submits writes for group commit, and answers when they commit.
Answers and pushes for one connection go through its outbox, drained by a short-lived
task, so that all the receipts of one group commit leave as one `Stored` frame. HTTP
``GET /healthz`` is served from the handshake hook; every other path but ``/`` is 404
(``/metrics`` included: metrics have a listener of their own, see
`metrics.MetricsListener`).

Every TCP connection is counted from accept to close against a relay-wide cap and its
address's limit (`_Socket`), so that sockets still in their handshake are bounded too, and
a handshake not done within `RelayLimits.handshake_timeout` is closed (review 2026-12 §2f).

Logs carry no tokens, no envelope bytes, and no client addresses unless `log_addresses`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Final, cast
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from backchannel.protocol import relayconn
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import (
    ForwardOutcome,
    RelayKeyPair,
    SealError,
    open_send,
    seal_reply,
)
from backchannel.protocol.relayframes import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    MAX_PENDING,
    MAX_SEND_BATCH,
    REPLY_NONCE_SIZE,
    Ack,
    Acked,
    BatchResult,
    BatchStored,
    Create,
    Created,
    Delete,
    Deleted,
    Delivery,
    Error,
    ErrorCode,
    Fetch,
    Fetched,
    Forward,
    FrameKind,
    Ping,
    Pong,
    SealedResult,
    SealedSend,
    Send,
    SendBatch,
    StoredItem,
    Subscribe,
    Subscribed,
    encode,
)
from backchannel.protocol.relayframes import (
    Request as RequestFrame,
)
from backchannel.protocol.relayframes import (
    Response as ResponseFrame,
)
from backchannel.protocol.text import check_relay_url
from backchannel.relay.addresses import budget_key, client_address
from backchannel.relay.intake import PacedConnection
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import REASONS, Subscription, envelope_refusal
from backchannel.relay.metrics import MetricsListener, RelayMetrics
from backchannel.relay.outbound import (
    DestinationUnavailable,
    ForwardPool,
    LocalDestination,
    PoolFull,
    is_local_address,
)
from backchannel.relay.ratelimit import (
    AddressBook,
    ConnectionCap,
    ConnectionGuard,
    SharedPace,
    TokenBucket,
    Verdict,
)
from backchannel.relay.relaykey import RelayKeyRing
from backchannel.relay.store.base import (
    AckOp,
    CreateOp,
    DeleteOp,
    DepositOp,
    Refused,
    RelayStore,
    StoreUnavailable,
    SubscribeOp,
)

__all__ = ["RelayServer"]

log = logging.getLogger("backchannel.relay")

# WebSocket close codes (RFC 6455 §7.4.1).
CLOSE_GOING_AWAY: Final = 1001
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
# Keepalive: a ping every 30 s finds dead peers within a minute; idle NAT mappings usually
# live longer than that, so it also keeps quiet subscribers reachable.
PING_INTERVAL: Final = 30.0
PING_TIMEOUT: Final = 30.0
# A closing handshake that takes longer than this is abandoned.
CLOSE_TIMEOUT: Final = 5.0
# Messages the library buffers per connection before it stops reading the socket:
# a small queue applies TCP backpressure to a flooding client early.
MAX_QUEUE: Final = 16
WEBSOCKET_PATH: Final = "/"
# Where the relay publishes its forwarding key (`forwarding.RelayPublicKey.to_text`).
RELAY_KEY_PATH: Final = "/relay-key"
RELAY_KEYS_PATH: Final = "/relay-keys"
# The same keys signed by the relay's identity, which invites pin (docs/relay.md "Key pins").
RELAY_KEY_STATEMENT_PATH: Final = "/relay-key-statement"
# Answers to a socket refused at accept, before its request is read: fixed bytes, written
# once, then the socket is closed. Refusing must cost less than accepting.
# A connection holding more than this counts towards the relay-wide queue budget: one full
# delivery batch (256 KiB of envelopes) is what an honest reader has in flight at most.
HEAVY_QUEUE: Final = 256 * 1024


def _http_answer(status: http.HTTPStatus, text: str) -> bytes:
    body = text.encode()
    return (f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


_REFUSE_FULL: Final = _http_answer(http.HTTPStatus.SERVICE_UNAVAILABLE, "relay full\n")
_REFUSE_ADDRESS: Final = _http_answer(http.HTTPStatus.TOO_MANY_REQUESTS,
                                      "too many connections from your address\n")
# What a connection keeps of its handshake's headers once it is open: none (`_handle`).
# Shared and never written: nothing reads or adds a header after the handshake.
_NO_HEADERS: Final = Headers()
# Metric labels for the reasons the relay closes a connection (a fixed set, never client
# data).
_CLOSE_LABELS: Final = {
    "rate limit exceeded": "flood",
    "too many malformed frames": "malformed",
    "binary frames only": "text_frame",
    "relay shutting down": "shutdown",
    "not reading fast enough": "slow_reader",
}


class _Socket(PacedConnection):
    """A server connection counted from accept to close (review 2026-12 §2f).

    websockets makes one per accepted socket, before a byte is read. It takes a slot of the
    relay-wide `ConnectionCap` at once and, when the peer is not a trusted proxy, a slot of
    its address key in the `AddressBook` as soon as the transport exists; over either
    limit the socket is answered with fixed bytes and closed, and no handler ever runs for
    it. Behind a trusted proxy the client's key is known only from the request, so
    `RelayServer._process_request` takes that slot. Both are given back when the socket
    closes, whether or not it ever finished its handshake.
    """

    relay: ClassVar[RelayServer]  # set on the per-relay subclass made by `RelayServer.start`

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        super().__init__(protocol, server, **kwargs)
        self.ticket = self.relay._cap.reserve(self.relay.monotonic())
        self.counted = False
        self.refused = False
        self.key: str | None = None  # the address key holding a slot in the book

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        relay = self.relay
        if self.ticket is None or not relay._cap.open(self.ticket):
            self._refuse(transport, _REFUSE_FULL, "relay_full")
            return
        self.counted = True
        address = _transport_peer(transport)
        if address not in relay.trusted_proxies:
            key = budget_key(address)
            if not relay._book.may_connect(key, relay.monotonic()):
                self._release()
                self._refuse(transport, _REFUSE_ADDRESS, "per_address_limit")
                return
            relay._book.connected(key)
            self.key = key
        relay.metrics.sockets.value = relay._cap.count
        super().connection_made(transport)

    def _refuse(self, transport: asyncio.BaseTransport, answer: bytes, reason: str) -> None:
        # No super().connection_made: websockets starts no handler and no handshake timer.
        self.refused = True
        self.relay.metrics.connections_refused.inc(label_value=reason)
        cast(asyncio.Transport, transport).write(answer)
        transport.close()

    def _release(self) -> None:
        relay = self.relay
        if self.counted:
            self.counted = False
            relay._cap.close()
        if self.key is not None:
            relay._book.disconnected(self.key)
            self.key = None
        relay.metrics.sockets.value = relay._cap.count

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)

    def send_data(self) -> None:
        """Write what websockets has to send in one ``transport.write`` (one system call
        for a whole outbox batch, not one per frame). An empty chunk stands for the end
        of the stream: half-close, as websockets does, or close."""
        transport = self.transport
        chunks: list[bytes] = []
        for data in self.protocol.data_to_send():
            if data:
                chunks.append(data)
                continue
            if chunks:
                transport.write(b"".join(chunks))
                chunks = []
            if transport.can_write_eof():
                with contextlib.suppress(Exception):  # uvloop may raise RuntimeError
                    transport.write_eof()
            else:
                transport.close()
        if chunks:
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def eof_received(self) -> None:
        if not self.refused:
            super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        self._release()
        if self.response is None:  # closed before its handshake was answered
            self.relay.metrics.handshakes_abandoned.inc()
        super().connection_lost(exc)


class _Conn:
    """State of one client connection."""

    # `address` is the key per-address limits count under (`addresses.budget_key`).
    __slots__ = ("address", "close_with", "closing", "flushing", "forwards", "guard",
                 "outbox", "outbox_bytes", "proto", "subs", "ws")

    def __init__(self, ws: ServerConnection, address: str, guard: ConnectionGuard) -> None:
        self.ws = ws
        self.address = address
        self.guard = guard
        self.subs: dict[bytes, Subscription] | None = None
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        # The sans-I/O end of the relay protocol: decoding, exactly-once answers, batching.
        self.proto = relayconn.ServerConnection(REASONS)
        self.flushing = False
        self.closing = False
        self.close_with: tuple[int, str] | None = None
        self.forwards = 0  # forwards of this connection in flight

    @property
    def stored(self) -> list[StoredItem]:
        """Receipts of committed sends waiting to leave as `Stored` frames (``proto``'s)."""
        return self.proto.pending_stored


class _Receipt:
    """The outcome of one SEND's deposit (a `store.base.Outcome`), answered in the turn
    of the loop that resolves its commit: no future and no scheduled callback per
    envelope. An answer that raises is logged and does not keep the rest of the commit
    from being answered."""

    __slots__ = ("conn", "relay", "rid", "settled")

    def __init__(self, relay: RelayServer, conn: _Conn, rid: int) -> None:
        self.relay = relay
        self.conn = conn
        self.rid = rid
        self.settled = False

    def done(self) -> bool:
        return self.settled

    def set_result(self, seq: int, /) -> None:
        self.settled = True
        try:
            self.relay._on_stored(self.conn, self.rid, seq)
        except Exception:
            log.exception("answering a deposit failed")

    def set_exception(self, exception: BaseException, /) -> None:
        self.settled = True
        try:
            self.relay._fail(self.conn, self.rid, exception)
        except Exception:
            log.exception("answering a deposit failed")


class _BatchReceipt:
    """The answers of one SEND_BATCH, in order, gathered as its deposits settle."""

    __slots__ = ("conn", "relay", "results", "rid", "waiting")

    def __init__(self, relay: RelayServer, conn: _Conn, rid: int, count: int) -> None:
        self.relay = relay
        self.conn = conn
        self.rid = rid
        self.results: list[BatchResult] = [_UNSET] * count
        self.waiting = 0  # deposits submitted and not yet settled

    def settle(self, index: int, result: BatchResult) -> None:
        self.results[index] = result
        self.waiting -= 1
        if self.waiting == 0:
            try:
                self.relay._answer_batch(self.conn, self.rid, self.results)
            except Exception:
                log.exception("answering a deposit failed")


class _BatchSlot:
    """The outcome of one deposit of a SEND_BATCH (a `store.base.Outcome`)."""

    __slots__ = ("batch", "index", "settled")

    def __init__(self, batch: _BatchReceipt, index: int) -> None:
        self.batch = batch
        self.index = index
        self.settled = False

    def done(self) -> bool:
        return self.settled

    def set_result(self, seq: int, /) -> None:
        self.settled = True
        self.batch.settle(self.index, BatchResult(0, seq))

    def set_exception(self, exception: BaseException, /) -> None:
        self.settled = True
        self.batch.settle(self.index, BatchResult(RelayServer._refusal_code(exception), 0))


class RelayServer:
    """A relay: WebSocket server, limits, delivery, expiry sweeps.

    Args:
        store: the storage backend (opened by `start`, closed by `stop`).
        limits: every tunable bound.
        host: address to listen on.
        port: port to listen on (0 picks a free one; see `port`).
        clock: wall-clock seconds, used for TTLs (tests inject a fake).
        monotonic: monotonic seconds, used for rate limits.
        log_addresses: include client addresses in logs (off by default).
        trusted_proxies: proxies whose X-Forwarded-For names the client (see `addresses`).
        tls: serve `wss://` with this server context (certificate and key loaded).
        metrics_listen: (host, port) of the metrics listener (`metrics.MetricsListener`),
            or None for none; port 0 picks a free one (see `metrics_port`).
        metrics_optional: when the metrics address cannot be bound, log a warning and
            serve without metrics instead of failing to start (for the default address,
            which a second relay on the same machine finds taken).
        forward_key: the relay's long-term forwarding keys (`relaykey.load_or_create_key`;
            a single key pair is a ring of one): the current one is published at
            ``GET /relay-key``, current and previous at ``GET /relay-keys``, and they open
            SEALED_SEND frames (the previous until its overlap ends, then KEY_RETIRED).
            None: no key, and sealed sends are refused (UNKNOWN_KEY). Replaced whole on
            SIGHUP by `relay serve` (a rotated key file).
        forwarding: carry FORWARD requests to other relays (off: FORWARDING_DISABLED).
        forward_to_local: also forward to destinations on this machine or a private
            network (loopback, private, link-local addresses, ``localhost``); off, such a
            FORWARD is BAD_DESTINATION, so that clients cannot make the relay probe its
            own services. For relays tried out side by side on one machine.
    """

    def __init__(
        self,
        store: RelayStore,
        limits: RelayLimits | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8470,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        log_addresses: bool = False,
        trusted_proxies: frozenset[str] = frozenset(),
        tls: ssl.SSLContext | None = None,
        metrics_listen: tuple[str, int] | None = None,
        metrics_optional: bool = False,
        forward_key: RelayKeyRing | RelayKeyPair | None = None,
        forwarding: bool = True,
        forward_to_local: bool = False,
    ) -> None:
        self.store = store
        self.metrics_optional = metrics_optional
        self.limits = limits if limits is not None else store.limits
        self.metrics: RelayMetrics = store.metrics
        self.host = host
        self._port = port
        self.clock = clock
        self.monotonic = monotonic
        self.log_addresses = log_addresses
        self.trusted_proxies = trusted_proxies
        self.tls = tls
        self._book = AddressBook(self.limits, monotonic())
        # The pace that connections with frames waiting share (`_handle`).
        self._backlogged = SharedPace(self.limits.backlogged_frames_per_second,
                                      self.limits.backlogged_frame_burst, monotonic())
        # Under TLS a socket is first seen when its TLS handshake ends (which websockets
        # bounds by the same timeout), so a reservation never opened lapses after that.
        self._cap = ConnectionCap(self.limits.max_connections, self.limits.handshake_timeout)
        self.metrics_listen = metrics_listen
        # Connections holding more than HEAVY_QUEUE, and a bound on what they hold
        # together, for the relay-wide budget (`_over_budget`).
        self._heavy: set[_Conn] = set()
        self._heavy_bound = 0
        self._metrics_listener: MetricsListener | None = None
        # A list per mailbox, not a set: almost always one subscriber, and lists are smaller.
        self._subscribers: dict[bytes, list[_Conn]] = {}
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._draining = False
        # Set when the store's writer died: nothing can be stored any more, so the relay
        # must stop and exit non-zero for its supervisor to restart it (`relay serve`).
        self.fatal = asyncio.Event()
        store.listener = self._on_commit
        # A single key pair is a ring of one (no rotation yet).
        self.forward_key = (RelayKeyRing(forward_key) if isinstance(forward_key, RelayKeyPair)
                            else forward_key)
        self.forwarding = forwarding
        self.forward_to_local = forward_to_local
        self._forwards = 0  # forwards in flight, relay-wide
        # Each address's forward budget, the least recently used forgotten first (a
        # forgotten address starts with a full burst, as with creations).
        self._forward_budgets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.pool = ForwardPool(self.limits.forward_max_destinations,
                                self.limits.forward_timeout, self.limits.forward_idle_timeout,
                                monotonic, allow_local=forward_to_local)

    @property
    def port(self) -> int:
        """The port actually listened on."""
        return self._port

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics listener, or None when there is none."""
        return self._metrics_listener.port if self._metrics_listener is not None else None

    @property
    def url(self) -> str:
        """The ``ws://`` (or, with TLS, ``wss://``) URL clients connect to."""
        scheme = "wss" if self.tls is not None else "ws"
        return f"{scheme}://{self.host}:{self._port}{WEBSOCKET_PATH}"

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and start listening.

        Raises:
            StoreUnavailable: the database cannot be opened.
            OSError: the address (or the metrics listener's) cannot be bound.
        """
        await self.store.open()
        # A subclass per relay, so that each socket finds its relay's counters from the
        # moment websockets creates it.
        socket_class = cast(type[_Socket], type("_RelaySocket", (_Socket,), {"relay": self}))
        try:
            self._server = await serve(
                self._handle, self.host, self._port,
                process_request=self._process_request,
                compression=None,  # ciphertext does not compress; deflate costs 3.5x memory
                max_size=self.limits.max_frame_size,
                max_queue=MAX_QUEUE,
                open_timeout=self.limits.handshake_timeout,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
                server_header=None,
                ssl=self.tls,
                create_connection=socket_class,
            )
            self._port = self._server.sockets[0].getsockname()[1]
            if self.metrics_listen is not None:
                await self._start_metrics(self.metrics_listen)
        except BaseException:
            if self._server is not None:
                self._server.close()
                self._server = None
            await self.store.close()
            raise
        self._sweeper = asyncio.create_task(self._sweep_loop())
        self._watchdog = asyncio.create_task(self._watch_store())
        fields: dict[str, object] = {"url": self.url, "forwarding": self.forwarding}
        if self.forward_key is not None:
            fields["key_id"] = self.forward_key.public.key_id.hex()
            fields["key_fingerprint"] = self.forward_key.public.fingerprint
            fields["identity_fingerprint"] = self.forward_key.identity.fingerprint
        if self._metrics_listener is not None and self.metrics_listen is not None:
            fields["metrics"] = f"http://{self.metrics_listen[0]}:{self.metrics_port}/metrics"
        log.info("listening", extra={"fields": fields})

    async def _start_metrics(self, where: tuple[str, int]) -> None:
        listener = MetricsListener(self.metrics.render, self._healthy)
        try:
            await listener.start(*where)
        except OSError as exc:
            if not self.metrics_optional:
                raise
            log.warning("metrics not served", extra={"fields": {
                "listen": f"{where[0]}:{where[1]}", "reason": exc.strerror or type(exc).__name__,
                "hint": "give --metrics-listen HOST:PORT, or --no-metrics"}})
            return
        self._metrics_listener = listener

    async def stop(self) -> None:
        """Stop gracefully: refuse new work, commit and answer everything in flight, close.

        Nothing stored is lost: the store commits every operation already submitted before
        it closes, and clients that did not get their receipt simply resend.
        """
        if self._server is None:
            return
        self._draining = True
        server, self._server = self._server, None
        server.close(close_connections=False)
        if self._metrics_listener is not None:
            await self._metrics_listener.stop()
            self._metrics_listener = None
        for task in (self._sweeper, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.store.close()
        deadline = self.monotonic() + self.limits.shutdown_grace
        while any(c.flushing or c.outbox for c in self._conns) and self.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await self.pool.close()  # forwards still waiting are answered DESTINATION_UNAVAILABLE
        for conn in list(self._conns):
            self._close(conn, CLOSE_GOING_AWAY, "relay shutting down")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), self.limits.shutdown_grace)
        for task in list(self._tasks):
            task.cancel()
        log.info("stopped", extra={"fields": {"url": self.url}})

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_store(self) -> None:
        """Wait for the store's writer to die; then log it once and report fatal."""
        await self.store.failed.wait()
        # Error level: a dead writer is a bug. The type only: error text may carry data.
        log.error("store failed", extra={"fields": {
            "error": type(self.store.failure).__name__}})
        self.fatal.set()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.limits.sweep_interval)
            try:
                result = await self.store.sweep(self.clock())
            except StoreUnavailable:
                log.warning("sweep failed")
                continue
            if result.envelopes or result.mailboxes:
                log.info("swept", extra={"fields": {"envelopes": result.envelopes,
                                                    "mailboxes": result.mailboxes}})

    # --- HTTP and connections ----------------------------------------------------------

    async def _process_request(self, connection: ServerConnection,
                               request: Request) -> Response | None:
        path = request.path.partition("?")[0]
        if path == "/healthz":
            ok = await self._healthy()
            status = http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE
            return connection.respond(status, "ok\n" if ok else "unavailable\n")
        if path in (RELAY_KEY_PATH, RELAY_KEYS_PATH, RELAY_KEY_STATEMENT_PATH):
            if self.forward_key is None:
                return connection.respond(http.HTTPStatus.NOT_FOUND, "no relay key\n")
            # /relay-key: the current key alone (what clients seal to); /relay-keys: one
            # per line, current first, then the previous while its overlap lasts.
            if path == RELAY_KEY_STATEMENT_PATH:  # signed now: one Ed25519 signature
                statement = self.forward_key.statement(self.clock())
                return connection.respond(http.HTTPStatus.OK, statement.to_text() + "\n")
            keys = self.forward_key.published(self.clock())
            if path == RELAY_KEY_PATH:
                keys = keys[:1]
            return connection.respond(http.HTTPStatus.OK,
                                      "".join(key.to_text() + "\n" for key in keys))
        if path != WEBSOCKET_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        if self._draining:
            self.metrics.connections_refused.inc(label_value="shutting_down")
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        sock = _as_socket(connection)
        if sock.key is None:  # from a trusted proxy: the request names the client
            key = budget_key(self._address(connection))
            if not self._book.may_connect(key, self.monotonic()):
                self.metrics.connections_refused.inc(label_value="per_address_limit")
                return connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS,
                                          "too many connections from your address\n")
            self._book.connected(key)
            sock.key = key
        return None

    async def _healthy(self) -> bool:
        return not self._draining and not self.fatal.is_set() and await self.store.healthy()

    def _address(self, connection: ServerConnection) -> str:
        forwarded = None
        if self.trusted_proxies and connection.request is not None:
            forwarded = connection.request.headers.get("X-Forwarded-For")
        return client_address(_peer(connection), forwarded, self.trusted_proxies)

    async def _handle(self, ws: ServerConnection) -> None:
        address = self._address(ws)
        # The socket holds the address's connection slot from accept to close (`_Socket`).
        sock = _as_socket(ws)
        # The handshake's headers are read no more (the address above was the last use):
        # they were about 3 KiB of each idle connection's 18 (tracemalloc, 1,000 vs
        # 2,000 subscribed connections). The request and response stay, headerless:
        # websockets reads their presence as "handshake done".
        if ws.request is not None:
            ws.request.headers = _NO_HEADERS
        if ws.response is not None:
            ws.response.headers = _NO_HEADERS
        key = sock.key or budget_key(address)
        conn = _Conn(ws, key, ConnectionGuard(self.limits, self.monotonic()))
        self._conns.add(conn)
        self.metrics.connections.value += 1
        self.metrics.connections_total.inc()
        if self.log_addresses:
            log.info("connected", extra={"fields": {"address": address}})
        try:
            # After a close is started the loop keeps reading (and ignoring) what the peer
            # had already sent, so that its close frame is read and the handshake ends;
            # except from a peer closed for abuse, which is read no further (`_close`).
            async for message in ws:
                if conn.closing:
                    if _deaf(conn):
                        await ws.wait_closed()
                        break
                    continue
                if isinstance(message, str):
                    self._close(conn, CLOSE_UNSUPPORTED_DATA, "binary frames only")
                    continue
                cost = frame_cost(message)
                self._on_frame(conn, message, cost)
                # websockets hands over every frame of a read (up to 256 KiB of tiny
                # frames) without yielding: a flooder would hold the loop for all of them
                # while handshakes and other clients wait. One frame per turn makes every
                # connection wait for one frame of each other (an honest SEND went from
                # p50 100 ms to under 1 ms beside 16 flooders), and costs no measurable
                # throughput (bench/relay.py, 10 connections, window 8).
                await asyncio.sleep(0)
                if sock.backlogged and not conn.closing:
                    # More frames wait: this connection takes its turn at the pace shared
                    # by all such connections, so that together they cannot saturate the
                    # loop (`RelayLimits.backlogged_frames_per_second`).
                    delay = self._backlogged.wait(self.monotonic(), cost)
                    if delay > 0:
                        await asyncio.sleep(delay)
        except ConnectionClosed as closed:
            if closed.sent is not None and closed.sent.code == CLOSE_MESSAGE_TOO_BIG:
                self._book.penalize(conn.address, self.monotonic())  # websockets closed it
        finally:
            self._forget(conn)
            if self.log_addresses:
                log.info("disconnected", extra={"fields": {"address": address}})

    def _forget(self, conn: _Conn) -> None:
        conn.closing = True
        self._heavy.discard(conn)
        if conn in self._conns:
            self._conns.discard(conn)
            self.metrics.connections.value -= 1
        for mailbox_id in list(conn.subs or ()):
            self._unsubscribe(conn, mailbox_id)

    def _close(self, conn: _Conn, code: int, reason: str, *, discard: bool = False) -> None:
        """Close after the answers already queued are sent (or at once if `discard`)."""
        if conn.closing:
            return
        conn.closing = True
        conn.close_with = (code, reason)
        self.metrics.connections_closed.inc(label_value=_CLOSE_LABELS.get(reason, "other"))
        if _deaf(conn):
            # Closed for abuse: its address waits before it may connect again.
            self._book.penalize(conn.address, self.monotonic())
            transport = conn.ws.transport
            if transport is not None:
                # A flooder keeps sending after it is told to stop: read none of it (the
                # connection is failed once the outbox is out, `_fail_connection`), and
                # drop it if its outbox is not out in time either.
                _as_socket(conn.ws).stop_reading()
                asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, _abort_transport,
                                                      transport)
        if discard:
            conn.outbox.clear()
            conn.stored.clear()
        self._kick(conn)

    # --- outbound ----------------------------------------------------------------------

    def _send(self, conn: _Conn, frame: ResponseFrame | bytes) -> None:
        if conn.closing:
            return
        data = frame if isinstance(frame, bytes) else encode(frame)
        conn.outbox.append(data)
        conn.outbox_bytes += len(data)
        queued = self._queued(conn)
        if queued > self.limits.max_outbox_bytes:
            self._abort(conn, "not reading fast enough")
            return
        if queued > HEAVY_QUEUE and self._over_budget(conn, queued, len(data)):
            return
        self._kick(conn)

    def _over_budget(self, conn: _Conn, queued: int, added: int) -> bool:
        """Keep the bytes queued for all connections within `max_queued_bytes`.

        Only connections holding more than `HEAVY_QUEUE` are summed (an honest reader
        rarely does). The sum is taken again only when what was queued for them since the
        last sum could have crossed the budget, so that a send does not cost a pass over
        every heavy connection. Over the budget, the connection holding the most is
        aborted.

        Returns:
            Whether `conn` itself was aborted.
        """
        if conn in self._heavy:
            self._heavy_bound += added
        else:  # newly heavy: all it holds joins the bound
            self._heavy.add(conn)
            self._heavy_bound += queued
        if self._heavy_bound <= self.limits.max_queued_bytes:
            return False
        sizes = {c: self._queued(c) for c in self._heavy if not c.closing}
        self._heavy = {c for c, size in sizes.items() if size > HEAVY_QUEUE}
        self._heavy_bound = sum(sizes.values())
        if self._heavy_bound <= self.limits.max_queued_bytes:
            return False
        worst = max(sizes, key=sizes.__getitem__)
        self._heavy.discard(worst)
        self._heavy_bound -= sizes[worst]
        self._abort(worst, "not reading fast enough")
        return worst is conn

    @staticmethod
    def _queued(conn: _Conn) -> int:
        """Bytes held for a connection: its outbox (the batch being sent included) and what
        the transport buffers below websockets."""
        transport = conn.ws.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return conn.outbox_bytes + buffered

    def _abort(self, conn: _Conn, reason: str) -> None:
        """Drop a connection at once, without a closing handshake.

        For a peer that does not read: a close frame would queue behind what it does not
        read, and `_flush` may be blocked in ``ws.send`` on it. Aborting the transport
        frees its buffers and makes that send raise, so the flush ends and the handler
        forgets the connection (review 2026-12 §2f: 16 such readers held 135 MiB).
        """
        if not conn.closing:
            self.metrics.connections_closed.inc(label_value=_CLOSE_LABELS.get(reason, "other"))
        conn.closing = True
        conn.outbox.clear()
        conn.stored.clear()
        if conn.ws.transport is not None:
            conn.ws.transport.abort()

    def _kick(self, conn: _Conn) -> None:
        if not conn.flushing:
            conn.flushing = True
            asyncio.get_running_loop().call_soon(self._flush_soon, conn)

    def _flush_soon(self, conn: _Conn) -> None:
        """Send the outbox on the next turn of the loop, with no task when it can.

        On the next turn, so that every answer and push of one group commit (their
        callbacks run in the same turn) leaves in one socket write. When the socket is
        open and takes data (not paused by flow control) the outbox is framed and
        written at once; otherwise a task sends it and waits for the transport to drain
        (`_flush`), as it also does to close.
        """
        ws = conn.ws
        transport = ws.transport
        if (conn.close_with is not None or ws.paused or transport is None
                or transport.is_closing() or ws.protocol.state is not State.OPEN):
            self._spawn(self._flush(conn))
            return
        if conn.stored:
            for data in conn.proto.take_stored():
                conn.outbox.append(data)
                conn.outbox_bytes += len(data)
        batch, conn.outbox = conn.outbox, []
        protocol = ws.protocol
        for data in batch:
            protocol.send_binary(data)
            conn.outbox_bytes -= len(data)
        ws.send_data()
        conn.flushing = False

    async def _flush(self, conn: _Conn) -> None:
        try:
            while conn.outbox or conn.stored:
                if conn.stored:
                    for data in conn.proto.take_stored():
                        conn.outbox.append(data)
                        conn.outbox_bytes += len(data)
                batch, conn.outbox = conn.outbox, []
                # One write context for the whole batch, not one `ws.send` each: the
                # frames are framed at once and leave in one socket write (`send_data`),
                # then the flush waits once for the transport to drain.
                ws = conn.ws
                async with ws.send_context():
                    for data in batch:
                        ws.protocol.send_binary(data)
                        conn.outbox_bytes -= len(data)
            if conn.close_with is not None:
                if _deaf(conn):
                    _fail_connection(conn.ws, *conn.close_with)
                else:
                    await conn.ws.close(*conn.close_with)
        except ConnectionClosed:
            conn.outbox.clear()
        finally:
            conn.flushing = False

    def _error(self, conn: _Conn, request_id: int, code: ErrorCode) -> None:
        """Refuse the outstanding request `request_id` with `code`."""
        self.metrics.errors.inc(label_value=str(int(code)))
        self._send(conn, conn.proto.error(request_id, code))

    def _fail(self, conn: _Conn, request_id: int, exc: BaseException) -> None:
        if isinstance(exc, Refused):
            self._error(conn, request_id, exc.code)
        elif isinstance(exc, StoreUnavailable):
            self._error(conn, request_id, ErrorCode.UNAVAILABLE)
        else:
            log.error("request failed", exc_info=exc)
            self._error(conn, request_id, ErrorCode.INTERNAL)

    # --- requests ----------------------------------------------------------------------

    def _on_frame(self, conn: _Conn, data: bytes, cost: float = 1.0) -> None:
        self.metrics.frames.inc()
        verdict = conn.guard.on_frame(self.monotonic(), cost)
        if verdict is not Verdict.ACCEPT:
            if verdict is Verdict.CLOSE:
                self._close(conn, CLOSE_POLICY_VIOLATION, "rate limit exceeded")
            else:
                self.metrics.errors.inc(label_value=str(int(ErrorCode.RATE_LIMITED)))
                self._send(conn, conn.proto.refuse_unread(data, ErrorCode.RATE_LIMITED))
            return
        frame = conn.proto.receive(data)
        if isinstance(frame, relayconn.Malformed):
            self.metrics.errors.inc(label_value=str(int(frame.code)))
            self._send(conn, frame.reply)
            if conn.guard.on_malformed() is Verdict.CLOSE:
                self._close(conn, CLOSE_POLICY_VIOLATION, "too many malformed frames")
            return
        if self._draining:
            self._error(conn, frame.request_id, ErrorCode.UNAVAILABLE)
            return
        self._on_request(conn, frame)

    def _on_request(self, conn: _Conn, frame: RequestFrame) -> None:
        """Start the work a decoded request asks for; its answer comes from a callback."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        match frame:
            case Send(rid, mid, token, envelope):
                refusal = envelope_refusal(mid, envelope)
                if refusal is not None:
                    self._error(conn, rid, refusal)
                    return
                self.store.submit(DepositOp(mid, token, envelope, now,
                                            _Receipt(self, conn, rid)))
            case SendBatch(rid, mid, token, envelopes):
                self._send_batch(conn, rid, mid, token, envelopes, now)
            case Ack(rid, mid, token, seqs):
                sub = conn.subs.get(mid) if conn.subs else None
                if sub is not None and sub.on_ack(seqs):
                    self._pump(conn, mid, sub)
                count_future: asyncio.Future[int] = loop.create_future()
                count_future.add_done_callback(lambda f: self._on_acked(conn, rid, f))
                self.store.submit(AckOp(mid, token, seqs, now, count_future))
            case Create(rid, mid, send_hash, receive_hash):
                if not self._book.may_create(conn.address, self.monotonic()):
                    self._error(conn, rid, ErrorCode.RATE_LIMITED)
                    if conn.guard.on_refused() is Verdict.CLOSE:  # asks on regardless
                        self._close(conn, CLOSE_POLICY_VIOLATION, "rate limit exceeded")
                    return
                done: asyncio.Future[None] = loop.create_future()
                done.add_done_callback(lambda f: self._on_created(conn, rid, f))
                self.store.submit(CreateOp(mid, send_hash, receive_hash, now, done))
            case Subscribe(rid, mid, token):
                subs = conn.subs if conn.subs is not None else {}
                if mid not in subs and len(subs) >= self.limits.max_subscriptions_per_connection:
                    self._error(conn, rid, ErrorCode.TOO_MANY_SUBSCRIPTIONS)
                    return
                pending: asyncio.Future[int] = loop.create_future()
                pending.add_done_callback(lambda f: self._on_subscribed(conn, rid, mid, f))
                self.store.submit(SubscribeOp(mid, token, now, pending))
            case Fetch(rid, mid, token, after, limit):
                self._spawn(self._fetch(conn, rid, mid, token, after, limit))
            case Delete(rid, mid, token):
                gone: asyncio.Future[None] = loop.create_future()
                gone.add_done_callback(lambda f: self._on_deleted(conn, rid, mid, f))
                self.store.submit(DeleteOp(mid, token, now, gone))
            case Ping(rid):
                self._send(conn, conn.proto.reply(Pong(rid)))
            case SealedSend(rid, key_id, sealed):
                self._sealed_send(conn, rid, key_id, sealed)
            case Forward(rid, key_id, destination, sealed):
                self._forward(conn, rid, key_id, destination, sealed)

    # --- private routing (docs/relay.md "Private routing") -------------------------------

    def _sealed_send(self, conn: _Conn, rid: int, key_id: bytes, sealed: bytes) -> None:
        """A deposit sealed to this relay's key (from a forwarding relay, or anyone)."""
        if self.forward_key is None:
            self._error(conn, rid, ErrorCode.UNKNOWN_KEY)
            return
        try:
            inner = open_send(self.forward_key.opening(key_id, self.clock()), key_id, sealed)
        except SealError as exc:
            # Without the reply key nothing can be sealed: a plain refusal.
            self._error(conn, rid, exc.code)
            return
        self.metrics.sealed_sends.inc()
        refusal = envelope_refusal(inner.mailbox_id, inner.envelope)
        if refusal is not None:
            self._sealed_answer(conn, rid, inner.reply_key, ForwardOutcome(0, refusal))
            return
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        future.add_done_callback(
            lambda f: self._on_sealed_stored(conn, rid, inner.reply_key, f))
        self.store.submit(DepositOp(inner.mailbox_id, inner.send_token, inner.envelope,
                                    self.clock(), future))

    def _on_sealed_stored(self, conn: _Conn, rid: int, reply_key: bytes,
                          future: asyncio.Future[int]) -> None:
        exc = future.exception()
        if exc is None:
            self.metrics.stored.inc()
            outcome = ForwardOutcome(future.result(), 0)
        elif isinstance(exc, Refused):
            outcome = ForwardOutcome(0, exc.code)
        elif isinstance(exc, StoreUnavailable):
            outcome = ForwardOutcome(0, ErrorCode.UNAVAILABLE)
        else:
            log.error("request failed", exc_info=exc)
            outcome = ForwardOutcome(0, ErrorCode.INTERNAL)
        self._sealed_answer(conn, rid, reply_key, outcome)

    def _sealed_answer(self, conn: _Conn, rid: int, reply_key: bytes,
                       outcome: ForwardOutcome) -> None:
        if not outcome.stored:
            self.metrics.errors.inc(label_value=str(outcome.code))
        sealed = seal_reply(reply_key, outcome, os.urandom(REPLY_NONCE_SIZE))
        self._send(conn, conn.proto.reply(SealedResult(rid, sealed)))

    def _forward_refusal(self, conn: _Conn, key_id: bytes, destination: str) -> ErrorCode | None:
        """Why this relay will not carry a forward now, or None."""
        if not self.forwarding:
            return ErrorCode.FORWARDING_DISABLED
        try:
            check_relay_url(destination, "destination")
        except BackchannelError:
            return ErrorCode.BAD_DESTINATION
        if not self.forward_to_local and _local_destination(destination):
            return ErrorCode.BAD_DESTINATION
        if self.forward_key is not None and key_id in self.forward_key.key_ids():
            # Sealed to this relay: forwarding it would send it back here. (The sealed
            # inside of any forward is a deposit, never a forward: no loop either way.)
            return ErrorCode.BAD_DESTINATION
        if (conn.forwards >= self.limits.forward_max_in_flight_per_connection
                or self._forwards >= self.limits.forward_max_in_flight):
            return ErrorCode.TOO_MANY_FORWARDS
        now = self.monotonic()
        budget = self._forward_budgets.pop(conn.address, None)
        if budget is None:
            budget = TokenBucket(self.limits.forwards_per_second_per_address,
                                 self.limits.forward_burst_per_address, now)
            if len(self._forward_budgets) >= self.limits.max_tracked_addresses:
                self._forward_budgets.popitem(last=False)
        self._forward_budgets[conn.address] = budget
        if not budget.take(now):
            return ErrorCode.RATE_LIMITED
        return None

    def _forward(self, conn: _Conn, rid: int, key_id: bytes, destination: str,
                 sealed: bytes) -> None:
        refusal = self._forward_refusal(conn, key_id, destination)
        if refusal is not None:
            self._error(conn, rid, refusal)
            if refusal is ErrorCode.RATE_LIMITED and conn.guard.on_refused() is Verdict.CLOSE:
                self._close(conn, CLOSE_POLICY_VIOLATION, "rate limit exceeded")
            return
        conn.forwards += 1
        self._forwards += 1
        self._spawn(self._carry(conn, rid, destination, SealedSend(0, key_id, sealed)))

    async def _carry(self, conn: _Conn, rid: int, destination: str, frame: SealedSend) -> None:
        """Carry one forward to its destination and pass the answer back unchanged."""
        try:
            answer = await self.pool.forward(destination, frame)
        except DestinationUnavailable:
            self.metrics.forwards.inc(label_value="unavailable")
            self._error(conn, rid, ErrorCode.DESTINATION_UNAVAILABLE)
            return
        except PoolFull:
            self.metrics.forwards.inc(label_value="unavailable")
            self._error(conn, rid, ErrorCode.TOO_MANY_FORWARDS)
            return
        except LocalDestination:
            self._error(conn, rid, ErrorCode.BAD_DESTINATION)
            return
        finally:
            conn.forwards -= 1
            self._forwards -= 1
        self.metrics.forwards.inc(
            label_value="answered" if isinstance(answer, SealedResult) else "refused")
        if isinstance(answer, SealedResult):
            self._send(conn, conn.proto.reply(SealedResult(rid, answer.sealed)))
        else:
            # The destination's plain refusal (it could not open the seal, or limits us):
            # its code passes on, its reason (free text from another party) does not.
            self.metrics.errors.inc(label_value=str(answer.code))
            self._send(conn, conn.proto.reply(
                Error(rid, answer.code, "the destination relay refused the forward")))

    def connection_peers(self) -> list[tuple[str, int]]:
        """The (address, port) of each open client connection, as the relay sees it: what
        an operator could log about its peers (tests use it to show who connected)."""
        peers: list[tuple[str, int]] = []
        for conn in self._conns:
            remote = conn.ws.remote_address
            if isinstance(remote, tuple) and len(remote) >= 2:
                peers.append((str(remote[0]), int(remote[1])))
        return peers

    def _send_batch(self, conn: _Conn, rid: int, mid: bytes, token: bytes,
                    envelopes: tuple[bytes, ...], now: float) -> None:
        """Deposit each envelope of a SEND_BATCH; one `BatchStored` answers them all, in
        order, once every deposit has committed or been refused."""
        batch = _BatchReceipt(self, conn, rid, len(envelopes))
        submit = self.store.submit
        for index, envelope in enumerate(envelopes):
            refusal = envelope_refusal(mid, envelope)
            if refusal is not None:
                batch.results[index] = BatchResult(refusal, 0)
                continue
            batch.waiting += 1
            submit(DepositOp(mid, token, envelope, now, _BatchSlot(batch, index)))
        if batch.waiting == 0:
            self._answer_batch(conn, rid, batch.results)

    def _answer_batch(self, conn: _Conn, rid: int, results: list[BatchResult]) -> None:
        stored = 0
        for result in results:
            if result.stored:
                stored += 1
            else:
                self.metrics.errors.inc(label_value=str(result.code))
        if stored:
            self.metrics.stored.inc(stored)
        self._send(conn, conn.proto.reply(BatchStored(rid, tuple(results))))

    @staticmethod
    def _refusal_code(exc: BaseException) -> int:
        if isinstance(exc, Refused):
            return int(exc.code)
        if isinstance(exc, StoreUnavailable):
            return int(ErrorCode.UNAVAILABLE)
        log.error("request failed", exc_info=exc)
        return int(ErrorCode.INTERNAL)

    def _on_stored(self, conn: _Conn, rid: int, seq: int) -> None:
        self.metrics.stored.inc()
        if conn.closing:
            return
        conn.proto.stored(rid, seq)
        self._kick(conn)

    def _on_acked(self, conn: _Conn, rid: int, future: asyncio.Future[int]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.acked.inc(future.result())
        self._send(conn, conn.proto.reply(Acked(rid, future.result())))

    def _on_created(self, conn: _Conn, rid: int, future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.mailboxes_created.inc()
        self._send(conn, conn.proto.reply(Created(rid)))

    def _on_deleted(self, conn: _Conn, rid: int, mid: bytes,
                    future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.mailboxes_deleted.inc()
        self._unsubscribe(conn, mid)
        self._send(conn, conn.proto.reply(Deleted(rid)))

    def _on_subscribed(self, conn: _Conn, rid: int, mid: bytes,
                       future: asyncio.Future[int]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        if conn.closing:
            return
        if conn.subs is None:
            conn.subs = {}
        if mid not in conn.subs:
            if len(conn.subs) >= self.limits.max_subscriptions_per_connection:
                self._error(conn, rid, ErrorCode.TOO_MANY_SUBSCRIPTIONS)
                return
            conn.subs[mid] = Subscription(self.limits.delivery_window)
            self._subscribers.setdefault(mid, []).append(conn)
            self.metrics.subscriptions.value += 1
        pending = min(future.result(), MAX_PENDING)  # the wire's u32 caps the count
        self._send(conn, conn.proto.reply(Subscribed(rid, pending)))
        self._pump(conn, mid, conn.subs[mid])

    def _unsubscribe(self, conn: _Conn, mid: bytes) -> None:
        if conn.subs is None or conn.subs.pop(mid, None) is None:
            return
        self.metrics.subscriptions.value -= 1
        conns = self._subscribers.get(mid)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._subscribers[mid]

    async def _fetch(self, conn: _Conn, rid: int, mid: bytes, token: bytes, after: int,
                     limit: int) -> None:
        try:
            items, more = await self.store.fetch(mid, token, after, limit, MAX_BATCH_BYTES,
                                                 self.clock())
        except (Refused, StoreUnavailable) as exc:
            self._fail(conn, rid, exc)
            return
        self.metrics.delivered.inc(len(items))
        self._send(conn, conn.proto.reply(Fetched(rid, items, more)))

    # --- delivery ----------------------------------------------------------------------

    def _on_commit(self, mailbox_id: bytes, items: tuple[Delivery, ...] | None) -> None:
        if not mailbox_id:  # the store may have missed wake-ups: everything is stale
            for mid in list(self._subscribers):
                self._on_commit(mid, None)
            return
        conns = self._subscribers.get(mailbox_id)
        if not conns:
            return
        for conn in tuple(conns):
            sub = conn.subs.get(mailbox_id) if conn.subs else None
            if sub is None:
                continue
            if items is None:
                sub.mark_stale()
            else:
                pushed = set(sub.offer([d.seq for d in items]))
                if pushed:
                    self._push(conn, mailbox_id, [d for d in items if d.seq in pushed])
            if sub.needs_backfill and sub.room:
                self._pump(conn, mailbox_id, sub)

    def _push(self, conn: _Conn, mailbox_id: bytes, items: list[Delivery]) -> None:
        if conn.subs is None or mailbox_id not in conn.subs:
            # A backfill read that finished after the mailbox was deleted: the client
            # had its Deleted and would take a push now as a protocol error.
            return
        self.metrics.delivered.inc(len(items))
        for data in conn.proto.deliver(mailbox_id, items):
            self._send(conn, data)

    def _pump(self, conn: _Conn, mailbox_id: bytes, sub: Subscription) -> None:
        if not sub.pumping and not conn.closing:
            sub.pumping = True
            self._spawn(self._backfill(conn, mailbox_id, sub))

    async def _backfill(self, conn: _Conn, mailbox_id: bytes, sub: Subscription) -> None:
        """Read what a subscription has not seen from the store and push it, in order."""
        try:
            while sub.needs_backfill and sub.room and not conn.closing:
                if conn.subs is None or conn.subs.get(mailbox_id) is not sub:
                    return
                mark = sub.begin_backfill()
                try:
                    items, more = await self.store.fetch(
                        mailbox_id, None, sub.cursor, min(MAX_BATCH_ITEMS, sub.room),
                        MAX_BATCH_BYTES, self.clock())
                except StoreUnavailable:
                    return
                chosen = set(sub.accept_backfill([d.seq for d in items], more, mark))
                if chosen:
                    self._push(conn, mailbox_id, [d for d in items if d.seq in chosen])
        finally:
            sub.pumping = False


# Envelopes of a SEND_BATCH that count as one frame against the frame rates: a deposit
# costs the relay a fraction of what a frame does (decoding, answering, the loop's turn),
# so a batch of up to 8 costs one frame and a full batch of 64 costs 8. A flooder gains
# nothing (it still pays one frame per 8 deposits); an honest client flushing a backlog
# moves 8 envelopes per frame of its budget.
ENVELOPES_PER_FRAME: Final = 8
_BATCH_COUNT_AT: Final = 2 + 4 + 16 + 32  # version, kind, request id, mailbox, token
_UNSET: Final = BatchResult(int(ErrorCode.INTERNAL), 0)


def frame_cost(data: bytes) -> float:
    """What a frame counts against the frame rates, read before it is decoded: 1, or for
    a SEND_BATCH of n envelopes ceil(n / `ENVELOPES_PER_FRAME`) (n read as sent, capped
    at `MAX_SEND_BATCH`; a frame that does not decode is refused all the same)."""
    if len(data) < _BATCH_COUNT_AT + 2 or data[1] != FrameKind.SEND_BATCH:
        return 1.0
    count = min(int.from_bytes(data[_BATCH_COUNT_AT:_BATCH_COUNT_AT + 2], "big"),
                MAX_SEND_BATCH)
    return float(max(1, -(-count // ENVELOPES_PER_FRAME)))


def _local_destination(url: str) -> bool:
    """Whether `url` names this machine or a private network by its host: ``localhost``
    or a local IP literal (`outbound.is_local_address`). A host name that resolves to
    such an address is refused by the pool, which resolves it before connecting."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost") or is_local_address(host)


def _fail_connection(ws: ServerConnection, code: int, reason: str) -> None:
    """Send a close frame and close the TCP connection without waiting for the peer's
    answer ("fail the WebSocket connection", RFC 6455 §7.1.7): for a peer closed for abuse,
    whose answer would sit behind everything it kept sending, unread (`_close`)."""
    transport = ws.transport
    if transport is None or transport.is_closing():
        return
    ws.protocol.fail(code, reason)
    for data in ws.protocol.data_to_send():
        if data:  # b"" stands for the end of the stream, which close() sends
            transport.write(data)
    transport.close()


def _abort_transport(transport: asyncio.Transport) -> None:
    # Also after close(): a transport that is closing may still wait on a peer that does
    # not read; abort() on one already gone does nothing.
    transport.abort()


def _deaf(conn: _Conn) -> bool:
    """Whether the connection is being closed for abuse (and is read no further)."""
    return conn.close_with is not None and conn.close_with[0] == CLOSE_POLICY_VIOLATION


def _as_socket(connection: ServerConnection) -> _Socket:
    # Every connection of a relay is made by its `_Socket` subclass (`RelayServer.start`).
    return cast(_Socket, connection)


def _transport_peer(transport: asyncio.BaseTransport) -> str:
    remote = transport.get_extra_info("peername")
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return "unknown"


def _peer(connection: ServerConnection) -> str:
    remote = connection.remote_address
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return "unknown"


"""The relay's network adapter: WebSocket frames in, store operations and pushes out.

A thin layer (design §4) over the pure mailbox logic and a `RelayStore`: it decodes each
binary message with `relayframes`, applies the limits, submits writes for group commit,
and answers when they commit. Answers and pushes for one connection go through its outbox,
drained by a short-lived task, so that all the receipts of one group commit leave as one
`Stored` frame. HTTP ``GET /healthz`` and ``GET /metrics`` are served from the handshake
hook; every other path but ``/`` is 404.

Logs carry no tokens, no envelope bytes, and no client addresses unless `log_addresses`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Final

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from backchannel.protocol.relayframes import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    Ack,
    Acked,
    Create,
    Created,
    Delete,
    Deleted,
    Deliver,
    Delivery,
    Error,
    ErrorCode,
    Fetch,
    Fetched,
    FrameError,
    Ping,
    Pong,
    Send,
    Stored,
    StoredItem,
    Subscribe,
    Subscribed,
    decode_request,
    encode,
)
from backchannel.protocol.relayframes import (
    Response as ResponseFrame,
)
from backchannel.relay.addresses import client_address
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import REASONS, Subscription, envelope_refusal
from backchannel.relay.metrics import CONTENT_TYPE, RelayMetrics
from backchannel.relay.ratelimit import AddressBook, ConnectionGuard, Verdict
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


class _Conn:
    """State of one client connection."""

    __slots__ = ("address", "close_with", "closing", "flushing", "guard", "outbox",
                 "outbox_bytes", "stored", "subs", "ws")

    def __init__(self, ws: ServerConnection, address: str, guard: ConnectionGuard) -> None:
        self.ws = ws
        self.address = address
        self.guard = guard
        self.subs: dict[bytes, Subscription] | None = None
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        self.stored: list[StoredItem] = []
        self.flushing = False
        self.closing = False
        self.close_with: tuple[int, str] | None = None


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
    ) -> None:
        self.store = store
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

    @property
    def port(self) -> int:
        """The port actually listened on."""
        return self._port

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
            OSError: the address cannot be bound.
        """
        await self.store.open()
        self._server = await serve(
            self._handle, self.host, self._port,
            process_request=self._process_request,
            compression=None,  # ciphertext does not compress; deflate costs 3.5x memory
            max_size=self.limits.max_frame_size,
            max_queue=MAX_QUEUE,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            server_header=None,
            ssl=self.tls,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep_loop())
        self._watchdog = asyncio.create_task(self._watch_store())
        log.info("listening", extra={"fields": {"url": self.url}})

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
        for task in (self._sweeper, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.store.close()
        deadline = self.monotonic() + self.limits.shutdown_grace
        while any(c.flushing or c.outbox for c in self._conns) and self.monotonic() < deadline:
            await asyncio.sleep(0.01)
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
            ok = not self._draining and not self.fatal.is_set() and await self.store.healthy()
            status = http.HTTPStatus.OK if ok else http.HTTPStatus.SERVICE_UNAVAILABLE
            return connection.respond(status, "ok\n" if ok else "unavailable\n")
        if path == "/metrics":
            response = connection.respond(http.HTTPStatus.OK, "")
            body = self.metrics.render()
            response.body = body
            response.headers = Headers(
                [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                 ("Connection", "close")])
            return response
        if path != WEBSOCKET_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        if self._draining:
            self.metrics.connections_refused.inc(label_value="shutting_down")
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if not self._book.may_connect(self._address(connection)):
            self.metrics.connections_refused.inc(label_value="per_address_limit")
            return connection.respond(http.HTTPStatus.TOO_MANY_REQUESTS,
                                      "too many connections from your address\n")
        return None

    def _address(self, connection: ServerConnection) -> str:
        forwarded = None
        if self.trusted_proxies and connection.request is not None:
            forwarded = connection.request.headers.get("X-Forwarded-For")
        return client_address(_peer(connection), forwarded, self.trusted_proxies)

    async def _handle(self, ws: ServerConnection) -> None:
        address = self._address(ws)
        conn = _Conn(ws, address, ConnectionGuard(self.limits, self.monotonic()))
        self._book.connected(address)
        self._conns.add(conn)
        self.metrics.connections.value += 1
        self.metrics.connections_total.inc()
        if self.log_addresses:
            log.info("connected", extra={"fields": {"address": address}})
        try:
            # After a close is started the loop keeps reading (and ignoring) what the peer
            # had already sent, so that its close frame is read and the handshake ends.
            async for message in ws:
                if conn.closing:
                    continue
                if isinstance(message, str):
                    self._close(conn, CLOSE_UNSUPPORTED_DATA, "binary frames only")
                    continue
                self._on_frame(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(conn)

    def _forget(self, conn: _Conn) -> None:
        conn.closing = True
        if conn in self._conns:
            self._conns.discard(conn)
            self._book.disconnected(conn.address)
            self.metrics.connections.value -= 1
        for mailbox_id in list(conn.subs or ()):
            self._unsubscribe(conn, mailbox_id)
        if self.log_addresses:
            log.info("disconnected", extra={"fields": {"address": conn.address}})

    def _close(self, conn: _Conn, code: int, reason: str, *, discard: bool = False) -> None:
        """Close after the answers already queued are sent (or at once if `discard`)."""
        if conn.closing:
            return
        conn.closing = True
        conn.close_with = (code, reason)
        if discard:
            conn.outbox.clear()
            conn.stored.clear()
        self._kick(conn)

    # --- outbound ----------------------------------------------------------------------

    def _send(self, conn: _Conn, frame: ResponseFrame) -> None:
        if conn.closing:
            return
        data = encode(frame)
        conn.outbox.append(data)
        conn.outbox_bytes += len(data)
        if conn.outbox_bytes > self.limits.max_outbox_bytes:
            self._close(conn, CLOSE_POLICY_VIOLATION, "not reading fast enough", discard=True)
            return
        self._kick(conn)

    def _kick(self, conn: _Conn) -> None:
        if not conn.flushing:
            conn.flushing = True
            self._spawn(self._flush(conn))

    async def _flush(self, conn: _Conn) -> None:
        try:
            while conn.outbox or conn.stored:
                if conn.stored:
                    items, conn.stored = conn.stored, []
                    for i in range(0, len(items), MAX_BATCH_ITEMS):
                        data = encode(Stored(tuple(items[i : i + MAX_BATCH_ITEMS])))
                        conn.outbox.append(data)
                        conn.outbox_bytes += len(data)
                batch, conn.outbox = conn.outbox, []
                for data in batch:
                    await conn.ws.send(data)
                    conn.outbox_bytes -= len(data)
            if conn.close_with is not None:
                await conn.ws.close(*conn.close_with)
        except ConnectionClosed:
            conn.outbox.clear()
        finally:
            conn.flushing = False

    def _error(self, conn: _Conn, request_id: int, code: ErrorCode) -> None:
        self.metrics.errors.inc(label_value=str(int(code)))
        self._send(conn, Error(request_id, code, REASONS[code]))

    def _fail(self, conn: _Conn, request_id: int, exc: BaseException) -> None:
        if isinstance(exc, Refused):
            self._error(conn, request_id, exc.code)
        elif isinstance(exc, StoreUnavailable):
            self._error(conn, request_id, ErrorCode.UNAVAILABLE)
        else:
            log.error("request failed", exc_info=exc)
            self._error(conn, request_id, ErrorCode.INTERNAL)

    # --- requests ----------------------------------------------------------------------

    def _on_frame(self, conn: _Conn, data: bytes) -> None:
        self.metrics.frames.inc()
        verdict = conn.guard.on_frame(self.monotonic())
        if verdict is not Verdict.ACCEPT:
            if verdict is Verdict.CLOSE:
                self._close(conn, CLOSE_POLICY_VIOLATION, "rate limit exceeded")
            else:
                self._error(conn, _peek_request_id(data), ErrorCode.RATE_LIMITED)
            return
        try:
            frame = decode_request(data)
        except FrameError as exc:
            self._error(conn, exc.request_id or 0, exc.code)
            if conn.guard.on_malformed() is Verdict.CLOSE:
                self._close(conn, CLOSE_POLICY_VIOLATION, "too many malformed frames")
            return
        if self._draining:
            self._error(conn, frame.request_id, ErrorCode.UNAVAILABLE)
            return
        loop = asyncio.get_running_loop()
        now = self.clock()
        match frame:
            case Send(rid, mid, token, envelope):
                refusal = envelope_refusal(mid, envelope)
                if refusal is not None:
                    self._error(conn, rid, refusal)
                    return
                seq_future: asyncio.Future[int] = loop.create_future()
                seq_future.add_done_callback(lambda f: self._on_stored(conn, rid, f))
                self.store.submit(DepositOp(mid, token, envelope, now, seq_future))
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
                self._send(conn, Pong(rid))

    def _on_stored(self, conn: _Conn, rid: int, future: asyncio.Future[int]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.stored.inc()
        if conn.closing:
            return
        conn.stored.append(StoredItem(rid, future.result()))
        self._kick(conn)

    def _on_acked(self, conn: _Conn, rid: int, future: asyncio.Future[int]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.acked.inc(future.result())
        self._send(conn, Acked(rid, future.result()))

    def _on_created(self, conn: _Conn, rid: int, future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.mailboxes_created.inc()
        self._send(conn, Created(rid))

    def _on_deleted(self, conn: _Conn, rid: int, mid: bytes,
                    future: asyncio.Future[None]) -> None:
        exc = future.exception()
        if exc is not None:
            self._fail(conn, rid, exc)
            return
        self.metrics.mailboxes_deleted.inc()
        self._unsubscribe(conn, mid)
        self._send(conn, Deleted(rid))

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
        self._send(conn, Subscribed(rid, future.result()))
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
        self._send(conn, Fetched(rid, items, more))

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
        self.metrics.delivered.inc(len(items))
        batch: list[Delivery] = []
        size = 0
        for item in items:
            if batch and (len(batch) == MAX_BATCH_ITEMS
                          or size + len(item.envelope) > MAX_BATCH_BYTES):
                self._send(conn, Deliver(mailbox_id, tuple(batch)))
                batch, size = [], 0
            batch.append(item)
            size += len(item.envelope)
        if batch:
            self._send(conn, Deliver(mailbox_id, tuple(batch)))

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


def _peer(connection: ServerConnection) -> str:
    remote = connection.remote_address
    if isinstance(remote, tuple) and remote:
        return str(remote[0])
    return "unknown"


def _peek_request_id(data: bytes) -> int:
    """The request id of a frame not decoded (refused before parsing), or 0."""
    return int.from_bytes(data[2:6], "big") if len(data) >= 6 else 0

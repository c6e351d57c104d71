"""The forwarding relay's connections to destination relays (private routing).

A relay that forwards is, towards the destination, a client like any other: it speaks the
relay protocol through the sans-I/O `relayconn.ClientConnection` (request ids, reply
kinds), over a WebSocket it opens itself. It depends on `backchannel.protocol` only, never
on the client package, so the dependency direction stays relay -> protocol.

Connections are pooled per destination URL (at most `RelayLimits.forward_max_destinations`
of them; the least recently used idle one is closed to make room, and one idle for
`forward_idle_timeout` is closed when the pool is next used), and every forward waits at
most `forward_timeout`, connecting included. A destination that breaks the protocol or
does not answer in time loses its pooled connection.

Unless local destinations are allowed, the destination's host is resolved first and the
connection is made to the address that was checked (no second lookup that could answer
otherwise): a host name resolving to this machine or a private network is refused
(`LocalDestination`), as the server refuses such IP literals before it gets here. No
proxy from the environment is used, so that the address checked is the one connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from backchannel.protocol.errors import BackchannelError, RemoteProtocolError
from backchannel.protocol.relayconn import Answer, ClientConnection, Refusal
from backchannel.protocol.relayframes import (
    MAX_RESPONSE_FRAME_SIZE,
    SealedResult,
    SealedSend,
)

__all__ = ["DestinationUnavailable", "ForwardPool", "LocalDestination", "PoolFull",
           "is_local_address"]

Resolver = Callable[[str, int], Awaitable[list[str]]]

# A destination's answers are small (a sealed result or an error); a relay that sends
# more than a response frame breaks the protocol anyway.
_MAX_ANSWER: Final = MAX_RESPONSE_FRAME_SIZE
# Keepalive as the client's (`client/transport.py`): a dead pooled connection is noticed.
_PING_INTERVAL: Final = 20.0
_PING_TIMEOUT: Final = 20.0
_CLOSE_TIMEOUT: Final = 1.0


class DestinationUnavailable(BackchannelError):
    """The destination relay could not be reached, did not answer in time, or broke the
    protocol. Nothing is known of the send: the client may send it again."""


class LocalDestination(BackchannelError):
    """The destination's host resolves to this machine or a private network, and local
    destinations are not allowed."""


def is_local_address(address: str) -> bool:
    """Whether an IP address is loopback, private, link-local, unspecified, reserved or
    multicast: not a public relay (False for anything that is not an IP address)."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 zone
    except ValueError:
        return False
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified
            or ip.is_reserved or ip.is_multicast)


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                         type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class PoolFull(BackchannelError):
    """Every pooled connection is busy and the pool is at its size: try later."""


class _Outbound:
    """One pooled connection to a destination relay."""

    __slots__ = ("conn", "last_used", "pending", "reader", "ws")

    def __init__(self, ws: WebSocket, now: float) -> None:
        self.ws = ws
        self.conn = ClientConnection()
        self.pending: dict[int, asyncio.Future[SealedResult | Refusal]] = {}
        self.last_used = now
        self.reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return not self.reader.done()

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    break
                for event in self.conn.receive(message):
                    match event:
                        case Answer(rid, SealedResult() as frame):
                            self._settle(rid, frame)
                        case Refusal(rid):
                            self._settle(rid, event)
                        case _:  # we send only sealed sends: anything else is a broken relay
                            return
        except (ConnectionClosed, RemoteProtocolError):
            pass
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(DestinationUnavailable("the destination closed"))
            self.pending.clear()
            await self.ws.close()

    def _settle(self, rid: int, result: SealedResult | Refusal) -> None:
        future = self.pending.pop(rid, None)
        if future is not None and not future.done():
            future.set_result(result)

    async def request(self, frame: SealedSend) -> SealedResult | Refusal:
        rid, data = self.conn.send_request(frame)
        future: asyncio.Future[SealedResult | Refusal] = (
            asyncio.get_running_loop().create_future())
        self.pending[rid] = future
        try:
            await self.ws.send(data)
        except ConnectionClosed:
            self.pending.pop(rid, None)
            if future.done() and not future.cancelled():
                future.exception()  # the reader failed it first: taken, not left unseen
            raise DestinationUnavailable("the destination closed") from None
        return await future

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class ForwardPool:
    """Pooled connections from this relay to destination relays.

    Args:
        max_destinations: connections kept at most (one per destination URL).
        timeout: seconds a forward may take, connecting included.
        idle_timeout: a connection unused this long is closed.
        monotonic: the clock for idleness.
        allow_local: connect to destinations on this machine or a private network too.
        resolve: host, port -> IP addresses (tests give their own; default: the loop's
            getaddrinfo).
    """

    def __init__(self, max_destinations: int, timeout: float, idle_timeout: float,
                 monotonic: Callable[[], float], *, allow_local: bool = False,
                 resolve: Resolver = _resolve) -> None:
        self.allow_local = allow_local
        self._resolve = resolve
        self.max_destinations = max_destinations
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.monotonic = monotonic
        self._conns: OrderedDict[str, _Outbound] = OrderedDict()
        self._connecting: dict[str, asyncio.Lock] = {}

    @property
    def local_ports(self) -> dict[str, int]:
        """The local port of each pooled connection, by destination URL (for operators'
        diagnostics and tests: what the destination sees as this relay's address)."""
        ports: dict[str, int] = {}
        for url, out in self._conns.items():
            local = out.ws.local_address
            if isinstance(local, tuple) and len(local) >= 2:
                ports[url] = int(local[1])
        return ports

    async def forward(self, url: str, frame: SealedSend) -> SealedResult | Refusal:
        """Send `frame` to the relay at `url` and wait for its answer.

        Raises:
            DestinationUnavailable: not reached, not in time, or it broke the protocol.
            LocalDestination: its host resolves to a local address (not allowed).
            PoolFull: the pool is full of busy connections.
        """
        try:
            async with asyncio.timeout(self.timeout):
                out = await self._get(url)
                return await out.request(frame)
        except TimeoutError:
            await self._drop(url)
            raise DestinationUnavailable("the destination did not answer in time") from None
        except (OSError, InvalidHandshake, ConnectionClosed) as exc:
            # ConnectionClosed: the connection was lost while it opened (a relay killed
            # or cut mid-handshake); unanswered, the forward would wait out the client.
            raise DestinationUnavailable(f"the destination cannot be reached "
                                         f"({type(exc).__name__})") from None

    async def _get(self, url: str) -> _Outbound:
        await self._sweep()
        out = self._conns.get(url)
        if out is not None and out.alive:
            self._conns.move_to_end(url)
            out.last_used = self.monotonic()
            return out
        lock = self._connecting.setdefault(url, asyncio.Lock())
        async with lock:
            out = self._conns.get(url)
            if out is not None and out.alive:
                return out
            if out is not None:
                del self._conns[url]
            await self._make_room()
            pinned: dict[str, Any] = {}
            if not self.allow_local:
                pinned = await self._checked_address(url)
            ws = await connect(url, compression=None, max_size=_MAX_ANSWER, proxy=None,
                               open_timeout=self.timeout, ping_interval=_PING_INTERVAL,
                               ping_timeout=_PING_TIMEOUT, close_timeout=_CLOSE_TIMEOUT,
                               **pinned)
            out = _Outbound(ws, self.monotonic())
            self._conns[url] = out
            self._connecting.pop(url, None)
            return out

    async def _checked_address(self, url: str) -> dict[str, Any]:
        """The ``host``/``port`` to connect to for `url`: its first resolved address,
        after checking that none is local (TLS still names the URL's host)."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "wss" else 80)
        addresses = await self._resolve(host, port)
        if not addresses:
            raise OSError(f"{host} has no address")
        if any(is_local_address(a) for a in addresses):
            raise LocalDestination("the destination resolves to a local address")
        return {"host": addresses[0], "port": port}

    async def _make_room(self) -> None:
        if len(self._conns) < self.max_destinations:
            return
        for url, out in self._conns.items():  # least recently used first
            if not out.pending:
                del self._conns[url]
                await out.close()
                return
        raise PoolFull("every pooled destination connection is busy")

    async def _sweep(self) -> None:
        now = self.monotonic()
        stale = [url for url, out in self._conns.items()
                 if not out.alive or (not out.pending and now - out.last_used > self.idle_timeout)]
        for url in stale:
            await self._drop(url)

    async def _drop(self, url: str) -> None:
        out = self._conns.pop(url, None)
        if out is not None:
            await out.close()

    async def close(self) -> None:
        """Close every pooled connection."""
        for url in list(self._conns):
            await self._drop(url)

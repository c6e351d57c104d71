"""Relay metrics in the Prometheus text exposition format (version 0.0.4).

`MetricsListener` serves them over plain HTTP on a listener of their own (loopback by
default), never on the relay's public port: counters over time are timing metadata about
the relay's users, for its operator only (review 2026-12 §2j).

Written by hand: a handful of counters, gauges and one histogram do not justify a
dependency, and nothing here may ever carry a label derived from client data (no mailbox
ids, no addresses), so the label sets are fixed and small.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["CONTENT_TYPE", "Counter", "Gauge", "Histogram", "MetricsListener", "RelayMetrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

# Commit latency buckets in seconds: from a fast fsync (0.2 ms) to a stalled disk (1 s).
_COMMIT_BUCKETS: Final = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
                          0.25, 1.0)


class Counter:
    """A monotonically increasing count, optionally split by one label."""

    __slots__ = ("_values", "help", "label", "name")

    def __init__(self, name: str, help: str, label: str | None = None) -> None:
        self.name = name
        self.help = help
        self.label = label
        self._values: dict[str, float] = {}

    def inc(self, amount: float = 1.0, label_value: str = "") -> None:
        """Add `amount` to the series `label_value`."""
        self._values[label_value] = self._values.get(label_value, 0.0) + amount

    def value(self, label_value: str = "") -> float:
        """The current value of a series (0 when never incremented)."""
        return self._values.get(label_value, 0.0)

    def render(self) -> list[str]:
        """The metric's exposition lines."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if self.label is None:
            lines.append(f"{self.name} {_num(self._values.get('', 0.0))}")
        else:
            for key in sorted(self._values):
                lines.append(f'{self.name}{{{self.label}="{key}"}} {_num(self._values[key])}')
        return lines


class Gauge:
    """A value that goes up and down."""

    __slots__ = ("help", "name", "value")

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self.value = 0.0

    def render(self) -> list[str]:
        """The metric's exposition lines."""
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge",
                f"{self.name} {_num(self.value)}"]


class Histogram:
    """A distribution over fixed buckets."""

    __slots__ = ("_bounds", "_counts", "_sum", "help", "name")

    def __init__(self, name: str, help: str, bounds: tuple[float, ...]) -> None:
        self.name = name
        self.help = help
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    @property
    def count(self) -> int:
        """Number of observations."""
        return sum(self._counts)

    def render(self) -> list[str]:
        """The metric's exposition lines."""
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        running = 0
        for bound, n in zip(self._bounds, self._counts, strict=False):
            running += n
            lines.append(f'{self.name}_bucket{{le="{bound}"}} {running}')
        running += self._counts[-1]
        lines.append(f'{self.name}_bucket{{le="+Inf"}} {running}')
        lines.append(f"{self.name}_sum {_num(self._sum)}")
        lines.append(f"{self.name}_count {running}")
        return lines


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class RelayMetrics:
    """Every metric a relay exports."""

    def __init__(self) -> None:
        p = "backchannel_relay_"
        self.connections = Gauge(p + "connections", "Open WebSocket connections.")
        self.subscriptions = Gauge(p + "subscriptions", "Live mailbox subscriptions.")
        self.connections_total = Counter(p + "connections_total", "Connections accepted.")
        self.connections_refused = Counter(
            p + "connections_refused_total", "Connections refused, by reason.", "reason")
        self.sockets = Gauge(p + "sockets",
                             "TCP connections held, handshakes included (the relay-wide cap).")
        self.handshakes_abandoned = Counter(
            p + "handshakes_abandoned_total",
            "Sockets closed before their handshake was answered (deadline or peer).")
        self.connections_closed = Counter(
            p + "connections_closed_total", "Connections the relay closed, by reason.", "reason")
        self.mailboxes_created = Counter(p + "mailboxes_created_total", "Mailboxes created.")
        self.mailboxes_deleted = Counter(p + "mailboxes_deleted_total", "Mailboxes deleted.")
        self.stored = Counter(p + "envelopes_stored_total", "Envelopes committed.")
        self.stored_bytes = Counter(p + "envelope_bytes_stored_total", "Envelope bytes committed.")
        self.delivered = Counter(p + "envelopes_delivered_total", "Envelopes pushed or fetched.")
        self.acked = Counter(p + "envelopes_acked_total", "Envelopes acked and deleted.")
        self.expired = Counter(p + "envelopes_expired_total", "Envelopes deleted by the TTL.")
        self.frames = Counter(p + "frames_total", "Frames received.")
        self.errors = Counter(p + "errors_total", "Error frames sent, by code.", "code")
        self.commit_seconds = Histogram(
            p + "commit_seconds", "Latency of one group commit.", _COMMIT_BUCKETS)
        self.commit_ops = Counter(p + "commit_operations_total", "Operations group-committed.")
        self.forwards = Counter(
            p + "forwards_total",
            "Forwards carried to another relay, by outcome (answered, refused, unavailable).",
            "outcome")
        self.sealed_sends = Counter(p + "sealed_sends_total",
                                    "Sealed sends opened with this relay's key.")

    def render(self) -> bytes:
        """The whole exposition, ready to serve at ``/metrics``."""
        lines: list[str] = []
        for metric in (
            self.connections, self.subscriptions, self.connections_total,
            self.connections_refused, self.sockets, self.handshakes_abandoned,
            self.connections_closed, self.mailboxes_created, self.mailboxes_deleted,
            self.stored, self.stored_bytes, self.delivered, self.acked, self.expired,
            self.frames, self.errors, self.commit_seconds, self.commit_ops,
            self.forwards, self.sealed_sends,
        ):
            lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode("utf-8")


# The metrics listener reads at most this much of a request (a request line and a few
# headers; a scraper sends ~200 bytes), and waits this long for it.
_MAX_REQUEST_HEAD: Final = 8 * 1024
_REQUEST_TIMEOUT: Final = 5.0


class MetricsListener:
    """A minimal HTTP/1.1 responder for ``GET /metrics`` and ``GET /healthz``.

    One request per connection, answered and closed; anything else is 404 (or 405 for a
    method other than GET). It is meant for loopback or a private network and does no TLS.

    Args:
        render: the exposition body for ``/metrics``.
        healthy: whether ``/healthz`` says 200 (``ok``) or 503.
    """

    def __init__(self, render: Callable[[], bytes],
                 healthy: Callable[[], Awaitable[bool]]) -> None:
        self._render = render
        self._healthy = healthy
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The port listened on (after `start`)."""
        if self._server is None:
            raise RuntimeError("the metrics listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, host: str, port: int) -> None:
        """Listen on `host`:`port` (port 0 picks a free one).

        Raises:
            OSError: the address cannot be bound.
        """
        self._server = await asyncio.start_server(self._answer, host, port,
                                                  limit=_MAX_REQUEST_HEAD)

    async def stop(self) -> None:
        """Stop listening and close the connections being answered."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_REQUEST_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
                method, _, rest = head.partition(b" ")
                path = rest.partition(b" ")[0].partition(b"?")[0]
                status, ctype, body = await self._route(method, path)
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body)
                await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a scraper that went away or sent junk gets nothing
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _route(self, method: bytes, path: bytes) -> tuple[str, str, bytes]:
        text = "text/plain; charset=utf-8"
        if method != b"GET":
            return "405 Method Not Allowed", text, b"GET only\n"
        if path == b"/metrics":
            return "200 OK", CONTENT_TYPE, self._render()
        if path == b"/healthz":
            if await self._healthy():
                return "200 OK", text, b"ok\n"
            return "503 Service Unavailable", text, b"unavailable\n"
        return "404 Not Found", text, b"not found\n"

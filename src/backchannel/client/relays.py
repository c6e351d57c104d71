"""Connections to a channel's relays for the length of one operation.

A relay that cannot be reached, or stops answering, is remembered as down for that
operation (so it is not retried a dozen times) and reported; work for it stays in the
outbox. Each relay is on its own (design §5): a down relay costs the others nothing, since
every request has a deadline (`transport.DEFAULT_REQUEST_TIMEOUT`) and callers serve the
relays concurrently. A long-running operation (`watch`) asks `retry_due` when to try a
down relay again, with a backoff that doubles up to `MAX_RETRY_DELAY`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Final

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from backchannel.client.transport import DEFAULT_REQUEST_TIMEOUT, RelayClient
from backchannel.protocol.text import escaped

__all__ = ["CONNECT_TIMEOUT", "MAX_RETRY_DELAY", "RelayPool"]

# A relay on the same continent answers in well under a second; three seconds tells "down"
# from "slow" without making a principal wait long when one relay of several is out.
CONNECT_TIMEOUT: Final = 3.0
# The longest wait before a down relay is tried again by a long-running watch: a relay back
# from an outage is used again within a minute, and a dead one costs one attempt a minute.
MAX_RETRY_DELAY: Final = 60.0
# Seconds to close all connections at the end of an operation: a relay that does not answer
# the closing handshake must not hold the operation open.
_CLOSE_ALL_TIMEOUT: Final = 2.0


@dataclass(slots=True)
class RelayPool:
    """Connections by relay URL, and why the others are down.

    Attributes:
        connect_timeout: seconds for one connection attempt (TCP, TLS and handshake).
        request_timeout: seconds each relay has to answer each request.
        clients: the live connections.
        failures: why each relay that is down is down (for reports and `status`).
    """

    connect_timeout: float = CONNECT_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    clients: dict[str, RelayClient] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # Backoff of down relays: when each may be tried again, and the delay after that.
    _retry_at: dict[str, float] = field(default_factory=dict)
    _delay: dict[str, float] = field(default_factory=dict)

    async def get(self, url: str) -> RelayClient | None:
        """A live connection to `url`, or None if it cannot be reached (reason recorded).

        Concurrent callers for one relay share one connection attempt.
        """
        client = self.clients.get(url)
        if client is not None and client.closed:
            # It closed under us (a timeout, the relay, the network): down for now.
            await self.mark_down(url, "the connection closed")
            return None
        if client is not None:
            return client
        if url in self.failures:
            return None
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            if url in self.clients or url in self.failures:
                return self.clients.get(url)
            try:
                client = await asyncio.wait_for(
                    RelayClient.connect(
                        url,
                        open_timeout=self.connect_timeout,
                        request_timeout=self.request_timeout,
                    ),
                    self.connect_timeout,
                )
            # ValueError: a URL that `urlsplit` cannot read (a stray "[" makes it an IPv6
            # literal); decoders refuse those now, but one stored earlier must not end a sync.
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as error:
                self.failures[url] = _describe(error)
                return None
            self.clients[url] = client
            return client

    async def mark_down(self, url: str, reason: str) -> None:
        """Drop the connection to `url` and count it down for this operation."""
        client = self.clients.pop(url, None)
        self.failures[url] = reason
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    def retry_due(self, url: str, now: float, first_delay: float) -> bool:
        """For a long-running operation: forget that `url` is down once its backoff has
        passed (first `first_delay` seconds, doubling to `MAX_RETRY_DELAY`), so the next
        `get` tries it again. Returns whether it may be tried now."""
        if url not in self.failures:
            return True
        retry_at = self._retry_at.get(url)
        if retry_at is None:
            delay = self._delay.get(url, first_delay)
            self._retry_at[url] = now + delay
            self._delay[url] = min(delay * 2, MAX_RETRY_DELAY)
            return False
        if now < retry_at:
            return False
        del self._retry_at[url]
        del self.failures[url]
        return True

    def reached(self, url: str) -> None:
        """`url` served a request: its next outage starts from the first delay again."""
        self._delay.pop(url, None)

    async def close(self) -> None:
        """Close every connection, waiting at most a couple of seconds in all."""
        clients = list(self.clients.values())
        self.clients.clear()
        if clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*(c.close() for c in clients), return_exceptions=True),
                    _CLOSE_ALL_TIMEOUT,
                )


def _describe(error: BaseException) -> str:
    """Why a connection failed, in the client's own words.

    A handshake error's text can quote what the server sent (a header, a status line), so
    it is never used: a relay writes nothing that reaches the principal's terminal. The
    operating system's words (a TLS or DNS failure) are kept, escaped.
    """
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, InvalidStatus):
        return f"the relay answered HTTP {int(error.response.status_code)}, not a WebSocket"
    if isinstance(error, InvalidURI | ValueError):
        return "not a valid relay URL"
    if isinstance(error, InvalidHandshake):
        return "the WebSocket handshake with the relay failed"
    if isinstance(error, OSError) and error.strerror:
        return escaped(error.strerror)
    return escaped(str(error)) or type(error).__name__

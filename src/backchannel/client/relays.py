"""Connections to a channel's relays for the length of one operation, one per mailbox.

Every connection carries one *lane*: the mailbox it creates, writes or reads. A relay that
logs which connection touched which mailbox learns nothing from it about which mailboxes
belong together (a channel's two directions, a principal's channels; design §10), since no
connection touches two. Each new connection to a relay but a pool's first there is opened
after a random delay of up to `MAX_OPEN_JITTER`, so that a pool's connections do not open
in one burst whose order follows the channels'; a one-mailbox operation (a `send`) pays
nothing. Connections per relay are bounded by `MAX_LANES_PER_RELAY`; past it a
lane shares the least-used connection, which is counted (`shared_lanes`) and reported.

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
import math
import os
import random
from dataclasses import dataclass, field
from typing import Final

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from backchannel.client.errors import ClientError
from backchannel.client.transport import DEFAULT_REQUEST_TIMEOUT, RelayClient
from backchannel.protocol.text import escaped

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_LANES_PER_RELAY",
    "MAX_OPEN_JITTER",
    "MAX_RETRY_DELAY",
    "NO_LANE",
    "OPEN_JITTER_ENV",
    "RelayPool",
    "open_jitter_setting",
]

# A relay on the same continent answers in well under a second; three seconds tells "down"
# from "slow" without making a principal wait long when one relay of several is out.
CONNECT_TIMEOUT: Final = 3.0
# The longest wait before a down relay is tried again by a long-running watch: a relay back
# from an outage is used again within a minute, and a dead one costs one attempt a minute.
MAX_RETRY_DELAY: Final = 60.0
# Seconds a new connection (but a pool's first to its relay) waits, at most (uniformly at
# random), before it opens. A sync
# opens its connections together; without a delay they reach the relay in the order the
# code visits the mailboxes, which is the order of the channels. Half a second spreads them
# over a window wider than their own opening (a few milliseconds on a LAN, ~100 ms across
# an ocean) and costs a sync (10 s deadline, `exchange.SYNC_DEADLINE`) at most 0.5 s for each
# of its rounds; a watch and the agent open their connections once.
MAX_OPEN_JITTER: Final = 0.5
# Where a principal may set that bound in seconds (docs/cli.md). 0 turns the delay off: a
# test suite or a demo on one loopback relay, where there is nobody to hide the order from,
# does not wait for it; anywhere else it gives the order of a sync's connections away.
OPEN_JITTER_ENV: Final = "BACKCHANNEL_OPEN_JITTER"
# The most the environment may ask for: more than the sync's own deadline would make every
# sync with several lanes miss it.
_MOST_OPEN_JITTER: Final = 5.0
# Connections one pool holds to one relay. The relay allows 64 per address
# (`relay.limits.DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`); a watch holds two per channel (our
# inbound mailbox's, the counterpart's we write to), so 24 lanes are 12 channels each over
# their own connections, and leave the address room for another process of the principal
# (a CLI command next to the agent) and for neighbours behind the same NAT.
MAX_LANES_PER_RELAY: Final = 24
# The lane of a connection that touches no mailbox (a ping).
NO_LANE: Final = ""
# Seconds to close all connections at the end of an operation: a relay that does not answer
# the closing handshake must not hold the operation open.
_CLOSE_ALL_TIMEOUT: Final = 2.0


def open_jitter_setting() -> float:
    """The bound on a new connection's delay: `OPEN_JITTER_ENV` if set, else
    `MAX_OPEN_JITTER`.

    Raises:
        ClientError: the variable is not a number of seconds from 0 to 5.
    """
    text = os.environ.get(OPEN_JITTER_ENV, "").strip()
    if not text:
        return MAX_OPEN_JITTER
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0.0 <= seconds <= _MOST_OPEN_JITTER:  # NaN fails this too
        raise ClientError(f"{OPEN_JITTER_ENV} must be a number of seconds from 0 to "
                          f"{_MOST_OPEN_JITTER:g}, not {escaped(text)!r}")
    return seconds


@dataclass(slots=True)
class RelayPool:
    """Connections by relay URL and lane (a mailbox id), and why the down relays are down.

    Attributes:
        connect_timeout: seconds for one connection attempt (TCP, TLS and handshake).
        request_timeout: seconds each relay has to answer each request.
        open_jitter: the most, in seconds, a new connection waits before it opens
            (`open_jitter_setting`: the environment's, or `MAX_OPEN_JITTER`).
        max_lanes: connections to one relay before lanes share them.
        clients: the live connection of each ``(url, lane)``.
        failures: why each relay that is down is down (for reports and `status`).
        shared_lanes: lanes that had to share a connection (past `max_lanes`), by relay.
    """

    connect_timeout: float = CONNECT_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    open_jitter: float = field(default_factory=open_jitter_setting)
    max_lanes: int = MAX_LANES_PER_RELAY
    clients: dict[tuple[str, str], RelayClient] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    shared_lanes: dict[str, int] = field(default_factory=dict)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # Backoff of down relays: when each may be tried again, and the delay after that.
    _retry_at: dict[str, float] = field(default_factory=dict)
    _delay: dict[str, float] = field(default_factory=dict)
    _random: random.SystemRandom = field(default_factory=random.SystemRandom)
    # Relays this pool has begun a connection to: the first opens at once (alone, it
    # has no order to give away), each later one after its random delay.
    _opened: set[str] = field(default_factory=set)

    def connected(self, url: str) -> bool:
        """Whether some lane to `url` has a live connection."""
        return any(u == url and not c.closed for (u, _), c in self.clients.items())

    def connections(self, url: str | None = None) -> int:
        """How many distinct connections are open (to `url`, or to every relay)."""
        return len({id(c) for (u, _), c in self.clients.items() if url in (None, u)})

    async def get(self, url: str, lane: str = NO_LANE) -> RelayClient | None:
        """A live connection to `url` for `lane` (the hex id of the one mailbox it will
        touch), or None if the relay cannot be reached (reason recorded).

        Concurrent callers for one lane share one connection attempt; lanes never share a
        connection while the relay has fewer than `max_lanes` of this pool's.
        """
        key = (url, lane)
        client = self.clients.get(key)
        if client is not None and client.closed:
            # It closed under us (a timeout, the relay, the network): down for now.
            await self.mark_down(url, "the connection closed")
            return None
        if client is not None:
            return client
        if url in self.failures:
            return None
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self.clients or url in self.failures:
                return self.clients.get(key)
            if self.connections(url) >= self.max_lanes:
                return self._share(key)
            first = url not in self._opened
            self._opened.add(url)
            if self.open_jitter > 0 and not first:
                await asyncio.sleep(self._random.uniform(0.0, self.open_jitter))
                if url in self.failures:
                    return None
            try:
                # Not wait_for, which on Python 3.11 can lose a cancellation (`transport`).
                async with asyncio.timeout(self.connect_timeout):
                    client = await RelayClient.connect(
                        url,
                        open_timeout=self.connect_timeout,
                        request_timeout=self.request_timeout,
                    )
            # ValueError: a URL that `urlsplit` cannot read (a stray "[" makes it an IPv6
            # literal); decoders refuse those now, but one stored earlier must not end a sync.
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError) as error:
                self.failures[url] = _describe(error)
                return None
            self.clients[key] = client
            return client

    def _share(self, key: tuple[str, str]) -> RelayClient | None:
        """Past `max_lanes`: the lane rides on the live connection carrying fewest lanes."""
        url = key[0]
        load: dict[int, tuple[int, RelayClient]] = {}
        for (u, _), client in self.clients.items():
            if u == url and not client.closed:
                count, _ = load.get(id(client), (0, client))
                load[id(client)] = (count + 1, client)
        if not load:
            return None
        _, client = min(load.values(), key=lambda pair: pair[0])
        self.clients[key] = client
        self.shared_lanes[url] = self.shared_lanes.get(url, 0) + 1
        return client

    async def mark_down(self, url: str, reason: str) -> None:
        """Drop every connection to `url` and count it down for this operation."""
        dropped = [key for key in self.clients if key[0] == url]
        clients = {id(c): c for c in (self.clients.pop(key) for key in dropped)}
        self.failures[url] = reason
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.close()

    async def release(self, url: str, lane: str) -> None:
        """Close the lane's connection (unless another lane rides on it): its mailbox is
        no longer read (retired, replaced)."""
        client = self.clients.pop((url, lane), None)
        if client is not None and all(c is not client for c in self.clients.values()):
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

    def retry_now(self, url: str) -> bool:
        """Forget that `url` is down, so the next `get` tries it at once (a request the
        principal made, who waits for it: the backoff is for work nobody waits on). The
        next outage starts from the delay reached. Returns whether it was down."""
        if url not in self.failures:
            return False
        del self.failures[url]
        self._retry_at.pop(url, None)
        return True

    def reached(self, url: str) -> None:
        """`url` served a request: its next outage starts from the first delay again."""
        self._delay.pop(url, None)

    async def close(self) -> None:
        """Close every connection, waiting at most a couple of seconds in all."""
        clients = list({id(c): c for c in self.clients.values()}.values())
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

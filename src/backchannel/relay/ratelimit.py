"""Pure rate limiting: token buckets and the per-connection and per-address guards.

Clock-free like the mailbox logic: every method takes `now` (monotonic seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from typing import Final

from backchannel.relay.limits import RelayLimits

__all__ = ["CREATE_RESERVE_SHARE", "AddressBook", "ConnectionCap", "ConnectionGuard",
           "SharedPace", "TokenBucket", "Verdict"]

# The share of the relay-wide creation burst kept for addresses that have created little
# lately (`AddressBook.may_create`): a quarter of 1,000 by default, which a fresh attacker
# address can take at most 10 of, so it needs 25 fresh addresses at once on top of the
# ones draining the rest.
CREATE_RESERVE_SHARE: Final = 0.25


class TokenBucket:
    """Allows `rate` events per second on average and `burst` at once."""

    __slots__ = ("_level", "_stamp", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = burst
        self._stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if available. Returns whether the event is allowed."""
        self._refill(now)
        if self._level >= cost:
            self._level -= cost
            return True
        return False

    def level(self, now: float) -> float:
        """Tokens available now."""
        self._refill(now)
        return self._level

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (its state is worth forgetting)."""
        self._refill(now)
        return self._level >= self.burst

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now


class SharedPace:
    """One pace, `rate` events per second with `burst` at once, shared by everyone who asks,
    in the order they ask (a virtual clock, as in the generic cell rate algorithm).

    Unlike a `TokenBucket` nothing is refused: each event is given the time to wait before
    it may go, so that those who ask while the pace is exceeded take turns, first come
    first served, and none can take another's turn by asking more often.
    """

    __slots__ = ("_due", "_interval", "_slack")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._interval = 1.0 / rate
        self._slack = burst * self._interval  # how far ahead of `now` events may be booked
        self._due = now  # when the next event is due at the pace

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Book one event (counting as `cost` events). Returns the seconds to wait before
        it (0 within the burst)."""
        self._due = max(self._due, now) + self._interval * cost
        return max(0.0, self._due - now - self._slack)


class Verdict(Enum):
    """What to do with an incoming frame."""

    ACCEPT = "accept"
    REFUSE = "refuse"  # answer with RATE_LIMITED
    CLOSE = "close"  # the client ignores refusals: close the connection


class ConnectionGuard:
    """Frame-rate and malformed-frame accounting for one connection.

    A frame over the rate is refused (RATE_LIMITED). The connection is closed when more than
    a set share of its recent frames were refused: over the last `flood_window` frames,
    `flood_refused` or more refusals. Counting refusals in a row would miss a client sending
    at twice its rate, whose frames alternate accepted and refused.
    """

    __slots__ = ("_bucket", "_limits", "_malformed", "_pos", "_refused", "_window")

    def __init__(self, limits: RelayLimits, now: float) -> None:
        self._limits = limits
        self._bucket = TokenBucket(limits.frames_per_second, limits.frame_burst, now)
        self._malformed = 0
        # The last frames' outcomes (1 = refused) as a ring, allocated at the first
        # refusal: most connections are never refused and should not pay for a window.
        self._window: bytearray | None = None
        self._pos = 0
        self._refused = 0  # refusals in the window

    def on_frame(self, now: float, cost: float = 1.0) -> Verdict:
        """A frame arrived (counting as `cost` frames): accept it, refuse it, or close the
        connection."""
        accepted = self._bucket.take(now, cost)
        if self._window is None and accepted:
            return Verdict.ACCEPT
        return self._record(refused=not accepted)

    def on_refused(self) -> Verdict:
        """An accepted frame was refused all the same for a rate (a mailbox creation over
        its budget): it counts in the window like a frame over the rate, since a client
        that keeps asking regardless floods just as well.

        Returns:
            `Verdict.CLOSE` when the share of refusals is reached, else `Verdict.REFUSE`.
        """
        return self._record(refused=True, replace_last=True)

    def _record(self, *, refused: bool, replace_last: bool = False) -> Verdict:
        if self._window is None:
            self._window = bytearray(self._limits.flood_window)
        window = self._window
        if replace_last:  # the frame was already recorded as accepted: correct it
            self._pos = (self._pos - 1) % len(window)
        self._refused += refused - window[self._pos]
        window[self._pos] = refused
        self._pos = (self._pos + 1) % len(window)
        if not refused:
            return Verdict.ACCEPT
        if self._refused >= self._limits.flood_refused:
            return Verdict.CLOSE
        return Verdict.REFUSE

    def on_malformed(self) -> Verdict:
        """A frame failed to decode: answer it, or close once there were too many."""
        self._malformed += 1
        if self._malformed >= self._limits.max_malformed_frames:
            return Verdict.CLOSE
        return Verdict.REFUSE


class ConnectionCap:
    """Relay-wide count of TCP connections, from accept to close, against a cap.

    A connection is counted from the moment its socket is accepted, before any byte of
    its handshake, so that sockets that never finish upgrading (slowloris) hold slots like
    any other and are bounded by the cap and the handshake deadline. Under TLS the relay
    first sees a connection when its TLS handshake ends, or never if it fails: such a
    reservation that was never `opened` lapses after `pending_ttl` (by then the TLS
    handshake timeout has closed its socket).
    """

    __slots__ = ("_limit", "_next", "_open", "_pending", "_pending_ttl")

    def __init__(self, limit: int, pending_ttl: float) -> None:
        self._limit = limit
        self._pending_ttl = pending_ttl
        self._open = 0
        self._pending: dict[int, float] = {}  # ticket -> when it lapses
        self._next = 0

    @property
    def count(self) -> int:
        """Connections counted now (open, and reserved but not yet open)."""
        return self._open + len(self._pending)

    def reserve(self, now: float) -> int | None:
        """Count a new socket. Returns its ticket, or None when the relay is full."""
        if self._pending:
            self._lapse(now)
        if self.count >= self._limit:
            return None
        self._next += 1
        self._pending[self._next] = now + self._pending_ttl
        return self._next

    def open(self, ticket: int) -> bool:
        """The socket's transport exists: it is counted until `close`.

        Returns False when its reservation lapsed meanwhile (it is then not counted, and
        should be refused like one over the cap).
        """
        if self._pending.pop(ticket, None) is None:
            return False
        self._open += 1
        return True

    def close(self) -> None:
        """An `open` connection ended."""
        self._open -= 1

    def _lapse(self, now: float) -> None:
        # Reservations are made in time order, so the oldest come first in the dict.
        for ticket, until in list(self._pending.items()):
            if until > now:
                break
            del self._pending[ticket]


class AddressBook:
    """Connections and mailbox-creation budget per address key, plus a relay-wide budget.

    Keys are `addresses.budget_key` values (an IPv4 address, an IPv6 /64). Memory is
    bounded: at most `max_tracked_addresses` creation buckets; the least recently seen key
    is forgotten first (which only ever gives that key a fresh budget).
    """

    __slots__ = ("_banned", "_buckets", "_connections", "_global", "_limits", "_reserve")

    def __init__(self, limits: RelayLimits, now: float) -> None:
        self._limits = limits
        self._connections: dict[str, int] = {}
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._global = TokenBucket(limits.creates_per_second, limits.create_burst, now)
        self._reserve = limits.create_burst * CREATE_RESERVE_SHARE
        # Keys refused until a time, after a connection of theirs was closed for abuse.
        # In insertion order, which is expiry order: the cooldown is the same for all.
        self._banned: OrderedDict[str, float] = OrderedDict()

    def may_connect(self, key: str, now: float | None = None) -> bool:
        """Whether another connection under `key` is allowed (at `now`, if a cooldown may
        apply: see `penalize`)."""
        if now is not None and self._banned and self._cooling(key, now):
            return False
        return self._connections.get(key, 0) < self._limits.max_connections_per_address

    def penalize(self, key: str, now: float) -> None:
        """A connection under `key` was closed for abuse: refuse the key for a while."""
        if self._limits.abuse_cooldown <= 0:
            return
        self._banned.pop(key, None)
        self._banned[key] = now + self._limits.abuse_cooldown
        while len(self._banned) > self._limits.max_tracked_addresses:
            self._banned.popitem(last=False)

    def _cooling(self, key: str, now: float) -> bool:
        while self._banned:
            oldest, until = next(iter(self._banned.items()))
            if until > now:
                break
            del self._banned[oldest]
        banned = self._banned.get(key)
        return banned is not None and banned > now

    def connected(self, key: str) -> None:
        """Count a new connection under `key`."""
        self._connections[key] = self._connections.get(key, 0) + 1

    def disconnected(self, key: str) -> None:
        """Count a closed connection under `key`."""
        left = self._connections.get(key, 0) - 1
        if left > 0:
            self._connections[key] = left
        else:
            self._connections.pop(key, None)

    def may_create(self, key: str, now: float) -> bool:
        """Spend one mailbox creation for `key` (and relay-wide) if both budgets allow.

        The relay-wide bucket is large (many keys must spend their whole budgets to drain
        it), and its last `CREATE_RESERVE_SHARE` is open only to keys that still hold at
        least half of their own burst, that is, that have created little lately. Keys
        creating at full speed stay below half, so however many of them there are they
        cannot take the reserve, and a fresh address can still create: to shut it out an
        attacker needs enough *fresh* keys to drain the reserve too, each of which gives
        up to half a burst before it stops being fresh.
        """
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(
                self._limits.creates_per_second_per_address,
                self._limits.create_burst_per_address,
                now,
            )
            self._buckets[key] = bucket
            self._forget_oldest()
        else:
            self._buckets.move_to_end(key)
        fresh = bucket.level(now) >= bucket.burst / 2
        floor = 0.0 if fresh else self._reserve
        if self._global.level(now) < floor + 1.0 or not bucket.take(now):
            return False
        return self._global.take(now)

    def _forget_oldest(self) -> None:
        while len(self._buckets) > self._limits.max_tracked_addresses:
            self._buckets.popitem(last=False)

"""Pure rate limiting: token buckets and the per-connection and per-address guards.

Clock-free like the mailbox logic: every method takes `now` (monotonic seconds).
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum

from backchannel.relay.limits import RelayLimits

__all__ = ["AddressBook", "ConnectionGuard", "TokenBucket", "Verdict"]


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

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (its state is worth forgetting)."""
        self._refill(now)
        return self._level >= self.burst

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now


class Verdict(Enum):
    """What to do with an incoming frame."""

    ACCEPT = "accept"
    REFUSE = "refuse"  # answer with RATE_LIMITED
    CLOSE = "close"  # the client ignores refusals: close the connection


class ConnectionGuard:
    """Frame-rate and malformed-frame accounting for one connection."""

    __slots__ = ("_bucket", "_limits", "_malformed", "_refused")

    def __init__(self, limits: RelayLimits, now: float) -> None:
        self._limits = limits
        self._bucket = TokenBucket(limits.frames_per_second, limits.frame_burst, now)
        self._refused = 0
        self._malformed = 0

    def on_frame(self, now: float) -> Verdict:
        """A frame arrived: accept it, refuse it, or close the connection."""
        if self._bucket.take(now):
            self._refused = 0
            return Verdict.ACCEPT
        self._refused += 1
        if self._refused >= self._limits.max_refused_in_a_row:
            return Verdict.CLOSE
        return Verdict.REFUSE

    def on_malformed(self) -> Verdict:
        """A frame failed to decode: answer it, or close once there were too many."""
        self._malformed += 1
        if self._malformed >= self._limits.max_malformed_frames:
            return Verdict.CLOSE
        return Verdict.REFUSE


class AddressBook:
    """Connections and mailbox-creation budget per client address, plus a global budget.

    Memory is bounded: at most `max_tracked_addresses` entries; the least recently seen
    address without open connections is forgotten first.
    """

    __slots__ = ("_buckets", "_connections", "_global", "_limits")

    def __init__(self, limits: RelayLimits, now: float) -> None:
        self._limits = limits
        self._connections: dict[str, int] = {}
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._global = TokenBucket(limits.creates_per_second, limits.create_burst, now)

    def may_connect(self, address: str) -> bool:
        """Whether another connection from `address` is allowed."""
        return self._connections.get(address, 0) < self._limits.max_connections_per_address

    def connected(self, address: str) -> None:
        """Count a new connection from `address`."""
        self._connections[address] = self._connections.get(address, 0) + 1

    def disconnected(self, address: str) -> None:
        """Count a closed connection from `address`."""
        left = self._connections.get(address, 0) - 1
        if left > 0:
            self._connections[address] = left
        else:
            self._connections.pop(address, None)

    def may_create(self, address: str, now: float) -> bool:
        """Spend one mailbox creation for `address` (and globally) if both budgets allow."""
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = TokenBucket(
                self._limits.creates_per_second_per_address,
                self._limits.create_burst_per_address,
                now,
            )
            self._buckets[address] = bucket
            self._forget_oldest(now)
        else:
            self._buckets.move_to_end(address)
        if not bucket.take(now):
            return False
        return self._global.take(now)

    def _forget_oldest(self, now: float) -> None:
        while len(self._buckets) > self._limits.max_tracked_addresses:
            self._buckets.popitem(last=False)

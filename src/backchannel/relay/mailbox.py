"""Pure mailbox logic: capabilities, quotas, expiry and the delivery state of a subscription.

Nothing here does I/O or reads a clock: `now` is a parameter (seconds since the epoch).
The store backends call these functions inside their transactions, the server calls them
between frames, and the tests call them directly.

Delivery rules (design §4): envelopes of a mailbox carry sequence numbers assigned at
commit, contiguous and increasing. A subscription delivers every stored envelope in order,
at least once, until it is acked. It holds a *cursor* (highest seq delivered) and a bounded
window of deliveries not yet acked; a newly committed envelope is pushed straight from
memory only when it is exactly the next one and the window has room, otherwise the
subscription asks to be backfilled from the store.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Final

from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.relayframes import ErrorCode, token_hash

__all__ = [
    "REASONS",
    "MailboxRecord",
    "Subscription",
    "authorized",
    "deposit_refusal",
    "envelope_refusal",
    "expiry_time",
]

# The human-readable reason sent with each error code. Fixed strings: an error never
# echoes client input, so it can never carry a token or an envelope.
REASONS: Final[dict[ErrorCode, str]] = {
    ErrorCode.MALFORMED: "malformed frame",
    ErrorCode.UNKNOWN_COMMAND: "unknown command",
    ErrorCode.UNSUPPORTED_VERSION: "unsupported relay protocol version",
    ErrorCode.RATE_LIMITED: "too many requests; slow down",
    ErrorCode.UNAUTHORIZED: "no such mailbox, or the token does not open it",
    ErrorCode.MAILBOX_EXISTS: "a mailbox with this id exists; pick a fresh random id",
    ErrorCode.QUOTA_EXCEEDED: "the mailbox is full; the receiver must fetch and ack first",
    ErrorCode.BAD_ENVELOPE: "not an envelope for this mailbox",
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: "too many subscriptions on this connection",
    ErrorCode.UNAVAILABLE: "the relay cannot serve this now; retry later",
    ErrorCode.INTERNAL: "internal relay error",
}


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """What the relay knows about a mailbox: hashes of its two capabilities and its fill."""

    mailbox_id: bytes
    send_hash: bytes = field(repr=False)
    receive_hash: bytes = field(repr=False)
    count: int = 0
    size: int = 0


def authorized(stored_hash: bytes, token: bytes) -> bool:
    """Whether `token` is the capability whose hash is stored (constant-time comparison).

    Args:
        stored_hash: the hash recorded at creation.
        token: the token presented by the client.

    Returns:
        True when they match.
    """
    return hmac.compare_digest(stored_hash, token_hash(token))


def deposit_refusal(
    count: int, size: int, envelope_size: int, max_envelopes: int, max_bytes: int
) -> ErrorCode | None:
    """Why a mailbox holding `count` envelopes of `size` bytes cannot take one more, if so.

    Args:
        count: envelopes stored now.
        size: bytes stored now.
        envelope_size: size of the new envelope.
        max_envelopes: the per-mailbox count quota.
        max_bytes: the per-mailbox byte quota.

    Returns:
        `ErrorCode.QUOTA_EXCEEDED`, or None when the envelope fits.
    """
    if count + 1 > max_envelopes or size + envelope_size > max_bytes:
        return ErrorCode.QUOTA_EXCEEDED
    return None


def envelope_refusal(mailbox_id: bytes, data: bytes) -> ErrorCode | None:
    """Check that `data` is a well-formed envelope addressed to `mailbox_id`.

    The relay never looks inside the payload; it only checks the clear header, so that a
    mailbox holds nothing but envelopes meant for it.

    Args:
        mailbox_id: the mailbox the client deposits into.
        data: the envelope bytes.

    Returns:
        `ErrorCode.BAD_ENVELOPE`, or None when the envelope is acceptable.
    """
    try:
        envelope = Envelope.decode(data)
    except RemoteProtocolError:
        return ErrorCode.BAD_ENVELOPE
    if not hmac.compare_digest(envelope.mailbox_id, mailbox_id):
        return ErrorCode.BAD_ENVELOPE
    return None


def expiry_time(now: float, ttl: float) -> int:
    """When an envelope stored at `now` expires, in whole seconds since the epoch."""
    return int(now + ttl)


class Subscription:
    """Delivery state of one subscription (one mailbox on one connection).

    Args:
        window: most deliveries pushed and not yet acked at once.
    """

    __slots__ = ("_generation", "_in_flight", "cursor", "needs_backfill", "pumping", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.cursor = 0
        self.needs_backfill = True
        self.pumping = False
        self._generation = 0
        # Allocated on the first delivery: most subscriptions sit idle (memory per idle
        # connection is a design target).
        self._in_flight: set[int] | None = None

    @property
    def room(self) -> int:
        """How many more envelopes may be pushed now."""
        return self.window - len(self._in_flight) if self._in_flight else self.window

    @property
    def in_flight(self) -> int:
        """Envelopes pushed and not yet acked."""
        return len(self._in_flight) if self._in_flight else 0

    def offer(self, seqs: list[int]) -> list[int]:
        """A batch of newly committed seqs (increasing): which of them to push now.

        Pushes the longest run that continues the cursor exactly and fits the window;
        anything else marks the subscription for a backfill from the store.

        Args:
            seqs: the new seqs for this mailbox, in commit order.

        Returns:
            The seqs to push now, in order; they are recorded as in flight.
        """
        pushed: list[int] = []
        if not self.needs_backfill:
            for seq in seqs:
                if seq <= self.cursor:
                    continue
                if seq != self.cursor + 1 or not self.room:
                    break
                self._deliver(seq)
                pushed.append(seq)
        if any(seq > self.cursor for seq in seqs):
            self.mark_stale()
        return pushed

    def mark_stale(self) -> None:
        """The store holds envelopes this subscription has not seen (e.g. another node's)."""
        self.needs_backfill = True
        self._generation += 1

    def begin_backfill(self) -> int:
        """Start reading from the store after the cursor; returns a mark for `accept_backfill`."""
        return self._generation

    def accept_backfill(self, seqs: list[int], more: bool, mark: int) -> list[int]:
        """Seqs read from the store after the cursor: which to push, in order.

        Args:
            seqs: seqs of unexpired envelopes after the cursor, increasing.
            more: the store holds further envelopes beyond these.
            mark: what `begin_backfill` returned before the read; if commits arrived
                since, another backfill is needed even when this read saw no more.

        Returns:
            The seqs to push now; the rest wait for acks to open the window.
        """
        chosen: list[int] = []
        for seq in seqs:
            if seq <= self.cursor:
                continue
            if not self.room:
                more = True
                break
            self._deliver(seq)
            chosen.append(seq)
        self.needs_backfill = more or mark != self._generation
        return chosen

    def on_ack(self, seqs: tuple[int, ...]) -> bool:
        """The receiver acked `seqs`. Returns whether a backfill should run now."""
        if self._in_flight:
            self._in_flight.difference_update(seqs)
        return self.needs_backfill and self.room > 0

    def _deliver(self, seq: int) -> None:
        self.cursor = seq
        if self._in_flight is None:
            self._in_flight = set()
        self._in_flight.add(seq)

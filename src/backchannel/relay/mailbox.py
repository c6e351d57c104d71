"""Pure mailbox logic: capabilities, quotas, expiry and the delivery state of a subscription.

Nothing here does I/O or reads a clock: `now` is a parameter (seconds since the epoch).
The store backends call these functions inside their transactions, the server calls them
between frames, and the tests call them directly.

One rule set (design §4, in the manner of magic-wormhole's `Mailbox`): `create`,
`deposit`, `subscribe`, `ack` and `delete` are decisions given a mailbox's current row
(`MailboxState`, or None when there is none). Each returns a `Decision`: the answer or the
refusal, and the `Change` the store writes. The store only reads rows and writes changes;
every backend (SQLite, PostgreSQL, the in-memory reference store) applies the same
decisions, op after op in arrival order, so they answer identically.

Delivery rules (design §4): envelopes of a mailbox carry sequence numbers assigned at
commit, contiguous and increasing. A subscription delivers every stored envelope in order,
at least once, until it is acked. It holds a *cursor* (highest seq delivered) and a bounded
window of deliveries not yet acked; a newly committed envelope is pushed straight from
memory only when it is exactly the next one and the window has room, otherwise the
subscription asks to be backfilled from the store.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from backchannel.protocol.envelope import envelope_mailbox_id
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.relayframes import Delivery, ErrorCode, token_hash
from backchannel.relay.limits import RelayLimits

__all__ = [
    "MAX_SEQ",
    "REASONS",
    "Change",
    "Decision",
    "MailboxState",
    "NewEnvelope",
    "Subscription",
    "ack",
    "authorized",
    "create",
    "delete",
    "deposit",
    "deposit_refusal",
    "envelope_refusal",
    "expired",
    "expiry_time",
    "fetch_batch",
    "fetch_refusal",
    "idle",
    "idle_cutoff",
    "seq_refusal",
    "subscribe",
]

# The largest seq a store can hold: SQLite INTEGER and PostgreSQL bigint are signed 64-bit.
# Anything beyond is refused by the rules before any SQL (review 2026-12 §2b: SQLite raised
# OverflowError for 2^63 and that killed its writer).
MAX_SEQ: Final = 2**63 - 1

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
    ErrorCode.STORE_FULL: "the relay's storage is full; retry later or use another relay",
    ErrorCode.UNAVAILABLE: "the relay cannot serve this now; retry later",
    ErrorCode.INTERNAL: "internal relay error",
    ErrorCode.FORWARDING_DISABLED: "this relay does not forward",
    ErrorCode.BAD_DESTINATION: "this relay does not forward there",
    ErrorCode.UNKNOWN_KEY: "not sealed to this relay's key",
    ErrorCode.TOO_MANY_FORWARDS: "too many forwards in flight; retry later",
    ErrorCode.DESTINATION_UNAVAILABLE: "the destination relay cannot be reached now",
    ErrorCode.KEY_RETIRED: "sealed to a key this relay retired; fetch its current key",
}


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
        addressed_to = envelope_mailbox_id(data)
    except RemoteProtocolError:
        return ErrorCode.BAD_ENVELOPE
    if not hmac.compare_digest(addressed_to, mailbox_id):
        return ErrorCode.BAD_ENVELOPE
    return None


def expiry_time(now: float, ttl: float) -> int:
    """When an envelope stored at `now` expires, in whole seconds since the epoch."""
    return int(now + ttl)


def expired(expires_at: int, now: float) -> bool:
    """Whether an envelope expiring at `expires_at` is expired at `now`.

    Whole seconds, as stored: SQL reads ``expires_at > int(now)`` for the live ones.
    """
    return expires_at <= int(now)


def idle_cutoff(now: float, idle_ttl: float) -> int:
    """Mailboxes last used at or before this second are idle (when also empty)."""
    return int(now - idle_ttl)


def idle(row: MailboxState, now: float, idle_ttl: float) -> bool:
    """Whether the sweep forgets this mailbox: it holds nothing and was not used lately."""
    return row.count == 0 and row.last_active <= idle_cutoff(now, idle_ttl)


# --- the rule set ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailboxState:
    """A mailbox's row: hashes of its two capabilities, the next seq, its fill, last use."""

    send_hash: bytes = field(repr=False)
    receive_hash: bytes = field(repr=False)
    next_seq: int = 1
    count: int = 0
    size: int = 0
    last_active: int = 0


@dataclass(frozen=True, slots=True)
class NewEnvelope:
    """Where the deposited envelope goes: its seq and when it expires (unix seconds)."""

    seq: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class Change:
    """What a store writes for one accepted operation (a refusal writes nothing).

    Attributes:
        row: the mailbox row afterwards, when it changed.
        created: `row` is new: insert it rather than update it.
        stored: insert the operation's envelope at this seq, expiring then.
        removed: delete these envelopes (each one is stored).
        dropped: delete the mailbox and every envelope in it.
        store_bytes: how the store-wide byte total changes.
    """

    row: MailboxState | None = None
    created: bool = False
    stored: NewEnvelope | None = None
    removed: tuple[int, ...] = ()
    dropped: bool = False
    store_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one operation: an answer and a change, or a refusal."""

    answer: int | None = None
    refusal: ErrorCode | None = None
    change: Change | None = None


def _refuse(code: ErrorCode) -> Decision:
    return Decision(refusal=code)


def seq_refusal(seqs: Iterable[int]) -> ErrorCode | None:
    """`MALFORMED` when a seq cannot name a stored envelope (outside 0..`MAX_SEQ`).

    Checked before any SQL: the frame decoder bounds seqs too, and this is the second line.
    """
    for seq in seqs:
        if not 0 <= seq <= MAX_SEQ:
            return ErrorCode.MALFORMED
    return None


def create(row: MailboxState | None, send_hash: bytes, receive_hash: bytes,
           now: float) -> Decision:
    """CREATE: register a mailbox under a fresh id.

    Args:
        row: the mailbox with this id, if any.
        send_hash: hash of the send capability.
        receive_hash: hash of the receive capability.
        now: seconds since the epoch.

    Returns:
        The new row, or `MAILBOX_EXISTS` when the id is taken.
    """
    if row is not None:
        return _refuse(ErrorCode.MAILBOX_EXISTS)
    fresh = MailboxState(send_hash, receive_hash, last_active=int(now))
    return Decision(change=Change(row=fresh, created=True))


def deposit(row: MailboxState | None, send_token: bytes, size: int, now: float,
            limits: RelayLimits, store_bytes: int) -> Decision:
    """SEND: append an envelope of `size` bytes; its seq is the answer.

    Args:
        row: the mailbox, if it exists.
        send_token: the capability presented.
        size: the envelope's length.
        now: seconds since the epoch (sets the expiry and the last use).
        limits: the per-mailbox and store-wide quotas and the TTL.
        store_bytes: envelope bytes stored in the whole store now.

    Returns:
        The seq, or `UNAUTHORIZED`, `QUOTA_EXCEEDED` (the mailbox is full) or
        `STORE_FULL` (the relay as a whole is).
    """
    if row is None or not authorized(row.send_hash, send_token):
        return _refuse(ErrorCode.UNAUTHORIZED)
    refusal = deposit_refusal(row.count, row.size, size, limits.mailbox_max_envelopes,
                              limits.mailbox_max_bytes)
    if refusal is not None or row.next_seq > MAX_SEQ:
        return _refuse(ErrorCode.QUOTA_EXCEEDED)
    if store_bytes + size > limits.store_max_bytes:
        return _refuse(ErrorCode.STORE_FULL)
    # Built directly rather than with `replace`: this runs once per envelope stored.
    after = MailboxState(row.send_hash, row.receive_hash, row.next_seq + 1, row.count + 1,
                         row.size + size, int(now))
    stored = NewEnvelope(row.next_seq, expiry_time(now, limits.envelope_ttl))
    return Decision(answer=row.next_seq,
                    change=Change(row=after, stored=stored, store_bytes=size))


def subscribe(row: MailboxState | None, receive_token: bytes, now: float) -> Decision:
    """SUBSCRIBE: authorise a receiver; the answer is how many envelopes the mailbox holds.

    The count includes envelopes expired but not yet swept: it is the row's counter, the
    same on every backend, and only a hint to the client.
    """
    if row is None or not authorized(row.receive_hash, receive_token):
        return _refuse(ErrorCode.UNAUTHORIZED)
    return Decision(answer=row.count, change=Change(row=replace(row, last_active=int(now))))


def ack(row: MailboxState | None, receive_token: bytes, seqs: Iterable[int],
        present: Mapping[int, int], now: float) -> Decision:
    """ACK: delete the named envelopes; the answer counts those that were still stored.

    Args:
        row: the mailbox, if it exists.
        receive_token: the capability presented.
        seqs: the seqs acked (duplicates and unknown seqs are harmless).
        present: size of each of `seqs` the store holds (read by the backend).
        now: seconds since the epoch.

    Returns:
        The count removed, or `MALFORMED` (a seq out of range) or `UNAUTHORIZED`.
    """
    wanted = set(seqs)
    refusal = seq_refusal(wanted)
    if refusal is not None:
        return _refuse(refusal)
    if row is None or not authorized(row.receive_hash, receive_token):
        return _refuse(ErrorCode.UNAUTHORIZED)
    removed = tuple(sorted(seq for seq in wanted if seq in present))
    size = sum(present[seq] for seq in removed)
    after = replace(row, count=row.count - len(removed), size=row.size - size,
                    last_active=int(now))
    return Decision(answer=len(removed),
                    change=Change(row=after, removed=removed, store_bytes=-size))


def delete(row: MailboxState | None, receive_token: bytes) -> Decision:
    """DELETE: destroy the mailbox and everything in it."""
    if row is None or not authorized(row.receive_hash, receive_token):
        return _refuse(ErrorCode.UNAUTHORIZED)
    return Decision(change=Change(dropped=True, store_bytes=-row.size))


def fetch_refusal(after_seq: int, limit: int) -> ErrorCode | None:
    """`MALFORMED` when a FETCH cannot be answered: `after_seq` out of range, no `limit`."""
    if limit < 1:
        return ErrorCode.MALFORMED
    return seq_refusal((after_seq,))


def fetch_batch(rows: Iterable[tuple[int, bytes]], limit: int,
                max_bytes: int) -> tuple[tuple[Delivery, ...], bool]:
    """Cut the unexpired envelopes after a cursor into one answer, by count and bytes.

    Args:
        rows: ``(seq, body)`` in seq order; the backend reads ``limit + 1`` of them so
            that the last one tells whether more are stored.
        limit: at most this many envelopes.
        max_bytes: at most this many envelope bytes, except that the first envelope is
            always returned (an envelope larger than `max_bytes` would otherwise never
            be delivered).

    Returns:
        The envelopes and whether more are stored beyond them.
    """
    items: list[Delivery] = []
    total = 0
    for seq, body in rows:
        if len(items) == limit or (items and total + len(body) > max_bytes):
            return tuple(items), True
        items.append(Delivery(seq, bytes(body)))
        total += len(body)
    return tuple(items), False


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

"""The storage interface every relay backend implements, and its shared vocabulary.

Writes (create, deposit, ack, delete, subscribe-touch) are *group committed*: each call
returns an `asyncio.Future` at once, the backend gathers many operations into one
transaction, and the futures resolve only after that transaction commits (design §4: an
envelope is durable once the relay answers "stored"). Refusals resolve the future with a
`Refused` error carrying the wire `ErrorCode`; storage failures with `StoreUnavailable`.

Every backend applies the same rules (`backchannel.relay.mailbox`) op after op, in the
order the ops arrived, each with its own `now`, in one transaction per batch; an op that
fails (a database error, a bug) fails alone: its writes roll back to a savepoint and its
future gets the error while the rest of the batch commits. If the writer itself dies, the
store sets `failed`, answers everything queued with `StoreUnavailable`, and `healthy()`
turns false, so that the server can exit and a supervisor restart it.

After every commit the backend tells its `CommitListener`, on the event loop, which
mailboxes received which envelopes, so the server can push them to subscribers without
reading them back. Backends shared by several relay nodes (PostgreSQL) also call the
listener with ``None`` when another node stored something, and the server then reads;
an empty mailbox id with ``None`` means "any mailbox may have changed" (after a lost
notification connection), and the server refreshes every subscription.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.relayframes import Delivery, ErrorCode
from backchannel.relay import mailbox
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import Decision, MailboxState
from backchannel.relay.metrics import RelayMetrics

__all__ = [
    "AckOp",
    "Batch",
    "CommitListener",
    "CreateOp",
    "DeleteOp",
    "DepositOp",
    "Op",
    "Outcome",
    "Refused",
    "RelayStore",
    "StoreUnavailable",
    "SubscribeOp",
    "SweepResult",
    "acked_seqs",
    "decide",
    "op_failure",
    "settle",
    "take_batch",
]

log = logging.getLogger("backchannel.relay.store")

CommitListener = Callable[[bytes, tuple[Delivery, ...] | None], None]


class Refused(BackchannelError):
    """The store refused an operation for a reason the client must hear (``code``)."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.name.lower())
        self.code = code


class StoreUnavailable(BackchannelError):
    """The store cannot serve now (closed, or the database failed)."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one expiry sweep removed."""

    envelopes: int
    mailboxes: int


@dataclass(slots=True)
class CreateOp:
    mailbox_id: bytes
    send_hash: bytes = field(repr=False)
    receive_hash: bytes = field(repr=False)
    now: float
    future: asyncio.Future[None] = field(repr=False)


_T_contra = TypeVar("_T_contra", contravariant=True)


class Outcome(Protocol[_T_contra]):
    """What takes an op's answer: an `asyncio.Future`, or any object that takes it the same
    way. A deposit's is often the server's own receipt, answered in the same turn of the
    loop as its commit (one future and one scheduled callback per envelope less)."""

    def done(self) -> bool: ...

    def set_result(self, result: _T_contra, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(slots=True)
class DepositOp:
    mailbox_id: bytes
    send_token: bytes = field(repr=False)
    envelope: bytes = field(repr=False)
    now: float
    future: Outcome[int] = field(repr=False)


@dataclass(slots=True)
class AckOp:
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)
    seqs: tuple[int, ...]
    now: float
    future: asyncio.Future[int] = field(repr=False)


@dataclass(slots=True)
class DeleteOp:
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)
    now: float
    future: asyncio.Future[None] = field(repr=False)


@dataclass(slots=True)
class SubscribeOp:
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)
    now: float
    future: asyncio.Future[int] = field(repr=False)


Op = CreateOp | DepositOp | AckOp | DeleteOp | SubscribeOp

_CLOSED: Final = "the relay store is closed"
_FAILED: Final = "the relay database failed; retry later"


class RelayStore(ABC):
    """Durable mailboxes and envelopes. One instance per relay process.

    Args:
        limits: quotas and TTLs the store enforces.
        metrics: where commit latency and counts are recorded.

    Attributes:
        failed: set (on the event loop) when the writer died; nothing is stored after it,
            every write is answered `StoreUnavailable` and `healthy()` is false.
        failure: the exception that killed the writer (for its type name in a log line).
    """

    def __init__(self, limits: RelayLimits, metrics: RelayMetrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics if metrics is not None else RelayMetrics()
        self.listener: CommitListener | None = None
        self.failed = asyncio.Event()
        self.failure: BaseException | None = None
        self._closed = True

    @abstractmethod
    async def open(self) -> None:
        """Connect, apply schema migrations, start the writer.

        Raises:
            StoreUnavailable: the database cannot be opened.
        """

    @abstractmethod
    async def close(self) -> None:
        """Commit every operation already submitted, then release the database."""

    def submit(self, op: Op) -> None:
        """Queue a write for the next group commit; its future resolves after commit.

        An op the rules refuse on its face (a seq out of range) is answered at once,
        before any SQL.
        """
        if self._closed or self.failed.is_set():
            settle(op.future, StoreUnavailable(_CLOSED))
            return
        if isinstance(op, AckOp):
            refusal = mailbox.seq_refusal(op.seqs)
            if refusal is not None:
                settle(op.future, Refused(refusal))
                return
        self._enqueue(op)

    @abstractmethod
    def _enqueue(self, op: Op) -> None:
        """Hand `op` to the writer."""

    async def fetch(
        self, mailbox_id: bytes, receive_token: bytes | None, after_seq: int, limit: int,
        max_bytes: int, now: float,
    ) -> tuple[tuple[Delivery, ...], bool]:
        """Unexpired envelopes of a mailbox after `after_seq`, in order.

        Args:
            mailbox_id: the mailbox.
            receive_token: checked when given; None when the caller already holds an
                authorised subscription.
            after_seq: return only seqs greater than this.
            limit: at most this many envelopes.
            max_bytes: at most this many envelope bytes (at least one envelope is returned
                when any is stored).
            now: the current time (expired envelopes are skipped).

        Returns:
            The envelopes and whether more are stored beyond them.

        Raises:
            Refused: MALFORMED when `after_seq` or `limit` is out of range; UNAUTHORIZED
                when the token does not open the mailbox.
            StoreUnavailable: the database failed.
        """
        refusal = mailbox.fetch_refusal(after_seq, limit)
        if refusal is not None:
            raise Refused(refusal)
        if self._closed:
            raise StoreUnavailable(_CLOSED)
        rows = await self._read_after(mailbox_id, receive_token, after_seq, limit + 1, now)
        return mailbox.fetch_batch(rows, limit, max_bytes)

    @abstractmethod
    async def _read_after(self, mailbox_id: bytes, receive_token: bytes | None,
                          after_seq: int, count: int,
                          now: float) -> list[tuple[int, bytes]]:
        """Up to `count` unexpired ``(seq, body)`` after `after_seq`, in seq order.

        Raises:
            Refused: UNAUTHORIZED when `receive_token` is given and does not open it.
            StoreUnavailable: the database failed.
        """

    @abstractmethod
    async def sweep(self, now: float) -> SweepResult:
        """Delete expired envelopes and idle empty mailboxes (one bounded pass)."""

    @abstractmethod
    async def healthy(self) -> bool:
        """Whether the database answers and the writer lives."""

    def _fatal(self, exc: BaseException) -> None:
        """The writer died (on the event loop): say so once, refuse everything after."""
        if self.failed.is_set():
            return
        self.failure = exc
        self.failed.set()
        for op in self._drain():
            settle(op.future, StoreUnavailable(_FAILED))

    def _drain(self) -> list[Op]:
        """Ops still queued for a writer that will not take them (overridden by backends)."""
        return []

    def _resolve(self, batch: Batch, elapsed: float) -> None:
        """After a commit (on the event loop): record it, answer the ops, wake readers."""
        self.metrics.commit_seconds.observe(elapsed)
        self.metrics.commit_ops.inc(len(batch.results))
        for future, result in batch.results:
            settle(future, result)
        if self.listener is not None:
            for mailbox_id, items in batch.fresh.items():
                self.listener(mailbox_id, tuple(items))


class Batch:
    """The answers of one group commit and the envelopes it stored, per mailbox.

    Args:
        ops: the operations, in arrival order.
    """

    __slots__ = ("fresh", "ops", "results", "started")

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops
        self.results: list[tuple[Outcome[Any], object]] = []
        self.fresh: dict[bytes, list[Delivery]] = defaultdict(list)
        self.started = time.perf_counter()

    def answer(self, op: Op, decision: Decision) -> None:
        """Record the answer of an op whose change (if any) was written."""
        future: Outcome[Any] = op.future
        if decision.refusal is not None:
            self.results.append((future, Refused(decision.refusal)))
            return
        if isinstance(op, DepositOp) and decision.answer is not None:
            self.fresh[op.mailbox_id].append(Delivery(decision.answer, op.envelope))
        self.results.append((future, decision.answer))

    def fail(self, op: Op, error: BaseException) -> None:
        """Record that one op failed alone."""
        self.results.append((op.future, error))

    def fail_all(self, error: BaseException | None = None) -> None:
        """Nothing of this batch committed: every op gets `error` (or StoreUnavailable)."""
        failure = error if error is not None else StoreUnavailable(_FAILED)
        self.results = [(op.future, failure) for op in self.ops]
        self.fresh.clear()

    def reset(self) -> None:
        """Forget every answer (the transaction is run again from the start)."""
        self.results.clear()
        self.fresh.clear()

    @property
    def elapsed(self) -> float:
        """Seconds since the batch began."""
        return time.perf_counter() - self.started


def take_batch(first: Op, next_op: Callable[[], Op | None], limit: int,
               ) -> tuple[list[Op], bool]:
    """Gather one group commit: `first` and whatever else is queued, up to `limit` ops.

    Args:
        first: the op the writer woke up for.
        next_op: the next queued op without waiting; raises IndexError when none is
            queued, returns None for the stop sentinel.
        limit: ops per transaction (`RelayLimits.commit_batch`).

    Returns:
        The batch and whether the writer must stop after committing it.
    """
    batch: list[Op] = [first]
    while len(batch) < limit:
        try:
            nxt = next_op()
        except IndexError:
            return batch, False
        if nxt is None:
            return batch, True
        batch.append(nxt)
    return batch, False


def decide(op: Op, row: MailboxState | None, present: Mapping[int, int],
           limits: RelayLimits, store_bytes: int) -> Decision:
    """Apply the mailbox rules to one op, given the rows the backend read for it.

    Args:
        op: the operation.
        row: the mailbox's row, or None.
        present: for an ack, the size of each acked envelope still stored.
        limits: quotas and TTLs.
        store_bytes: envelope bytes in the whole store before this op.

    Returns:
        The answer and the change to write.
    """
    match op:
        case CreateOp(_, send_hash, receive_hash, now, _):
            return mailbox.create(row, send_hash, receive_hash, now)
        case DepositOp(_, token, envelope, now, _):
            return mailbox.deposit(row, token, len(envelope), now, limits, store_bytes)
        case SubscribeOp(_, token, now, _):
            return mailbox.subscribe(row, token, now)
        case AckOp(_, token, seqs, now, _):
            return mailbox.ack(row, token, seqs, present, now)
        case DeleteOp(_, token, _, _):
            return mailbox.delete(row, token)
    raise AssertionError(f"unknown store operation {type(op).__name__}")


def acked_seqs(op: Op) -> tuple[int, ...]:
    """The seqs whose sizes the backend reads before `decide` (an ack's, valid ones only)."""
    if isinstance(op, AckOp) and mailbox.seq_refusal(op.seqs) is None:
        return tuple(sorted(set(op.seqs)))
    return ()


def op_failure(exc: Exception, store_error: type[BaseException] | tuple[type[BaseException], ...]
               ) -> BaseException:
    """What one op that raised `exc` is answered (its writes rolled back).

    Args:
        exc: what applying the op raised.
        store_error: the backend's database errors: those mean "retry later".

    Returns:
        `StoreUnavailable` for a database error; `Refused` INTERNAL for anything else (a
        bug, logged by type only: the error text could carry user data).
    """
    if isinstance(exc, store_error):
        return StoreUnavailable(_FAILED)
    log.error("store operation failed", extra={"fields": {"error": type(exc).__name__}})
    return Refused(ErrorCode.INTERNAL)


def settle(future: Outcome[Any], result: object) -> None:
    """Resolve `future` with `result` (an exception instance fails it), unless cancelled."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

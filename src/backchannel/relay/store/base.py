"""The storage interface every relay backend implements, and its shared vocabulary.

Writes (create, deposit, ack, delete, subscribe-touch) are *group committed*: each call
returns an `asyncio.Future` at once, the backend gathers many operations into one
transaction, and the futures resolve only after that transaction commits (design §4: an
envelope is durable once the relay answers "stored"). Refusals resolve the future with a
`Refused` error carrying the wire `ErrorCode`; storage failures with `StoreUnavailable`.

After every commit the backend tells its `CommitListener`, on the event loop, which
mailboxes received which envelopes, so the server can push them to subscribers without
reading them back. Backends shared by several relay nodes (PostgreSQL) also call the
listener with ``None`` when another node stored something, and the server then reads;
an empty mailbox id with ``None`` means "any mailbox may have changed" (after a lost
notification connection), and the server refreshes every subscription.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.relayframes import Delivery, ErrorCode
from backchannel.relay.limits import RelayLimits
from backchannel.relay.metrics import RelayMetrics

__all__ = [
    "AckOp",
    "CommitListener",
    "CreateOp",
    "DeleteOp",
    "DepositOp",
    "Op",
    "Refused",
    "RelayStore",
    "StoreUnavailable",
    "SubscribeOp",
    "SweepResult",
    "settle",
]

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


@dataclass(slots=True)
class DepositOp:
    mailbox_id: bytes
    send_token: bytes = field(repr=False)
    envelope: bytes = field(repr=False)
    now: float
    future: asyncio.Future[int] = field(repr=False)


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


class RelayStore(ABC):
    """Durable mailboxes and envelopes. One instance per relay process.

    Args:
        limits: quotas and TTLs the store enforces.
        metrics: where commit latency and counts are recorded.
    """

    def __init__(self, limits: RelayLimits, metrics: RelayMetrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics if metrics is not None else RelayMetrics()
        self.listener: CommitListener | None = None

    @abstractmethod
    async def open(self) -> None:
        """Connect, apply schema migrations, start the writer.

        Raises:
            StoreUnavailable: the database cannot be opened.
        """

    @abstractmethod
    async def close(self) -> None:
        """Commit every operation already submitted, then release the database."""

    @abstractmethod
    def submit(self, op: Op) -> None:
        """Queue a write for the next group commit; its future resolves after commit."""

    @abstractmethod
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
            Refused: UNAUTHORIZED when the token does not open the mailbox.
            StoreUnavailable: the database failed.
        """

    @abstractmethod
    async def sweep(self, now: float) -> SweepResult:
        """Delete expired envelopes and idle empty mailboxes (one bounded pass)."""

    @abstractmethod
    async def healthy(self) -> bool:
        """Whether the database answers."""

    # Convenience wrappers: one operation, awaited.

    async def create_mailbox(
        self, mailbox_id: bytes, send_hash: bytes, receive_hash: bytes, now: float
    ) -> None:
        """Create a mailbox (see `CreateOp`); raises `Refused` MAILBOX_EXISTS if taken."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit(CreateOp(mailbox_id, send_hash, receive_hash, now, fut))
        await fut

    async def deposit(self, mailbox_id: bytes, send_token: bytes, envelope: bytes,
                      now: float) -> int:
        """Store an envelope; returns its seq once committed."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit(DepositOp(mailbox_id, send_token, envelope, now, fut))
        return await fut

    async def ack(self, mailbox_id: bytes, receive_token: bytes, seqs: tuple[int, ...],
                  now: float) -> int:
        """Delete acked envelopes; returns how many were still stored."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit(AckOp(mailbox_id, receive_token, seqs, now, fut))
        return await fut

    async def delete_mailbox(self, mailbox_id: bytes, receive_token: bytes, now: float) -> None:
        """Delete a mailbox and all its envelopes."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.submit(DeleteOp(mailbox_id, receive_token, now, fut))
        await fut

    async def subscribe(self, mailbox_id: bytes, receive_token: bytes, now: float) -> int:
        """Authorise a receiver and mark the mailbox active; returns envelopes pending."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.submit(SubscribeOp(mailbox_id, receive_token, now, fut))
        return await fut


def settle(future: asyncio.Future[object], result: object) -> None:
    """Resolve `future` with `result` (an exception instance fails it), unless cancelled."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

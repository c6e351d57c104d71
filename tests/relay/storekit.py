"""Driving a `RelayStore` directly (no WebSocket): build ops, submit them as one batch, and
read the answers as plain values, the same way for the memory, SQLite and PostgreSQL stores.

An answer is the op's result (a seq, a count, None), the `ErrorCode` of a `Refused`, or
``"unavailable"`` for `StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from backchannel.protocol.relayframes import Delivery, ErrorCode, token_hash
from backchannel.relay.limits import RelayLimits
from backchannel.relay.store.base import (
    AckOp,
    Batch,
    CreateOp,
    DeleteOp,
    DepositOp,
    Op,
    Refused,
    RelayStore,
    StoreUnavailable,
    SubscribeOp,
)
from backchannel.relay.store.postgres import PostgresStore
from backchannel.relay.store.sqlite import SqliteStore
from backchannel.testing import MemoryRelayStore
from tests.relay.conftest import PG_DSN, drop_schema, envelope

Answer = int | None | ErrorCode | str
T0 = 1_700_000_000.0


class GatedSqliteStore(SqliteStore):
    """A SQLite store whose writer can be held, so that a test decides what one batch is."""

    def __init__(self, path: Path, limits: RelayLimits) -> None:
        super().__init__(path, limits)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def _commit(self, db: object, batch: Batch) -> None:  # type: ignore[override]
        self.entered.set()
        self.gate.wait(10)
        super()._commit(db, batch)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def opened(kind: str, limits: RelayLimits, folder: Path,
                 sqlite_class: type[SqliteStore] = GatedSqliteStore,
                 pg_class: type[PostgresStore] = PostgresStore,
                 memory_class: type[MemoryRelayStore] = MemoryRelayStore,
                 ) -> AsyncIterator[RelayStore]:
    """A fresh, open store of `kind`; closed afterwards.

    Kinds: "memory", "sqlite" (no savepoints until an op raises), "sqlite-ops" (a savepoint
    per op always, its fallback), "postgres" (net writes per batch), "postgres-ops" (the
    same store running every batch op by op, its fallback).
    """
    schema = f"relay_test_{secrets.token_hex(6)}"
    store: RelayStore
    if kind == "memory":
        store = memory_class(limits)
    elif kind.startswith("sqlite"):
        lite = store = sqlite_class(folder / f"relay-{secrets.token_hex(4)}.db", limits)
        lite.savepoint_every_op = kind == "sqlite-ops"
    else:
        pg = store = pg_class(PG_DSN, schema, limits)
        pg.net_writes = kind != "postgres-ops"
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        if kind.startswith("postgres"):
            await drop_schema(schema)


@dataclass
class Box:
    """A mailbox's id and capabilities."""

    mailbox_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    send_token: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    receive_token: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def envelope(self, n: int, size: int = 1024) -> bytes:
        return envelope(self.mailbox_id, n, size)


def _future() -> asyncio.Future[object]:
    return asyncio.get_running_loop().create_future()


def create(box: Box, now: float = T0) -> Op:
    return CreateOp(box.mailbox_id, token_hash(box.send_token), token_hash(box.receive_token),
                    now, _future())  # type: ignore[arg-type]


def send(box: Box, body: bytes, now: float = T0, token: bytes | None = None) -> Op:
    return DepositOp(box.mailbox_id, box.send_token if token is None else token, body, now,
                     _future())  # type: ignore[arg-type]


def ack(box: Box, seqs: tuple[int, ...], now: float = T0, token: bytes | None = None) -> Op:
    return AckOp(box.mailbox_id, box.receive_token if token is None else token, seqs, now,
                 _future())  # type: ignore[arg-type]


def subscribe(box: Box, now: float = T0, token: bytes | None = None) -> Op:
    return SubscribeOp(box.mailbox_id, box.receive_token if token is None else token, now,
                       _future())  # type: ignore[arg-type]


def delete(box: Box, now: float = T0, token: bytes | None = None) -> Op:
    return DeleteOp(box.mailbox_id, box.receive_token if token is None else token, now,
                    _future())  # type: ignore[arg-type]


def answer_of(future: asyncio.Future[object]) -> Answer:
    assert future.done(), "an op was left unanswered"
    exc = future.exception()
    if isinstance(exc, Refused):
        return exc.code
    if isinstance(exc, StoreUnavailable):
        return "unavailable"
    if exc is not None:
        raise exc
    result = future.result()
    assert result is None or isinstance(result, int)
    return result


async def run(store: RelayStore, *ops: Op) -> list[Answer]:
    """Submit `ops` so that they are committed in one batch; their answers, in order."""
    if isinstance(store, GatedSqliteStore):
        # Hold the writer on a harmless op so that all of `ops` are queued before it
        # takes its next batch.
        store.gate.clear()
        store.entered.clear()
        warm = subscribe(Box())
        store.submit(warm)
        await asyncio.to_thread(store.entered.wait, 10)
        for op in ops:
            store.submit(op)
        store.gate.set()
        await asyncio.wait([warm.future])
    else:
        for op in ops:
            store.submit(op)
    if ops:
        await asyncio.wait([op.future for op in ops], timeout=30)
    return [answer_of(op.future) for op in ops]  # type: ignore[arg-type]


async def fetch(store: RelayStore, box: Box, after: int = 0, limit: int = 256,
                max_bytes: int = 256 * 1024, now: float = T0,
                token: bytes | None = None, check: bool = True,
                ) -> tuple[list[int], bool] | ErrorCode | str:
    """A fetch's seqs and `more`, or its refusal."""
    try:
        items, more = await store.fetch(
            box.mailbox_id, (box.receive_token if token is None else token) if check else None,
            after, limit, max_bytes, now)
    except Refused as exc:
        return exc.code
    except StoreUnavailable:
        return "unavailable"
    return [d.seq for d in items], more


async def bodies(store: RelayStore, box: Box, now: float = T0) -> list[Delivery]:
    items, _ = await store.fetch(box.mailbox_id, None, 0, 256, 1 << 30, now)
    return list(items)

"""PostgreSQL backend (asyncpg): several relay nodes share one database.

- **Group commit.** One writer task per node drains the operation queue; each batch is one
  transaction and one commit (relay research §4a: batching is what makes PostgreSQL fast).
  The batch locks the rows of every mailbox it names in id order (so nodes never deadlock
  on each other's batches), decides its ops in memory in arrival order, each with its own
  `now`, by the same rules as every backend (`Overlay`, `decide`), and writes the net
  result in a few set-based statements: about ten round trips per batch, not several per
  op. If anything in that fails, nobody has been answered yet: the transaction is rolled
  back and the batch runs again op by op, each op in a savepoint, so that the op that
  fails fails alone and its neighbours commit.
- **Wake-ups across nodes.** A deposit notifies ``backchannel_relay.<schema>`` with the
  mailbox id (one notification per mailbox per batch, research §4a: per-message NOTIFY
  would cap a node at ~2k msg/s). Every node listens; a node ignores its own writer's
  notifications (it already pushed those envelopes from memory) and tells the server that
  the mailbox is stale otherwise, so the subscriber's connection reads and delivers.
- **Resilience.** A lost writer or listener connection is reopened; after the listener
  comes back every subscription is marked stale, so no wake-up is lost in the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import asyncpg

from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import Change, Decision, MailboxState, authorized, idle_cutoff
from backchannel.relay.metrics import RelayMetrics
from backchannel.relay.store.base import (
    Batch,
    CreateOp,
    DepositOp,
    Op,
    Refused,
    RelayStore,
    StoreUnavailable,
    SweepResult,
    acked_seqs,
    decide,
    log,
    op_failure,
    take_batch,
)
from backchannel.relay.store.overlay import NetWrites, Overlay
from backchannel.relay.store.schema import migrations

__all__ = ["STALE_ALL", "PostgresStore"]

# The listener is called with this mailbox id when every subscription may have missed a
# wake-up (the listen connection was lost and reopened).
STALE_ALL: Final = b""
# Reader connections: fetches are short index range scans; a handful keeps the writer's
# connection free and PostgreSQL's backend count low per node.
_READ_POOL_MIN: Final = 1
_READ_POOL_MAX: Final = 4
# Seconds to wait for PostgreSQL to accept a connection at start-up.
_CONNECT_TIMEOUT: Final = 10.0
# How often a lost listen connection is retried.
_RECONNECT_DELAY: Final = 1.0
# A batch that deadlocks this many times in a row is failed (the clients retry).
_DEADLOCK_RETRIES: Final = 3
_ERRORS: Final = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError)
# The connection is gone (or its state unknown): the transaction with it.
_CONNECTION_ERRORS: Final = (OSError, asyncpg.InterfaceError, TimeoutError)
# The batch lost a lock conflict; rolled back whole, it is run again.
_RETRY: Final = (asyncpg.exceptions.DeadlockDetectedError,
                 asyncpg.exceptions.SerializationError)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresStore(RelayStore):
    """Relay storage in a PostgreSQL schema shared by any number of relay nodes.

    Attributes:
        net_writes: decide each batch in memory and write its net result (a few round
            trips per batch); when false, always run op by op (several round trips per
            op: the way a failing batch is run again, and what the tests compare).

    Args:
        dsn: ``postgresql://...`` connection URL.
        schema: the schema holding the relay's tables (created if missing).
        limits: quotas and TTLs.
        metrics: where commit latency is recorded.
    """

    def __init__(self, dsn: str, schema: str, limits: RelayLimits,
                 metrics: RelayMetrics | None = None) -> None:
        super().__init__(limits, metrics)
        self.dsn = dsn
        self.schema = schema
        self.channel = f"backchannel_relay.{schema}"
        self._settings = {"search_path": _quote_ident(schema),
                          "application_name": "backchannel-relay"}
        self._queue: asyncio.Queue[Op | None] = asyncio.Queue()
        self._pool: Any = None
        self._writer_conn: Any = None
        self._writer_pid = 0
        self._listen_conn: Any = None
        self._writer_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.net_writes = True

    # --- lifecycle ---------------------------------------------------------------------

    async def _connect(self) -> Any:
        return await asyncpg.connect(self.dsn, server_settings=self._settings,
                                     timeout=_CONNECT_TIMEOUT)

    async def open(self) -> None:
        try:
            await self._migrate()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=_READ_POOL_MIN, max_size=_READ_POOL_MAX,
                server_settings=self._settings, timeout=_CONNECT_TIMEOUT)
            self._writer_conn = await self._connect()
            self._writer_pid = self._writer_conn.get_server_pid()
            await self._listen()
        except _ERRORS as exc:
            await self._release()
            raise StoreUnavailable(f"cannot open the relay database: {type(exc).__name__}"
                                   ) from None
        self._closed = False
        self._writer_task = asyncio.create_task(self._write_loop())
        self._watch_task = asyncio.create_task(self._watch_listener())

    async def _migrate(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT)
        try:
            async with conn.transaction():
                # Nodes starting together migrate one at a time.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                   "backchannel_relay:" + self.schema)
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote_ident(self.schema)}")
                await conn.execute(f"SET LOCAL search_path TO {_quote_ident(self.schema)}")
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_version "
                                   "(version integer NOT NULL)")
                current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
                for version, sql in migrations("postgres"):
                    if version > current:
                        await conn.execute(sql)
                        await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
        finally:
            await conn.close()

    async def _listen(self) -> None:
        self._listen_conn = await self._connect()
        await self._listen_conn.add_listener(self.channel, self._on_notify)

    async def _watch_listener(self) -> None:
        """Reopen the listen connection when it drops, then mark everything stale."""
        while not self._closed:
            await asyncio.sleep(_RECONNECT_DELAY)
            conn = self._listen_conn
            if conn is not None and not conn.is_closed():
                continue
            try:
                await self._listen()
            except _ERRORS:
                log.warning("listen connection lost; retrying")
                continue
            if self.listener is not None:
                self.listener(STALE_ALL, None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        if self._writer_task is not None:
            await self._writer_task
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        await self._release()

    async def _release(self) -> None:
        for conn in (self._listen_conn, self._writer_conn):
            if conn is not None:
                with contextlib.suppress(*_ERRORS):
                    await conn.close()
        if self._pool is not None:
            with contextlib.suppress(*_ERRORS):
                await self._pool.close()

    def _on_notify(self, _conn: object, pid: int, _channel: str, payload: str) -> None:
        if pid == self._writer_pid or self.listener is None:
            return
        with contextlib.suppress(ValueError):
            self.listener(bytes.fromhex(payload), None)

    # --- writes ------------------------------------------------------------------------

    def _enqueue(self, op: Op) -> None:
        self._queue.put_nowait(op)

    def _drain(self) -> list[Op]:
        ops: list[Op] = []
        while not self._queue.empty():
            op = self._queue.get_nowait()
            if op is not None:
                ops.append(op)
        return ops

    def _next_op(self) -> Op | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            raise IndexError("nothing queued") from None

    async def _write_loop(self) -> None:
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                ops, stop = take_batch(first, self._next_op, self.limits.commit_batch)
                await self._commit(Batch(ops))
                if stop:
                    return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # No traceback on stderr: the store says failed, and the server logs it once.
            self._fatal(exc)

    async def _commit(self, batch: Batch) -> None:
        try:
            await self._run_with_retries(batch)
        except BaseException:
            batch.fail_all()  # the writer is dying: answer this batch before it goes
            self._resolve(batch, batch.elapsed)
            raise
        self._resolve(batch, batch.elapsed)

    async def _run_with_retries(self, batch: Batch) -> None:
        # Nodes lock mailbox rows in one order (see `_lock`), so only the expiry sweep can
        # deadlock with a batch; PostgreSQL then rolls the batch back whole, nobody has
        # been answered yet, and it is simply run again.
        for _attempt in range(_DEADLOCK_RETRIES):
            batch.reset()
            try:
                await self._run(await self._writer(), batch)
            except _RETRY:
                continue
            except _ERRORS as exc:
                log.warning("commit failed", extra={"fields": {"error": type(exc).__name__}})
                if isinstance(exc, _CONNECTION_ERRORS):
                    self._writer_conn = None
                batch.fail_all()
            return
        batch.fail_all()

    async def _run(self, conn: Any, batch: Batch) -> None:
        """Apply the batch in arrival order in one transaction: net writes, else op by op.

        The fast way decides the whole batch in memory (`Overlay`) and writes the net
        result in a few statements. If anything in it fails, nobody has been answered:
        the transaction is rolled back and the batch runs again op by op, each op in a
        savepoint, so that the failing op is found and fails alone.
        """
        if self.net_writes:
            try:
                await self._run_net(conn, batch)
                return
            except (*_RETRY, *_CONNECTION_ERRORS):
                raise  # the whole transaction is lost either way
            except Exception:
                batch.reset()  # the op-by-op run below finds the culprit and answers it
        await self._run_ops(conn, batch)

    async def _lock(self, conn: Any, batch: Batch) -> dict[bytes, MailboxState | None]:
        """Lock and read every mailbox the batch names, in id order.

        One lock order for every node: ops then run in arrival order without two nodes
        ever waiting on each other's rows in opposite orders.
        """
        ids = sorted({op.mailbox_id for op in batch.ops})
        found = await conn.fetch("SELECT id, send_hash, receive_hash, next_seq, count, bytes, "
                                 "last_active FROM mailboxes WHERE id = ANY($1::bytea[]) "
                                 "ORDER BY id FOR UPDATE", ids)
        rows: dict[bytes, MailboxState | None] = dict.fromkeys(ids)
        for r in found:
            rows[r[0]] = MailboxState(*r[1:])
        return rows

    async def _run_net(self, conn: Any, batch: Batch) -> None:
        async with conn.transaction():
            rows = await self._lock(conn, batch)
            pairs = [(op.mailbox_id, seq) for op in batch.ops for seq in acked_seqs(op)]
            sizes: dict[bytes, dict[int, int]] = {}
            if pairs:
                for r in await conn.fetch(
                        "SELECT e.mailbox_id, e.seq, length(e.body) FROM envelopes e "
                        "JOIN unnest($1::bytea[], $2::bigint[]) AS a(m, s) "
                        "ON e.mailbox_id = a.m AND e.seq = a.s",
                        [m for m, _ in pairs], [q for _, q in pairs]):
                    sizes.setdefault(r[0], {})[r[1]] = r[2]
            usage: int = await conn.fetchval("SELECT bytes FROM store_usage")
            overlay = Overlay(rows, sizes, self.limits, usage)
            decisions = [overlay.apply(op) for op in batch.ops]
            await self._flush(conn, overlay.net())
            for op, decision in zip(batch.ops, decisions, strict=True):
                batch.answer(op, decision)
            await self._notify(conn, batch)

    async def _flush(self, conn: Any, net: NetWrites) -> None:
        """Write a batch's net result: a few set-based statements, in a safe order."""
        if net.cleared:
            await conn.execute("DELETE FROM envelopes WHERE mailbox_id = ANY($1::bytea[])",
                               net.cleared)
        if net.acked:
            await conn.execute("DELETE FROM envelopes e USING unnest($1::bytea[], $2::bigint[]) "
                               "AS a(m, s) WHERE e.mailbox_id = a.m AND e.seq = a.s",
                               [m for m, _ in net.acked], [q for _, q in net.acked])
        if net.gone:
            await conn.execute("DELETE FROM mailboxes WHERE id = ANY($1::bytea[])", net.gone)
        if net.updated:
            await conn.execute(
                "UPDATE mailboxes AS m SET send_hash = u.sh, receive_hash = u.rh, "
                "next_seq = u.ns, count = u.c, bytes = u.b, last_active = u.la "
                "FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bigint[], "
                "$5::integer[], $6::bigint[], $7::bigint[]) AS u(id, sh, rh, ns, c, b, la) "
                "WHERE m.id = u.id", *_columns(net.updated))
        if net.created:
            inserted = await conn.fetchval(
                "WITH i AS (INSERT INTO mailboxes (id, send_hash, receive_hash, next_seq, "
                "count, bytes, last_active) SELECT * FROM unnest($1::bytea[], $2::bytea[], "
                "$3::bytea[], $4::bigint[], $5::integer[], $6::bigint[], $7::bigint[]) "
                "ON CONFLICT (id) DO NOTHING RETURNING 1) SELECT count(*) FROM i",
                *_columns(net.created))
            if inserted != len(net.created):
                # Another node created one of these ids meanwhile: the op-by-op run
                # answers that create MAILBOX_EXISTS.
                raise _CreateRace
        if net.inserted:
            await conn.execute(
                "INSERT INTO envelopes (mailbox_id, seq, expires_at, body) SELECT * FROM "
                "unnest($1::bytea[], $2::bigint[], $3::bigint[], $4::bytea[])",
                *(list(column) for column in zip(*net.inserted, strict=True)))
        if net.store_bytes:
            await conn.execute("UPDATE store_usage SET bytes = bytes + $1", net.store_bytes)

    async def _notify(self, conn: Any, batch: Batch) -> None:
        if batch.fresh:
            # One wake-up per mailbox per batch (research §4a).
            await conn.execute("SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m",
                               self.channel, [mid.hex() for mid in batch.fresh])

    async def _run_ops(self, conn: Any, batch: Batch) -> None:
        """Apply the batch op by op, each in a savepoint, in one transaction."""
        async with conn.transaction():
            await self._lock(conn, batch)
            usage: int = await conn.fetchval("SELECT bytes FROM store_usage")
            start = usage
            for op in batch.ops:
                try:
                    async with conn.transaction():  # a savepoint: the op fails alone
                        decision = await self._apply(conn, op, usage)
                except (*_RETRY, *_CONNECTION_ERRORS):
                    raise  # the whole transaction is lost
                except Exception as exc:
                    batch.fail(op, _pg_op_failure(op, exc))
                    continue
                batch.answer(op, decision)
                if decision.change is not None:
                    usage += decision.change.store_bytes
            if usage != start:
                await conn.execute("UPDATE store_usage SET bytes = bytes + $1", usage - start)
            await self._notify(conn, batch)

    async def _apply(self, conn: Any, op: Op, usage: int) -> Decision:
        """Decide one op by the rules and write its change."""
        mid = op.mailbox_id
        found = await conn.fetchrow("SELECT send_hash, receive_hash, next_seq, count, bytes, "
                                    "last_active FROM mailboxes WHERE id = $1", mid)
        row = MailboxState(*found) if found is not None else None
        seqs = acked_seqs(op)
        present: dict[int, int] = {}
        if row is not None and seqs:
            rows = await conn.fetch("SELECT seq, length(body) FROM envelopes "
                                    "WHERE mailbox_id = $1 AND seq = ANY($2::bigint[])",
                                    mid, list(seqs))
            present = {r[0]: r[1] for r in rows}
        decision = decide(op, row, present, self.limits, usage)
        if decision.change is not None:
            await self._write(conn, mid, op, decision.change)
        return decision

    @staticmethod
    async def _write(conn: Any, mid: bytes, op: Op, change: Change) -> None:
        """Write one change in one statement (a data-modifying CTE and the row's update)."""
        if change.dropped:
            await conn.execute("WITH e AS (DELETE FROM envelopes WHERE mailbox_id = $1) "
                               "DELETE FROM mailboxes WHERE id = $1", mid)
            return
        row = change.row
        assert row is not None
        if change.created:
            await conn.execute("INSERT INTO mailboxes (id, send_hash, receive_hash, next_seq, "
                               "count, bytes, last_active) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                               mid, row.send_hash, row.receive_hash, row.next_seq, row.count,
                               row.size, row.last_active)
            return
        update = ("UPDATE mailboxes SET next_seq = $2, count = $3, bytes = $4, "
                  "last_active = $5 WHERE id = $1")
        values = (mid, row.next_seq, row.count, row.size, row.last_active)
        if change.stored is not None:
            assert isinstance(op, DepositOp)
            await conn.execute("WITH e AS (INSERT INTO envelopes (mailbox_id, seq, expires_at, "
                               "body) VALUES ($1, $6, $7, $8)) " + update, *values,
                               change.stored.seq, change.stored.expires_at, op.envelope)
        elif change.removed:
            await conn.execute("WITH e AS (DELETE FROM envelopes WHERE mailbox_id = $1 "
                               "AND seq = ANY($6::bigint[])) " + update, *values,
                               list(change.removed))
        else:
            await conn.execute(update, *values)

    async def _writer(self) -> Any:
        if self._writer_conn is None or self._writer_conn.is_closed():
            self._writer_conn = await self._connect()
            self._writer_pid = self._writer_conn.get_server_pid()
        return self._writer_conn

    # --- reads -------------------------------------------------------------------------

    async def _read_after(self, mailbox_id: bytes, receive_token: bytes | None,
                          after_seq: int, count: int,
                          now: float) -> list[tuple[int, bytes]]:
        try:
            async with self._pool.acquire() as conn:
                if receive_token is not None:
                    stored = await conn.fetchval(
                        "SELECT receive_hash FROM mailboxes WHERE id = $1", mailbox_id)
                    if stored is None or not authorized(stored, receive_token):
                        raise Refused(ErrorCode.UNAUTHORIZED)
                # Live by the rule of `mailbox.expired`: expires_at > int(now).
                rows = await conn.fetch(
                    "SELECT seq, body FROM envelopes WHERE mailbox_id = $1 AND seq > $2 "
                    "AND expires_at > $3 ORDER BY seq LIMIT $4",
                    mailbox_id, after_seq, int(now), count)
        except _ERRORS:
            raise StoreUnavailable("the relay database failed; retry later") from None
        return [(row["seq"], row["body"]) for row in rows]

    async def healthy(self) -> bool:
        if self._closed or self.failed.is_set():
            return False
        try:
            async with self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except _ERRORS:
            return False
        return self._writer_task is not None and not self._writer_task.done()

    async def sweep(self, now: float) -> SweepResult:
        if self._closed:
            raise StoreUnavailable("the relay store is closed")
        try:
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT o_envelopes, o_mailboxes FROM relay_sweep($1, $2, $3)",
                    int(now), idle_cutoff(now, self.limits.mailbox_idle_ttl),
                    self.limits.sweep_batch)
        except _ERRORS:
            raise StoreUnavailable("the relay database failed; retry later") from None
        self.metrics.expired.inc(row["o_envelopes"])
        return SweepResult(row["o_envelopes"], row["o_mailboxes"])


class _CreateRace(Exception):
    """A mailbox the batch creates was created by another node meanwhile."""


def _columns(rows: dict[bytes, MailboxState]) -> list[list[object]]:
    """Mailbox rows as the seven column arrays of an ``unnest``."""
    return [list(rows), *(list(column) for column in zip(
        *((r.send_hash, r.receive_hash, r.next_seq, r.count, r.size, r.last_active)
          for r in rows.values()), strict=True))]


def _pg_op_failure(op: Op, exc: Exception) -> BaseException:
    """What one op that raised `exc` inside its savepoint is answered."""
    if isinstance(exc, asyncpg.exceptions.UniqueViolationError) and isinstance(op, CreateOp):
        return Refused(ErrorCode.MAILBOX_EXISTS)  # another node created it meanwhile
    return op_failure(exc, asyncpg.PostgresError)

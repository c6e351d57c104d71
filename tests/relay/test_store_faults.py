"""Faults in the store: an op that raises fails alone (its writes rolled back, its
neighbours committed); a writer that dies says so, to the store's users and to the server,
which logs one line, answers /healthz 503, and makes `relay serve` exit 1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import stat
import struct
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from backchannel.client.transport import RelayClient, RelayRequestError
from backchannel.protocol.relayframes import (
    RELAY_PROTOCOL_VERSION,
    Error,
    ErrorCode,
    FrameKind,
    decode_response,
)
from backchannel.relay import RelayLimits, RelayServer
from backchannel.relay.logs import JsonFormatter
from backchannel.relay.mailbox import Change
from backchannel.relay.store.base import Batch, Op, RelayStore
from backchannel.relay.store.overlay import NetWrites
from backchannel.relay.store.postgres import PostgresStore
from backchannel.relay.store.sqlite import SqliteStore
from backchannel.testing import MemoryRelayStore
from tests.relay.conftest import envelope, needs_pg
from tests.relay.storekit import (
    Box,
    GatedSqliteStore,
    ack,
    bodies,
    create,
    fetch,
    opened,
    run,
    send,
    subscribe,
)

pytestmark = pytest.mark.timeout(120)

BACKENDS = ["memory", "sqlite", "sqlite-ops", pytest.param("postgres", marks=needs_pg),
            pytest.param("postgres-ops", marks=needs_pg)]
# Deposits into this mailbox write their envelope, then fail before the row is updated.
POISON = b"\xee" * 16


class Boom(Exception):
    """A bug, injected."""


def _poisoned(op: Op, change: Change) -> bool:
    return op.mailbox_id == POISON and change.stored is not None


class PoisonedMemory(MemoryRelayStore):
    def _write(self, mid: bytes, op: Op, change: Change) -> None:
        super()._write(mid, op, change)
        if _poisoned(op, change):
            raise Boom


class PoisonedSqlite(GatedSqliteStore):
    def _write(self, db: sqlite3.Connection, mid: bytes, op: Op, change: Change) -> None:
        super()._write(db, mid, op, change)
        if _poisoned(op, change):
            raise Boom

    @staticmethod
    def _flush_net(db: sqlite3.Connection, net: NetWrites) -> None:
        # As on PostgreSQL: the net writes fail after writing, all of it must roll back,
        # and the op-by-op run find the culprits.
        GatedSqliteStore._flush_net(db, net)
        if any(mid == POISON for mid, *_ in net.inserted):
            raise Boom


class PoisonedPostgres(PostgresStore):
    async def _flush(self, conn: Any, net: NetWrites) -> None:
        # The batch's net writes fail after writing: all of it must roll back, and the
        # op-by-op run find the culprits.
        await super()._flush(conn, net)
        if any(mid == POISON for mid, *_ in net.inserted):
            raise Boom

    @staticmethod
    async def _write(conn: Any, mid: bytes, op: Op, change: Change) -> None:
        await PostgresStore._write(conn, mid, op, change)
        if _poisoned(op, change):
            raise Boom


class DiskFullSqlite(GatedSqliteStore):
    """Every deposit into POISON meets a database error (as a full disk would raise)."""

    def _write(self, db: sqlite3.Connection, mid: bytes, op: Op, change: Change) -> None:
        super()._write(db, mid, op, change)
        if _poisoned(op, change):
            raise sqlite3.OperationalError("database or disk is full")

    @staticmethod
    def _flush_net(db: sqlite3.Connection, net: NetWrites) -> None:
        GatedSqliteStore._flush_net(db, net)
        if any(mid == POISON for mid, *_ in net.inserted):
            raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.parametrize("kind", BACKENDS)
async def test_an_op_that_raises_fails_alone(kind: str, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    box, poison = Box(), Box(mailbox_id=POISON)
    async with opened(kind, RelayLimits(store_max_bytes=4 * 1024), tmp_path,
                      sqlite_class=PoisonedSqlite, pg_class=PoisonedPostgres,
                      memory_class=PoisonedMemory) as store:
        assert await run(store, create(box), create(poison)) == [None, None]
        answers = await run(store, send(box, box.envelope(1)),
                            send(poison, poison.envelope(1)), send(box, box.envelope(2)),
                            send(poison, poison.envelope(2)), subscribe(poison),
                            send(box, box.envelope(3)), ack(box, (1,)))
        assert answers == [1, ErrorCode.INTERNAL, 2, ErrorCode.INTERNAL, 0, 3, 1]
        # The failed deposits left nothing: no envelope, no count, no store bytes.
        assert await fetch(store, poison) == ([], False)
        assert [d.seq for d in await bodies(store, box)] == [2, 3]
        assert await run(store, send(box, box.envelope(4)), send(box, box.envelope(5)),
                         send(box, box.envelope(6))) == [4, 5, ErrorCode.STORE_FULL]
        assert await store.healthy()
    failures = [r for r in caplog.records if r.getMessage() == "store operation failed"]
    assert len(failures) == 2 and all(r.levelno == logging.ERROR for r in failures)
    assert JsonFormatter().format(failures[0]).endswith('"error":"Boom"}')


async def test_a_database_error_in_one_op_is_unavailable_for_it(tmp_path: Path) -> None:
    box, poison = Box(), Box(mailbox_id=POISON)
    async with opened("sqlite", RelayLimits(), tmp_path, sqlite_class=DiskFullSqlite) as store:
        await run(store, create(box), create(poison))
        assert await run(store, send(poison, poison.envelope(1)), send(box, box.envelope(1)),
                         subscribe(poison)) == ["unavailable", 1, 0]


@pytest.mark.parametrize("kind", BACKENDS)
async def test_the_rules_refuse_bad_seqs_even_past_submit(kind: str, tmp_path: Path) -> None:
    """Defence in depth: an ack that skipped `submit`'s check is refused by the rules."""
    box = Box()
    async with opened(kind, RelayLimits(), tmp_path) as store:
        await run(store, create(box), send(box, box.envelope(1)))
        poison, honest = ack(box, (1, 2**64)), ack(box, (1,))
        store._enqueue(poison)
        store._enqueue(honest)
        await asyncio.wait([poison.future, honest.future], timeout=10)
        assert isinstance(poison.future.exception(), Exception)
        assert poison.future.exception().code == ErrorCode.MALFORMED  # type: ignore[union-attr]
        assert honest.future.result() == 1


# --- a writer that dies ------------------------------------------------------------------


class DyingPostgres(PostgresStore):
    """The writer meets a bug outside any op."""

    async def _run(self, conn: Any, batch: Batch) -> None:
        raise Boom


class DyingMemory(MemoryRelayStore):
    def _run(self, batch: Batch) -> None:
        raise Boom


def kill_writer(store: RelayStore) -> None:
    """Make the next batch kill the writer."""
    if isinstance(store, SqliteStore):
        # The connection closed under it: BEGIN raises ProgrammingError, a broken writer.
        assert store._writer_db is not None
        store._writer_db.close()


@pytest.mark.parametrize("kind", BACKENDS)
async def test_a_dead_writer_says_so_and_answers_everything(kind: str,
                                                            tmp_path: Path) -> None:
    async with opened(kind, RelayLimits(), tmp_path, sqlite_class=SqliteStore,
                      pg_class=DyingPostgres, memory_class=DyingMemory) as store:
        assert await store.healthy()
        kill_writer(store)
        box = Box()
        ops = [create(box)] + [send(box, box.envelope(i)) for i in range(50)]
        for op in ops:
            store.submit(op)
        await asyncio.wait_for(store.failed.wait(), 10)
        await asyncio.wait([op.future for op in ops], timeout=10)
        assert all(op.future.done() for op in ops), "an op was left unanswered"
        assert {type(op.future.exception()).__name__ for op in ops} == {"StoreUnavailable"}
        assert store.failure is not None
        assert not await store.healthy()
        assert await run(store, subscribe(box)) == ["unavailable"]  # answered at once


async def test_the_server_reports_a_dead_writer(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "relay.db", RelayLimits())
    server = RelayServer(store, host="127.0.0.1", port=0)
    await server.start()
    try:
        health = f"http://127.0.0.1:{server.port}/healthz"
        assert await asyncio.to_thread(_status, health) == 200
        async with await RelayClient.connect(server.url) as client:
            caps = await client.create_mailbox()
            kill_writer(store)
            with pytest.raises(RelayRequestError) as refused:
                await client.send(caps.mailbox_id, caps.send_token,
                                  envelope(caps.mailbox_id, 1))
            assert refused.value.code == ErrorCode.UNAVAILABLE
            await asyncio.wait_for(server.fatal.wait(), 10)
            with pytest.raises(RelayRequestError) as again:
                await client.send(caps.mailbox_id, caps.send_token,
                                  envelope(caps.mailbox_id, 2))
            assert again.value.code == ErrorCode.UNAVAILABLE
        assert await asyncio.to_thread(_status, health) == 503
    finally:
        await server.stop()
    lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in lines] == ["store failed"]
    entry = json.loads(JsonFormatter().format(lines[0]))
    assert entry["error"] == "ProgrammingError" and entry["level"] == "error"
    # Nothing reached stderr outside the logging system (no thread traceback).
    assert "Traceback" not in capfd.readouterr().err


async def test_relay_serve_exits_1_when_the_writer_dies(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from backchannel.cli import relay as cli
    from backchannel.relay import store as stores

    made: list[RelayStore] = []
    real = stores.open_store

    def open_store(url: str, limits: RelayLimits) -> RelayStore:
        made.append(real(url, limits))
        return made[-1]

    monkeypatch.setattr(stores, "open_store", open_store)
    port = _free_port()
    serving = asyncio.create_task(cli._serve("127.0.0.1", port, f"sqlite:///{tmp_path / 'r.db'}",
                                             RelayLimits(), False))
    url = f"ws://127.0.0.1:{port}/"
    client = await _connect(url)
    try:
        caps = await client.create_mailbox()
        kill_writer(made[0])
        with pytest.raises(RelayRequestError):
            await client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 1))
        assert await asyncio.wait_for(serving, 15) == 1
    finally:
        await client.close()
        if not serving.done():
            serving.cancel()


def test_sqlite_files_are_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def use() -> None:
        store = SqliteStore(path, RelayLimits())
        await store.open()
        box = Box()
        await run(store, create(box), send(box, box.envelope(1)))
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
        await store.close()

    asyncio.run(use())
    # A database an older relay left world-readable is tightened at open.
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            Path(f"{path}{suffix}").chmod(0o644)
    asyncio.run(use())


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _connect(url: str) -> RelayClient:
    for _ in range(100):
        try:
            return await RelayClient.connect(url)
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError("the relay did not start")


async def test_huge_seqs_over_the_wire_are_refused_and_harm_nobody(
        db_url: str, relay: Any) -> None:
    """Review 2026-12 §2b: an ACK or FETCH with a seq of 2^63 or more stopped an SQLite
    relay's writer, and the FETCH was never answered; on PostgreSQL it failed its batch.
    The client's encoder refuses such seqs, so the poison frames are built by hand and
    sent on a raw connection beside the honest client's acks."""
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        mid, token = caps.mailbox_id, caps.receive_token
        sends = [client.send(mid, caps.send_token, envelope(mid, i)) for i in range(20)]
        assert sorted(await asyncio.gather(*sends)) == list(range(1, 21))

        def raw(kind: FrameKind, rid: int, body: bytes) -> bytes:
            return bytes([RELAY_PROTOCOL_VERSION, kind]) + struct.pack(">I", rid) + body

        poison = [raw(FrameKind.ACK, 1, mid + token + struct.pack(">HQ", 1, 2**63)),
                  raw(FrameKind.FETCH, 2, mid + token + struct.pack(">QH", 2**64 - 1, 10)),
                  raw(FrameKind.ACK, 3, mid + token + struct.pack(">HQQ", 2, 5, 2**64 - 1))]
        async with connect(server.url, compression=None) as ws:
            for frame in poison:
                await ws.send(frame)
            honest = await asyncio.gather(*(client.ack(mid, token, (n,)) for n in range(1, 11)))
            refusals = [decode_response(await ws.recv()) for _ in poison]  # type: ignore[arg-type]
        assert honest == [1] * 10
        assert [(e.request_id, e.code) for e in refusals if isinstance(e, Error)] == [
            (1, ErrorCode.MALFORMED), (2, ErrorCode.MALFORMED), (3, ErrorCode.MALFORMED)]
        assert await client.send(mid, caps.send_token, envelope(mid, 99)) == 21
        items, more = await client.fetch(mid, token, 0)
        assert [d.seq for d in items] == [*range(11, 22)] and not more
        assert await server.store.healthy()


class RacedPostgres(PostgresStore):
    """Another node creates the batch's new mailbox between its lock and its writes."""

    raced = False

    async def _lock(self, conn: Any, batch: Batch) -> dict[bytes, Any]:
        rows = await super()._lock(conn, batch)
        if not self.raced:
            self.raced = True
            import asyncpg

            from tests.relay.conftest import PG_DSN

            other = await asyncpg.connect(PG_DSN, server_settings={"search_path": self.schema})
            try:
                await other.execute("INSERT INTO mailboxes (id, send_hash, receive_hash, "
                                    "last_active) VALUES ($1, $2, $2, 0)",
                                    batch.ops[0].mailbox_id, b"\x00" * 32)
            finally:
                await other.close()
        return rows


@needs_pg
async def test_a_create_racing_another_node_is_refused_alone(tmp_path: Path) -> None:
    box, taken = Box(), Box()
    async with opened("postgres", RelayLimits(), tmp_path, pg_class=RacedPostgres) as store:
        assert isinstance(store, RacedPostgres)
        store.raced = True
        await run(store, create(box))
        store.raced = False
        assert await run(store, create(taken), send(box, box.envelope(1)),
                         subscribe(box)) == [ErrorCode.MAILBOX_EXISTS, 1, 1]
        assert await run(store, subscribe(taken)) == [ErrorCode.UNAUTHORIZED]

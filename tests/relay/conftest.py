"""Fixtures for relay tests: real servers on 127.0.0.1, real SQLite files, real PostgreSQL.

PostgreSQL tests use a fresh schema per test, dropped afterwards; they are skipped (with
the reason) only when no server answers at `PG_DSN`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from backchannel.protocol.envelope import Envelope
from backchannel.relay import RelayLimits, RelayServer, open_store

PG_DSN = os.environ.get("BACKCHANNEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


PG_REACHABLE = _pg_reachable()
needs_pg = pytest.mark.skipif(not PG_REACHABLE, reason=f"PostgreSQL unreachable at {PG_DSN}")


def envelope(mailbox_id: bytes, n: int, size: int = 1024) -> bytes:
    """A valid envelope for `mailbox_id` whose payload encodes `n`."""
    body = n.to_bytes(8, "big")
    return Envelope(mailbox_id, body + b"\x00" * (size - 17 - len(body))).encode()


def number(data: bytes) -> int:
    """The `n` an `envelope` was made from."""
    return int.from_bytes(data[17:25], "big")


class FakeClock:
    """Wall clock the tests move by hand."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'relay.db'}"
        return
    schema = f"relay_test_{secrets.token_hex(6)}"
    yield f"{PG_DSN}?schema={schema}"
    asyncio.run(drop_schema(schema))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema URL (skips when PostgreSQL is unreachable)."""
    if not PG_REACHABLE:
        pytest.skip(f"PostgreSQL unreachable at {PG_DSN}")
    schema = f"relay_test_{secrets.token_hex(6)}"
    yield f"{PG_DSN}?schema={schema}"
    asyncio.run(drop_schema(schema))


RelayFactory = Callable[..., contextlib.AbstractAsyncContextManager[RelayServer]]


@pytest.fixture
def relay() -> RelayFactory:
    """``async with relay(url, limits=..., clock=..., **options) as server``: a started relay
    (`options` go to `RelayServer`, e.g. ``metrics_listen=("127.0.0.1", 0)``)."""

    @contextlib.asynccontextmanager
    async def start(url: str, limits: RelayLimits | None = None,
                    clock: Callable[[], float] | None = None,
                    **options: Any) -> AsyncIterator[RelayServer]:
        limits = limits or RelayLimits()
        extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
        server = RelayServer(open_store(url, limits), limits, host="127.0.0.1", port=0,
                             **extra, **options)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()

    return start

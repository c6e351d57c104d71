from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.keystore import KdfParameters
from backchannel.relay.limits import RelayLimits
from backchannel.relay.server import RelayServer
from backchannel.relay.store import open_store

# Tests create many principals; a real Argon2id cost would only slow them down.
FAST_KDF = KdfParameters(memory_kib=8, iterations=1, lanes=1)


@contextlib.asynccontextmanager
async def running_relay(
    db: Path, port: int = 0, limits: RelayLimits | None = None
) -> AsyncIterator[RelayServer]:
    limits = limits or RelayLimits()
    server = RelayServer(open_store(f"sqlite:///{db}", limits), limits, host="127.0.0.1", port=port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


MakePrincipal = Callable[[str], Principal]


@pytest.fixture
def make_principal(tmp_path: Path) -> MakePrincipal:
    made: list[Principal] = []

    def make(name: str) -> Principal:
        principal = Principal.create(tmp_path / name, name, "passphrase", kdf=FAST_KDF)
        made.append(principal)
        return principal

    return make


async def pair(a: Principal, b: Principal, relays: list[str]) -> None:
    """a invites, b accepts, both sync until each side has the channel and a message."""
    code = await a.invite(relays)
    await b.accept(code)
    await a.sync()
    await b.sync()


async def flushed_notes(sender: Principal, channel: str, count: int) -> None:
    """Queue notes "n0".."n{count-1}" in one transaction and flush them to the relays."""
    sender.queue_many(channel, [f"n{i}" for i in range(count)])
    await sender.flush()

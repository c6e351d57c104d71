"""What the relay's operator sees: no connection touches two mailboxes.

A real relay on 127.0.0.1 logs every request (connection, address, operation, mailbox,
time, size; `observer.ObservedRelay`) while several principals pair (invite, accept,
hello, move, retirement of the invite mailboxes), sync, watch and flush. From that log
no connection may tie two mailboxes together: each connection touches one mailbox.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from backchannel.client.errors import ClientError
from backchannel.client.relays import MAX_OPEN_JITTER, OPEN_JITTER_ENV, RelayPool
from tests.client.conftest import MakePrincipal
from tests.client.observer import (
    Record,
    by_connections,
    channel_pairs,
    observed_relay,
)


def _mailboxes_per_connection(record: Record) -> dict[tuple[str, int], set[str]]:
    return record.mailboxes_of()


async def test_no_connection_touches_two_mailboxes(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b, c = make_principal("a"), make_principal("b"), make_principal("c")
    async with (
        observed_relay(tmp_path / "r1.db", record) as r1,
        observed_relay(tmp_path / "r2.db", record) as r2,
    ):
        relays = [r1.url, r2.url]
        # a-b and a-c, then b-c: every principal holds two channels.
        for inviter, joiner, name in ((a, b, "a"), (a, c, "a"), (b, c, "b")):
            code = await inviter.invite(relays)
            await joiner.accept(code, name=name)
        for _ in range(2):  # the hello is taken up, the move followed, invites retired
            for p in (a, b, c):
                await p.sync()
        a.queue("b", "to b")
        a.queue("c", "to c")
        await a.flush()
        stop = asyncio.Event()
        watching = asyncio.create_task(b.watch(stop, duty_interval=0.1))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if any(e.text == "to b" for e in b.inbox()):
                break
        b.queue("a", "back to a")
        for _ in range(200):
            await asyncio.sleep(0.05)
            await a.sync()
            if any(e.text == "back to a" for e in a.inbox()):
                break
        stop.set()
        await watching
        await c.sync()
    assert any(e.text == "to b" for e in b.inbox())
    assert any(e.text == "back to a" for e in a.inbox())
    pairs = channel_pairs([a, b, c])
    assert len(pairs) == 3  # three channels, each direction on one of the two relays
    touched = _mailboxes_per_connection(record)
    # The log saw every operation of pairing and use, on many connections ...
    ops = {e.op for e in record.events}
    assert {"create", "send", "fetch", "ack", "subscribe", "delete"} <= ops
    assert len(touched) > len(pairs) * 2
    # ... and none of them touched two mailboxes.
    assert max(len(m) for m in touched.values()) == 1
    # So the adversary who pairs mailboxes that shared a connection has nothing to go on.
    shared = by_connections(record, pairs)
    assert shared.total == len(pairs) * 2


async def test_lanes_share_a_connection_only_past_the_bound(tmp_path: Path) -> None:
    record = Record()
    async with observed_relay(tmp_path / "r.db", record) as relay:
        pool = RelayPool(open_jitter=0.0, max_lanes=2)
        try:
            first = await pool.get(relay.url, "aa")
            second = await pool.get(relay.url, "bb")
            third = await pool.get(relay.url, "cc")
            assert first is not None and second is not None and third is not None
            assert first is not second
            assert third in (first, second)  # past the bound, it rides on one of them
            assert pool.connections(relay.url) == 2
            assert pool.shared_lanes == {relay.url: 1}
            assert await pool.get(relay.url, "aa") is first  # a lane keeps its connection
        finally:
            await pool.close()


class _Draws(random.SystemRandom):
    """Records the delays a pool draws before it opens connections."""

    def __init__(self) -> None:
        super().__init__()
        self.bounds: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.bounds.append((a, b))
        return 0.0


async def test_each_new_connection_waits_a_random_delay_first(tmp_path: Path) -> None:
    record = Record()
    draws = _Draws()
    async with observed_relay(tmp_path / "r.db", record) as relay:
        pool = RelayPool(open_jitter=MAX_OPEN_JITTER, _random=draws)
        try:
            for lane in ("aa", "bb", "aa", "cc", "bb"):
                assert await pool.get(relay.url, lane) is not None
        finally:
            await pool.close()
    # The first connection opens at once; one draw for each later one (two more lanes),
    # none for a lane reused, each between no delay and the named bound.
    assert draws.bounds == [(0.0, MAX_OPEN_JITTER)] * 2


def test_the_delay_s_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPEN_JITTER_ENV, raising=False)
    assert RelayPool().open_jitter == MAX_OPEN_JITTER
    monkeypatch.setenv(OPEN_JITTER_ENV, " 1.5 ")
    assert RelayPool().open_jitter == 1.5
    monkeypatch.setenv(OPEN_JITTER_ENV, "0")
    assert RelayPool().open_jitter == 0.0
    for bad in ("-1", "6", "nan", "inf", "half a second", "0.5\x1b[2J"):
        monkeypatch.setenv(OPEN_JITTER_ENV, bad)
        with pytest.raises(ClientError, match=OPEN_JITTER_ENV) as refused:
            RelayPool()
        assert "\x1b" not in str(refused.value)

"""The store contract: the same cases against the in-memory reference store, SQLite (a real
file) and PostgreSQL (a real, fresh schema), straight through `RelayStore` (no WebSocket).

Every backend applies the rules of `backchannel.relay.mailbox` op after op in arrival
order, each op with its own `now`, so every case expects one list of answers for all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import MAX_SEQ
from backchannel.relay.store.base import RelayStore
from tests.relay.conftest import needs_pg
from tests.relay.storekit import (
    T0,
    Box,
    GatedSqliteStore,
    ack,
    bodies,
    create,
    delete,
    fetch,
    opened,
    run,
    send,
    subscribe,
)

pytestmark = pytest.mark.timeout(120)

UNAUTHORIZED = ErrorCode.UNAUTHORIZED
MALFORMED = ErrorCode.MALFORMED
KIB = 1024

Opener = Callable[..., AbstractAsyncContextManager[RelayStore]]


@pytest.fixture(params=["memory", "sqlite", "sqlite-ops",
                        pytest.param("postgres", marks=needs_pg),
                        pytest.param("postgres-ops", marks=needs_pg)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """``async with make_store(limits) as store``: a fresh open store of each backend."""

    def make(limits: RelayLimits | None = None) -> AbstractAsyncContextManager[RelayStore]:
        return opened(request.param, limits or RelayLimits(), tmp_path)

    return make


@pytest.fixture
async def store(make_store: Opener) -> AsyncIterator[RelayStore]:
    async with make_store() as opened_store:
        yield opened_store


async def made(store: RelayStore, *boxes: Box) -> None:
    assert await run(store, *(create(box) for box in boxes)) == [None] * len(boxes)


async def test_create_and_exists(store: RelayStore) -> None:
    box, other = Box(), Box()
    assert await run(store, create(box)) == [None]
    assert await run(store, create(box), create(other), create(other)) == [
        ErrorCode.MAILBOX_EXISTS, None, ErrorCode.MAILBOX_EXISTS]
    assert await run(store, subscribe(box), subscribe(Box())) == [0, UNAUTHORIZED]


async def test_capabilities_are_not_interchangeable(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    assert await run(store, send(box, box.envelope(1), token=box.receive_token),
                     subscribe(box, token=box.send_token),
                     ack(box, (1,), token=box.send_token),
                     delete(box, token=box.send_token)) == [UNAUTHORIZED] * 4
    assert await fetch(store, box, token=box.send_token) == UNAUTHORIZED


async def test_deposit_counts_seqs_and_the_count_quota(make_store: Opener) -> None:
    async with make_store(RelayLimits(mailbox_max_envelopes=3)) as store:
        box = Box()
        await made(store, box)
        answers = await run(store, *(send(box, box.envelope(i)) for i in range(4)))
        assert answers == [1, 2, 3, ErrorCode.QUOTA_EXCEEDED]
        assert await run(store, ack(box, (2,)), send(box, box.envelope(9))) == [1, 4]
        assert await fetch(store, box) == ([1, 3, 4], False)


async def test_deposit_byte_quota(make_store: Opener) -> None:
    async with make_store(RelayLimits(mailbox_max_bytes=5 * KIB // 2)) as store:
        box = Box()
        await made(store, box)
        assert await run(store, *(send(box, box.envelope(i)) for i in range(3))) == [
            1, 2, ErrorCode.QUOTA_EXCEEDED]
        assert await run(store, ack(box, (1,)), send(box, box.envelope(3))) == [1, 3]


async def test_store_wide_byte_quota(make_store: Opener) -> None:
    async with make_store(RelayLimits(store_max_bytes=3 * KIB)) as store:
        a, b = Box(), Box()
        await made(store, a, b)
        full = ErrorCode.STORE_FULL
        assert await run(store, send(a, a.envelope(1)), send(a, a.envelope(2)),
                         send(b, b.envelope(1)), send(b, b.envelope(2))) == [1, 2, 1, full]
        # Room comes back with an ack, a delete, and the expiry sweep, in the same batch.
        assert await run(store, ack(a, (1,)), send(b, b.envelope(3)), send(b, b.envelope(4))
                         ) == [1, 2, full]
        assert await run(store, delete(a), send(b, b.envelope(5)), send(b, b.envelope(6))
                         ) == [None, 3, full]
        swept = await store.sweep(T0 + RelayLimits().envelope_ttl)
        assert swept.envelopes == 3
        assert await run(store, send(b, b.envelope(7)), subscribe(b)) == [4, 1]


async def test_ack_duplicates_unknown_and_twice(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    await run(store, *(send(box, box.envelope(i)) for i in range(4)))
    assert await run(store, ack(box, (1, 1, 2)), ack(box, (2, 99)), ack(box, (1,)),
                     ack(box, (MAX_SEQ, 0)), ack(box, (3,), token=Box().receive_token),
                     ack(Box(), (3,))) == [2, 0, 0, 0, UNAUTHORIZED, UNAUTHORIZED]
    assert await run(store, subscribe(box)) == [2]
    assert await fetch(store, box) == ([3, 4], False)


async def test_fetch_batches_by_count_and_bytes(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    await run(store, *(send(box, box.envelope(i)) for i in range(5)))
    assert await fetch(store, box, limit=2) == ([1, 2], True)
    assert await fetch(store, box, after=2, limit=2) == ([3, 4], True)
    assert await fetch(store, box, after=4, limit=2) == ([5], False)
    assert await fetch(store, box, after=3, limit=2) == ([4, 5], False)
    assert await fetch(store, box, after=5) == ([], False)
    assert await fetch(store, box, max_bytes=5 * KIB // 2) == ([1, 2], True)
    assert await fetch(store, box, max_bytes=5 * KIB) == ([1, 2, 3, 4, 5], False)
    # At least one envelope even when it is larger than max_bytes.
    assert await fetch(store, box, max_bytes=10) == ([1], True)
    assert await fetch(store, box, after=4, max_bytes=10) == ([5], False)
    assert await fetch(store, box, check=False, after=1, limit=1) == ([2], True)
    assert await fetch(store, Box()) == UNAUTHORIZED


async def test_fetch_refuses_out_of_range_arguments(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    for after, limit in ((MAX_SEQ + 1, 1), (2**64, 1), (-1, 1), (0, 0)):
        assert await fetch(store, box, after=after, limit=limit) == MALFORMED
    assert await fetch(store, box, after=MAX_SEQ) == ([], False)


async def test_empty_mailbox_fetch(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    assert await fetch(store, box) == ([], False)
    assert await fetch(store, box, check=False) == ([], False)


async def test_expiry_uses_each_ops_own_now(make_store: Opener) -> None:
    ttl = 100.0
    async with make_store(RelayLimits(envelope_ttl=ttl)) as store:
        box = Box()
        await made(store, box)
        # One batch, three different nows: each envelope expires ttl after its own.
        assert await run(store, send(box, box.envelope(1), now=T0),
                         send(box, box.envelope(2), now=T0 + 50),
                         send(box, box.envelope(3), now=T0 + 99.5)) == [1, 2, 3]
        assert await fetch(store, box, now=T0 + 99) == ([1, 2, 3], False)
        assert await fetch(store, box, now=T0 + 100) == ([2, 3], False)
        assert await fetch(store, box, now=T0 + 150) == ([3], False)
        assert await fetch(store, box, now=T0 + 199) == ([], False)
        assert await run(store, subscribe(box, now=T0 + 150)) == [3]  # the row's counter
        swept = await store.sweep(T0 + 150)
        assert (swept.envelopes, swept.mailboxes) == (2, 0)
        assert await run(store, subscribe(box, now=T0 + 150)) == [1]
        assert [d.seq for d in await bodies(store, box, now=T0)] == [3]


async def test_sweep_forgets_idle_empty_mailboxes(make_store: Opener) -> None:
    limits = RelayLimits(envelope_ttl=50.0, mailbox_idle_ttl=1000.0)
    async with make_store(limits) as store:
        idle, busy, used = Box(), Box(), Box()
        await made(store, idle, busy, used)
        assert await run(store, send(busy, busy.envelope(1), now=T0 + 990),
                         subscribe(used, now=T0 + 500)) == [1, 0]
        assert (await store.sweep(T0 + 999)).mailboxes == 0
        assert (await store.sweep(T0 + 1000)).mailboxes == 1  # `idle`: last used at T0
        assert await run(store, subscribe(idle, now=T0 + 1000)) == [UNAUTHORIZED]
        swept = await store.sweep(T0 + 1500)
        # busy's envelope expired; `used` is idle; busy, empty now, was used too lately.
        assert (swept.envelopes, swept.mailboxes) == (1, 1)
        assert (await store.sweep(T0 + 2000)).mailboxes == 1
        assert await run(store, subscribe(busy, now=T0 + 2000),
                         subscribe(used, now=T0 + 2000)) == [UNAUTHORIZED, UNAUTHORIZED]


async def test_subscribe_counts_pending(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    assert await run(store, subscribe(box), send(box, box.envelope(1)),
                     send(box, box.envelope(2)), subscribe(box), ack(box, (1,)),
                     subscribe(box)) == [0, 1, 2, 2, 1, 1]


async def test_delete_then_send_in_one_batch(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    assert await run(store, send(box, box.envelope(1)), delete(box),
                     send(box, box.envelope(2)), subscribe(box)) == [
        1, None, UNAUTHORIZED, UNAUTHORIZED]
    assert await fetch(store, box) == UNAUTHORIZED
    assert await fetch(store, box, check=False) == ([], False)
    # The id is free again, and a new mailbox under it starts from seq 1.
    assert await run(store, create(box), send(box, box.envelope(3))) == [None, 1]


async def test_send_then_delete_in_one_batch(make_store: Opener) -> None:
    async with make_store(RelayLimits(store_max_bytes=2 * KIB)) as store:
        box, other = Box(), Box()
        await made(store, box, other)
        assert await run(store, send(box, box.envelope(1)), send(box, box.envelope(2)),
                         delete(box), delete(box)) == [1, 2, None, UNAUTHORIZED]
        # Deleting gave back the store-wide bytes.
        assert await run(store, send(other, other.envelope(1)),
                         send(other, other.envelope(2))) == [1, 2]


async def test_create_send_delete_create_in_one_batch(store: RelayStore) -> None:
    box = Box()
    assert await run(store, send(box, box.envelope(1)), create(box),
                     send(box, box.envelope(2)), delete(box), create(box),
                     send(box, box.envelope(3)), ack(box, (1,))) == [
        UNAUTHORIZED, None, 1, None, None, 1, 1]
    assert await fetch(store, box) == ([], False)


async def test_poison_ops_fail_alone(store: RelayStore) -> None:
    box = Box()
    await made(store, box)
    await run(store, send(box, box.envelope(0)))
    honest_acks = [ack(box, (n,)) for n in range(2, 40)]
    answers = await run(store, send(box, box.envelope(1)), ack(box, (2**64,)),
                         ack(box, (1, 2**63)), *honest_acks[:5],
                         ack(box, (MAX_SEQ + 10**6,)), send(box, box.envelope(2)),
                         ack(box, (-1,)), *honest_acks[5:], ack(box, (1,)))
    assert answers == [2, MALFORMED, MALFORMED, 1, 0, 0, 0, 0, MALFORMED, 3, MALFORMED,
                       *[0] * 33, 1]
    assert await fetch(store, box) == ([3], False)
    # The store is alive and well afterwards.
    assert await run(store, send(box, box.envelope(3))) == [4]
    assert await store.healthy()


async def test_mixed_batch_in_arrival_order(store: RelayStore) -> None:
    a, b = Box(), Box()
    ops = [create(a), send(a, a.envelope(1)), subscribe(a), create(b), ack(a, (1,)),
           send(b, b.envelope(1)), send(a, a.envelope(2)), subscribe(a), delete(b),
           send(b, b.envelope(2)), create(a), ack(a, (2, 3)), subscribe(a)]
    assert await run(store, *ops) == [None, 1, 1, None, 1, 1, 2, 1, None, UNAUTHORIZED,
                                      ErrorCode.MAILBOX_EXISTS, 1, 0]


async def test_a_batch_is_one_commit_and_the_listener_hears_it(store: RelayStore) -> None:
    heard: list[tuple[bytes, tuple[int, ...] | None]] = []
    store.listener = lambda mid, items: heard.append(
        (mid, None if items is None else tuple(d.seq for d in items)))
    a, b = Box(), Box()
    await made(store, a, b)
    before = store.metrics.commit_seconds.count
    await run(store, send(a, a.envelope(1)), send(b, b.envelope(1)), send(a, a.envelope(2)),
              delete(b), send(a, a.envelope(3), token=a.receive_token))
    batches = store.metrics.commit_seconds.count - before
    assert batches == (2 if isinstance(store, GatedSqliteStore) else 1)
    # Only committed deposits are announced, with their seqs, per mailbox in order.
    assert (a.mailbox_id, (1, 2)) in heard
    assert (b.mailbox_id, (1,)) in heard


async def test_the_memory_store_serves_a_real_relay() -> None:
    """`MemoryRelayStore` is a whole `RelayStore`: a relay runs on it, end to end."""
    from backchannel.client.transport import RelayClient
    from backchannel.relay import RelayServer
    from backchannel.testing import MemoryRelayStore
    from tests.relay.conftest import envelope

    server = RelayServer(MemoryRelayStore(), host="127.0.0.1", port=0)
    await server.start()
    try:
        async with await RelayClient.connect(server.url) as client:
            caps = await client.create_mailbox()
            mid = caps.mailbox_id
            assert await client.subscribe(mid, caps.receive_token) == 0
            seqs = await asyncio.gather(*(client.send(mid, caps.send_token, envelope(mid, i))
                                          for i in range(5)))
            assert sorted(seqs) == [1, 2, 3, 4, 5]
            got = [(await client.receive(timeout=5))[1].seq for _ in range(5)]
            assert got == [1, 2, 3, 4, 5]
            assert await client.ack(mid, caps.receive_token, tuple(got)) == 5
    finally:
        await server.stop()

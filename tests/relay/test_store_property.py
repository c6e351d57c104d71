"""Random op sequences give identical answers on the memory, SQLite and PostgreSQL stores.

Each example opens fresh stores of every backend, runs the same steps on each (batches of
writes with their own `now`s, fetches, sweeps, the clock moving), and compares every
answer and the final contents. Small quotas and TTLs make refusals, expiry and the sweep
happen often.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import MAX_SEQ
from backchannel.relay.store.base import Op, RelayStore
from tests.relay.conftest import PG_REACHABLE
from tests.relay.storekit import (
    T0,
    Answer,
    Box,
    ack,
    create,
    delete,
    fetch,
    opened,
    run,
    send,
    subscribe,
)

LIMITS = RelayLimits(mailbox_max_envelopes=4, mailbox_max_bytes=5_000, store_max_bytes=7_000,
                     envelope_ttl=100.0, mailbox_idle_ttl=300.0)
KINDS = ["memory", "sqlite", "sqlite-ops"]
if PG_REACHABLE:
    KINDS += ["postgres", "postgres-ops"]
BOXES = 3  # every sequence starts by filling the first two; the third only if it says so
OPENING: tuple[object, ...] = ("batch", [
    (("create", 0), 0.0, False), (("create", 1), 0.0, False), (("send", 0, 1_000), 0.0, False),
    (("send", 1, 1_000), 0.5, False), (("send", 0, 200), 30.0, False)])

seqs = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, MAX_SEQ, MAX_SEQ + 1, 2**64])
write = st.one_of(
    st.tuples(st.just("create"), st.integers(0, BOXES - 1)),
    st.tuples(st.just("send"), st.integers(0, BOXES - 1), st.sampled_from([200, 1_000, 2_600])),
    st.tuples(st.just("send"), st.integers(0, 1), st.just(1_000)),
    st.tuples(st.just("ack"), st.integers(0, BOXES - 1), st.lists(seqs, min_size=1, max_size=4)),
    st.tuples(st.just("subscribe"), st.integers(0, BOXES - 1)),
    st.tuples(st.just("delete"), st.integers(0, BOXES - 1)),
)
# Each write carries its own offset from the clock and maybe the wrong token.
wrong_token = st.sampled_from([False, False, False, True])
timed_write = st.tuples(write, st.sampled_from([0.0, 0.5, 30.0, 90.0]), wrong_token)
batch = st.tuples(st.just("batch"), st.lists(timed_write, min_size=1, max_size=6))
step = st.one_of(
    batch, batch,  # twice as likely as each other kind of step
    st.tuples(st.just("fetch"), st.integers(0, BOXES - 1),
              st.sampled_from([0, 0, 0, 1, 2, 3, 5, MAX_SEQ, MAX_SEQ + 1]),
              st.sampled_from([0, 1, 2, 4, 4, 4]),
              st.sampled_from([100, 1_500, 5_000]), st.booleans()),
    st.tuples(st.just("advance"), st.sampled_from([99.5, 100.0])),  # expiry boundaries
    st.tuples(st.just("sweep")),
    st.tuples(st.just("advance"), st.sampled_from([10.0, 60.0, 99.5, 100.0, 300.0])),
)


def build(spec: tuple[object, ...], boxes: list[Box], now: float, wrong: bool,
          serial: int) -> Op:
    kind, index = spec[0], spec[1]
    assert isinstance(index, int)
    box = boxes[index]
    stranger = Box()
    if kind == "create":
        return create(box, now)
    if kind == "send":
        size = spec[2]
        assert isinstance(size, int)
        body = serial.to_bytes(4, "big") * (size // 4)
        return send(box, body, now, token=stranger.send_token if wrong else None)
    token = stranger.receive_token if wrong else None
    if kind == "ack":
        return ack(box, tuple(spec[2]), now, token=token)  # type: ignore[arg-type]
    if kind == "subscribe":
        return subscribe(box, now, token=token)
    return delete(box, now, token=token)


async def play(store: RelayStore, steps: list[tuple[object, ...]],
               boxes: list[Box]) -> list[object]:
    clock = T0
    serial = 0
    transcript: list[object] = []
    for item in steps:
        match item:
            case ("batch", writes):
                ops = []
                for spec, offset, wrong in writes:  # type: ignore[attr-defined]
                    serial += 1
                    ops.append(build(spec, boxes, clock + offset, wrong, serial))
                answers: list[Answer] = await run(store, *ops)
                transcript.append(answers)
            case ("fetch", index, after, limit, max_bytes, check):
                transcript.append(await fetch(store, boxes[index], after, limit,  # type: ignore[index]
                                              max_bytes, clock, check=check))  # type: ignore[arg-type]
            case ("sweep",):
                swept = await store.sweep(clock)
                transcript.append(("swept", swept.envelopes, swept.mailboxes))
            case ("advance", seconds):
                clock += seconds  # type: ignore[operator]
    for box in boxes:  # what is left, expired or not
        items, _ = await store.fetch(box.mailbox_id, None, 0, 256, 1 << 30, 0.0)
        transcript.append([(d.seq, d.envelope) for d in items])
    return transcript


async def compare(steps: list[tuple[object, ...]]) -> None:
    boxes = [Box() for _ in range(BOXES)]
    transcripts: dict[str, list[object]] = {}
    with tempfile.TemporaryDirectory() as folder:
        async with contextlib.AsyncExitStack() as stack:
            for kind in KINDS:
                store = await stack.enter_async_context(opened(kind, LIMITS, Path(folder)))
                transcripts[kind] = await play(store, steps, boxes)
    reference = transcripts["memory"]
    for kind, transcript in transcripts.items():
        assert transcript == reference, f"{kind} differs from the memory store"


@settings(max_examples=int(os.environ.get("STORE_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(step, min_size=3, max_size=16))
def test_backends_answer_identically(steps: list[tuple[object, ...]]) -> None:
    asyncio.run(compare([OPENING, *steps]))


def test_a_known_tricky_sequence() -> None:
    """Delete, resend, recreate and ack across one batch, then expiry and the sweep."""
    steps: list[tuple[object, ...]] = [
        ("batch", [(("create", 0), 0.0, False), (("send", 0, 2_600), 0.0, False),
                   (("delete", 0), 30.0, False), (("send", 0, 200), 30.0, False),
                   (("create", 0), 90.0, False), (("send", 0, 2_600), 90.0, False),
                   (("send", 0, 2_600), 0.0, False)]),
        ("batch", [(("create", 1), 0.0, False), (("send", 1, 2_600), 0.0, False),
                   (("send", 1, 2_600), 0.0, False), (("ack", 0, [1, 2**64]), 0.0, False),
                   (("ack", 0, [1, 1, 7]), 0.0, False)]),
        ("advance", 60.0), ("fetch", 0, 0, 4, 100, True), ("sweep",), ("advance", 200.0),
        ("sweep",), ("batch", [(("subscribe", 0), 0.0, False), (("subscribe", 1), 0.0, True)]),
    ]
    asyncio.run(compare(steps))

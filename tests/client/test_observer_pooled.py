"""Two relay operators who pool their logs (issue 14 §4, docs/threat-model.md).

With two relays a channel's two directions live on different relays, so neither relay's
log holds both mailboxes of a channel. Four principals, each on an address of its own
(`observer.on_host`), pair over two observed relays and watch; the adversary of
`observer.by_pooled_logs` then names each mailbox's partner on the other relay from both
logs together.

- Slots off, forwarding off: the addresses pair every channel (each principal reads its
  own mailboxes and writes the counterpart's from its address), and so does timing
  (a receipt written on one relay right after its note was read on the other).
- Slots on, forwarding on: timing names no more partners than chance allows, and every
  slot write reaches its relay as a sealed send from the other relay. The addresses still
  pair every channel when the pool links each forward to the sealed send it carries (with
  two relays the forwarding relay and the destination are the pool, and the two are
  milliseconds apart); without that link ("addr, unlinked") they name no more partners
  than chance allows.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path

from backchannel.client.engine import Principal
from tests.client.conftest import MakePrincipal
from tests.client.observer import (
    Record,
    Score,
    by_pooled_logs,
    channel_pairs,
    host_address,
    host_context,
    hosts_on_loopback,
    observed_relay,
    on_host,
)
from tests.client.test_slots import slotted

# Four principals: six channels, twelve mailboxes, six on each relay, so a guess among the
# other relay's mailboxes is right with chance 1/6.
PRINCIPALS = 4
# A note per channel in the period; apart by more than the timing window, so that with
# slots off each receipt follows its own note alone.
NOTE_GAP = 0.25
TIMING_WINDOW = 0.1
SLOT_INTERVAL = 0.2
# Guessing at random, 7 or more of 12 right has a chance of 0.13 %: the bound past which
# "timing names no more than chance" fails (the slots-off run gets 10 to 12).
AT_CHANCE_MOST = 6


async def _run(tmp_path: Path, make_principal: MakePrincipal, *, forwarding: bool,
               interval: float | None) -> tuple[Record, Record, list[tuple[str, str]]]:
    """Pair, watch, send a note on each channel; the whole record, the record of the
    period with notes, and the channels' mailbox pairs."""
    record = Record()
    people = [make_principal(f"p{i}") for i in range(PRINCIPALS)]
    host = {id(p): host_address(i) for i, p in enumerate(people)}
    rng = random.Random(7)
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with (
            observed_relay(tmp_path / "r1.db", record, forwarding=forwarding) as r1,
            observed_relay(tmp_path / "r2.db", record, forwarding=forwarding) as r2,
        ):
            urls = [r1.url, r2.url]
            # Every invite first, then the accepts in another order, as codes handed over
            # later would be (else creation order pairs them).
            codes = [(x, y, await on_host(host[id(x)], x.invite(urls)))
                     for x, y in itertools.combinations(people, 2)]
            rng.shuffle(codes)
            for x, y, code in codes:
                await on_host(host[id(y)], y.accept(code, name=x.name))
            for _ in range(2):  # hellos, moves, retirements
                for p in people:
                    await on_host(host[id(p)], p.sync())
            slotted(*people, interval=interval)
            stop = asyncio.Event()
            watches = [asyncio.create_task(p.watch(stop, duty_interval=0.1),
                                           context=host_context(host[id(p)]))
                       for p in people]
            try:
                await asyncio.sleep(3 * (interval or 0.1))  # every direction in its slots
                start = time.monotonic()
                for k, (x, y) in enumerate(itertools.combinations(people, 2)):
                    sender, to = (x, y) if k % 2 else (y, x)
                    sender.queue(to.name, f"note {k}")
                    await asyncio.sleep(NOTE_GAP if interval is None else interval)
                await asyncio.sleep(3 * (interval or 0.1))
                end = time.monotonic()
            finally:
                stop.set()
                await asyncio.gather(*watches)
    _all_notes_arrived(people)
    pairs = channel_pairs(people)
    assert len(pairs) == 6
    return record, Record([e for e in record.events if start <= e.at < end]), pairs


def _all_notes_arrived(people: list[Principal]) -> None:
    received = sum(1 for p in people for e in p.inbox() if e.text.startswith("note "))
    assert received == 6


def _scores(record: Record, active: Record, pairs: list[tuple[str, str]]) -> dict[str, Score]:
    scores = by_pooled_logs(record, pairs, seed=3, window=TIMING_WINDOW, timing_record=active)
    return {s.strategy: s for s in scores}


async def test_pooled_logs_pair_channels_without_slots_or_forwarding(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record, active, pairs = await _run(tmp_path, make_principal, forwarding=False,
                                       interval=None)
    scores = _scores(record, active, pairs)
    # No single relay holds both mailboxes of a channel ...
    relays = {e.mailbox: e.relay for e in record.events if e.op == "create"}
    assert all(relays[a] != relays[b] for a, b in pairs)
    assert abs(scores["pooled: timing"].chance - 1 / 6) < 1e-9
    # ... but pooled, the addresses pair every one, and timing most.
    assert scores["pooled: addresses"].correct == 12
    assert scores["pooled: all three"].correct == 12
    assert scores["pooled: timing"].correct > AT_CHANCE_MOST, scores["pooled: timing"]


async def test_pooled_timing_is_at_chance_with_slots_and_forwarding(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record, active, pairs = await _run(tmp_path, make_principal, forwarding=True,
                                       interval=SLOT_INTERVAL)
    scores = _scores(record, active, pairs)
    timing = scores["pooled: timing"]
    assert timing.correct <= AT_CHANCE_MOST, timing
    # The addresses still pair most channels: two relays that pool their logs are the
    # forwarding relay and the destination, and link each forward to its sealed send
    # (slot forwards of several directions a few milliseconds apart are sometimes linked
    # wrongly, which votes across slots mostly outweigh: 9 to 12 of 12).
    assert scores["pooled: addresses"].correct > AT_CHANCE_MOST, scores["pooled: addresses"]
    mailboxes = {m for pair in pairs for m in pair}
    direct = [e for e in active.events if e.op in ("send", "sendbatch") and e.mailbox in mailboxes]
    sealed = [e for e in active.events if e.op == "sealedsend" and e.mailbox in mailboxes]
    # Every slot write is forwarded (`client.slotroutes`): none names its mailbox from
    # the writer's own address ...
    assert sealed and not direct, (len(direct), len(sealed))
    # ... so without timing, the addresses tell only who owns which mailbox.
    unlinked = scores["pooled: addr, unlinked"]
    assert unlinked.correct <= AT_CHANCE_MOST, unlinked

"""The relay operator's view, as a benchmark: how well can a relay pair the mailboxes of
each channel from what it can log?

    python bench/observer.py [--principals N] [--relays 1|2|3] [--rounds N] [--seed N]
                             [--forwarding]

Starts real relays on 127.0.0.1 that log every request (connection, peer address,
operation, mailbox id, time, size; tests/client/observer.py), pairs every two of N
principals (all invites first, then the accepts in random order, as codes handed over
later would be), then runs rounds in which random principals send notes and everyone
syncs in random order. Then three adversaries try to name each mailbox's partner (the
other direction of its channel on the same relay):

- shared connections: the mailbox that shared most connections with it;
- creation order: the mailbox created closest in time;
- timing: the mailbox whose writes most often fall within 2 s of its own.

Prints each one's accuracy against chance (1 / (mailboxes - 1)), and the machine's load.
With two relays or more, a channel's directions are on different relays (`client.placement`),
so the partner is on another relay; it also prints how many channels have both mailboxes
on one relay, and with `--forwarding` (relays with forwarding keys, so sends go through
another relay: `client.routing`) how many deposits after pairing each relay got from a
client naming the mailbox, against those that came sealed from another relay.

    python bench/observer.py --watch [--slots SECONDS|off] [--relays N] [--forwarding] ...

instead keeps every principal watching (the agent's loop) after pairing, and in each
round a random principal queues a note to a random channel and waits one to three slot
intervals; the counterpart's watch takes it in and answers with a receipt. With `--slots
off` the receipt follows the note within milliseconds; with slots, every direction writes
once per slot, cover when nothing is queued. The timing adversary then looks at the
writes of the watching period only, with a window of half a slot interval (0.1 s with
slots off), and the traffic shape of that period is compared with an idle one (writes
per mailbox, sizes, and the Kolmogorov-Smirnov statistic of the inter-arrival times).
Each principal's connections leave from a loopback address of its own
(`observer.on_host`), as from its own host. With two relays or more it also prints the
adversary of operators who pool all relays' logs (`observer.by_pooled_logs`): it names
each mailbox's partner among the mailboxes on the other relays by the addresses that own
and write them (a forward linked by time to the sealed send it carries counts as its
client's write), by timing (window as above, over the period with notes), by creation
order, and by all three.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.client.observer import (
    Record,
    by_connections,
    by_creation_order,
    by_pooled_logs,
    by_timing,
    channel_pairs,
    host_address,
    host_context,
    hosts_on_loopback,
    inter_arrivals,
    ks_critical,
    ks_statistic,
    observed_relay,
    on_host,
    sends_between,
)

from backchannel.client.engine import Principal
from backchannel.client.keystore import KdfParameters
from backchannel.client.slotpolicy import interval_key, parse_interval

KDF = KdfParameters(memory_kib=8, iterations=1, lanes=1)


async def run(principals: int, relays: int, rounds: int, seed: int,
              forwarding: bool = False) -> None:
    rng = random.Random(seed)
    record = Record()
    paired_at = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        people = [
            Principal.create(root / f"p{i}", f"p{i}", "passphrase", kdf=KDF)
            for i in range(principals)
        ]
        async with ObservedRelays(root, record, relays, forwarding) as urls:
            codes = []
            for x, y in itertools.combinations(range(principals), 2):
                codes.append((y, f"p{x}", await people[x].invite(urls)))
            rng.shuffle(codes)
            for y, name, code in codes:
                await people[y].accept(code, name=name)
            for _ in range(3):  # hellos, moves, retirements
                for p in rng.sample(people, len(people)):
                    await p.sync()
            paired_at = len(record.events)
            for r in range(rounds):
                sender = rng.choice(people)
                channel = rng.choice(sender.channels())
                sender.queue(channel.name, f"round {r}")
                for p in rng.sample(people, len(people)):
                    await p.sync()
        pairs = channel_pairs(people)
        together = _channels_on_one_relay(people, record)
        channels = sum(len(p.channels()) for p in people) // 2
        for p in people:
            p.close()
    connections = record.mailboxes_of()
    print(f"principals {principals}, channels {channels}, relays {relays}, "
          f"mailboxes {2 * len(pairs)}, requests logged {len(record.events)}, "
          f"connections {len(connections)}, "
          f"most mailboxes on one connection {max(len(m) for m in connections.values())}")
    for score in (
        by_connections(record, pairs, seed),
        by_creation_order(record, pairs, seed),
        by_timing(record, pairs, seed),
    ):
        print(f"  {score.strategy:20s} {score.correct}/{score.total} = {score.accuracy:.2f}"
              f"  (chance {score.chance:.2f}, {score.accuracy / score.chance:.1f}x)")
    print(f"  channels with both mailboxes on one relay: {together} of {channels}")
    after = record.events[paired_at:]
    direct = sum(1 for e in after if e.op in ("send", "sendbatch"))
    sealed = sum(1 for e in after if e.op == "sealedsend")
    print(f"  deposits after pairing: {direct} from a client naming the mailbox, "
          f"{sealed} sealed from another relay")
    print(f"  load average {os.getloadavg()[0]:.2f}")


def _channels_on_one_relay(people: list[Principal], record: Record) -> int:
    """Channels of which some relay's log names both mailboxes (ours and theirs)."""
    seen: dict[str, set[str]] = {}
    for e in record.events:
        if e.mailbox:
            seen.setdefault(e.relay, set()).add(e.mailbox)
    count = 0
    for p in people:
        for channel in p.channels():
            if channel.role != "inviter":
                continue  # each channel once
            ours = {lk.inbound.mailbox_id for lk in channel.links if lk.inbound}
            theirs = {lk.outbound.mailbox_id for lk in channel.links if lk.outbound}
            if any(ours & boxes and theirs & boxes for boxes in seen.values()):
                count += 1
    return count


async def run_watching(
    principals: int, relays: int, rounds: int, seed: int, interval: float | None,
    forwarding: bool = False,
) -> None:
    rng = random.Random(seed)
    record = Record()
    step = interval if interval is not None else 0.5
    with (tempfile.TemporaryDirectory() as tmp,
          hosts_on_loopback(asyncio.get_running_loop())):
        root = Path(tmp)
        people = [
            Principal.create(root / f"p{i}", f"p{i}", "passphrase", kdf=KDF)
            for i in range(principals)
        ]
        # Each principal's connections leave from an address of its own, as from its host.
        host = {id(p): host_address(i) for i, p in enumerate(people)}
        async with ObservedRelays(root, record, relays, forwarding) as urls:
            # All invites first, then the accepts in random order (codes handed over later).
            codes = [(y, x, await on_host(host[id(people[x])], people[x].invite(urls)))
                     for x, y in itertools.combinations(range(principals), 2)]
            rng.shuffle(codes)
            for y, x, code in codes:
                await on_host(host[id(people[y])], people[y].accept(code, name=f"p{x}"))
            for _ in range(2):
                for p in people:
                    await on_host(host[id(p)], p.sync())
            for p in people:
                for channel in p.channels():
                    p.set_setting(interval_key(channel.channel_id),
                                  "off" if interval is None else str(interval))
            stop = asyncio.Event()
            watches = [asyncio.create_task(p.watch(stop, duty_interval=0.2),
                                           context=host_context(host[id(p)]))
                       for p in people]
            await asyncio.sleep(max(2.0, 3 * step))  # every direction is in its slots
            idle_start = time.monotonic()
            await asyncio.sleep(rounds * 2 * step)
            start = time.monotonic()
            for r in range(rounds):
                sender = rng.choice(people)
                channel = rng.choice(sender.channels())
                sender.queue(channel.name, f"round {r}")
                await asyncio.sleep(rng.uniform(1.0, 3.0) * step)
            end = time.monotonic()
            await asyncio.sleep(3 * step)
            stop.set()
            reports = await asyncio.gather(*watches)
        pairs = channel_pairs(people)
        channels = sum(len(p.channels()) for p in people) // 2
        for p in people:
            p.close()
    active = Record([e for e in record.events if start <= e.at < end])
    window = step / 2 if interval is not None else 0.1
    timing = by_timing(active, pairs, seed, window=window)
    rate = "off" if interval is None else f"every {interval:g} s"
    print(f"watching, slots {rate}, forwarding {'on' if forwarding else 'off'}: "
          f"principals {principals}, channels {channels}, "
          f"relays {relays}, mailboxes {2 * len(pairs)}, "
          f"notes {rounds}, received {sum(r.received for r in reports)}, "
          f"cover received {sum(r.cover for r in reports)}")
    for score in (by_connections(record, pairs, seed), timing):
        print(f"  {score.strategy:20s} {score.correct}/{score.total} = {score.accuracy:.2f}"
              f"  (chance {score.chance:.2f}, {score.accuracy / score.chance:.1f}x)"
              + (f", window {window:g} s" if score is timing else ""))
    if relays > 1:
        # The operators of all relays pool their logs: addresses over the whole record,
        # timing over the period with notes.
        for score in by_pooled_logs(record, pairs, seed, window=window, timing_record=active):
            print(f"  {score.strategy:23s} {score.correct}/{score.total} = "
                  f"{score.accuracy:.2f}  (chance {score.chance:.2f}, "
                  f"{score.accuracy / score.chance:.1f}x)")
        direct = sum(1 for e in active.events if e.op in ("send", "sendbatch"))
        sealed = sum(1 for e in active.events if e.op == "sealedsend")
        print(f"  deposits with notes: {direct} from a client naming the mailbox, "
              f"{sealed} sealed from another relay")
    _frame_sizes(active)
    idle = sends_between(record, idle_start, idle_start + (end - start))
    busy = sends_between(record, start, end)
    gaps_idle, gaps_busy = inter_arrivals(idle), inter_arrivals(busy)
    ks = (f"KS {ks_statistic(gaps_idle, gaps_busy):.3f} (1 % critical "
          f"{ks_critical(len(gaps_idle), len(gaps_busy)):.3f})" if gaps_idle and gaps_busy
          else "KS: a period without writes")
    if gaps_idle and gaps_busy:
        q = [0.01, 0.1, 0.5, 0.9, 0.99]
        for name, gaps in (("idle", sorted(gaps_idle)), ("notes", sorted(gaps_busy))):
            marks = ", ".join(f"{gaps[int(x * (len(gaps) - 1))]:.3f}" for x in q)
            print(f"  gaps {name:5s} quantiles 1/10/50/90/99 %: {marks}")
    print(f"  shape: writes idle {len(idle)} / with notes {len(busy)}, sizes "
          f"{sorted({e.size for e in idle})} / {sorted({e.size for e in busy})}, {ks}")
    print(f"  load average {os.getloadavg()[0]:.2f}")


def _frame_sizes(active: Record) -> None:
    """What a slot write costs on the wire, by the request frames the relays logged: a
    direct send, or a forward (client to forwarding relay) and the sealed send it carries
    (forwarding relay to destination). WebSocket framing and a forward's own connection
    (its handshake) come on top."""
    sizes: dict[str, Counter[int]] = {}
    for e in active.events:
        if e.op in ("send", "forward", "sealedsend"):
            sizes.setdefault(e.op, Counter())[e.size] += 1
    shown = ", ".join(f"{op} {counts.most_common(1)[0][0]} bytes ({counts.total()} frames)"
                      for op, counts in sorted(sizes.items()))
    print(f"  request frames with notes, most common size: {shown or 'none'}")


class ObservedRelays:
    """Start `count` observed relays (with forwarding keys if `forwarding`), yield their
    URLs."""

    def __init__(self, root: Path, record: Record, count: int, forwarding: bool = False) -> None:
        self._managers = [
            observed_relay(root / f"relay{i}.db", record, forwarding=forwarding)
            for i in range(count)
        ]

    async def __aenter__(self) -> list[str]:
        return [(await m.__aenter__()).url for m in self._managers]

    async def __aexit__(self, *exc: object) -> None:
        for m in reversed(self._managers):
            await m.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=4)
    parser.add_argument("--relays", type=int, choices=(1, 2, 3), default=1)
    parser.add_argument("--forwarding", action="store_true",
                        help="relays with forwarding keys: sends go through another relay")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--watch", action="store_true", help="watch, with or without slots")
    parser.add_argument("--slots", default="0.5", help="slot interval in seconds, or off")
    args = parser.parse_args()
    if args.watch:
        interval = parse_interval(args.slots, source="--slots")
        asyncio.run(run_watching(args.principals, args.relays, args.rounds, args.seed, interval,
                                 args.forwarding))
    else:
        asyncio.run(run(args.principals, args.relays, args.rounds, args.seed, args.forwarding))


if __name__ == "__main__":
    main()

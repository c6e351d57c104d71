"""The relay operator's view, as a benchmark: how well can a relay pair the mailboxes of
each channel from what it can log?

    python bench/observer.py [--principals N] [--relays 1|2] [--rounds N] [--seed N]

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
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.client.observer import (
    Record,
    by_connections,
    by_creation_order,
    by_timing,
    channel_pairs,
    observed_relay,
)

from backchannel.client.engine import Principal
from backchannel.client.keystore import KdfParameters

KDF = KdfParameters(memory_kib=8, iterations=1, lanes=1)


async def run(principals: int, relays: int, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    record = Record()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        people = [
            Principal.create(root / f"p{i}", f"p{i}", "passphrase", kdf=KDF)
            for i in range(principals)
        ]
        async with ObservedRelays(root, record, relays) as urls:
            codes = []
            for x, y in itertools.combinations(range(principals), 2):
                codes.append((y, f"p{x}", await people[x].invite(urls)))
            rng.shuffle(codes)
            for y, name, code in codes:
                await people[y].accept(code, name=name)
            for _ in range(2):
                for p in rng.sample(people, len(people)):
                    await p.sync()
            for r in range(rounds):
                sender = rng.choice(people)
                channel = rng.choice(sender.channels())
                sender.queue(channel.name, f"round {r}")
                for p in rng.sample(people, len(people)):
                    await p.sync()
        pairs = channel_pairs(people)
        for p in people:
            p.close()
    connections = record.mailboxes_of()
    print(f"principals {principals}, channels {len(pairs) // relays}, relays {relays}, "
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
    print(f"  load average {os.getloadavg()[0]:.2f}")


class ObservedRelays:
    """Start `count` observed relays, yield their URLs."""

    def __init__(self, root: Path, record: Record, count: int) -> None:
        self._managers = [observed_relay(root / f"relay{i}.db", record) for i in range(count)]

    async def __aenter__(self) -> list[str]:
        return [(await m.__aenter__()).url for m in self._managers]

    async def __aexit__(self, *exc: object) -> None:
        for m in reversed(self._managers):
            await m.__aexit__(None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--principals", type=int, default=4)
    parser.add_argument("--relays", type=int, choices=(1, 2), default=1)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(run(args.principals, args.relays, args.rounds, args.seed))


if __name__ == "__main__":
    main()

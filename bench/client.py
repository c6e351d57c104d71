"""End-to-end client speed against the bare relay, measured in one run.

    python bench/client.py [--slow-count N] [--fast-count N] [--burst N]

Starts `backchannel relay serve` (SQLite, its own process) on a free loopback port, pairs
two principals in this process, and reports:

- the bare relay round trip: a 1 KiB envelope sent until the relay answers `stored`
  (committed), the floor any client pays;
- end-to-end latency, from `send()` to the message committed in the receiver's store
  (the receiver runs `watch`), at 1 and at 100 messages per second: p50 and p99, and the
  ratio of p50 to (2 x relay p50 + 2 ms), the target being <= 1;
- the transport alone: one connection sending a burst of 1 KiB envelopes to a mailbox
  another connection subscribes to and acks, one SEND each and then with `send_many`
  (SEND_BATCH frames), under the relay's default limits;
- one-way throughput of one channel: notes queued as fast as the sender can (one
  transaction each, then 50 per transaction with `queue_many`), until the receiver has
  stored all of them, and until the sender also holds a delivery receipt for each
  (`--burst` notes; the target of 3000/s is for 10,000);
- a backlog after an outage, stage by stage: `--burst` notes queued while nobody is
  connected (500 per transaction), then the sender's flush until the relay stored them
  all, then the receiver's `watch` until it stored them all, then the sender's `sync`
  until it holds every delivery receipt. Each stage runs alone, so its rate and the CPU
  this process spent per note on it (the relay is another process) are that side's own;
- a lookup of a channel by name, against reading every channel record as it did before
  (`--channels N` pairs the sender with N more counterparts first, so that the burst and
  the agent run beside them);
- `send` in a loop through the agent: the sender's agent (`agent --foreground`, its own
  process) answering `--agent-count` `cli send` requests one after the other, after 20 not
  counted (the agent's start: its first fold of every transcript, its connections).

Slots are off (`BACKCHANNEL_SLOTS=off` unless set): a slotted channel sends one envelope per
interval by design, which is not what a throughput measure asks about.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backchannel.client.agent.client import AgentUnavailable, connect
from backchannel.client.engine import InboxEntry, Principal
from backchannel.client.keystore import KdfParameters
from backchannel.client.slotpolicy import SLOTS_ENV
from backchannel.client.transport import RelayClient
from backchannel.protocol.envelope import Envelope

KDF = KdfParameters(memory_kib=8 * 1024, iterations=1, lanes=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for_relay(url: str, relay: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if relay.poll() is not None:
            raise RuntimeError(f"relay exited with {relay.returncode}")
        try:
            client = await RelayClient.connect(url)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        await client.close()
        return
    raise RuntimeError("relay did not start")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def relay_round_trip(url: str, count: int) -> list[float]:
    samples = []
    async with await RelayClient.connect(url) as client:
        caps = await client.create_mailbox()
        envelope = Envelope(caps.mailbox_id, os.urandom(1024 - 17)).encode()
        for _ in range(count):
            start = time.perf_counter()
            await client.send(caps.mailbox_id, caps.send_token, envelope)
            samples.append((time.perf_counter() - start) * 1000)
        await client.delete(caps.mailbox_id, caps.receive_token)
    return samples


# Envelopes sent one SEND each in the transport burst: under the relay's default frame
# burst (4,000 frames, with acks and the receiver's frames beside them).
UNBATCHED_BURST = 3000


async def transport_burst(url: str, count: int, batched: bool) -> float:
    """One sender connection to one receiver connection through the relay (default
    limits): `count` 1 KiB envelopes queued at once, in windows of 64 in flight; the
    receiver acks each delivery batch. Envelopes per second until all are acked."""
    async with await RelayClient.connect(url) as sender, \
            await RelayClient.connect(url) as receiver:
        caps = await receiver.create_mailbox()
        await receiver.subscribe(caps.mailbox_id, caps.receive_token)
        envelopes = [Envelope(caps.mailbox_id, i.to_bytes(8, "big") + os.urandom(1024 - 25))
                     .encode() for i in range(count)]

        async def send() -> None:
            for first in range(0, count, 64):
                window = envelopes[first:first + 64]
                if batched:
                    results = await sender.send_many(caps.mailbox_id, caps.send_token, window)
                    assert all(isinstance(r, int) for r in results), results[:3]
                else:
                    await asyncio.gather(*(sender.send(caps.mailbox_id, caps.send_token, e)
                                           for e in window))

        async def receive() -> None:
            got = 0
            acks: list[asyncio.Task[int]] = []
            while got < count:
                _mid, first = await receiver.receive(timeout=30)
                seqs = [first.seq]
                with contextlib.suppress(TimeoutError):  # what else has arrived
                    while len(seqs) < 256:
                        seqs.append((await receiver.receive(timeout=0.001))[1].seq)
                got += len(seqs)
                # Acked without waiting for the answer: the next deliveries keep coming.
                acks.append(asyncio.ensure_future(
                    receiver.ack(caps.mailbox_id, caps.receive_token, tuple(seqs))))
            await asyncio.gather(*acks)

        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(send(), receive()), 300)
        elapsed = time.perf_counter() - start
        await receiver.delete(caps.mailbox_id, caps.receive_token)
    return count / elapsed


async def end_to_end(w: Principal, b: Principal, rate: float, count: int) -> list[float]:
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    def arrived(entry: InboxEntry) -> None:
        start = sent_at.get(entry.text)
        if start is not None:
            latencies.append((time.perf_counter() - start) * 1000)
            if len(latencies) == count:
                done.set()

    stop = asyncio.Event()
    watchers = [
        asyncio.create_task(b.watch(stop, on_message=arrived)),
        asyncio.create_task(w.watch(stop)),
    ]
    await asyncio.sleep(0.5)  # both subscribed
    tag = os.urandom(4).hex()
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for i in range(count):
        text = f"{tag} {i}"
        sent_at[text] = time.perf_counter()
        await w.send("b", text)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await asyncio.gather(*watchers)
    return latencies


def receipted(w: Principal) -> int:
    """How many of the sender's notes to b it holds a delivery receipt for (`status`,
    which opens only the messages written since its last count). Reading every message
    to look took 0.3 s of the loop that takes the receipts in, at 20,000 messages."""
    (status,) = w.status("b")
    return status.delivered


# Seconds the burst waits for its last delivery receipts once every note is stored.
RECEIPT_WAIT = 120.0


async def throughput(
    w: Principal, b: Principal, count: int, batch: int
) -> tuple[float, float]:
    """Notes per second until all are stored by the receiver, and until all are receipted."""
    received = 0
    done = asyncio.Event()

    def arrived(_: InboxEntry) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    stop = asyncio.Event()
    watchers = [
        asyncio.create_task(b.watch(stop, on_message=arrived)),
        asyncio.create_task(w.watch(stop)),
    ]
    await asyncio.sleep(0.5)
    tag = os.urandom(4).hex()
    before = receipted(w)
    start = time.perf_counter()
    for first in range(0, count, batch):
        texts = [f"{tag} {i}" for i in range(first, min(count, first + batch))]
        if batch == 1:
            w.queue("b", texts[0])
        else:
            w.queue_many("b", texts)
        if batch > 1 or first % 50 == 49:
            await asyncio.sleep(0)  # let the watch loops flush and receive meanwhile
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - start
    give_up = time.perf_counter() + RECEIPT_WAIT
    while (got := receipted(w) - before) < count:
        if time.perf_counter() > give_up:
            # A receipt that never comes is a finding, not a reason to wait for ever.
            stop.set()
            await asyncio.gather(*watchers)
            raise RuntimeError(f"{count - got} of {count} notes still without a delivery "
                               f"receipt {RECEIPT_WAIT:g} s after the last was stored")
        await asyncio.sleep(0.1)
    with_receipts = time.perf_counter() - start
    stop.set()
    await asyncio.gather(*watchers)
    return count / elapsed, count / with_receipts


@dataclass(frozen=True)
class Stage:
    """One stage of the backlog: notes per second, and this process's CPU per note."""

    rate: float
    cpu_us: float


async def _stage(count: int, work: Callable[[], Awaitable[None]]) -> Stage:
    wall, cpu = time.perf_counter(), time.process_time()
    await work()
    return Stage(count / (time.perf_counter() - wall),
                 (time.process_time() - cpu) / count * 1e6)


async def backlog(w: Principal, b: Principal, count: int) -> dict[str, Stage]:
    """A day's queue after an outage, stage by stage (see the module doc)."""
    tag = os.urandom(4).hex()
    before = receipted(w)

    async def queue() -> None:
        for first in range(0, count, 500):
            w.queue_many("b", [f"{tag} {i}" for i in range(first, min(count, first + 500))])

    async def flush() -> None:
        stored = 0
        while stored < count:
            stored += await w.flush()

    async def take_in() -> None:
        received = 0
        done, stop = asyncio.Event(), asyncio.Event()

        def arrived(_: InboxEntry) -> None:
            nonlocal received
            received += 1
            if received == count:
                done.set()

        watching = asyncio.create_task(b.watch(stop, on_message=arrived))
        try:
            await asyncio.wait_for(done.wait(), 600)
        finally:
            stop.set()
            await watching

    async def receipts() -> None:
        give_up = time.perf_counter() + RECEIPT_WAIT
        while True:
            report = await w.sync()
            if report.received == 0 and receipted(w) - before >= count:
                return
            if time.perf_counter() > give_up:
                raise RuntimeError(f"receipts for {count} notes not all in after "
                                   f"{RECEIPT_WAIT:g} s")

    return {"queued": await _stage(count, queue), "flushed": await _stage(count, flush),
            "taken in": await _stage(count, take_in),
            "receipts taken in": await _stage(count, receipts)}


def status_cost(w: Principal, rounds: int = 20) -> tuple[int, float, float]:
    """The channel's message count, and milliseconds per `status` (counting what changed
    since the last count) and per full count (every message opened, as `status` counted
    before `state.tallies`), medians over `rounds`, alternating."""
    from backchannel.client.receipts import sequence_gaps
    from backchannel.protocol.message import MessageKind

    cid = w.channel("b").channel_id

    def full() -> tuple[int, ...]:
        messages = w._state.messages.of_channel(cid)
        out = [m for m in messages if m.direction == "out" and m.kind == MessageKind.NOTE]
        inbound = [m for m in messages if m.direction == "in"]
        sequence_gaps([m.seq for m in inbound])
        return (len(out), sum(1 for m in out if m.delivered_at_ms))

    w.status("b")
    tally, counted = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        (status,) = w.status("b")
        tally.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert full() == (status.sent, status.delivered)
        counted.append(time.perf_counter() - start)
    count = len(w._state.messages.stamps(cid))
    return count, statistics.median(tally) * 1e3, statistics.median(counted) * 1e3


def lookup_cost(w: Principal, rounds: int = 200) -> tuple[int, float, float]:
    """The sender's channel count, and microseconds per lookup by name (`channel`, on the
    listing the keystore keeps) and per lookup as it was before that listing (every
    channel record read from the file and copied, then filtered), medians, alternating."""
    from backchannel.client.records import ChannelRecord, copy_channel, load

    store = w._state.store

    def every_record() -> ChannelRecord:
        rows = store.db.execute(
            "SELECT key, record FROM records WHERE kind = 'channel' ORDER BY rowid").fetchall()
        opened = w._state.channels._opened  # decoded once, as the repository keeps them
        records = [copy_channel(opened[bytes(k)][1]) if bytes(k) in opened
                   else load(ChannelRecord, store.unseal("channel", bytes(k), bytes(r)))
                   for k, r in rows]
        return next(c for c in records if c.name == "b")

    kept, read = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        w.channel("b")
        kept.append(time.perf_counter() - start)
        start = time.perf_counter()
        every_record()
        read.append(time.perf_counter() - start)
    return len(w.channels()), statistics.median(kept) * 1e6, statistics.median(read) * 1e6


async def more_channels(w: Principal, url: str, folder: Path, count: int) -> None:
    """Pair `w` with `count` more counterparts (their homes are closed after), paced under
    the relay's per-address limit on new mailboxes."""
    for i in range(count):
        other = Principal.create(folder / f"c{i}", f"c{i}", "bench", kdf=KDF)
        await other.accept(await w.invite([url]))
        await w.sync()
        await other.sync()
        other.close()
        await asyncio.sleep(1.5)


AGENT_WARM_UP = 20


def queued_for(connection: Any, channel: str) -> int:
    """How many of our messages on `channel` no relay has stored yet (`status`)."""
    result = connection.call("cli", {"argv": ["status", channel, "--json"]})
    board = json.loads(result["stdout"])
    return int(board["channels"][0]["queued"])


def agent_send(home: Path, count: int, wait: bool = True) -> tuple[float, float]:
    """`send` requests per second through the agent of `home` (started here, stopped
    after), and notes per second until the relay stored the last of them: with `wait` the
    same (each request waits for it); with `--no-wait`, from the first request until
    `status` shows nothing queued."""
    env = dict(os.environ, BACKCHANNEL_PASSPHRASE="bench")
    agent = subprocess.Popen(
        [sys.executable, "-c", "from backchannel.cli.main import main; main()",
         "--home", str(home), "agent", "--foreground"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(300):
            try:
                connection = connect(home)
                break
            except AgentUnavailable:
                time.sleep(0.1)
        else:
            raise RuntimeError("the agent did not start")
        with connection:
            # Not counted: the agent's first look (a fold of every transcript) and the
            # opening of its connections; a person's `send` in a loop meets a running one.
            for i in range(AGENT_WARM_UP):
                connection.call("cli", {"argv": ["send", "b", f"warm-up {i}", "--json"]})
            while queued_for(connection, "b"):
                time.sleep(0.05)
            flags = ["--json"] if wait else ["--json", "--no-wait"]
            start = time.perf_counter()
            for i in range(count):
                result = connection.call("cli", {"argv": ["send", "b", f"agent {i}", *flags]})
                if result.get("code") != 0:
                    raise RuntimeError(f"send through the agent failed: {result}")
            requests = count / (time.perf_counter() - start)
            deadline = time.monotonic() + 120
            while queued_for(connection, "b"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the agent did not send the queued notes in 120 s")
                time.sleep(0.02)
            return requests, count / (time.perf_counter() - start)
    finally:
        agent.terminate()
        agent.wait(10)


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-client-"))
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    relay = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from backchannel.cli.main import main; main()",
            "relay",
            "serve",
            "--no-metrics",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{folder / 'relay.db'}",
            "--max-envelopes",
            "100000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_for_relay(url, relay)
        for batched in (False, True):
            # One SEND a frame: a burst past the connection's frame burst would measure the
            # relay's frame limit (`limits.DEFAULT_FRAME_BURST`, then its rate), not the path.
            count = args.burst if batched else min(args.burst, UNBATCHED_BURST)
            rate = await transport_burst(url, count, batched)
            how = "SEND_BATCH frames (send_many)" if batched else "one SEND each"
            print(f"transport burst, one connection to another ({count} envelopes of "
                  f"1 KiB, {how}): {rate:,.0f} envelopes/s (target >= 3000)", flush=True)
        if args.transport_only:
            return
        w = Principal.create(folder / "w", "w", "bench", kdf=KDF)
        b = Principal.create(folder / "b", "b", "bench", kdf=KDF)
        await b.accept(await w.invite([url]))
        await w.sync()
        await b.sync()
        rtt = await relay_round_trip(url, 300)
        floor = 2 * statistics.median(rtt) + 2.0
        print(
            f"relay round trip (send -> stored): p50 {statistics.median(rtt):.2f} ms, "
            f"p99 {percentile(rtt, 0.99):.2f} ms; target p50 <= {floor:.2f} ms"
        )
        for rate, count in ((1.0, args.slow_count), (100.0, args.fast_count)):
            lat = await end_to_end(w, b, rate, count)
            p50 = statistics.median(lat)
            print(
                f"send -> stored at {rate:>5.0f} msg/s ({count} msgs): p50 {p50:.2f} ms, "
                f"p99 {percentile(lat, 0.99):.2f} ms, p50 / target {p50 / floor:.2f}"
            )
        if args.channels:
            await more_channels(w, url, folder, args.channels)
        count, kept, read = lookup_cost(w)
        print(f"channel lookup by name at {count} channels: {kept:.1f} us; every record "
              f"read and copied (as before): {read:.1f} us, {read / kept:.1f}x", flush=True)
        for batch in (1, 50):
            rate, with_receipts = await throughput(w, b, args.burst, batch)
            how = "queued one by one" if batch == 1 else f"queued {batch} per transaction"
            print(
                f"one-way throughput ({args.burst} notes, {how}): {rate:.0f} msg/s stored, "
                f"{with_receipts:.0f} msg/s receipted (target >= 3000)", flush=True
            )
        stages = await backlog(w, b, args.burst)
        print(f"backlog after an outage ({args.burst} notes, each stage alone): " + "; ".join(
            f"{name} {stage.rate:,.0f}/s ({stage.cpu_us:.0f} us CPU each)"
            for name, stage in stages.items()), flush=True)
        count, tallied, counted = status_cost(w)
        print(f"status at {count} messages: {tallied:.1f} ms; every message opened (as "
              f"before): {counted:.1f} ms, {counted / tallied:.1f}x", flush=True)
        w.close()  # the agent opens the sender's home now
        for wait in (True, False):
            requests, stored = agent_send(folder / "w", args.agent_count, wait)
            how = "" if wait else " --no-wait"
            print(f"send{how} through the agent, one after another ({args.agent_count} "
                  f"notes): {requests:.0f} requests/s (target >= 500), all stored on the "
                  f"relay at {stored:.0f} notes/s", flush=True)
    finally:
        relay.terminate()
        relay.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow-count", type=int, default=10)
    parser.add_argument("--fast-count", type=int, default=300)
    parser.add_argument("--burst", type=int, default=3000)
    parser.add_argument("--agent-count", type=int, default=300)
    parser.add_argument("--channels", type=int, default=0,
                        help="pair the sender with this many more counterparts first (the "
                             "burst still goes to one): about 2 s each")
    parser.add_argument("--transport-only", action="store_true",
                        help="only the transport bursts (no principals)")
    os.environ.setdefault(SLOTS_ENV, "off")
    asyncio.run(main(parser.parse_args()))

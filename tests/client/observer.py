"""The relay operator's view: a real relay that records everything it could log, and an
adversary that tries to pair the mailboxes of each channel from that record.

`ObservedRelay` is the real `RelayServer` on 127.0.0.1; it only notes, for every request
frame it is given, which connection it came on (a number in order of first use), the
peer address, the operation, the mailbox id, the time and the size. It changes nothing
the relay does. A sealed send (from a forwarding relay) is logged with the mailbox it
deposits into, which the destination relay learns when it opens it; a forward with the
relay it goes to. Used by tests/client/test_observer*.py and bench/observer.py.

Every principal of a test runs in one process on 127.0.0.1, so every connection would
come from one address. `on_host` runs a principal's work in a context whose connections
leave from an address of its own in 127.0.0.0/8 (`hosts_on_loopback` binds them there), so
that the relay logs what it would log of principals on different hosts: real source
addresses, nothing else changed.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import itertools
import math
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from backchannel.client.engine import Principal
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair, open_send
from backchannel.protocol.relayframes import Forward, SealedSend, decode_request
from backchannel.relay.limits import RelayLimits
from backchannel.relay.server import RelayServer
from backchannel.relay.store import open_store


@dataclass(frozen=True, slots=True)
class Observed:
    """One request as the relay's operator could log it."""

    relay: str
    connection: int
    address: str
    op: str
    mailbox: str  # hex, "" for an operation on no mailbox
    at: float  # monotonic seconds
    size: int
    destination: str = ""  # a forward's destination relay


@dataclass(slots=True)
class Record:
    """Everything logged, by all observed relays, in order."""

    events: list[Observed] = field(default_factory=list)

    def connections_of(self, mailbox: str) -> set[tuple[str, int]]:
        return {(e.relay, e.connection) for e in self.events if e.mailbox == mailbox}

    def mailboxes_of(self) -> dict[tuple[str, int], set[str]]:
        """The mailboxes each connection touched."""
        touched: dict[tuple[str, int], set[str]] = defaultdict(set)
        for e in self.events:
            if e.mailbox:
                touched[(e.relay, e.connection)].add(e.mailbox)
        return touched


class ObservedRelay(RelayServer):
    """The real relay, with a log of what its operator could see. Test-only."""

    record: Record
    # Each connection seen, kept alive so that its id() is never given to a later one.
    _ids: dict[int, tuple[Any, int]]

    def _on_frame(self, conn: Any, data: bytes, cost: float = 1.0) -> None:
        _, number = self._ids.setdefault(id(conn), (conn, len(self._ids)))
        destination = ""
        try:
            frame = decode_request(data)
            op = type(frame).__name__.lower()
            mailbox = getattr(frame, "mailbox_id", b"").hex()
            if isinstance(frame, Forward):
                destination = frame.destination
            elif isinstance(frame, SealedSend) and self.forward_key is not None:
                # The operator opens it to deposit it, so it learns the mailbox.
                keys = self.forward_key.opening(frame.key_id, self.clock())
                mailbox = open_send(keys, frame.key_id, frame.sealed).mailbox_id.hex()
        except BackchannelError:
            op, mailbox = "malformed", ""
        self.record.events.append(Observed(self.url, number, conn.address, op, mailbox,
                                           time.monotonic(), len(data), destination))
        super()._on_frame(conn, data, cost)


@contextlib.asynccontextmanager
async def observed_relay(db: Path, record: Record, limits: RelayLimits | None = None, *,
                         forwarding: bool = False, port: int = 0) -> AsyncIterator[ObservedRelay]:
    """A real relay on a loopback port (a free one by default) that logs into `record`
    (with `limits`, or the defaults); with `forwarding`, with a new forwarding key,
    forwarding to loopback allowed."""
    limits = limits or RelayLimits()
    options: dict[str, Any] = {}
    if forwarding:
        options = {"forward_key": RelayKeyPair(os.urandom(KEY_SEED_SIZE)),
                   "forward_to_local": True}
    server = ObservedRelay(open_store(f"sqlite:///{db}", limits), limits, host="127.0.0.1",
                           port=port, **options)
    server.record = record
    server._ids = {}
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# The source address of the connections opened in the current context (None: the default).
_CLIENT_HOST: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "observer_client_host", default=None)

T = TypeVar("T")


def host_address(index: int) -> str:
    """The loopback address standing for principal `index`'s host (127.0.0.1 is left to
    the relays, so a relay's forwarding connections keep an address of their own)."""
    return f"127.0.1.{index + 1}"


@contextlib.contextmanager
def hosts_on_loopback(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While inside, a connection opened by `loop` in an `on_host` context leaves from
    that context's address (`local_addr`): the relay sees it as that host's."""
    real = loop.create_connection

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        host = _CLIENT_HOST.get()
        if host is not None and kwargs.get("local_addr") is None and not kwargs.get("sock"):
            kwargs["local_addr"] = (host, 0)
        return await real(*args, **kwargs)

    loop.create_connection = create_connection  # type: ignore[method-assign]
    try:
        yield
    finally:
        del loop.create_connection  # the class's method again


def host_context(address: str) -> contextvars.Context:
    """A context whose connections leave from `address` (under `hosts_on_loopback`)."""
    ctx = contextvars.copy_context()
    ctx.run(_CLIENT_HOST.set, address)
    return ctx


async def on_host(address: str, work: Coroutine[Any, Any, T]) -> T:
    """Await `work` as if on the host at `address` (its tasks inherit the address)."""
    return await asyncio.create_task(work, context=host_context(address))


def channel_pairs(principals: Iterable[Principal]) -> list[tuple[str, str]]:
    """The truth the adversary is after: for each channel and relay, our inbound mailbox
    and the counterpart's (our outbound), as hex ids."""
    pairs: set[tuple[str, str]] = set()
    for principal in principals:
        for channel in principal.channels():
            # Split across relays (`client.placement`), a channel's mailboxes are on
            # different links: each of ours is paired with the counterpart's in order.
            ours = [lk.inbound.mailbox_id for lk in channel.links if lk.inbound]
            theirs = [lk.outbound.mailbox_id for lk in channel.links if lk.outbound]
            for a, b in zip(ours, theirs, strict=False):
                pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def _partner_map(pairs: list[tuple[str, str]]) -> dict[str, str]:
    partner = {}
    for a, b in pairs:
        partner[a], partner[b] = b, a
    return partner


@dataclass(frozen=True, slots=True)
class Score:
    """How often a strategy named each mailbox's true partner, against chance."""

    strategy: str
    correct: int
    total: int
    chance: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def _score(name: str, guesses: dict[str, str], partner: dict[str, str]) -> Score:
    correct = sum(1 for m, g in guesses.items() if partner.get(m) == g)
    n = len(partner)
    return Score(name, correct, n, 1.0 / (n - 1) if n > 1 else 1.0)


def _best(candidates: dict[str, Any], rng: random.Random) -> str:
    """The highest-scoring candidate; ties broken at random (so a strategy that learns
    nothing scores chance, not whatever order the mailboxes came in)."""
    top = max(candidates.values())
    return rng.choice(sorted(m for m, s in candidates.items() if s == top))


# Operations only a mailbox's owner does (it holds the receive token), and the write.
_OWNER_OPS = frozenset({"create", "fetch", "ack", "subscribe", "delete"})
# Operations that deposit into a mailbox: a client's own send, or one sealed by a
# forwarding relay (the destination opens it, so it knows the mailbox).
_WRITE_OPS = frozenset({"send", "sendbatch", "sealedsend"})


def by_connections(record: Record, pairs: list[tuple[str, str]], seed: int = 0) -> Score:
    """Guess each mailbox's partner from shared connections: a principal's connection that
    reads its inbound mailbox `m` and writes to `o`, and the counterpart's that reads `o`
    and writes to `m`, each count for the pair (m, o). The highest count wins; with no
    evidence the guess is random."""
    rng = random.Random(seed)
    partner = _partner_map(pairs)
    targets = sorted(partner)
    reads: dict[tuple[str, int], set[str]] = defaultdict(set)
    writes: dict[tuple[str, int], set[str]] = defaultdict(set)
    for e in record.events:
        if e.mailbox in partner:
            side = writes if e.op == "send" else reads if e.op in _OWNER_OPS else None
            if side is not None:
                side[(e.relay, e.connection)].add(e.mailbox)
    score: dict[str, dict[str, float]] = {m: {o: 0.0 for o in targets if o != m} for m in targets}
    for conn, read in reads.items():
        for m in read:
            for o in writes.get(conn, set()) - {m}:
                score[m][o] += 1
                score[o][m] += 1
    guesses = {m: _best(score[m], rng) for m in targets}
    return _score("shared connections", guesses, partner)


def by_creation_order(record: Record, pairs: list[tuple[str, str]], seed: int = 0) -> Score:
    """Guess the mailbox created closest in time."""
    rng = random.Random(seed)
    partner = _partner_map(pairs)
    created = {e.mailbox: e.at for e in record.events if e.op == "create" and e.mailbox in partner}
    guesses = {}
    for m in sorted(partner):
        if m not in created:
            continue
        near = {o: -abs(t - created[m]) for o, t in created.items() if o != m}
        guesses[m] = _best(near, rng)
    return _score("creation order", guesses, partner)


# Seconds within which a write to one mailbox is taken to answer a write to another
# (a receipt, a reply): a client syncing at once answers within a second or two.
TIMING_WINDOW = 2.0


def by_timing(
    record: Record, pairs: list[tuple[str, str]], seed: int = 0, window: float = TIMING_WINDOW
) -> Score:
    """Guess the mailbox whose writes most often follow or precede this one's within
    `window` seconds (a receipt follows its note; a reply its question)."""
    rng = random.Random(seed)
    partner = _partner_map(pairs)
    writes: dict[str, list[float]] = defaultdict(list)
    for e in record.events:
        if e.op in _WRITE_OPS and e.mailbox in partner:
            writes[e.mailbox].append(e.at)
    guesses = {}
    for m in sorted(partner):
        near = {
            o: float(
                sum(1 for t in writes[m] for u in writes[o] if abs(t - u) <= window)
            )
            for o in partner
            if o != m
        }
        guesses[m] = _best(near, rng)
    return _score("timing of writes", guesses, partner)


# --- two operators who pool their logs ---------------------------------------------------
#
# With two relays or more a channel's two directions live on different relays
# (`client.placement`), so no one relay's log holds both mailboxes. Two operators who pool
# their logs (one clock, one record) can still try to pair a mailbox on one relay with its
# partner on another, by the addresses that own and write each mailbox, by the timing of
# reads and writes across the relays, and by creation order.

# Seconds within which a forward at one relay is taken to be the sealed send that arrives
# at its destination: a relay carries it on at once, in milliseconds.
FORWARD_WINDOW = 0.25


@dataclass(frozen=True, slots=True)
class PooledView:
    """What pooled logs say of each mailbox of the channels: the relay holding it, the
    addresses that own it (create, read, ack) and that write to it (directly, or through
    a forward the pool links to its sealed send), when it was created, and the times of
    its writes and acks."""

    def writer(self, mailbox: str) -> str | None:
        """The address most of `mailbox`'s writes came from (a forward linked wrongly,
        when two arrive close together, is outvoted)."""
        counts = self.writers.get(mailbox)
        return counts.most_common(1)[0][0] if counts else None

    relay: dict[str, str]
    owners: dict[str, set[str]]
    writers: dict[str, Counter[str]]  # writes per address
    created: dict[str, float]
    activity: dict[str, list[float]]

    def candidates(self, mailbox: str) -> list[str]:
        """The mailboxes on another relay than `mailbox`'s: where its partner is."""
        here = self.relay.get(mailbox)
        return sorted(o for o in self.relay if o != mailbox and self.relay[o] != here)


def pooled_view(record: Record, pairs: list[tuple[str, str]],
                forward_window: float = FORWARD_WINDOW) -> PooledView:
    """Read the pooled `record` for the mailboxes of `pairs` (see `PooledView`)."""
    partner = _partner_map(pairs)
    relay: dict[str, str] = {}
    owners: dict[str, set[str]] = defaultdict(set)
    writers: dict[str, Counter[str]] = defaultdict(Counter)
    created: dict[str, float] = {}
    activity: dict[str, list[float]] = defaultdict(list)
    forwards = sorted((e.at, e.destination, e.address) for e in record.events
                      if e.op == "forward")
    for e in record.events:
        if e.mailbox not in partner:
            continue
        relay.setdefault(e.mailbox, e.relay)
        if e.op in _OWNER_OPS:
            owners[e.mailbox].add(e.address)
            if e.op == "create":
                created.setdefault(e.mailbox, e.at)
            if e.op == "ack":
                activity[e.mailbox].append(e.at)
        elif e.op in ("send", "sendbatch"):
            writers[e.mailbox][e.address] += 1
            activity[e.mailbox].append(e.at)
        elif e.op == "sealedsend":
            activity[e.mailbox].append(e.at)
            # The forward to this relay just before it: its client is the writer.
            near = [(e.at - at, address) for at, dest, address in forwards
                    if dest == e.relay and 0.0 <= e.at - at <= forward_window]
            if near:
                writers[e.mailbox][min(near)[1]] += 1
    return PooledView(relay, dict(owners), dict(writers), created, dict(activity))


def _address_evidence(view: PooledView, m: str, o: str) -> int:
    """Two mailboxes of one channel: each is written from the address that owns the
    other. Both owned from one address: not a channel (nobody pairs with itself)."""
    owners_m, owners_o = view.owners.get(m, set()), view.owners.get(o, set())
    if owners_m & owners_o:
        return -1
    return int(view.writer(m) in owners_o) + int(view.writer(o) in owners_m)


def _timing_evidence(view: PooledView, m: str, o: str, window: float) -> int:
    """Writes and acks of the two mailboxes that fall within `window` of each other (a
    note read on one relay, and its receipt written on the other)."""
    ts, us = sorted(view.activity.get(m, [])), view.activity.get(o, [])
    count = 0
    for u in us:
        count += bisect.bisect_right(ts, u + window) - bisect.bisect_left(ts, u - window)
    return count


def _creation_evidence(view: PooledView, m: str, o: str) -> float:
    if m not in view.created or o not in view.created:
        return -math.inf
    return -abs(view.created[m] - view.created[o])


def _pooled_score(name: str, guesses: dict[str, str], partner: dict[str, str],
                  view: PooledView) -> Score:
    correct = sum(1 for m, g in guesses.items() if partner.get(m) == g)
    odds = [1.0 / len(view.candidates(m)) for m in partner if view.candidates(m)]
    chance = sum(odds) / len(odds) if odds else 1.0
    return Score(name, correct, len(partner), chance)


def by_pooled_logs(record: Record, pairs: list[tuple[str, str]], seed: int = 0,
                   window: float = TIMING_WINDOW,
                   timing_record: Record | None = None) -> list[Score]:
    """Two or more operators pool their logs and name, for each mailbox, its partner among
    the mailboxes on another relay: by addresses (`_address_evidence`; also without
    linking a forward to the sealed send it carries, "addr, unlinked"), by timing
    (`_timing_evidence`, over `timing_record` if given, e.g. a period of slots), by
    creation order, and by all three (addresses first, then timing, then creation).

    Returns one `Score` per strategy; chance is one over the mailboxes on another relay.
    """
    partner = _partner_map(pairs)
    view = pooled_view(record, pairs)
    # The same operators without linking forwards to sealed sends: what forwarding hides
    # from operators who do not compare times.
    unlinked = pooled_view(record, pairs, forward_window=-1.0)
    timed = pooled_view(timing_record, pairs) if timing_record is not None else view
    strategies: dict[str, dict[str, dict[str, Any]]] = {
        "pooled: addresses": {}, "pooled: addr, unlinked": {}, "pooled: timing": {},
        "pooled: creation": {}, "pooled: all three": {}}
    for m in sorted(partner):
        for o in view.candidates(m):
            strategies["pooled: addr, unlinked"].setdefault(m, {})[o] = _address_evidence(
                unlinked, m, o)
            address = _address_evidence(view, m, o)
            timing = _timing_evidence(timed, m, o, window)
            creation = _creation_evidence(view, m, o)
            strategies["pooled: addresses"].setdefault(m, {})[o] = address
            strategies["pooled: timing"].setdefault(m, {})[o] = timing
            strategies["pooled: creation"].setdefault(m, {})[o] = creation
            strategies["pooled: all three"].setdefault(m, {})[o] = (address, timing, creation)
    scores = []
    for name, evidence in strategies.items():
        rng = random.Random(seed)
        guesses = {m: _best(evidence[m], rng) for m in sorted(evidence)}
        scores.append(_pooled_score(name, guesses, partner, view))
    return scores


# --- traffic shape (issue 14 §4): is a period with real messages told from one without? --


def sends_between(record: Record, start: float, end: float) -> list[Observed]:
    """The writes the relays saw from `start` to `end`: sends, and sealed sends a
    forwarding relay deposits (the destination opens them, so it knows the mailbox)."""
    return [e for e in record.events if e.op in _WRITE_OPS and start <= e.at < end]


def inter_arrivals(sends: list[Observed]) -> list[float]:
    """Seconds between consecutive writes to each mailbox, all mailboxes together."""
    times: dict[str, list[float]] = defaultdict(list)
    for e in sends:
        times[e.mailbox].append(e.at)
    gaps = []
    for ts in times.values():
        ts.sort()
        gaps.extend(b - a for a, b in itertools.pairwise(ts))
    return gaps


def per_window(sends: list[Observed], start: float, end: float, window: float) -> list[int]:
    """How many writes each mailbox got in each `window` seconds from `start` to `end`
    (whole windows only), mailboxes in order."""
    n = int((end - start) // window)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * n)
    for e in sends:
        k = int((e.at - start) // window)
        if k < n:
            counts[e.mailbox][k] += 1
    return [c for m in sorted(counts) for c in counts[m]]


def ks_statistic(xs: list[float], ys: list[float]) -> float:
    """The two-sample Kolmogorov–Smirnov statistic: the largest distance between the two
    samples' empirical distribution functions."""
    if not xs or not ys:
        raise ValueError("both samples need values")
    a, b = sorted(xs), sorted(ys)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        t = min(a[i], b[j])
        while i < len(a) and a[i] <= t:
            i += 1
        while j < len(b) and b[j] <= t:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


def ks_critical(n: int, m: int, alpha: float = 0.01) -> float:
    """The statistic past which two samples of sizes n and m differ at level `alpha`
    (the large-sample approximation, c(alpha) * sqrt((n + m) / (n * m)))."""
    c = math.sqrt(-0.5 * math.log(alpha / 2))
    return c * math.sqrt((n + m) / (n * m))

"""The relay operator's view: a real relay that records everything it could log, and an
adversary that tries to pair the mailboxes of each channel from that record.

`ObservedRelay` is the real `RelayServer` on 127.0.0.1; it only notes, for every request
frame it is given, which connection it came on (a number in order of first use), the
peer address, the operation, the mailbox id, the time and the size. It changes nothing
the relay does. Used by tests/client/test_observer.py and bench/observer.py.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backchannel.client.engine import Principal
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair
from backchannel.protocol.relayframes import decode_request
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
        try:
            frame = decode_request(data)
            op = type(frame).__name__.lower()
            mailbox = getattr(frame, "mailbox_id", b"").hex()
        except BackchannelError:
            op, mailbox = "malformed", ""
        self.record.events.append(
            Observed(self.url, number, conn.address, op, mailbox, time.monotonic(), len(data))
        )
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


def _best(candidates: dict[str, float], rng: random.Random) -> str:
    """The highest-scoring candidate; ties broken at random (so a strategy that learns
    nothing scores chance, not whatever order the mailboxes came in)."""
    top = max(candidates.values())
    return rng.choice(sorted(m for m, s in candidates.items() if s == top))


# Operations only a mailbox's owner does (it holds the receive token), and the write.
_OWNER_OPS = frozenset({"create", "fetch", "ack", "subscribe", "delete"})


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
        if e.op == "send" and e.mailbox in partner:
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


# --- traffic shape (issue 14 §4): is a period with real messages told from one without? --


def sends_between(record: Record, start: float, end: float) -> list[Observed]:
    """The writes (`send` requests) the relays saw from `start` to `end`."""
    return [e for e in record.events if e.op == "send" and start <= e.at < end]


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

"""Two principals' dialogues over a simulated channel, with a clock that moves when told."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from backchannel.dialogue import Anomaly, Body, Dialogue, DialogueEvent, Side
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.message import GENESIS_HASH, Message
from backchannel.testing import SeededRng

T0 = 1_700_000_000_000
MINUTE = 60_000
NAMES = ("alice", "bob")


@dataclass(frozen=True)
class Sent:
    """A message as both sides store it."""

    message_id: bytes
    message_hash: bytes
    sender: str
    kind: int
    body: bytes
    sent_at_ms: int

    def event(self, side: Side, received_at_ms: int) -> DialogueEvent:
        return DialogueEvent(
            self.message_id, self.message_hash, side, self.sent_at_ms, received_at_ms,
            self.kind, self.body,
        )  # fmt: skip


@dataclass
class Channel:
    """Alice and Bob, each with a `Dialogue`; messages wait in a queue until delivered."""

    seed: str = "channel"
    now_ms: int = T0
    keys: dict[str, IdentityKeyPair] = field(default_factory=dict)
    dialogues: dict[str, Dialogue] = field(default_factory=dict)
    queues: dict[str, deque[Sent]] = field(default_factory=dict)
    logs: dict[str, list[DialogueEvent]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)
    _counter: int = 0
    _prev: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.keys:
            rng = SeededRng(self.seed)
            self.keys = {name: IdentityKeyPair.generate(rng) for name in NAMES}
        self.dialogues = {
            "alice": Dialogue(self.keys["alice"].public, self.keys["bob"].public),
            "bob": Dialogue(self.keys["bob"].public, self.keys["alice"].public),
        }
        self.queues = {name: deque() for name in NAMES}
        self.logs = {name: [] for name in NAMES}
        self._prev = {name: GENESIS_HASH for name in NAMES}

    @property
    def alice(self) -> Dialogue:
        return self.dialogues["alice"]

    @property
    def bob(self) -> Dialogue:
        return self.dialogues["bob"]

    def advance(self, ms: int) -> int:
        self.now_ms += ms
        return self.now_ms

    def message(self, sender: str, kind: int, body: bytes) -> Sent:
        """A new message of `sender` with a fresh id and a real chain hash."""
        self._counter += 1
        message_id = self._counter.to_bytes(16, "big")
        message = Message(message_id, self._counter, self._prev[sender], self.now_ms, kind, body)
        self._prev[sender] = message.hash
        return Sent(message_id, message.hash, sender, kind, body, self.now_ms)

    def send(self, sender: str, body: Body, *, deliver: bool = True, check: bool = True) -> Sent:
        """Check the intent, store it on the sender's side, and (by default) deliver it."""
        if check:
            self.dialogues[sender].check(body, self.now_ms)
        sent = self.message(sender, body.KIND, body.encode())
        self.sent.append(sent)
        event = sent.event(Side.OURS, self.now_ms)
        self.logs[sender].append(event)
        assert self.dialogues[sender].apply(event) is None
        self.queues[other(sender)].append(sent)
        if deliver:
            self.deliver(other(sender))
        return sent

    def deliver(self, to: str, count: int | None = None) -> list[Anomaly]:
        """Deliver the oldest `count` (default: all) messages waiting for `to`."""
        anomalies = []
        queue = self.queues[to]
        for _ in range(len(queue) if count is None else min(count, len(queue))):
            event = queue.popleft().event(Side.THEIRS, self.now_ms)
            self.logs[to].append(event)
            anomaly = self.dialogues[to].apply(event)
            if anomaly is not None:
                anomalies.append(anomaly)
        return anomalies

    def inject(self, to: str, kind: int, body: bytes) -> Anomaly | None:
        """A message from the other side that skipped every check (a buggy or hostile peer)."""
        sent = self.message(other(to), kind, body)
        return self.dialogues[to].apply(sent.event(Side.THEIRS, self.now_ms))

    def store_own(self, name: str, kind: int, body: bytes) -> Anomaly | None:
        """A message of `name`'s own that skipped the checks (an inconsistent store)."""
        sent = self.message(name, kind, body)
        return self.dialogues[name].apply(sent.event(Side.OURS, self.now_ms))


def other(name: str) -> str:
    return "bob" if name == "alice" else "alice"


def snapshot(dialogue: Dialogue, now_ms: int) -> dict[str, Any]:
    """The state a rule-breaking message must not change (all but anomalies and last heard)."""
    board = dialogue.board(now_ms).to_dict()
    del board["anomalies"], board["last_heard_from_ms"]
    return board


def assert_refused(channel: Channel, to: str, kind: int, body: bytes, reason: str) -> Anomaly:
    """A remote message breaking a rule: recorded as an anomaly, state unchanged."""
    dialogue = channel.dialogues[to]
    before = snapshot(dialogue, channel.now_ms)
    count = len(dialogue.anomalies)
    anomaly = channel.inject(to, kind, body)
    assert anomaly is not None, "the message should have been refused"
    assert reason in anomaly.reason
    assert dialogue.anomalies[count:] == (anomaly,)
    assert anomaly.side is Side.THEIRS and anomaly.kind == kind
    assert snapshot(dialogue, channel.now_ms) == before
    json.dumps(dialogue.board(channel.now_ms).to_dict())
    return anomaly


@pytest.fixture
def channel() -> Channel:
    return Channel()

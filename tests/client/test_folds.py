"""The kept, extended fold (`DialogueCache`) is always the full fold of what is stored.

Property: for any sequence of appends (ours and theirs, theirs stored out of their order,
by this handle or another one on the same file), receipts updating rows in place, receipt
messages, rolled-back transactions and removed transcripts, the cached dialogue's board,
escalations, line status, known messages and anomalies equal a fold from scratch
(`dialogue_of` over `in_stored_order`). Real SQLite, two real connections.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.client.duties import dialogue_of
from backchannel.client.folds import DialogueCache
from backchannel.client.keystore import KdfParameters, Keystore
from backchannel.client.records import ChannelRecord, MessageRecord
from backchannel.client.state.messages import MessageRepository
from backchannel.dialogue import Ack, Dialogue, LineTest, LineTestReply, Note, Precedence
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.message import MessageKind

KDF = KdfParameters(memory_kib=8 * 1024, iterations=1, lanes=1)
OURS = IdentityKeyPair.generate(os.urandom).public
THEIRS = IdentityKeyPair.generate(os.urandom).public
CHANNEL = ChannelRecord(
    "c4" * 16, "peer", THEIRS.encode().hex(), "", [], 0, "inviter", last_heard_ms=1
)


class RolledBack(Exception):
    """Raised inside a transaction to roll it back."""


@dataclass
class Transcript:
    """Writes messages as the client does, through either of two handles."""

    repos: tuple[MessageRepository, MessageRepository]
    stores: tuple[Keystore, Keystore]
    ids: list[bytes] = field(default_factory=list)
    ours_seq: int = 0
    theirs_seq: int = 0
    held: list[MessageRecord] = field(default_factory=list)
    clock: int = 1_000_000

    def record(self, direction: str, seq: int, kind: int, body: bytes) -> MessageRecord:
        self.clock += 1000
        n = len(self.ids) + 1
        message_id = n.to_bytes(16, "big")
        self.ids.append(message_id)
        return MessageRecord(
            message_id.hex(), direction, seq, kind, self.clock, body.hex(),
            received_at_ms=self.clock + 5 if direction == "in" else 0,
            message_hash=(n.to_bytes(32, "big")).hex(),
        )  # fmt: skip

    def put(self, handle: int, record: MessageRecord) -> None:
        with self.stores[handle].transaction():
            self.repos[handle].put(CHANNEL.channel_id, record)


def body(kind: str, ref: int, within: int, ids: list[bytes]) -> tuple[int, bytes]:
    target = ids[ref % len(ids)] if ids else b"\x01" * 16
    match kind:
        case "note":
            return Note.KIND, Note(Precedence.PRIORITY, within, "n").encode()
        case "ack":
            return Ack.KIND, Ack(target).encode()
        case "test":
            return LineTest.KIND, LineTest().encode()
        case _:
            return LineTestReply.KIND, LineTestReply(target).encode()


bodies = st.tuples(
    st.sampled_from(["note", "ack", "test", "reply"]),
    st.integers(0, 1000),
    st.sampled_from([0, 500, 3000, 60_000]),
)
ops = st.one_of(
    st.tuples(st.just("ours"), bodies, st.integers(0, 1)),
    st.tuples(st.just("theirs"), bodies, st.integers(0, 1), st.booleans()),
    st.tuples(st.just("release"), st.integers(0, 1)),
    st.tuples(st.just("receipt"), st.integers(0, 1000)),
    st.tuples(st.just("receipt message"), st.integers(0, 1)),
    st.tuples(st.just("rolled back"), bodies),
    st.just(("remove",)),
    st.tuples(st.just("delete one"), st.integers(0, 1000)),
)


@pytest.fixture
def homes() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


def views(dialogue: Dialogue, now: int) -> tuple[object, ...]:
    return (
        dialogue.board(now, 2000, 1000),
        dialogue.escalations(now, set()),
        dialogue.duty_escalations(now, set()),
        dialogue.line_status(now, 2000, 1000),
        dialogue.known_messages(),
        dialogue.anomalies,
    )


def assert_same(t: Transcript, cache: DialogueCache, now: int) -> None:
    full = dialogue_of(OURS, CHANNEL, t.repos[0].in_stored_order(CHANNEL.channel_id))
    assert views(cache.dialogue(CHANNEL), now) == views(full, now)


def run(t: Transcript, cache: DialogueCache, op: tuple[object, ...]) -> None:
    cid = CHANNEL.channel_id
    match op:
        case ("ours", (kind, ref, within), handle):
            t.ours_seq += 1
            k, raw = body(str(kind), int(ref), int(within), t.ids)
            t.put(int(handle), t.record("out", t.ours_seq, k, raw))
        case ("theirs", (kind, ref, within), handle, late):
            t.theirs_seq += 1
            k, raw = body(str(kind), int(ref), int(within), t.ids)
            record = t.record("in", t.theirs_seq, k, raw)
            if late:
                t.held.append(record)  # a relay that is slower: stored after later ones
            else:
                t.put(int(handle), record)
        case ("release", handle) if t.held:
            t.put(int(handle), t.held.pop(0))
        case ("receipt", ref):
            outs = [m for m in t.repos[0].of_channel(cid) if m.direction == "out"]
            if outs:
                mark = outs[int(ref) % len(outs)]
                mark.delivered_at_ms = t.clock
                t.put(0, mark)
        case ("receipt message", handle):
            t.theirs_seq += 1
            t.put(int(handle), t.record("in", t.theirs_seq, MessageKind.RECEIPT_DELIVERED, b""))
        case ("rolled back", (kind, ref, within)):
            t.ours_seq += 1
            k, raw = body(str(kind), int(ref), int(within), t.ids)
            with pytest.raises(RolledBack), t.stores[0].transaction():
                t.repos[0].put(cid, t.record("out", t.ours_seq, k, raw))
                cache.dialogue(CHANNEL)  # folds a row that is about to vanish
                raise RolledBack
            t.ours_seq -= 1
        case ("remove",):
            with t.stores[0].transaction():
                t.repos[0].delete_channel(cid)
        case ("delete one", ref):
            # No client path deletes one message yet (disappearing messages would): the
            # row goes as such a path would take it, by another handle.
            rows = t.stores[1].db.execute("SELECT ord FROM messages ORDER BY ord").fetchall()
            if rows:
                gone = rows[int(ref) % len(rows)][0]
                with t.stores[1].transaction() as db:
                    db.execute("DELETE FROM messages WHERE ord = ?", (gone,))
        case _:
            pass


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=st.lists(st.tuples(ops, st.integers(0, 120_000), st.booleans()), max_size=25))
def test_the_kept_fold_equals_a_fold_from_scratch(
    homes: Path, script: list[tuple[tuple[object, ...], int, bool]]
) -> None:
    home = Path(tempfile.mkdtemp(dir=homes))
    first = Keystore.create(home, "pw", KDF)
    second = Keystore.open(home, "pw")
    try:
        t = Transcript((MessageRepository(first), MessageRepository(second)), (first, second))
        cache = DialogueCache(t.repos[0], OURS)
        for op, later, look in script:
            run(t, cache, op)
            if look:  # else several changes come between two rounds
                assert_same(t, cache, t.clock + later)
        assert_same(t, cache, t.clock)
    finally:
        first.close()
        second.close()


def test_appends_are_applied_not_refolded(homes: Path) -> None:
    """A round after appends reads only them; theirs stored late fold again."""
    first = Keystore.create(homes, "pw", KDF)
    try:
        t = Transcript((MessageRepository(first), MessageRepository(first)), (first, first))
        cache = DialogueCache(t.repos[0], OURS)
        for _ in range(3):
            run(t, cache, ("ours", ("note", 0, 500), 0))
        cache.dialogue(CHANNEL)
        run(t, cache, ("theirs", ("ack", 0, 0), 0, True))  # seq 1 held back
        run(t, cache, ("theirs", ("note", 0, 0), 0, False))  # seq 2
        cache.dialogue(CHANNEL)
        cache.dialogue(CHANNEL)
        assert (cache.stats.full, cache.stats.extended, cache.stats.unchanged) == (1, 1, 1)
        run(t, cache, ("release", 0))  # seq 1 after seq 2: the order changes before it
        dialogue = cache.dialogue(CHANNEL)
        assert cache.stats.full == 2
        assert dialogue.acknowledged_at(t.ids[0]) is not None
    finally:
        first.close()

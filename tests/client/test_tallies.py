"""`status` counts from what changed since its handle last counted (`state.tallies`): the
same counts as opening every message, after sends, receipts, reads, another handle's
writes and a removed channel; and only what changed is opened again."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.receipts import sequence_gaps
from backchannel.client.records import MessageRecord
from backchannel.protocol.message import MessageKind

from .conftest import FAST_KDF, MakePrincipal, pair, running_relay

pytestmark = pytest.mark.timeout(120)


def _counted_in_full(principal: Principal, name: str) -> tuple[object, ...]:
    """What status reports, counted the way it was before the tallies: every message
    opened."""
    cid = principal.channel(name).channel_id
    messages: list[MessageRecord] = principal._state.messages.of_channel(cid)
    out = [m for m in messages if m.direction == "out" and m.kind == MessageKind.NOTE]
    inbound = [m for m in messages if m.direction == "in"]
    notes_in = [m for m in inbound if m.kind == MessageKind.NOTE]
    return (len(out), sum(1 for m in out if m.delivered_at_ms),
            sum(1 for m in out if m.read_at_ms), len(notes_in),
            sum(1 for m in notes_in if not m.read_at_ms), sequence_gaps([m.seq for m in inbound]))


def _reported(principal: Principal, name: str) -> tuple[object, ...]:
    (status,) = principal.status(name)
    return (status.sent, status.delivered, status.read, status.received, status.unread,
            status.gaps)


async def test_status_counts_what_changed_as_a_full_count_does(
        tmp_path: Path, make_principal: MakePrincipal) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        w, b = make_principal("w"), make_principal("b")
        await pair(w, b, [relay.url])
        tallies = w._state.tallies
        assert _reported(w, "b") == _counted_in_full(w, "b")
        for i in range(5):
            await w.send("b", f"note {i}")
        assert _reported(w, "b") == _counted_in_full(w, "b") == (5, 0, 0, 0, 0, ())
        opened = tallies.opened
        assert _reported(w, "b")[0] == 5
        assert tallies.opened == opened  # nothing changed: nothing opened again

        # Receipts change our records in place (same rows, new stamps).
        await b.sync()
        await w.sync()
        assert _reported(w, "b") == _counted_in_full(w, "b")
        assert _reported(w, "b")[1] == 5  # delivered
        await b.read("w")
        await b.sync()
        await w.sync()
        assert _reported(w, "b") == _counted_in_full(w, "b")
        assert _reported(w, "b")[2] == 5  # read

        # Another handle of the same principal writes (here: a send and their note).
        await b.send("w", "from b")
        w.close()
        other = Principal.open(tmp_path / "w", "passphrase")
        try:
            await other.sync()
            await other.send("b", "by the other handle")
        finally:
            other.close()
        w = Principal.open(tmp_path / "w", "passphrase")
        before = _reported(w, "b")
        assert before == _counted_in_full(w, "b")
        assert (before[0], before[3], before[4]) == (6, 1, 1)
        await w.read("b")
        assert _reported(w, "b") == _counted_in_full(w, "b")
        assert _reported(w, "b")[4] == 0  # unread
        w.close()


async def test_only_new_and_rewritten_rows_are_opened(
        tmp_path: Path, make_principal: MakePrincipal) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        w, b = make_principal("w"), make_principal("b")
        await pair(w, b, [relay.url])
        for i in range(4):
            await w.send("b", f"note {i}")
        tallies = w._state.tallies
        w.status("b")
        opened = tallies.opened
        w.status("b")
        assert tallies.opened == opened
        await w.send("b", "one more")
        w.status("b")
        assert tallies.opened == opened + 1  # the new row alone
        await b.sync()  # delivered receipts for all five
        await w.sync()
        w.status("b")
        assert tallies.opened - opened - 1 >= 5  # the five rewritten rows (and receipts)
        assert _reported(w, "b") == _counted_in_full(w, "b")


async def test_a_removed_channel_is_forgotten_and_a_new_one_counted_afresh(
        tmp_path: Path, make_principal: MakePrincipal) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        w, b = make_principal("w"), make_principal("b")
        await pair(w, b, [relay.url])
        await w.send("b", "before")
        assert _reported(w, "b")[0] == 1
        await w.remove_channel("b")
        assert not w._state.tallies._parts
        c = Principal.create(tmp_path / "c", "b", "passphrase", kdf=FAST_KDF)
        await pair(w, c, [relay.url])
        assert _reported(w, "b") == _counted_in_full(w, "b")
        assert _reported(w, "b")[0] == 0
        c.close()

"""Slots under faults (client/slots.py): a slot loop that fails is restarted and
reported, and its channel's messages never leave outside a slot meanwhile; a message a
relay refuses for its quota is held back with a status line while cover goes on, and goes
once the quota frees; a relay that drops the connection mid-slot loses nothing. Real
relays on 127.0.0.1, real SQLite; the faults are real (a damaged outbox row written into
the state file, a relay whose mailboxes hold three envelopes, a relay that cuts the
connection when a send arrives)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.keystore import STATE_FILE
from backchannel.relay.limits import RelayLimits
from tests.client.conftest import MakePrincipal, pair, running_relay
from tests.client.dropping_relay import dropping_relay
from tests.client.observer import Record, observed_relay, sends_between
from tests.client.test_slots import INTERVAL, slotted, until, watching

# Slots the quota test waits while b's mailbox is full.
SLOTS_HELD = 12


def damage_outbox(principal: Principal, url: str) -> int:
    """Write an outbox row that is not an envelope into the principal's state file (as a
    damaged disk or an older version might leave one); returns its id."""
    channel = principal.channels()[0]
    with sqlite3.connect(principal.home / STATE_FILE) as db:
        cursor = db.execute(
            "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
            (bytes.fromhex(channel.channel_id), url, b"\0" * 32, b"not an envelope"))
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def repair_outbox(principal: Principal, row_id: int) -> None:
    with sqlite3.connect(principal.home / STATE_FILE) as db:
        db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))


async def test_a_failing_slot_loop_restarts_and_nothing_leaves_outside_a_slot(
    tmp_path: Path, make_principal: MakePrincipal, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="backchannel.client.slots")
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        slotted(a, b)
        peer = a.channels()[0].name
        damaged = damage_outbox(a, relay.url)
        async with watching(a) as reports:
            # The damaged row is the oldest: each slot of the direction fails on it.
            await until(lambda: caplog.text.count("failed (") >= 2)
            # Meanwhile a send waits for the slots: it is not sent directly.
            result = await a.send(peer, "after the failure")
            assert result.stored_on == () and result.next_slot_s is not None
            await asyncio.sleep(INTERVAL * 3)
            assert a.status(peer)[0].queued >= 2  # the damaged row and the note (at least)
            repair_outbox(a, damaged)
            await until(lambda: a.status(peer)[0].queued == 0)
        (report,) = reports
        await b.sync()
    failed = [e for e in report.slot_events if "failed (RemoteProtocolError" in e]
    assert len(failed) >= 2 and "restarted in 0.5 s" in failed[0]
    assert "restarted in 1 s" in failed[1]  # with backoff
    assert "none leaves outside a slot" in failed[0]
    assert [e.text for e in b.inbox()].count("after the failure") == 1


async def test_removing_a_channel_while_slots_run_keeps_the_others_slotted(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b, c = make_principal("a"), make_principal("b"), make_principal("c")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        await pair(a, c, [relay.url])
        slotted(a, b, c)
        to_b, to_c = (ch.name for ch in sorted(a.channels(), key=lambda ch: ch.name))
        async with watching(a) as reports:
            await asyncio.sleep(INTERVAL * 3)
            await a.remove_channel(to_c)
            await asyncio.sleep(INTERVAL * 3 + 1.0)  # the removed direction's slots end
            result = await a.send(to_b, "still in a slot")
            assert result.stored_on == () and result.next_slot_s is not None
            await until(lambda: a.status(to_b)[0].queued == 0)
        (report,) = reports
        await b.sync()
    assert report.slot_events == []  # a removal is no failure
    assert [e.text for e in b.inbox()].count("still in a slot") == 1


async def test_a_message_refused_for_quota_waits_while_cover_flows_then_goes(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    limits = RelayLimits(mailbox_max_envelopes=3)
    a, b = make_principal("a"), make_principal("b")
    async with (observed_relay(tmp_path / "r.db", record, limits) as relay,
                dropping_relay(relay.url) as proxy):  # it cuts nothing: it keeps digests
        await pair(a, b, [proxy.url])
        slotted(a, b)
        peer = a.channels()[0].name
        b_mailbox = a.channels()[0].links[0].outbound
        assert b_mailbox is not None
        async with watching(a) as reports:
            # b does not read: a's cover fills b's mailbox within a few slots.
            await asyncio.sleep(INTERVAL * 6)
            a.queue(peer, "waits for room")
            t0 = time.monotonic()
            await asyncio.sleep(INTERVAL * SLOTS_HELD)
            t1 = time.monotonic()
            drained = await b.sync()  # b reads: room again
            await until(lambda: a.status(peer)[0].queued == 0)
        (report,) = reports
        got = await b.sync()
    refused = [e for e in report.slot_events if "refused a message" in e]
    # Held back, doubling: 2, 4, 8 intervals; never offered in every slot.
    assert 2 <= len(refused) <= 4
    assert "relay error 12" in refused[0] and "offered again in 0.4 s" in refused[0]
    assert "offered again in 0.8 s" in refused[1]
    assert any("stored the message it had refused" in e for e in report.slot_events)
    # Meanwhile the slots kept their rate: about one write per slot to b's mailbox.
    writes = [e for e in sends_between(record, t0, t1)
              if e.mailbox == b_mailbox.mailbox_id]
    assert abs(len(writes) - SLOTS_HELD) <= 3
    assert len({e.size for e in writes}) == 1
    # While the mailbox was full, the slots sent the same refused cover again (and the
    # held note when its hold ended): no message key was spent on a cover refused.
    sent = {digest for at, mailbox, digest in proxy.sent
            if t0 <= at < t1 and mailbox.hex() == b_mailbox.mailbox_id}
    assert len(sent) <= 3
    # Nothing lost, nothing twice. (What filled the mailbox, a's receipts of the pairing
    # and cover, b read then.)
    assert drained.received + drained.cover == 3
    texts = [e.text for e in b.inbox()]
    assert texts.count("waits for room") == 1
    assert got.rejected == 0 and drained.rejected == 0


async def test_a_relay_that_drops_the_connection_mid_slot_loses_nothing(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay, dropping_relay(relay.url) as cut:
        await pair(a, b, [cut.url])
        slotted(a, b)
        peer = a.channels()[0].name
        async with watching(a, b) as reports:
            await asyncio.sleep(INTERVAL * 3)
            cut.drop_sends = 2  # the next two sends cut their connection
            result = await a.send(peer, "across the cuts")
            assert result.stored_on == ()  # left to the slots, cut or not
            await until(lambda: cut.dropped == 2)
            await until(lambda: any(e.text == "across the cuts" for e in b.inbox()))
            sends_after = cut.sends
            await until(lambda: cut.sends >= sends_after + 4)  # the slots go on
    a_report, _ = reports
    assert [e.text for e in b.inbox()].count("across the cuts") == 1
    assert a_report.slot_events == []  # a relay down is not a slot failure
    assert a.status(peer)[0].queued == 0

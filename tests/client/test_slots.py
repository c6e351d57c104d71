"""Constant-rate slots and cover traffic (client/slots.py): while a watch runs, each
direction of a channel sends one envelope per slot, cover when nothing is queued; the
recipient drops cover without keeping it, and nothing real is lost or duplicated."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.client.engine import Principal
from backchannel.client.errors import ClientError
from backchannel.client.receipts import sequence_gaps
from backchannel.client.reports import SyncReport
from backchannel.client.slotpolicy import (
    DEFAULT_KEY,
    DEFAULT_SLOT_INTERVAL,
    KIND_COVER,
    MAX_SLOT_INTERVAL,
    MIN_SLOT_INTERVAL,
    SLOT_BUCKET,
    SLOTS_ENV,
    bytes_per_day,
    interval_key,
    parse_interval,
    slot_interval,
)
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.message import MessageKind
from tests.client.conftest import MakePrincipal, pair, running_relay

# The slot interval of these tests: short, so that a run takes a second or two.
INTERVAL = 0.2


def slotted(*principals: Principal, interval: float | None = INTERVAL) -> None:
    """Turn slots on (or off, with None) for every channel of each principal."""
    for p in principals:
        for channel in p.channels():
            p.set_setting(interval_key(channel.channel_id), "off" if interval is None
                          else str(interval))


@contextlib.asynccontextmanager
async def watching(*principals: Principal) -> AsyncIterator[list[SyncReport]]:
    """Each principal watches until the block ends; yields their reports (filled then)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.watch(stop, duty_interval=0.1)) for p in principals]
    reports: list[SyncReport] = []
    try:
        yield reports
    finally:
        stop.set()
        reports.extend(await asyncio.gather(*tasks))


async def until(condition: Callable[[], bool], rounds: int = 400) -> None:
    """Wait (in small steps, at most `rounds` of them) until `condition` holds."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition never held")


def test_interval_setting_bounds_and_order(monkeypatch: pytest.MonkeyPatch) -> None:
    settings: dict[str, str] = {}
    monkeypatch.delenv(SLOTS_ENV, raising=False)
    assert slot_interval(lambda k: settings.get(k, ""), "ab") == DEFAULT_SLOT_INTERVAL
    monkeypatch.setenv(SLOTS_ENV, "off")
    assert slot_interval(lambda k: settings.get(k, ""), "ab") is None
    settings[DEFAULT_KEY] = "30"
    assert slot_interval(lambda k: settings.get(k, ""), "ab") == 30.0
    settings[interval_key("ab")] = "off"
    assert slot_interval(lambda k: settings.get(k, ""), "ab") is None
    assert slot_interval(lambda k: settings.get(k, ""), "cd") == 30.0
    assert parse_interval("2.5s") == 2.5
    for bad in ("-1", str(MIN_SLOT_INTERVAL / 2), str(MAX_SLOT_INTERVAL * 2), "nan", "x\x1b"):
        with pytest.raises(ClientError) as refused:
            parse_interval(bad)
        assert "\x1b" not in str(refused.value)


@given(st.text(max_size=40))
def test_any_interval_text_is_a_bounded_interval_off_or_refused(text: str) -> None:
    try:
        seconds = parse_interval(text)
    except ClientError as error:
        assert all(c.isprintable() for c in str(error))
        return
    assert seconds is None or MIN_SLOT_INTERVAL <= seconds <= MAX_SLOT_INTERVAL


def test_cost_per_day() -> None:
    assert bytes_per_day(None) == 0
    assert bytes_per_day(15.0) == SLOT_BUCKET * 5760  # 5.9 MB a day each way
    assert bytes_per_day(10.0) == 8_847_360  # the research note's 8.6 MiB


async def test_cover_fills_empty_slots_and_is_never_kept(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        slotted(a, b)
        b_name = a.channels()[0].name
        a_name = b.channels()[0].name
        history_before = (len(a.messages(b_name)), len(b.messages(a_name)))
        async with watching(a, b) as reports:
            await asyncio.sleep(INTERVAL * 8)  # only cover goes both ways meanwhile
            sent = [a.queue(b_name, f"note {i}") for i in range(3)]
            flash = a.queue(b_name, "flash", precedence=Precedence.FLASH)
            await until(lambda: len([e for e in b.inbox() if e.text.startswith(("note", "fl"))])
                        == 4)
            # The receipts come back in b's slots.
            await until(lambda: all(m.delivered_at_ms for m in a.messages(b_name)
                                    if m.message_id in [*sent, flash]))
        a_report, b_report = reports
    # Cover went both ways and was dropped on arrival ...
    assert a_report.cover > 0 and b_report.cover > 0
    for p, peer in ((a, b_name), (b, a_name)):
        kinds = {m.kind for m in p.messages(peer)}
        assert KIND_COVER not in kinds
        inbound = [m.seq for m in p.messages(peer) if m.direction == "in"]
        assert not sequence_gaps(inbound)  # cover left no hole in their history
        assert p.status(peer)[0].queued == 0
    # ... and only real messages are in the histories: the 4 notes and b's receipts.
    texts = [e.text for e in b.inbox()]
    assert sorted(t for t in texts if t.startswith(("note", "flash"))) == [
        "flash", "note 0", "note 1", "note 2"]
    new_in_b = b.messages(a_name)[history_before[1]:]
    notes_in = [m for m in new_in_b if m.direction == "in" and m.kind == MessageKind.NOTE]
    assert len(notes_in) == 4  # each once: nothing lost, nothing duplicated
    new_in_a = a.messages(b_name)[history_before[0]:]
    assert MessageKind.RECEIPT_DELIVERED in {m.kind for m in new_in_a if m.direction == "in"}


async def test_flash_takes_the_next_slot_ahead_of_a_backlog(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        slotted(a, b)
        peer = a.channels()[0].name
        async with watching(a, b):
            # Queued at once (no await in between): the next slot chooses among all six.
            for i in range(5):
                a.queue(peer, f"routine {i}")
            a.queue(peer, "flash", precedence=Precedence.FLASH)
            await until(lambda: len([e for e in b.inbox() if e.text != ""]) >= 6)
    order = [e.text for e in sorted(b.inbox(), key=lambda e: e.received_at_ms)
             if e.text.startswith(("routine", "flash"))]
    # One envelope per slot: the FLASH note went first, the rest in the order queued.
    assert order[0] == "flash"
    assert order[1:] == [f"routine {i}" for i in range(5)]


async def test_a_send_inside_the_watch_waits_for_its_slot_and_cover_is_acked(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        slotted(a, b)
        peer = a.channels()[0].name
        async with watching(a) as reports:
            await asyncio.sleep(INTERVAL * 3)
            result = await a.send(peer, "in a slot")
            # The flush left it to the slots, and says within how long they send it.
            assert result.stored_on == ()
            assert result.next_slot_s is not None and result.next_slot_s >= INTERVAL
            await until(lambda: a.status(peer)[0].queued == 0)
            await asyncio.sleep(INTERVAL * 3)
        first = await b.sync()
        again = await b.sync()
    (a_report,) = reports
    assert a_report.sent >= 1
    assert first.cover >= 3 and first.received >= 1  # cover, dropped; the note, kept
    assert [e.text for e in b.inbox()].count("in a slot") == 1
    # Everything it read was acked at the relay, cover too: nothing is delivered again.
    assert (again.received, again.cover, again.duplicates) == (0, 0, 0)


async def test_slots_off_for_a_channel_send_at_once_and_no_cover(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        slotted(a, b, interval=None)
        peer = a.channels()[0].name
        async with watching(a, b) as reports:
            result = await a.send(peer, "at once")
            assert result.stored_on == (relay.url,) and result.next_slot_s is None
            await until(lambda: any(e.text == "at once" for e in b.inbox()))
            await asyncio.sleep(INTERVAL * 3)
    assert [r.cover for r in reports] == [0, 0]

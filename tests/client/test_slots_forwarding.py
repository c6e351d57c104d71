"""Slots through a forwarding relay (client/slotroutes.py, docs/threat-model.md "Private
routing"): with two relays that publish forwarding keys, every slot envelope, cover and
real, reaches the destination relay from the other relay, never from the sender naming
the mailbox; forwarding required with the other relay down sends nothing in those slots
(and says why) until it is back; a forwarding relay that refuses the key falsely is
distrusted, never a reason to send directly; forwarding off sends directly.

Real relays on 127.0.0.1 that log what their operator could (`observer.ObservedRelay`);
the sender's connections leave from an address of its own (`observer.on_host`), so the
destination's log shows who wrote."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from backchannel.client.engine import Principal
from backchannel.client.routing import FORWARDING_SETTING, forward_frame_size
from backchannel.client.slotpolicy import DIRECT_SLOT_FRAME, SLOT_BUCKET
from tests.client.conftest import MakePrincipal
from tests.client.observer import (
    Observed,
    Record,
    host_address,
    host_context,
    hosts_on_loopback,
    on_host,
    sends_between,
)
from tests.client.test_relay_key_pins import Relay, relay
from tests.client.test_slots import INTERVAL, slotted, until

pytestmark = pytest.mark.timeout(60)

# The sender's and the counterpart's hosts.
A_HOST, B_HOST = host_address(0), host_address(1)


@dataclass(frozen=True, slots=True)
class Paired:
    """a and b paired over two relays, slots on: a's name for b, the relay a writes to
    (the destination), b's mailbox there, and the other relay (the forwarder)."""

    record: Record
    a: Principal
    b: Principal
    peer: str
    dest: str
    b_mailbox: str
    forwarder: Relay
    forwarder_db: Path


@contextlib.asynccontextmanager
async def paired(tmp_path: Path, make_principal: MakePrincipal) -> AsyncIterator[Paired]:
    """Two logging relays with key rings; a and b pair over them from their hosts."""
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with relay(tmp_path / "r1.db", record) as r1, \
                relay(tmp_path / "r2.db", record) as r2:
            code = await on_host(A_HOST, a.invite([r1.url, r2.url]))
            await on_host(B_HOST, b.accept(code))
            await on_host(A_HOST, a.sync())
            await on_host(B_HOST, b.sync())
            slotted(a, b)
            (link,) = [lk for lk in a.channels()[0].links if lk.outbound is not None]
            assert link.outbound is not None
            forwarder, db = (r1, "r1.db") if link.url == r2.url else (r2, "r2.db")
            yield Paired(record, a, b, a.channels()[0].name, link.url,
                         link.outbound.mailbox_id, forwarder, tmp_path / db)


@contextlib.asynccontextmanager
async def watching_on_hosts(*people: tuple[Principal, str]) -> AsyncIterator[None]:
    """Each principal watches from its own address until the block ends."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.watch(stop, duty_interval=0.1), context=host_context(h))
             for p, h in people]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def writes_to(record: Record, mailbox: str, since: int) -> list[Observed]:
    """Every deposit into `mailbox` the relays logged after event `since`."""
    return [e for e in sends_between(Record(record.events[since:]), 0.0, math.inf)
            if e.mailbox == mailbox]


def forwards_from(record: Record, address: str, destination: str,
                  since: int) -> list[Observed]:
    return [e for e in record.events[since:] if e.op == "forward"
            and e.address == address and e.destination == destination]


def stored(principal: Principal, peer: str, message_id: str) -> bool:
    (message,) = [m for m in principal.messages(peer) if m.message_id == message_id]
    return bool(message.stored_on)


async def test_every_slot_write_is_forwarded_and_a_note_arrives_once(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with paired(tmp_path, make_principal) as p:
        a, b, record = p.a, p.b, p.record
        start = len(record.events)
        t0 = time.monotonic()
        async with watching_on_hosts((a, A_HOST), (b, B_HOST)):
            await asyncio.sleep(INTERVAL * 4)  # cover only
            note = a.queue(p.peer, "through the other relay")
            await until(lambda: any(e.text == "through the other relay" for e in b.inbox()))
            # Its receipt comes back in b's slots, forwarded too.
            await until(lambda: any(m.delivered_at_ms for m in a.messages(p.peer)
                                    if m.message_id == note))
            await asyncio.sleep(INTERVAL * 2)
        elapsed = time.monotonic() - t0
    writes = writes_to(record, p.b_mailbox, start)
    # One write per slot, about, every one sealed and deposited by the forwarding relay.
    assert len(writes) >= elapsed / INTERVAL - 4
    assert {e.op for e in writes} == {"sealedsend"}
    assert {e.relay for e in writes} == {p.dest}
    assert all(e.address == "127.0.0.1" for e in writes)  # the relay's, not a's host
    assert {e.size for e in writes} == {writes[0].size}  # cover and the note alike
    # The sender's own connections to the destination name no mailbox it writes to.
    assert not [e for e in record.events[start:] if e.address == A_HOST
                and e.relay == p.dest and e.mailbox == p.b_mailbox]
    forwards = forwards_from(record, A_HOST, p.dest, start)
    assert len(forwards) >= len(writes)
    # What `status` counts a slot at is what went: the forward's frame (a connection of
    # its own each), about twice the direct send's.
    frame = forward_frame_size(p.dest, SLOT_BUCKET)
    assert a.slot_frames(a.channels()[0].channel_id) == [frame]
    assert {e.size for e in forwards} == {frame} and frame > 2 * DIRECT_SLOT_FRAME
    assert [e.text for e in b.inbox()].count("through the other relay") == 1
    assert a._sender.route_status.get(p.dest) is None  # forwarded as asked


async def test_required_forwarding_sends_nothing_while_the_forwarder_is_down(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with paired(tmp_path, make_principal) as p:
        a, b, record, forwarder = p.a, p.b, p.record, p.forwarder
        a.set_setting(FORWARDING_SETTING, "require")
        ring, port = forwarder.forward_key, urlsplit(forwarder.url).port or 0
        channel_id = a.channels()[0].channel_id
        async with watching_on_hosts((a, A_HOST)):
            await asyncio.sleep(INTERVAL * 3)
            await forwarder.stop()
            await asyncio.sleep(INTERVAL * 2)  # slots in flight settle
            start = len(record.events)
            note = a.queue(p.peer, "waits for the forwarder")
            await asyncio.sleep(INTERVAL * 8)
            # Nothing at all reached the destination for b's mailbox, not even cover.
            assert writes_to(record, p.b_mailbox, start) == []
            assert not stored(a, p.peer, note)
            assert "forwarding is required" in a.slot_status(channel_id)[1][p.dest]
            async with relay(p.forwarder_db, record, ring=ring, port=port):
                await until(lambda: stored(a, p.peer, note))
                assert p.dest not in a.slot_status(channel_id)[1]
                await on_host(B_HOST, b.sync())
    assert [e.text for e in b.inbox()].count("waits for the forwarder") == 1
    writes = writes_to(record, p.b_mailbox, start)
    assert writes and {e.op for e in writes} == {"sealedsend"}


async def test_a_forwarder_refusing_the_key_falsely_is_distrusted_not_bypassed(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with paired(tmp_path, make_principal) as p:
        a, record = p.a, p.record
        key = a._state.relays.key(p.dest)
        p.forwarder.lying = True
        start = len(record.events)
        async with watching_on_hosts((a, A_HOST)):
            note = a.queue(p.peer, "never direct")
            await until(lambda: "lists as current" in
                        a.slot_status(a.channels()[0].channel_id)[1].get(p.dest, ""))
            lied = len(forwards_from(record, A_HOST, p.dest, start))
            await asyncio.sleep(INTERVAL * 6)
            assert not stored(a, p.peer, note)
            # Under `auto`, and yet nothing went directly; and once distrusted, the liar
            # carries no more slots (the statement was fetched once).
            assert writes_to(record, p.b_mailbox, start) == []
            assert len(forwards_from(record, A_HOST, p.dest, start)) == lied
        assert a._state.relays.key(p.dest) == key


async def test_forwarding_off_sends_slots_directly(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with paired(tmp_path, make_principal) as p:
        a, b, record = p.a, p.b, p.record
        a.set_setting(FORWARDING_SETTING, "off")
        start = len(record.events)
        async with watching_on_hosts((a, A_HOST)):
            note = a.queue(p.peer, "direct")
            await until(lambda: stored(a, p.peer, note))
            await asyncio.sleep(INTERVAL * 3)
        await on_host(B_HOST, b.sync())
    writes = writes_to(record, p.b_mailbox, start)
    assert len(writes) >= 4
    assert {e.op for e in writes} == {"send"} and {e.address for e in writes} == {A_HOST}
    assert {e.size for e in writes} == {DIRECT_SLOT_FRAME}
    assert a.slot_frames(a.channels()[0].channel_id) == [DIRECT_SLOT_FRAME]
    assert forwards_from(record, A_HOST, p.dest, start) == []
    assert [e.text for e in b.inbox()].count("direct") == 1


async def test_an_unreachable_forwarder_gives_way_to_another_never_to_direct(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with relay(tmp_path / "r1.db", record) as r1, \
                relay(tmp_path / "r2.db", record) as r2, \
                relay(tmp_path / "r3.db", record) as r3:
            code = await on_host(A_HOST, a.invite([r1.url, r2.url, r3.url]))
            await on_host(B_HOST, b.accept(code))
            await on_host(A_HOST, a.sync())
            await on_host(B_HOST, b.sync())
            slotted(a, b)
            (channel,) = a.channels()
            theirs = {lk.url: lk.outbound.mailbox_id for lk in channel.links if lk.outbound}
            # A relay a does not write to: a forwarder for each of a's directions.
            (gone,) = [r for r in (r1, r2, r3) if r.url not in theirs][:1]
            async with watching_on_hosts((a, A_HOST)):
                await asyncio.sleep(INTERVAL * 2)
                await gone.stop()
                start = len(record.events)
                note = a.queue(channel.name, "around the gap")
                await until(lambda: stored(a, channel.name, note))
                await asyncio.sleep(INTERVAL * 3)
                lines = dict(a._sender.route_status)
            await on_host(B_HOST, b.sync())
    writes = [e for m in theirs.values() for e in writes_to(record, m, start)]
    assert writes and {e.op for e in writes} == {"sealedsend"}
    assert not any("directly" in line for line in lines.values()), lines
    assert [e.text for e in b.inbox()].count("around the gap") == 1

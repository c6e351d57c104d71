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
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from backchannel.client.engine import Principal
from backchannel.client.routing import FORWARDING_SETTING, forward_frame_size
from backchannel.client.slotpolicy import DIRECT_SLOT_FRAME, SLOT_BUCKET
from backchannel.relay.limits import RelayLimits
from backchannel.relay.relaykey import RelayKeyRing
from backchannel.relay.store import open_store
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
from tests.client.test_relay_key_pins import Relay, new_ring
from tests.client.test_slots import INTERVAL, slotted, until

pytestmark = pytest.mark.timeout(60)

# The sender's and the counterpart's hosts.
A_HOST, B_HOST = host_address(0), host_address(1)


@contextlib.asynccontextmanager
async def keyed_relay(db: Path, record: Record, ring: RelayKeyRing,
                      port: int = 0) -> AsyncIterator[Relay]:
    """A logging relay with the key ring `ring` (kept across a restart on `port`)."""
    limits = RelayLimits()
    server = Relay(open_store(f"sqlite:///{db}", limits), limits, host="127.0.0.1",
                   port=port, forward_key=ring, forward_to_local=True)
    server.record, server._ids = record, {}
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


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


async def paired(a: Principal, b: Principal, urls: list[str]) -> tuple[str, str, str]:
    """Pair a and b from their hosts, slots on; returns a's name for b, the relay a
    writes to (the destination) and b's mailbox there."""
    await on_host(A_HOST, pair_on_hosts(a, b, urls))
    slotted(a, b)
    (link,) = [lk for lk in a.channels()[0].links if lk.outbound is not None]
    assert link.outbound is not None
    return a.channels()[0].name, link.url, link.outbound.mailbox_id


async def pair_on_hosts(a: Principal, b: Principal, urls: list[str]) -> None:
    code = await a.invite(urls)
    await on_host(B_HOST, b.accept(code))
    await a.sync()
    await on_host(B_HOST, b.sync())


def writes_to(record: Record, mailbox: str, since: int) -> list[Observed]:
    """Every deposit into `mailbox` the relays logged after event `since`."""
    return [e for e in sends_between(Record(record.events[since:]), 0.0, math.inf)
            if e.mailbox == mailbox]


def forwards_from(record: Record, address: str, destination: str,
                  since: int) -> list[Observed]:
    return [e for e in record.events[since:] if e.op == "forward"
            and e.address == address and e.destination == destination]


async def test_every_slot_write_is_forwarded_and_a_note_arrives_once(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with keyed_relay(tmp_path / "r1.db", record, new_ring()) as r1, \
                keyed_relay(tmp_path / "r2.db", record, new_ring()) as r2:
            peer, dest, b_mailbox = await paired(a, b, [r1.url, r2.url])
            start = len(record.events)
            t0 = time.monotonic()
            async with watching_on_hosts((a, A_HOST), (b, B_HOST)):
                await asyncio.sleep(INTERVAL * 4)  # cover only
                note = a.queue(peer, "through the other relay")
                await until(lambda: any(e.text == "through the other relay"
                                        for e in b.inbox()))
                # Its receipt comes back in b's slots, forwarded too.
                await until(lambda: any(m.delivered_at_ms for m in a.messages(peer)
                                        if m.message_id == note))
                await asyncio.sleep(INTERVAL * 2)
            elapsed = time.monotonic() - t0
    writes = writes_to(record, b_mailbox, start)
    # One write per slot, about, every one sealed and deposited by the forwarding relay.
    assert len(writes) >= elapsed / INTERVAL - 4
    assert {e.op for e in writes} == {"sealedsend"}
    assert {e.relay for e in writes} == {dest}
    assert all(e.address == "127.0.0.1" for e in writes)  # the relay's, not a's host
    assert {e.size for e in writes} == {writes[0].size}  # cover and the note alike
    # The sender's own connections to the destination name no mailbox it writes to.
    assert not [e for e in record.events[start:] if e.address == A_HOST
                and e.relay == dest and e.mailbox == b_mailbox]
    forwards = forwards_from(record, A_HOST, dest, start)
    assert len(forwards) >= len(writes)
    # What `status` counts a slot at is what went: the forward's frame (a connection of
    # its own each), about twice the direct send's.
    frame = forward_frame_size(dest, SLOT_BUCKET)
    assert a.slot_frames(a.channels()[0].channel_id) == [frame]
    assert {e.size for e in forwards} == {frame} and frame > 2 * DIRECT_SLOT_FRAME
    assert [e.text for e in b.inbox()].count("through the other relay") == 1
    assert a._sender.route_status.get(dest) is None  # forwarded as asked


async def test_required_forwarding_sends_nothing_while_the_forwarder_is_down(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    rings = [new_ring(), new_ring()]
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with keyed_relay(tmp_path / "r1.db", record, rings[0]) as r1, \
                keyed_relay(tmp_path / "r2.db", record, rings[1]) as r2:
            peer, dest, b_mailbox = await paired(a, b, [r1.url, r2.url])
            a.set_setting(FORWARDING_SETTING, "require")
            forwarder, index = (r1, 0) if dest == r2.url else (r2, 1)
            db, port = tmp_path / f"r{index + 1}.db", urlsplit(forwarder.url).port
            channel_id = a.channels()[0].channel_id
            async with watching_on_hosts((a, A_HOST)):
                await asyncio.sleep(INTERVAL * 3)
                await forwarder.stop()
                await asyncio.sleep(INTERVAL * 2)  # slots in flight settle
                start = len(record.events)
                note = a.queue(peer, "waits for the forwarder")
                await asyncio.sleep(INTERVAL * 8)
                # Nothing at all reached the destination for b's mailbox, not even cover.
                assert writes_to(record, b_mailbox, start) == []
                (held,) = [m for m in a.messages(peer) if m.message_id == note]
                assert not held.stored_on and a.status(peer)[0].queued >= 1
                _, routes = a.slot_status(channel_id)
                assert "forwarding is required" in routes[dest]
                async with keyed_relay(db, record, rings[index], port or 0):
                    await until(lambda: a.status(peer)[0].queued == 0)
                    assert dest not in a.slot_status(channel_id)[1]
                    await on_host(B_HOST, b.sync())
    assert [e.text for e in b.inbox()].count("waits for the forwarder") == 1
    writes = writes_to(record, b_mailbox, start)
    assert writes and {e.op for e in writes} == {"sealedsend"}


async def test_a_forwarder_refusing_the_key_falsely_is_distrusted_not_bypassed(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with keyed_relay(tmp_path / "r1.db", record, new_ring()) as r1, \
                keyed_relay(tmp_path / "r2.db", record, new_ring()) as r2:
            peer, dest, b_mailbox = await paired(a, b, [r1.url, r2.url])
            forwarder = r1 if dest == r2.url else r2
            key = a._state.relays.key(dest)
            forwarder.lying = True
            start = len(record.events)
            async with watching_on_hosts((a, A_HOST)):
                note = a.queue(peer, "never direct")
                await until(lambda: "lists as current" in
                            a.slot_status(a.channels()[0].channel_id)[1].get(dest, ""))
                lied = len(forwards_from(record, A_HOST, dest, start))
                await asyncio.sleep(INTERVAL * 6)
                (held,) = [m for m in a.messages(peer) if m.message_id == note]
                assert not held.stored_on
                # Under `auto`, and yet nothing went directly; and once distrusted, the
                # liar carries no more slots (the statement was fetched once).
                assert writes_to(record, b_mailbox, start) == []
                assert len(forwards_from(record, A_HOST, dest, start)) == lied
            assert a._state.relays.key(dest) == key


async def test_forwarding_off_sends_slots_directly(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    with hosts_on_loopback(asyncio.get_running_loop()):
        async with keyed_relay(tmp_path / "r1.db", record, new_ring()) as r1, \
                keyed_relay(tmp_path / "r2.db", record, new_ring()) as r2:
            peer, dest, b_mailbox = await paired(a, b, [r1.url, r2.url])
            a.set_setting(FORWARDING_SETTING, "off")
            start = len(record.events)
            async with watching_on_hosts((a, A_HOST)):
                a.queue(peer, "direct")
                await until(lambda: a.status(peer)[0].queued == 0)
                await asyncio.sleep(INTERVAL * 3)
            await on_host(B_HOST, b.sync())
    writes = writes_to(record, b_mailbox, start)
    assert len(writes) >= 4
    assert {e.op for e in writes} == {"send"} and {e.address for e in writes} == {A_HOST}
    assert {e.size for e in writes} == {DIRECT_SLOT_FRAME}
    assert a.slot_frames(a.channels()[0].channel_id) == [DIRECT_SLOT_FRAME]
    assert forwards_from(record, A_HOST, dest, start) == []
    assert [e.text for e in b.inbox()].count("direct") == 1

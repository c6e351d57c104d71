"""A forwarding relay that carries nothing to the destination (client/routing.py
`ForwarderUnfit`, docs/threat-model.md "Private routing"): relays served side by side
refuse by default to forward to one another (BAD_DESTINATION, so that clients cannot make
a relay probe its own network), and a relay served with `--no-forwarding` forwards to no
one (FORWARDING_DISABLED). Such a refusal carried nothing, so the rows go another way at
once: another forwarder where there is one, else directly under `auto` (with a routing
line that names the relay that refused), and not at all under `require`. Before, the rows
were taken as refused by the destination and waited for ever: two relays on one machine
could not even pair.

Real relays on 127.0.0.1 that log what their operator could (`observer.ObservedRelay`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from backchannel.client.engine import Principal
from backchannel.client.routing import FORWARDING_SETTING, operator_setting
from backchannel.client.sending import UNFIT_FOR_MS

from .conftest import FAST_KDF, MakePrincipal, pair
from .observer import Record, host_address
from .test_relay_key_pins import direct_sends, relay
from .test_slots import until
from .test_slots_forwarding import (
    forwards_from,
    paired,
    stored,
    watching_on_hosts,
    writes_to,
)

pytestmark = pytest.mark.timeout(60)

A_HOST, B_HOST = host_address(0), host_address(1)


def forwards(record: Record, since: int) -> list[str]:
    """The relays a client asked to forward something, after event `since`."""
    return [e.relay for e in record.events[since:] if e.op == "forward"]


async def test_relays_that_do_not_forward_to_each_other_still_pair_and_deliver(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with relay(tmp_path / "r1.db", record, forward_to_local=False) as r1, \
            relay(tmp_path / "r2.db", record, forward_to_local=False) as r2:
        start = len(record.events)
        await pair(w, b, [r1.url, r2.url])
        assert [c.name for c in w.channels()] == ["b"]
        assert [c.name for c in b.channels()] == ["w"]
        # Each side tried the other relay as forwarder, was refused, and sent directly.
        assert forwards(record, start)
        (link,) = [lk for lk in w.channels()[0].links if lk.outbound is not None]
        line = w._sender.route_status[link.url]
        assert line.startswith(f"sent directly to {link.url} (it sees this machine's address)")
        other = r1.url if link.url == r2.url else r2.url
        assert f"{other} said it carries nothing to it" in line
        # The refusal is remembered: the next send goes directly without asking again.
        start = len(record.events)
        sent = await w.send("b", "direct, since no relay forwards")
        assert sent.stored_on == (link.url,)
        assert forwards(record, start) == []
        assert direct_sends(record, link.url, start)
        await b.sync()
    assert [e.text for e in b.inbox()] == ["direct, since no relay forwards"]


async def test_refused_forwarding_is_asked_again_after_a_while(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    now = [int(time.time() * 1000)]
    record = Record()
    w = Principal.create(tmp_path / "w", "w", "passphrase", kdf=FAST_KDF,
                         clock=lambda: now[0])
    b = make_principal("b")
    async with relay(tmp_path / "r1.db", record, forward_to_local=False) as r1, \
            relay(tmp_path / "r2.db", record, forward_to_local=False) as r2:
        await pair(w, b, [r1.url, r2.url])
        (link,) = [lk for lk in w.channels()[0].links if lk.outbound is not None]
        forwarder, db = (r1, "r1.db") if link.url == r2.url else (r2, "r2.db")
        # Its operator serves it again, now with --forward-to-local.
        ring, port = forwarder.forward_key, urlsplit(forwarder.url).port or 0
        await forwarder.stop()
        async with relay(tmp_path / db, record, ring=ring, port=port):
            start = len(record.events)
            sent = await w.send("b", "direct while the refusal is remembered")
            assert forwards(record, start) == []
            now[0] += UNFIT_FOR_MS + 1
            start = len(record.events)
            sent = await w.send("b", "forwarded again")
            assert sent.stored_on == (link.url,)
            assert direct_sends(record, link.url, start) == []
            assert forwards(record, start) == [forwarder.url]
            assert link.url not in w._sender.route_status  # forwarded as asked
            await b.sync()
    w.close()
    assert [e.text for e in b.inbox()] == ["direct while the refusal is remembered",
                                           "forwarded again"]


async def test_required_forwarding_holds_the_rows_a_refusing_forwarder_leaves(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with relay(tmp_path / "r1.db", record) as r1, \
            relay(tmp_path / "r2.db", record) as r2:
        await pair(w, b, [r1.url, r2.url])
        await b.sync()
        (link,) = [lk for lk in w.channels()[0].links if lk.outbound is not None]
        forwarder = r1 if link.url == r2.url else r2
        forwarder.forwarding = False  # now served with --no-forwarding
        w.set_setting(FORWARDING_SETTING, "require")
        start = len(record.events)
        sent = await w.send("b", "held, never direct")
        assert sent.stored_on == ()
        assert direct_sends(record, link.url, start) == []
        assert forwards(record, start) == [forwarder.url]  # asked once, refused
        line = w._sender.route_status[link.url]
        assert line.startswith(f"not sent to {link.url}: forwarding is required")
        assert f"{forwarder.url} said it carries nothing to it" in line
        # Held, not lost: once it forwards again (and its refusal is forgotten), it goes.
        forwarder.forwarding = True
        w._sender._unfit.clear()
        assert await w.flush() == 1
        await b.sync()
    assert [e.text for e in b.inbox()] == ["held, never direct"]


async def test_a_relay_that_forwards_to_no_one_gives_way_to_another_forwarder(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with relay(tmp_path / "r1.db", record) as r1, \
            relay(tmp_path / "r2.db", record) as r2, \
            relay(tmp_path / "r3.db", record) as r3:
        await pair(w, b, [r1.url, r2.url, r3.url])
        await b.sync()
        # Sends to relay 2 (the joiner's share) prefer relay 1, which forwards no more.
        w.set_setting(operator_setting(r1.url), "one")
        w.set_setting(operator_setting(r2.url), "two")
        r1.forwarding = False
        start = len(record.events)
        sent = await w.send("b", "through the third")
        assert sent.stored_on == (r2.url,)
        assert direct_sends(record, r2.url, start) == []
        assert forwards(record, start) == [r1.url, r3.url]
        assert r2.url not in w._sender.route_status
        await b.sync()
    assert [e.text for e in b.inbox()] == ["through the third"]


async def test_slots_go_directly_when_the_only_forwarder_refuses(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with paired(tmp_path, make_principal) as p:
        a, b, record = p.a, p.b, p.record
        p.forwarder.forward_to_local = False
        start = len(record.events)
        async with watching_on_hosts((a, A_HOST), (b, B_HOST)):
            note = a.queue(p.peer, "in a direct slot")
            await until(lambda: stored(a, p.peer, note))
            await until(lambda: any(e.text == "in a direct slot" for e in b.inbox()))
            refused = len(forwards_from(record, A_HOST, p.dest, start))
            await asyncio.sleep(0.2 * 4)
            # Asked once (or by a slot already in flight), then never again.
            assert len(forwards_from(record, A_HOST, p.dest, start)) == refused
            assert 1 <= refused <= 2
        line = a.slot_status(a.channels()[0].channel_id)[1][p.dest]
        assert f"{p.forwarder.url} said it carries nothing to it" in line
    writes = writes_to(record, p.b_mailbox, start)
    assert writes and {e.op for e in writes} == {"send"}
    assert {e.address for e in writes} == {A_HOST}
    assert [e.text for e in b.inbox()].count("in a direct slot") == 1

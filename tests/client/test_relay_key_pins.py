"""Relay key pins, end to end (client/keypins.py, docs/relay.md "Key pins"): against real
relays on 127.0.0.1 that record what their operator could log, a client refetches a
rotated key and verifies it under the invite's pin, and a forwarding relay that falsely
refuses a key as unknown can neither make the client send directly nor stop it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from backchannel.client.keypins import KeyCheck, refresh_key
from backchannel.client.routing import operator_setting
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair
from backchannel.protocol.keystatement import IDENTITY_SEED_SIZE
from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay.limits import RelayLimits
from backchannel.relay.relaykey import RelayKeyRing
from backchannel.relay.store import open_store

from .conftest import MakePrincipal, pair
from .observer import ObservedRelay, Record

pytestmark = pytest.mark.timeout(60)


class Relay(ObservedRelay):
    """A real relay with a key ring; with `lying` set, it refuses every forward as
    UNKNOWN_KEY without carrying it (what a hostile forwarding relay can do)."""

    lying = False

    def _forward(self, conn: Any, rid: int, key_id: bytes, destination: str,
                 sealed: bytes) -> None:
        if self.lying:
            self._error(conn, rid, ErrorCode.UNKNOWN_KEY)
            return
        super()._forward(conn, rid, key_id, destination, sealed)


def new_ring() -> RelayKeyRing:
    return RelayKeyRing(RelayKeyPair(os.urandom(KEY_SEED_SIZE)),
                        identity_seed=os.urandom(IDENTITY_SEED_SIZE))


@contextlib.asynccontextmanager
async def relay(db: Path, record: Record, clock: Callable[[], float] = time.time, *,
                ring: RelayKeyRing | None = None, port: int = 0,
                forward_to_local: bool = True) -> AsyncIterator[Relay]:
    """A logging relay with a key ring (`ring`, kept across a restart on `port`; else a
    new one) that forwards to loopback unless `forward_to_local` is False (then, as a
    relay serves by default, it refuses to carry a forward to a relay beside it)."""
    limits = RelayLimits()
    server = Relay(open_store(f"sqlite:///{db}", limits), limits, host="127.0.0.1",
                   port=port, forward_key=ring or new_ring(),
                   forward_to_local=forward_to_local,
                   clock=clock)
    server.record, server._ids = record, {}
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def direct_sends(record: Record, url: str, since: int) -> list[str]:
    """Mailboxes a client deposited into on `url` directly (naming the mailbox)."""
    return [e.mailbox for e in record.events[since:]
            if e.relay == url and e.op in ("send", "sendbatch")]


async def test_a_rotated_key_is_refetched_and_verified_by_its_pin(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with relay(tmp_path / "r1.db", record) as r1, \
            relay(tmp_path / "r2.db", record) as r2:
        await pair(w, b, [r1.url, r2.url])
        await b.sync()
        assert r2.forward_key is not None
        old = r2.forward_key
        # The joiner had only the pin; it fetched and verified the key before its hello.
        assert b._state.relays.pin(r2.url) == old.identity.public
        assert w._state.relays.key(r2.url) == old.public
        # Rotated with no overlap: the old key is retired at once (KEY_RETIRED).
        r2.forward_key = old.rotated(os.urandom(KEY_SEED_SIZE), 0.0, 0.0)
        start = len(record.events)
        sent = await w.send("b", "after the rotation")
        assert sent.stored_on == (r2.url,)
        assert w._state.relays.key(r2.url) == r2.forward_key.public
        assert direct_sends(record, r2.url, start) == []  # still forwarded
        assert w._sender.route_status == {}
        await b.sync()
    assert [e.text for e in b.inbox()] == ["after the rotation"]


async def test_a_false_unknown_key_sends_through_another_forwarder(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with relay(tmp_path / "r1.db", record) as r1, \
            relay(tmp_path / "r2.db", record) as r2, \
            relay(tmp_path / "r3.db", record) as r3:
        await pair(w, b, [r1.url, r2.url, r3.url])
        await b.sync()
        # Sends to relay 2 (the joiner's share) prefer relay 1, which now lies.
        w.set_setting(operator_setting(r1.url), "one")
        w.set_setting(operator_setting(r2.url), "two")
        r1.lying = True
        key = w._state.relays.key(r2.url)
        start = len(record.events)
        sent = await w.send("b", "despite the liar")
        assert sent.stored_on == (r2.url,)
        assert direct_sends(record, r2.url, start) == []
        assert [e for e in record.events[start:] if e.relay == r1.url and e.op == "forward"]
        assert [e for e in record.events[start:] if e.relay == r3.url and e.op == "forward"]
        assert w._state.relays.key(r2.url) == key  # the lie changed nothing we hold
        await b.sync()
    assert [e.text for e in b.inbox()] == ["despite the liar"]


async def test_a_false_unknown_key_with_no_other_forwarder_holds_the_rows(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with relay(tmp_path / "r1.db", record) as r1, \
            relay(tmp_path / "r2.db", record) as r2:
        await pair(w, b, [r1.url, r2.url])
        await b.sync()
        r1.lying = True
        start = len(record.events)
        sent = await w.send("b", "held, not direct")
        assert sent.stored_on == ()  # under `auto`, yet not sent directly
        assert direct_sends(record, r2.url, start) == []
        assert "lists as current" in w._sender.route_status[r2.url]
        r1.lying = False
        await w.sync()  # the next pass trusts relay 1 again, and it carries the rows
        assert direct_sends(record, r2.url, start) == []
        await b.sync()
    assert [e.text for e in b.inbox()] == ["held, not direct"]


async def test_a_statement_of_another_identity_or_an_older_one_is_refused(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    now = [time.time()]
    w = make_principal("w")
    state = w._state
    async with relay(tmp_path / "r.db", Record(), clock=lambda: now[0]) as r:
        ring = r.forward_key
        assert ring is not None
        # No pin yet (a relay from a version 3 invite): pinned to the first statement.
        got = await refresh_key(state, r.url, None, timeout=3.0)
        assert got.check is KeyCheck.CHANGED
        assert state.relays.pin(r.url) == ring.identity.public
        assert state.relays.key(r.url) == ring.public
        # The key we used is still current: the refusal it answers was false.
        assert (await refresh_key(state, r.url, ring.public, timeout=3.0)).check \
            is KeyCheck.SAME
        # A statement signed a day earlier (an old one replayed) rolls nothing back.
        older = ring.rotated(os.urandom(KEY_SEED_SIZE), now[0], 0.0)
        r.forward_key, now[0] = older, now[0] - 86_400
        got = await refresh_key(state, r.url, ring.public, timeout=3.0)
        assert got.check is KeyCheck.REFUSED and "older" in got.reason
        assert state.relays.key(r.url) == ring.public
        # Another identity than the pin: refused, and nothing of it is kept.
        r.forward_key, now[0] = new_ring(), now[0] + 86_400
        got = await refresh_key(state, r.url, ring.public, timeout=3.0)
        assert got.check is KeyCheck.REFUSED and "pin" in got.reason
        assert state.relays.key(r.url) == ring.public
        assert state.relays.pin(r.url) == ring.identity.public

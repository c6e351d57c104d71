"""Each relay on its own (design §5): a silent relay, a relay that lost its disk, and a
relay that always has more junk, each beside a healthy one. Real relays on 127.0.0.1,
real SQLite files; the misbehaving relays are real WebSocket servers (fault_relays.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backchannel.client.engine import InboxEntry, Principal
from backchannel.client.placement import PLACEMENT_SETTING
from backchannel.relay.server import RelayServer

from .conftest import FAST_KDF, MakePrincipal, pair, running_relay
from .fault_relays import junk_relay, silent_relay


@pytest.fixture
def make_principal(make_principal: MakePrincipal) -> MakePrincipal:
    """Principals whose mailboxes are on every relay (`placement`): these tests are about
    one relay's faults costing the others nothing, which split directions do not promise
    (tests/client/test_split.py covers those)."""

    def make(name: str) -> Principal:
        principal = make_principal(name)
        principal.set_setting(PLACEMENT_SETTING, "every")
        return principal

    return make

# Generous bounds: the point is "bounded", not speed. A sync's deadline is 10 s; a request
# to a relay that does not answer times out after 5 s by default, after REQUEST_TIMEOUT
# for the principals of the silent-relay test.
SYNC_BOUND = 15.0
SEND_BOUND = 10.0
REQUEST_TIMEOUT = 1.0


def texts(principal: Principal, channel: str) -> list[str]:
    return [e.text for e in principal.inbox(channel)]


@contextlib.asynccontextmanager
async def relay_pair(tmp_path: Path) -> AsyncIterator[tuple[RelayServer, RelayServer]]:
    async with (
        running_relay(tmp_path / "a.db") as a,
        running_relay(tmp_path / "b.db") as b,
    ):
        yield a, b


async def test_silent_relay_delays_nothing(tmp_path: Path) -> None:
    alice, bob = (Principal.create(tmp_path / name, name, "passphrase", kdf=FAST_KDF,
                                   request_timeout=REQUEST_TIMEOUT) for name in ("alice", "bob"))
    for principal in (alice, bob):
        principal.set_setting(PLACEMENT_SETTING, "every")  # as `make_principal` above
    async with running_relay(tmp_path / "a.db") as a:
        async with running_relay(tmp_path / "b.db") as b:
            await pair(alice, bob, [a.url, b.url])
            b_url, b_port = b.url, b.port
        # B's process hangs: it still takes connections, answers nothing.
        async with silent_relay(b_port):
            got: list[InboxEntry] = []
            stop = asyncio.Event()
            watching = asyncio.create_task(bob.watch(stop, on_message=got.append))

            began = time.monotonic()
            sent = await alice.send("bob", "one")
            send_took = time.monotonic() - began
            assert sent.stored_on == (a.url,) and b_url in sent.queued_for
            assert send_took < SEND_BOUND

            # The watch receives over A while its B connection hangs.
            began = time.monotonic()
            while not got and time.monotonic() - began < SYNC_BOUND:
                await asyncio.sleep(0.05)
            watch_took = time.monotonic() - began
            assert [e.text for e in got] == ["one"]
            began = time.monotonic()
            stop.set()
            await asyncio.wait_for(watching, SYNC_BOUND)
            stop_took = time.monotonic() - began

            alice.queue("bob", "two")
            began = time.monotonic()
            report = await alice.sync()
            alice_took = time.monotonic() - began
            assert b_url in report.relays_down
            began = time.monotonic()
            report = await bob.sync()
            bob_took = time.monotonic() - began
            assert b_url in report.relays_down and a.url in report.relays_up
            assert texts(bob, "alice") == ["one", "two"]
            assert alice_took < SYNC_BOUND and bob_took < SYNC_BOUND
            print(
                f"send {send_took:.1f}s, watch delivered after {watch_took:.1f}s, "
                f"watch stopped in {stop_took:.1f}s, syncs {alice_took:.1f}s / {bob_took:.1f}s"
            )


async def test_relay_that_lost_its_disk_is_reprovisioned(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    alice, bob = make_principal("alice"), make_principal("bob")
    b_db = tmp_path / "b.db"
    async with running_relay(tmp_path / "a.db") as a:
        async with running_relay(b_db) as b:
            await pair(alice, bob, [a.url, b.url])
            await alice.send("bob", "before the loss")
            await bob.sync()
            b_url, b_port = b.url, b.port
        for path in tmp_path.glob("b.db*"):
            path.unlink()  # the relay lost its disk
        async with running_relay(b_db, port=b_port):
            # Both relays still up; B knows none of the channel's mailboxes.
            await alice.send("bob", "after the loss")
            assert alice.status("bob")[0].relays_lost == (b_url,)
            await bob.sync()  # does not fail on "relay error 10"
            assert texts(bob, "alice") == ["before the loss", "after the loss"]
            assert bob.status("alice")[0].relays_lost == (b_url,)

            # A few syncs each way: fresh mailboxes on B, moves across A.
            syncs = 0
            while alice.status("bob")[0].relays_lost or bob.status("alice")[0].relays_lost:
                syncs += 1
                assert syncs <= 4, "not re-provisioned after 4 rounds of syncs"
                await alice.sync()
                await bob.sync()
            assert texts(bob, "alice") == ["before the loss", "after the loss"]
            await bob.send("alice", "over both again")
            await alice.sync()
            assert texts(alice, "bob") == ["over both again"]

        # A goes away: B alone carries the channel.
        await a.stop()
        async with running_relay(b_db, port=b_port):
            sent = await alice.send("bob", "only over B")
            assert sent.stored_on == (b_url,)
            report = await bob.sync()
            assert a.url in report.relays_down
        assert texts(bob, "alice") == ["before the loss", "after the loss", "only over B"]
        print(f"re-provisioned after {syncs} round(s) of syncs")


async def test_relay_with_endless_junk_cannot_grow_the_state(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    alice, bob = make_principal("alice"), make_principal("bob")
    async with running_relay(tmp_path / "a.db") as a, junk_relay() as (junk_url, handed):
        await pair(alice, bob, [a.url, junk_url])
        await alice.send("bob", "hello through the junk")
        before = bob._store.db.execute("SELECT COUNT(*) FROM processed").fetchone()[0]
        took = []
        for _ in range(2):
            began = time.monotonic()
            report = await bob.sync()
            took.append(time.monotonic() - began)
            assert report.rejected > 0
        after = bob._store.db.execute("SELECT COUNT(*) FROM processed").fetchone()[0]
        assert texts(bob, "alice") == ["hello through the junk"]
        assert max(took) < SYNC_BOUND
        # Only authentic payloads are remembered: the note, and what came with it.
        assert after - before <= 3, (before, after)
        print(
            f"{handed[0]} junk envelopes handed out; processed {before} -> {after};"
            f" syncs {', '.join(f'{t:.1f}s' for t in took)}"
        )

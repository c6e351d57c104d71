"""Split directions and private routing, against real relays on 127.0.0.1 that record what
their operator could log (issue 14 §1 and §2, docs/threat-model.md)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console

from backchannel.cli.output import status_table
from backchannel.client.engine import Principal
from backchannel.client.errors import StateCorrupted
from backchannel.client.exchange import DEFAULT_HEAL_AFTER_S, HEAL_AFTER_SETTING
from backchannel.client.invite import KIND_MOVE
from backchannel.client.receiving import _still_current
from backchannel.client.records import ChannelRecord, Link, Mailbox, copy_channel, dump, load
from backchannel.client.routing import FORWARDING_SETTING

from .conftest import FAST_KDF, MakePrincipal, pair, running_relay
from .observer import ObservedRelay, Record, observed_relay


@contextlib.asynccontextmanager
async def forwarding_relay(db: Path, record: Record,
                           port: int = 0) -> AsyncIterator[ObservedRelay]:
    """A real relay with a (new) forwarding key (forwarding to loopback allowed), logging."""
    async with observed_relay(db, record, forwarding=True, port=port) as server:
        yield server


def inbound_ids(channel: ChannelRecord) -> set[str]:
    return {lk.inbound.mailbox_id for lk in channel.links if lk.inbound}


def seen_on(record: Record, relay: str) -> set[str]:
    return {e.mailbox for e in record.events if e.relay == relay and e.mailbox}


async def talk(w: Principal, b: Principal, n: int) -> None:
    for i in range(n):
        await w.send("b", f"w{i}")
        await b.send("w", f"b{i}")
    for _ in range(2):
        await w.sync()
        await b.sync()


async def test_two_relays_hold_one_direction_each_and_sends_are_forwarded(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with forwarding_relay(tmp_path / "r1.db", record) as r1, \
            forwarding_relay(tmp_path / "r2.db", record) as r2:
        await pair(w, b, [r1.url, r2.url])
        await b.sync()  # follows the move
        await w.sync()  # retires the invite mailboxes
        start = len(record.events)
        await talk(w, b, 3)
        ours, theirs = inbound_ids(w.channel("b")), inbound_ids(b.channel("w"))
        def shape(p: Principal, peer: str) -> list[tuple[str, bool, bool]]:
            return [(lk.url, lk.inbound is not None, lk.outbound is not None)
                    for lk in p.channel(peer).links]

        # The inviter's mailbox on relay 1, the joiner's on relay 2; the joiner gave up the
        # invite's mailbox on relay 2 when the inviter's first move came.
        assert shape(w, "b") == [(r1.url, True, False), (r2.url, False, True)]
        assert shape(b, "w") == [(r1.url, False, True), (r2.url, True, False)]
        # No relay ever saw both mailboxes of the channel.
        for relay in (r1.url, r2.url):
            seen = seen_on(record, relay)
            assert not (ours & seen and theirs & seen), relay
        # Every deposit after pairing came forwarded: no relay saw a client's plain send
        # to a mailbox (the mailbox is sealed inside; only the other relay connected).
        after = record.events[start:]
        assert not [e for e in after if e.op == "send" or e.op == "sendbatch"]
        assert [e for e in after if e.mailbox == "" and e.relay == r2.url]
        assert w._sender.route_status == {} and b._sender.route_status == {}
        assert (await w.sync()).routes == {}
    assert sorted(e.text for e in b.inbox()) == ["w0", "w1", "w2"]
    assert sorted(e.text for e in w.inbox()) == ["b0", "b1", "b2"]


async def test_one_relay_keeps_both_directions(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with forwarding_relay(tmp_path / "r1.db", record) as r1:
        await pair(w, b, [r1.url])
        await talk(w, b, 1)
        link = w.channel("b").links[0]
        assert link.inbound is not None and link.outbound is not None
        # No other relay to forward through: sent directly, and said so.
        assert "sent directly" in w._sender.route_status[r1.url]
        w.set_setting(FORWARDING_SETTING, "require")
        sent = await w.send("b", "not direct")
        assert sent.stored_on == () and sent.queued_for == (r1.url,)
        assert "forwarding is required" in w._sender.route_status[r1.url]
        assert "forwarding is required" in (await w.sync()).routes[r1.url]


async def test_a_relay_lost_still_delivers_everything_once(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with forwarding_relay(tmp_path / "r1.db", record) as r1, \
            forwarding_relay(tmp_path / "r2.db", record) as r2, \
            forwarding_relay(tmp_path / "r3.db", record) as r3:
        for p in (w, b):
            p.set_setting(HEAL_AFTER_SETTING, "0")  # the waiting is tested below
        await pair(w, b, [r1.url, r2.url, r3.url])
        await b.sync()
        await w.sync()
        assert [lk.url for lk in b.channel("w").links if lk.inbound] == [r2.url]
        await talk(w, b, 2)
        await r2.stop()  # b's only relay: b takes a mailbox on another and tells w
        for i in range(2, 5):
            await w.send("b", f"w{i}")
            await b.send("w", f"b{i}")
        for _ in range(3):
            await b.sync()
            await w.sync()
        assert len([lk for lk in b.channel("w").links if lk.inbound]) == 2
        await r3.stop()  # one of w's two: the other carries on
        await b.send("w", "b5")
        await w.send("b", "w5")
        for _ in range(2):
            await w.sync()
            await b.sync()
    assert sorted(e.text for e in b.inbox()) == [f"w{i}" for i in range(6)]
    assert sorted(e.text for e in w.inbox()) == [f"b{i}" for i in range(6)]


async def test_a_channel_stored_before_the_split_loads_and_works(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with forwarding_relay(tmp_path / "r1.db", record) as r1, \
            forwarding_relay(tmp_path / "r2.db", record) as r2:
        for p in (w, b):
            p.set_setting("relay-placement", "every")  # as channels were made before
        await pair(w, b, [r1.url, r2.url])
        await b.sync()
        # Written back exactly as a version without `format` wrote it.
        for p, peer in ((w, "b"), (b, "w")):
            channel = p.channel(peer)
            kind, key = "channel", bytes.fromhex(channel.channel_id)
            raw, _version = p._store.get_versioned(kind, key)  # type: ignore[misc]
            data = json.loads(raw)
            assert "format" not in data  # every link has our mailbox: format 1 on disk
            assert all(link["inbound"] for link in data["links"])
            assert load(ChannelRecord, raw).format == 1
        await talk(w, b, 2)
    assert sorted(e.text for e in b.inbox()) == ["w0", "w1"]


def test_a_format_1_record_loads_as_it_was_and_is_written_back_the_same() -> None:
    # A channel record as a version from before the split stored it (no `format`).
    old = {
        "channel_id": "ab" * 16, "name": "b", "peer_identity": "00", "session": "",
        "links": [{"url": "ws://127.0.0.1:1/",
                   "inbound": {"mailbox_id": "01" * 16, "send_token": "02" * 32,
                               "receive_token": "03" * 32},
                   "outbound": {"mailbox_id": "04" * 16, "send_token": "05" * 32,
                                "receive_token": ""}}],
        "created_at_ms": 1, "role": "joiner", "verified": False, "last_heard_ms": 0,
        "rejected": 0, "identity_changed": False, "retiring": [], "peer_moved": False,
        "linetest_every_ms": 0, "linetest_grace_ms": 0,
    }
    raw = json.dumps(old, separators=(",", ":"), sort_keys=True).encode()
    record: ChannelRecord = load(ChannelRecord, raw)
    assert record.format == 1 and record.links[0].inbound is not None
    assert dump(record) == raw
    # Split, it is written as format 2, and a format 1 link without our mailbox is damage.
    record.links[0].inbound = None
    assert json.loads(dump(record))["format"] == 2
    old["links"][0]["inbound"] = None  # type: ignore[index]
    with pytest.raises(StateCorrupted):
        load(ChannelRecord, json.dumps(old).encode())
    old["format"] = 3
    with pytest.raises(StateCorrupted):
        load(ChannelRecord, json.dumps(old).encode())


@pytest.mark.parametrize("every", ["w", "b"])
async def test_a_peer_that_puts_mailboxes_on_every_relay_still_talks(
    tmp_path: Path, make_principal: MakePrincipal, every: str
) -> None:
    """One side places its mailboxes as before the split (on every relay), the other
    splits: both directions still work."""
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    (w if every == "w" else b).set_setting("relay-placement", "every")
    async with forwarding_relay(tmp_path / "r1.db", record) as r1, \
            forwarding_relay(tmp_path / "r2.db", record) as r2:
        await pair(w, b, [r1.url, r2.url])
        await b.sync()
        await w.sync()
        await talk(w, b, 2)
        everywhere = w if every == "w" else b
        peer = "b" if every == "w" else "w"
        assert all(lk.inbound for lk in everywhere.channel(peer).links)
    assert sorted(e.text for e in b.inbox()) == ["w0", "w1"]
    assert sorted(e.text for e in w.inbox()) == ["b0", "b1"]


async def test_a_mailbox_moves_only_after_its_relays_stayed_down(tmp_path: Path) -> None:
    now = [1_000_000]
    w, b = (Principal.create(tmp_path / n, n, "passphrase", kdf=FAST_KDF, clock=lambda: now[0])
            for n in ("w", "b"))
    record = Record()
    async with forwarding_relay(tmp_path / "r1.db", record) as r1, \
            forwarding_relay(tmp_path / "r2.db", record) as r2:
        await pair(w, b, [r1.url, r2.url])
        await b.sync()
        await r2.stop()  # b's only relay
        assert (await b.sync()).reprovisioned == []  # first seen down now
        now[0] += (DEFAULT_HEAL_AFTER_S - 1) * 1000
        assert (await b.sync()).reprovisioned == []
        b.set_setting(HEAL_AFTER_SETTING, "never")
        now[0] += 2000
        assert (await b.sync()).reprovisioned == []
        b.set_setting(HEAL_AFTER_SETTING, "")
        assert (await b.sync()).reprovisioned == [f"w {r1.url}"]
        await w.sync()  # follows the move
        await w.send("b", "after the move")
        await b.sync()
    assert [e.text for e in b.inbox()] == ["after the move"]


async def test_a_relay_with_a_new_key_is_sent_to_directly_once(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    w, b = make_principal("w"), make_principal("b")
    async with forwarding_relay(tmp_path / "r1.db", record) as r1:
        async with forwarding_relay(tmp_path / "r2.db", record) as r2:
            await pair(w, b, [r1.url, r2.url])
            await b.sync()
            url2, port2 = r2.url, r2.port
        async with forwarding_relay(tmp_path / "r2.db", record, port=port2):
            # The invite's key for relay 2 is stale now: refused as unknown, forgotten.
            sent = await w.send("b", "to the new key")
            assert sent.stored_on == (url2,)
            assert "no forwarding key is known" in w._sender.route_status[url2]
            await b.sync()
    assert [e.text for e in b.inbox()] == ["to the new key"]


async def test_a_relay_that_lost_its_disk_loses_no_message_of_the_direction_it_held(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """With split directions, the relay holding b's mailbox is the only way w reaches b: a
    send it refuses after losing its disk waits for b's move, and is not dropped as it is
    where another relay carries the channel (tests/client/test_relay_faults.py); what it
    had stored and lost unread goes again after the move, from its retained payload."""
    w, b = make_principal("w"), make_principal("b")
    r2_db = tmp_path / "r2.db"
    async with running_relay(tmp_path / "r1.db") as r1:
        async with running_relay(r2_db) as r2:
            await pair(w, b, [r1.url, r2.url])
            await talk(w, b, 1)
            (link,) = [lk for lk in w.channel("b").links if lk.outbound]
            assert link.url == r2.url  # the joiner's share
            url, port = r2.url, r2.port
            unread = await w.send("b", "stored, never read")
            assert unread.stored_on == (url,)
        channel_id = w.channel("b").channel_id
        # Kept until receipted: w0 was (b synced), the unread one was not.
        kept = [m.hex() for m, _ in w._state.escalations.all_retained(channel_id)]
        assert kept == [unread.message_id]
        for path in tmp_path.glob("r2.db*"):
            path.unlink()  # the relay lost its disk
        async with running_relay(r2_db, port=port):
            sent = await w.send("b", "after the loss")
            assert sent.stored_on == () and sent.queued_for == (url,)
            assert w.status("b")[0].relays_lost == (url,)
            assert w.status("b")[0].queued == 1  # kept for b's move, not dropped
            shown = Console(width=200, record=True)
            shown.print(status_table(w.status("b")))
            assert "what waits for it goes then" in shown.export_text()
            assert await w.flush() == 0  # and not offered to a relay that refuses it
            await w.send("b", "while it is lost")
            for _ in range(3):
                await b.sync()  # b finds its mailbox gone, takes a fresh one, tells w
                await w.sync()  # w follows the move: the rows kept go to the new mailbox
            await b.sync()
            await w.sync()  # b's receipts
            assert w.status("b")[0].relays_lost == ()
            assert w.status("b")[0].queued == 0
    # The one the relay lost unread came again (from its retained payload), once.
    assert sorted(e.text for e in b.inbox()) == sorted(
        ["w0", "stored, never read", "after the loss", "while it is lost"])
    assert [e.text for e in w.inbox()] == ["b0"]
    assert all(m.delivered_at_ms for m in w.messages("b") if m.direction == "out" and m.kind == 1)
    assert w._state.escalations.all_retained(channel_id) == []



async def test_receipts_a_relay_lost_unread_come_again(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """The relay holding w's mailbox loses its disk with b's receipt in it, unread: when
    w's move names a fresh mailbox there, b sends the receipt again (kept until a later
    message of b's is receipted), so w's note shows delivered and w sees no gap in b's
    messages."""
    w, b = make_principal("w"), make_principal("b")
    r1_db = tmp_path / "r1.db"
    async with running_relay(tmp_path / "r2.db") as r2:
        async with running_relay(r1_db) as r1:
            await pair(w, b, [r1.url, r2.url])
            await talk(w, b, 1)
            assert [lk.url for lk in w.channel("b").links if lk.inbound] == [r1.url]
            port = r1.port
            note = await w.send("b", "receipted into a mailbox about to be lost")
            await b.sync()  # b has it; its receipt waits in w's mailbox on r1
        for path in tmp_path.glob("r1.db*"):
            path.unlink()  # the relay lost its disk
        async with running_relay(r1_db, port=port):
            for _ in range(3):
                await w.sync()  # w finds its mailbox gone, takes a fresh one, tells b
                await b.sync()  # b follows the move and sends what the relay lost again
            await w.sync()
            (sent,) = [m for m in w.messages("b") if m.message_id == note.message_id]
            assert sent.delivered_at_ms
            assert w.status("b")[0].gaps == ()
            assert w.status("b")[0].relays_lost == ()
    assert [e.text for e in b.inbox()] == ["w0", "receipted into a mailbox about to be lost"]


async def test_a_move_a_relay_lost_unread_comes_again_while_it_is_current(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """The inviter's first message is its move from the invite's mailboxes to the
    channel's. The relay holding the joiner's mailbox loses its disk with that move in it,
    unread. When the joiner's own move names a fresh mailbox there, the inviter sends the
    move again (it still names the mailboxes it reads): the joiner learns them and holds
    every message of the inviter's, with no gap."""
    w, b = make_principal("w"), make_principal("b")
    r2_db = tmp_path / "r2.db"
    async with running_relay(tmp_path / "r1.db") as r1:
        async with running_relay(r2_db) as r2:
            await b.accept(await w.invite([r1.url, r2.url]))
            await w.sync()  # w takes up b's hello; its move waits in b's mailbox on r2
            assert [lk.url for lk in w.channel("b").links if lk.outbound] == [r2.url]
            port = r2.port
        for path in tmp_path.glob("r2.db*"):
            path.unlink()  # the relay lost its disk
        async with running_relay(r2_db, port=port):
            for _ in range(4):
                await b.sync()  # b finds its mailbox gone, takes a fresh one, tells w
                await w.sync()  # w follows: what r2 lost unread goes again, the move too
            await talk(w, b, 1)
            ours = {lk.url: lk.inbound.mailbox_id for lk in w.channel("b").links if lk.inbound}
            theirs = {lk.url: lk.outbound.mailbox_id for lk in b.channel("w").links
                      if lk.outbound}
            assert theirs == ours  # b writes where w reads, as w's move says
            assert b.status("w")[0].gaps == ()
            assert w.status("b")[0].gaps == ()
    assert [e.text for e in b.inbox()] == ["w0"]
    assert [e.text for e in w.inbox()] == ["b0"]


async def test_a_move_goes_again_only_while_it_names_the_mailboxes_we_read(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """An older move would point the counterpart at a replaced mailbox: the inviter's
    first move is current while it names exactly the relays and mailboxes it reads."""
    w, b = make_principal("w"), make_principal("b")
    async with (running_relay(tmp_path / "r1.db") as r1,
                running_relay(tmp_path / "r2.db") as r2):
        await pair(w, b, [r1.url, r2.url])
    channel = w.channel("b")
    (move,) = [m for m in w.messages("b") if m.direction == "out" and m.kind == KIND_MOVE]
    assert move.seq == 1 and _still_current(channel, move)
    (reading,) = [lk for lk in channel.links if lk.inbound]
    replaced = copy_channel(channel)
    next(lk for lk in replaced.links if lk.url == reading.url).inbound = Mailbox(
        "ab" * 16, "cd" * 32)
    assert not _still_current(replaced, move)  # a fresh mailbox where it names the old
    more = copy_channel(channel)
    more.links.append(Link("ws://127.0.0.1:1/", Mailbox("ef" * 16, "01" * 32)))
    assert not _still_current(more, move)  # the first move would give that link up


async def test_what_a_relay_held_unread_comes_again_after_the_counterpart_moved_away(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """A note and a receipt of w's wait unread in b's mailbox on r2. r2 goes down; b takes
    a mailbox on r1 and tells w; w's next note is read there and receipted, which says
    nothing of what waits on r2. r2 comes back without its disk: both come again."""
    w, b = make_principal("w"), make_principal("b")
    r2_db = tmp_path / "r2.db"
    async with running_relay(tmp_path / "r1.db") as r1:
        async with running_relay(r2_db) as r2:
            await pair(w, b, [r1.url, r2.url])
            await talk(w, b, 1)
            assert [lk.url for lk in w.channel("b").links if lk.outbound] == [r2.url]
            await b.send("w", "to be receipted")
            await w.sync()  # w's receipt for it waits in b's mailbox on r2
            unread = await w.send("b", "stored on r2, unread")
            assert unread.stored_on == (r2.url,)
            port = r2.port
        b.set_setting(HEAL_AFTER_SETTING, "0")
        for _ in range(3):
            await b.sync()  # r2 is down: b takes a mailbox on r1 and tells w
            await w.sync()
        assert r1.url in [lk.url for lk in w.channel("b").links if lk.outbound]
        await w.send("b", "after b's move")
        await b.sync()  # read on r1 and receipted
        await w.sync()
        for path in tmp_path.glob("r2.db*"):
            path.unlink()  # r2 comes back without its disk
        async with running_relay(r2_db, port=port):
            for _ in range(4):
                await b.sync()
                await w.sync()
    assert sorted(e.text for e in b.inbox()) == ["after b's move", "stored on r2, unread", "w0"]
    # w's receipt, kept although a later note was receipted (read on r1, not r2): no gap.
    assert b.status("w")[0].gaps == ()

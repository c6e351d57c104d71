"""Two real principals through real relays (in-process servers on 127.0.0.1, SQLite files)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.errors import (
    ChannelNotFound,
    ClientError,
    IdentityChanged,
    InviteRefused,
    StateCorrupted,
    WrongPassphrase,
)
from backchannel.client.exchange import HEAL_AFTER_SETTING
from backchannel.client.records import ChannelRecord
from backchannel.client.transport import RelayClient
from backchannel.protocol.envelope import Envelope
from backchannel.relay.limits import RelayLimits

from .conftest import FAST_KDF, MakePrincipal, pair, running_relay


async def test_pair_talk_both_ways_with_receipts(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("washington"), make_principal("beijing")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        assert [c.name for c in w.channels()] == ["beijing"]
        assert [c.name for c in b.channels()] == ["washington"]
        sent = await w.send("beijing", "Red lines should be stated plainly.")
        assert sent.stored_on == (relay.url,) and sent.queued_for == ()
        await b.sync()
        assert [e.text for e in b.inbox("washington")] == ["Red lines should be stated plainly."]
        await b.read("washington")
        await b.send("washington", "Understood.")
        await w.sync()
        (status,) = w.status("beijing")
        assert (status.sent, status.delivered, status.read, status.received) == (1, 1, 1, 1)
        assert status.gaps == () and status.rejected == 0 and status.queued == 0


async def test_safety_numbers_match_on_both_sides(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
    assert w.safety_number("b")[:2] == b.safety_number("w")[:2]
    assert w.safety_number("b")[2] is False
    w.confirm_verified("b")
    assert w.safety_number("b")[2] is True


async def test_message_sent_while_receiver_offline_arrives_later(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.send("b", "while you were away")
    async with running_relay(tmp_path / "relay.db", port=relay.port):
        report = await b.sync()
    assert report.received >= 1
    assert [e.text for e in b.inbox()] == ["while you were away"]


async def test_send_with_no_relay_is_queued_then_delivered(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        port = relay.port
    result = await w.send("b", "queued note")
    assert result.stored_on == () and result.queued_for == (relay.url,)
    (status,) = w.status("b")
    assert status.queued == 1
    # The outbox survives the client closing and opening again.
    home = w._store.path.parent
    w.close()
    w = Principal.open(home, "passphrase")
    async with running_relay(tmp_path / "relay.db", port=port):
        await w.sync()
        await b.sync()
    assert [e.text for e in b.inbox()] == ["queued note"]
    assert w.status("b")[0].queued == 0


async def test_two_relays_one_down_then_back_catches_up(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "r1.db") as r1, running_relay(tmp_path / "r2.db") as r2:
        b.set_setting(HEAL_AFTER_SETTING, "0")  # move at once when its relays are down
        await pair(w, b, [r1.url, r2.url])
        port2 = r2.port
        await r2.stop()
        # b's mailbox is on relay 2 only (the directions are split: `client.placement`).
        sent = await w.send("b", "over one relay")
        assert sent.stored_on == () and sent.queued_for == (r2.url,)
        report = await b.sync()  # b's relays are all down: it takes a mailbox on relay 1
        assert r2.url in report.relays_down and report.reprovisioned == [f"w {r1.url}"]
        await w.sync()  # follows the move: the queued note goes to relay 1 as well
        await b.sync()
        assert [e.text for e in b.inbox()] == ["over one relay"]
        async with running_relay(tmp_path / "r2.db", port=port2):
            await w.sync()  # the queued copy reaches relay 2
            report = await b.sync()  # the second copy is recognised, not shown twice
        assert report.duplicates >= 1
        assert [e.text for e in b.inbox()] == ["over one relay"]


async def test_duplicated_reordered_and_tampered_envelopes(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        # Capture three envelopes from w's outbox before they are sent, then inject them
        # at the relay in another order, duplicated, and one tampered.
        channel: ChannelRecord = w.channel("b")
        link = channel.links[0]
        assert link.outbound is not None
        for text in ("first", "second", "third"):
            w.queue("b", text)  # into the outbox, not yet sent
        rows = w._store.db.execute("SELECT envelope FROM outbox ORDER BY id").fetchall()
        envelopes = [bytes(r[0]) for r in rows]
        w._store.db.execute("DELETE FROM outbox")
        tampered = bytearray(envelopes[1])
        tampered[500] ^= 0x01
        token = bytes.fromhex(link.outbound.send_token)
        mailbox = Envelope.decode(envelopes[0]).mailbox_id
        async with await RelayClient.connect(relay.url) as client:
            for raw in (
                envelopes[2],
                bytes(tampered),
                envelopes[0],
                envelopes[2],
                envelopes[1],
                envelopes[0],
            ):
                await client.send(mailbox, token, raw)
        report = await b.sync()
    assert report.rejected == 1
    assert report.duplicates == 2
    texts = [e.text for e in b.inbox()]
    assert sorted(texts) == ["first", "second", "third"]
    assert [e.seq for e in b.inbox()] == sorted(e.seq for e in b.inbox())
    assert b.status("w")[0].rejected == 1


async def test_gap_is_visible_until_filled(tmp_path: Path, make_principal: MakePrincipal) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        for text in ("one", "two", "three"):
            w.queue("b", text)
        rows = w._store.db.execute("SELECT id FROM outbox ORDER BY id").fetchall()
        held = rows[1][0]
        envelope = w._store.db.execute("SELECT * FROM outbox WHERE id = ?", (held,)).fetchone()
        w._store.db.execute("DELETE FROM outbox WHERE id = ?", (held,))
        await w.flush()
        await b.sync()
        (status,) = b.status("w")
        assert len(status.gaps) == 1
        marks = ", ".join("?" * len(envelope))
        w._store.db.execute(f"INSERT INTO outbox VALUES ({marks})", envelope)
        await w.flush()
        await b.sync()
        assert b.status("w")[0].gaps == ()
        assert [e.text for e in b.inbox()] == ["one", "two", "three"]


async def test_invite_reuse_expiry_and_tampering_are_refused(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b, c = make_principal("w"), make_principal("b"), make_principal("c")
    async with running_relay(tmp_path / "relay.db") as relay:
        code = await w.invite([relay.url])
        with pytest.raises(InviteRefused, match="own invite"):
            await w.accept(code)
        await b.accept(code)
        with pytest.raises(InviteRefused, match="already used"):
            await b.accept(code)
        await w.sync()
        # A second joiner with the same code: the one-time prekey is gone.
        await c.accept(code)
        report = await w.sync()
        assert report.new_channels == [] and len(w.channels()) == 1
        middle = len(code) // 2
        flipped = code[:middle] + ("A" if code[middle] != "A" else "B") + code[middle + 1 :]
        with pytest.raises(InviteRefused):
            await c.accept(flipped)
        with pytest.raises(InviteRefused, match="not an invite"):
            await c.accept("hello")
        expired = await w.invite([relay.url], ttl_ms=-1)
        with pytest.raises(InviteRefused, match="expired"):
            await c.accept(expired)


async def test_wrong_passphrase_and_corrupted_state_leave_the_file_alone(tmp_path: Path) -> None:
    Principal.create(tmp_path / "p", "p", "right", kdf=FAST_KDF).close()
    state = tmp_path / "p" / "state.db"
    before = state.read_bytes()
    with pytest.raises(WrongPassphrase):
        Principal.open(tmp_path / "p", "wrong")
    assert state.read_bytes() == before
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    state.write_bytes(b"garbage" * 100)
    with pytest.raises(StateCorrupted):
        Principal.open(tmp_path / "p", "right")
    assert state.read_bytes() == b"garbage" * 100


async def test_unknown_channel_is_a_clear_error(make_principal: MakePrincipal) -> None:
    p = make_principal("p")
    with pytest.raises(ChannelNotFound, match="no channel 'nowhere'"):
        await p.send("nowhere", "x")


async def test_stored_records_do_not_contain_plaintext(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("washington"), make_principal("beijing")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.send("beijing", "MARKER-" + os.urandom(4).hex())
        await b.sync()
    marker = next(e.text for e in b.inbox()).encode()
    for principal in (w, b):
        principal.close()
        data = b"".join(p.read_bytes() for p in principal._store.path.parent.iterdir())
        assert marker not in data
        assert b"washington" not in data and b"beijing" not in data


async def test_relay_restart_while_messages_are_in_flight(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    count = 1500
    limits = RelayLimits(mailbox_max_envelopes=10 * count)
    async with running_relay(tmp_path / "relay.db", limits=limits) as relay:
        await pair(w, b, [relay.url])
        port = relay.port
        for i in range(count):
            w.queue("b", f"in flight {i}")
        flushing = asyncio.create_task(w.flush())
        # Stop the relay as soon as part of the outbox has been stored.
        while w.status("b")[0].queued == count and not flushing.done():
            await asyncio.sleep(0.001)
    stored_before_restart = await flushing
    assert 0 < stored_before_restart < count  # the relay really stopped mid-flush
    async with running_relay(tmp_path / "relay.db", port=port, limits=limits):
        await w.sync()
        await b.sync()
    texts = [e.text for e in b.inbox()]
    assert sorted(texts) == sorted(f"in flight {i}" for i in range(count))
    assert w.status("b")[0].queued == 0


async def test_new_identity_under_a_known_name_blocks_sending_until_verified(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    impostor = Principal.create(tmp_path / "other-b", "b", "passphrase", kdf=FAST_KDF)
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await pair(w, b, [relay.url])  # the same key pairing again: no alarm
        await pair(w, impostor, [relay.url])
        names = [c.name for c in w.channels()]
        assert names == ["b", "b~2", "b~3"]
        flags = {s.name: s.identity_changed for s in w.status()}
        assert flags == {"b": False, "b~2": False, "b~3": True}
        with pytest.raises(IdentityChanged, match="safety number"):
            await w.send("b~3", "are you who you were?")
        w.confirm_verified("b~3")
        assert (await w.send("b~3", "verified now")).stored_on == (relay.url,)


async def test_status_shows_each_relays_reachability(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "r1.db") as r1, running_relay(tmp_path / "r2.db") as r2:
        await pair(w, b, [r1.url, r2.url])
        await w.sync()
        assert [h.up for h in w.status("b")[0].relay_health] == [True, True]
        await r2.stop()
        # w only writes to relay 2 (b's share of the relays): a sync finds it down when it
        # has something to send there.
        w.queue("b", "to relay 2")
        await w.sync()
        health = w.status("b")[0].relay_health
    assert [h.up for h in health] == [True, False]
    assert health[1].last_error


async def test_queue_many_is_one_transaction_in_order(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        ids = w.queue_many("b", ["one", "two", "three"])
        assert len(set(ids)) == 3
        with pytest.raises(ClientError):  # one note too large: none of them is queued
            w.queue_many("b", ["fine", "x" * 70_000])
        assert w.status("b")[0].queued == 3
        await w.flush()
        await b.sync()
    assert [e.text for e in b.inbox()] == ["one", "two", "three"]


async def test_invite_mailboxes_are_retired_so_a_spent_code_is_refused(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b, c = make_principal("w"), make_principal("b"), make_principal("c")
    async with running_relay(tmp_path / "r1.db") as r1, running_relay(tmp_path / "r2.db") as r2:
        code = await w.invite([r1.url, r2.url])
        await b.accept(code)
        await w.sync()  # the channel exists; w tells b its private mailbox (on r1 only)
        await b.sync()  # follows the move (b's own mailbox is on r2: `placement`)
        port2 = r2.port
        await r2.stop()
        sent = await b.send("w", "sent after the move")
        assert sent.stored_on == (r1.url,)
        await w.sync()  # b writes to the new mailbox: r1's invite mailbox is retired
        assert [link.url for link in w.channel("b").retiring] == [r2.url]
        async with running_relay(tmp_path / "r2.db", port=port2):
            await b.sync()
            await w.sync()
            assert w.channel("b").retiring == []
            with pytest.raises(InviteRefused, match="already used"):
                await c.accept(code)
        assert c.channels() == []
    assert [e.text for e in w.inbox()] == ["sent after the move"]
    await_ok = await b.send("w", "after the move")
    assert await_ok.queued_for  # relays are down now: queued, not lost


async def test_watch_records_relay_reachability_as_it_changes(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "r1.db") as r1, running_relay(tmp_path / "r2.db") as r2:
        await pair(w, b, [r1.url, r2.url])
        stop = asyncio.Event()
        watching = asyncio.create_task(w.watch(stop, duty_interval=0.1, reconnect_after=60))
        for _ in range(100):  # until both relays are recorded up
            await asyncio.sleep(0.05)
            if all(h.up for h in w.status("b")[0].relay_health):
                break
        assert all(h.up for h in w.status("b")[0].relay_health)
        await r2.stop()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if not w.status("b")[0].relay_health[1].up:
                break
        health = w.status("b")[0].relay_health
        stop.set()
        await watching
    assert [h.up for h in health] == [True, False]


def _take_outbox(sender: Principal, channel: str) -> tuple[list[bytes], bytes, bytes]:
    """Empty the sender's outbox and return its envelopes (in order), the send token and
    the mailbox, so a test can hand them to the relay in any order it likes."""
    rows = sender._store.db.execute("SELECT envelope FROM outbox ORDER BY id").fetchall()
    sender._store.db.execute("DELETE FROM outbox")
    outbound = sender.channel(channel).links[0].outbound
    assert outbound is not None
    envelopes = [bytes(row[0]) for row in rows]
    return envelopes, bytes.fromhex(outbound.send_token), Envelope.decode(envelopes[0]).mailbox_id


async def test_a_message_too_far_ahead_waits_on_the_relay_until_the_gap_fills(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    from backchannel.protocol.e2e.ratchet import MAX_SKIP

    w, b = make_principal("w"), make_principal("b")
    count = MAX_SKIP + 100
    limits = RelayLimits(mailbox_max_envelopes=10 * count)
    async with running_relay(tmp_path / "relay.db", limits=limits) as relay:
        await pair(w, b, [relay.url])
        w.queue_many("b", [f"n{i}" for i in range(count)])
        envelopes, token, mailbox = _take_outbox(w, "b")
        async with await RelayClient.connect(relay.url) as client:
            await client.send(mailbox, token, envelopes[-1])  # the last one, alone
            first = await b.sync()
            assert first.deferred == 1 and first.rejected == 0 and b.inbox() == []
            for raw in envelopes[:-1]:
                await client.send(mailbox, token, raw)
        await b.sync()  # fills the gap; the deferred one is still too far on its first try
        await b.sync()  # and now it decrypts
    texts = [e.text for e in b.inbox()]
    assert texts == [f"n{i}" for i in range(count)]
    assert b.status("w")[0].rejected == 0


async def test_watch_fetches_a_deferred_message_once_its_gap_has_filled(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    from backchannel.protocol.e2e.ratchet import MAX_SKIP

    w, b = make_principal("w"), make_principal("b")
    count = MAX_SKIP + 50
    limits = RelayLimits(mailbox_max_envelopes=10 * count)
    async with running_relay(tmp_path / "relay.db", limits=limits) as relay:
        await pair(w, b, [relay.url])
        w.queue_many("b", [f"n{i}" for i in range(count)])
        envelopes, token, mailbox = _take_outbox(w, "b")
        stop = asyncio.Event()
        watching = asyncio.create_task(b.watch(stop, duty_interval=0.1))
        async with await RelayClient.connect(relay.url) as client:
            await client.send(mailbox, token, envelopes[-1])
            await asyncio.sleep(0.5)  # watch sees it, and defers it
            for raw in envelopes[:-1]:
                await client.send(mailbox, token, raw)
        # Patience, not a speed test: on a loaded machine 1,050 messages take a while.
        for _ in range(1200):
            await asyncio.sleep(0.05)
            if len(b.inbox()) == count:
                break
        stop.set()
        report = await watching
    assert report.deferred >= 1
    assert [e.text for e in b.inbox()] == [f"n{i}" for i in range(count)]

"""The decoded channel records `ChannelRepository` keeps: a read hands out what is stored,
after our own writes, a rolled-back one, and another connection's."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client.errors import StaleRecord
from backchannel.client.keystore import Keystore
from backchannel.client.records import ChannelRecord, Link, Mailbox
from backchannel.client.state.channels import ChannelRepository

from .conftest import FAST_KDF, MakePrincipal, pair, running_relay


def _channel() -> ChannelRecord:
    return ChannelRecord(
        "ab" * 16, "bob", "cd" * 32, "00", [Link("ws://r/", Mailbox("01", "02", "03"))],
        created_at_ms=1, role="inviter",
    )  # fmt: skip


def _store(tmp_path: Path) -> tuple[Keystore, ChannelRepository]:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    channels = ChannelRepository(store)
    with store.transaction():
        channels.save(_channel())
    return store, channels


def test_a_changed_copy_leaves_what_is_stored_unchanged(tmp_path: Path) -> None:
    _, channels = _store(tmp_path)
    first = channels.get("ab" * 16)
    first.name = "mallory"
    assert first.links[0].inbound is not None
    first.links[0].inbound.send_token = "ff"
    first.links.append(Link("ws://other/", None))
    again = channels.all()[0]
    assert again.name == "bob" and again.links == _channel().links


def test_a_rolled_back_write_is_not_read_back(tmp_path: Path) -> None:
    store, channels = _store(tmp_path)
    with pytest.raises(RuntimeError), store.transaction():
        channel = channels.get("ab" * 16)
        channel.rejected = 7
        channels.save(channel)
        assert channels.get("ab" * 16).rejected == 7
        raise RuntimeError("rolled back")
    stored = channels.get("ab" * 16)
    assert stored.rejected == 0 and stored.version == 1
    with store.transaction():  # the same version is written again, with another value
        stored.rejected = 3
        channels.save(stored)
    assert [c.rejected for c in channels.all()] == [3]


def test_another_connections_writes_are_read_and_refuse_a_stale_save(tmp_path: Path) -> None:
    store, channels = _store(tmp_path)
    clone = store.clone()
    other = ChannelRepository(clone)
    mine = channels.get("ab" * 16)
    with clone.transaction():
        theirs = other.get("ab" * 16)
        theirs.verified = True
        other.save(theirs)
    assert channels.get("ab" * 16).verified and channels.all()[0].version == 2
    with pytest.raises(StaleRecord), store.transaction():
        channels.save(mine)  # read before the other connection wrote: refused
    with clone.transaction():
        other.delete("ab" * 16)
    assert channels.all() == []


def _writes(store: Keystore) -> list[str]:
    """Every statement that writes a channel record, as the connection runs it."""
    seen: list[str] = []
    store.db.set_trace_callback(
        lambda sql: seen.append(sql) if sql.startswith(("UPDATE records", "INSERT INTO records"))
        else None)
    return seen


def test_saves_in_a_block_are_written_once_at_the_versions_they_had(tmp_path: Path) -> None:
    store, channels = _store(tmp_path)
    reader = ChannelRepository(store.clone())
    writes = _writes(store)
    with store.transaction(), channels.saved_once():
        for count in (1, 2, 3):
            channel = channels.get("ab" * 16)
            channel.rejected = count
            channels.save(channel)
            assert channel.version == 1 + count
        assert channels.get("ab" * 16).rejected == 3  # reads in the block see the saves
        assert [c.rejected for c in channels.all()] == [3]
        assert writes == []  # nothing written yet
        new = ChannelRecord("cd" * 16, "carol", "ef" * 32, "00", [], created_at_ms=2,
                            role="joiner")
        channels.save(new)
        assert [c.name for c in channels.all()] == ["bob", "carol"]
    assert len(writes) == 2  # one write per channel
    stored = reader.get("ab" * 16)  # another connection reads what the block left
    assert (stored.rejected, stored.version) == (3, 4)
    assert reader.get("cd" * 16).version == 1
    with store.transaction():  # and the next save outside goes on from there
        channels.save(stored)
    assert reader.get("ab" * 16).version == 5


def test_a_block_refuses_a_stale_copy_and_writes_nothing_when_it_raises(
        tmp_path: Path) -> None:
    store, channels = _store(tmp_path)
    with store.transaction(), channels.saved_once():
        early = channels.get("ab" * 16)
        later = channels.get("ab" * 16)
        later.verified = True
        channels.save(later)
        early.rejected = 9
        with pytest.raises(StaleRecord):
            channels.save(early)  # read before the save above: refused, as if written
    assert channels.get("ab" * 16).verified and channels.get("ab" * 16).rejected == 0
    with pytest.raises(RuntimeError), store.transaction(), channels.saved_once():
        channel = channels.get("ab" * 16)
        channel.name = "mallory"
        channels.save(channel)
        raise RuntimeError("rolled back")
    kept = channels.get("ab" * 16)
    assert (kept.name, kept.version) == ("bob", 2)
    with pytest.raises(StaleRecord), channels.saved_once():  # outside a transaction
        channels.save(kept)


async def test_a_look_again_reads_only_the_messages_stored_since(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """`messages_after` (the watch's observer looks every second): what is new since the
    last position, and everything again once the row at that position is gone."""
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        cid = w.channel("b").channel_id
        for text in ("one", "two"):
            await b.send("w", text)
        await w.sync()
        first, at, everything = w.messages_after(cid, None)
        assert everything and first == w.messages("b")
        assert w.messages_after(cid, at) == ([], at, False)
        await b.send("w", "three")
        await w.sync()
        new, at, everything = w.messages_after(cid, at)
        theirs = [m.message_id for m in new if m.direction == "in"]
        last = w.inbox("b")[-1]
        assert not everything and theirs == [last.message_id] and last.text == "three"
        assert all(m.direction == "out" for m in new if m.message_id != last.message_id)
        with w._store.transaction():
            w._state.messages.delete_channel(cid)  # the rows go; new ones take their ords
        await b.send("w", "four")
        await w.sync()
        again, _, everything = w.messages_after(cid, at)
        assert everything and again == w.messages("b") and again

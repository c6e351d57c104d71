"""The listings a `Keystore` keeps (`all_sealed` outside a transaction) and the channels
`ChannelRepository.find` picks from them: always what a fresh read of the file returns,
whichever handle wrote, committed or rolled back."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.client.errors import ChannelNotFound
from backchannel.client.keystore import Keystore
from backchannel.client.records import ChannelRecord, Link, Mailbox
from backchannel.client.state.channels import ChannelRepository

from .conftest import FAST_KDF

KIND = "channel"


def fresh(store: Keystore, kind: str = KIND) -> tuple[tuple[bytes, bytes, int], ...]:
    """The records of `kind` as the file holds them, read past every cache."""
    rows = store.db.execute(
        "SELECT key, record, version FROM records WHERE kind = ? ORDER BY rowid", (kind,)
    ).fetchall()
    return tuple((bytes(k), bytes(r), int(v)) for k, r, v in rows)


def _channel(number: int, name: str) -> ChannelRecord:
    return ChannelRecord(
        f"{number:032x}", name, "cd" * 32, "00", [Link("ws://r/", Mailbox("01", "02", "03"))],
        created_at_ms=number, role="inviter",
    )  # fmt: skip


# One step of one of two handles on the same file: (handle, what it does, commit). A
# step is a read, a write outside a transaction, or one transaction of a few writes.
_WRITE = st.tuples(st.sampled_from(["write", "put", "delete"]), st.integers(0, 3))
_STEP = st.tuples(
    st.sampled_from([0, 1]),
    st.one_of(
        st.just("read"),
        st.tuples(st.sampled_from(["put now", "delete now"]), st.integers(0, 3)),
        st.lists(_WRITE, min_size=1, max_size=3),
    ),
    st.booleans(),
)


def _key(number: int) -> bytes:
    return number.to_bytes(2, "big")


def _write(store: Keystore, action: str, number: int) -> None:
    key = _key(number)
    if action == "write":
        sealed = store.seal(KIND, key, os.urandom(8))
        store.put_sealed_versioned(KIND, key, sealed, store.version_of(KIND, key))
    elif action.startswith("put"):
        store.put(KIND, key, os.urandom(8))
    else:
        store.delete(KIND, key)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_STEP, min_size=1, max_size=25))
def test_a_kept_listing_is_what_the_file_holds(steps: list[tuple[int, object, bool]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        first = Keystore.create(Path(folder) / "home", "pw", FAST_KDF)
        stores = [first, first.clone()]
        try:
            for handle, what, commit in steps:
                store = stores[handle]
                if what == "read":
                    assert store.all_sealed(KIND) == fresh(store)
                    continue
                if isinstance(what, tuple):  # outside a transaction (SQLite's autocommit)
                    _write(store, *what)
                else:
                    assert isinstance(what, list)
                    try:
                        with store.transaction():
                            # Read inside too, as the writers do: the uncommitted state
                            # shows, and a read kept from an earlier transaction does not.
                            assert store.all_sealed(KIND) == fresh(store)
                            for action, number in what:
                                _write(store, action, number)
                                assert store.all_sealed(KIND) == fresh(store)
                                assert store.all_sealed(KIND) == fresh(store)  # kept
                            if not commit:
                                raise _RolledBack
                    except _RolledBack:
                        pass
                for each in stores:
                    assert each.all_sealed(KIND) == fresh(each)
        finally:
            for store in stores:
                store.close()


class _RolledBack(Exception):
    pass


def test_a_listing_kept_before_another_connection_wrote_is_not_carried(tmp_path: Path) -> None:
    """Our transaction begins after another connection committed: what we wrote is applied
    to the file as it is then, not to the listing we kept from before."""
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    other = store.clone()
    with store.transaction():
        store.put_sealed_versioned(KIND, b"a", store.seal(KIND, b"a", b"1"), 0)
    assert len(store.all_sealed(KIND)) == 1  # kept
    with other.transaction():
        other.put_sealed_versioned(KIND, b"b", other.seal(KIND, b"b", b"2"), 0)
    with store.transaction():
        store.put_sealed_versioned(KIND, b"a", store.seal(KIND, b"a", b"3"), 1)
    assert [k for k, _, _ in store.all_sealed(KIND)] == [b"a", b"b"]
    assert store.all_sealed(KIND) == fresh(store)


def test_a_commit_of_our_own_carries_the_listing_without_reading_it(tmp_path: Path) -> None:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    for key in (b"a", b"b"):
        with store.transaction():
            store.put_sealed_versioned(KIND, key, store.seal(KIND, key, b"0"), 0)
    store.all_sealed(KIND)
    reads: list[str] = []
    store.db.set_trace_callback(reads.append)
    with store.transaction():
        store.put_sealed_versioned(KIND, b"a", store.seal(KIND, b"a", b"1"), 1)
        store.put_sealed_versioned(KIND, b"c", store.seal(KIND, b"c", b"2"), 0)
        store.delete(KIND, b"b")
    listing = store.all_sealed(KIND)
    store.db.set_trace_callback(None)
    assert not [sql for sql in reads if sql.startswith("SELECT key, record")]
    assert listing == fresh(store) and [k for k, _, _ in listing] == [b"a", b"c"]


def test_a_new_passphrase_drops_the_kept_listings(tmp_path: Path) -> None:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    with store.transaction():
        store.put_sealed_versioned(KIND, b"a", store.seal(KIND, b"a", b"x"), 0)
    before = store.all_sealed(KIND)
    store.change_passphrase("another one", FAST_KDF)
    after = store.all_sealed(KIND)
    assert after != before and after == fresh(store)
    assert store.unseal(KIND, b"a", after[0][1]) == b"x"


@pytest.fixture
def channels(tmp_path: Path) -> tuple[Keystore, ChannelRepository]:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    repository = ChannelRepository(store)
    with store.transaction():
        for number, name in zip(itertools.count(1), ["bob", "carol", "dave"], strict=False):
            repository.save(_channel(number, name))
    return store, repository


def test_find_hands_out_a_copy_at_its_stored_version(
    channels: tuple[Keystore, ChannelRepository],
) -> None:
    store, repository = channels
    found = repository.find("carol")
    assert (found.channel_id, found.version) == (f"{2:032x}", 1)
    found.name = "mallory"
    found.links.clear()
    again = repository.find("carol")
    assert again.name == "carol" and again.links == _channel(2, "carol").links
    with store.transaction():
        again.verified = True
        repository.save(again)
    assert repository.find(f"{2:032x}").verified and repository.find("carol").version == 2


def test_find_sees_another_connections_rename_and_delete(
    channels: tuple[Keystore, ChannelRepository],
) -> None:
    store, repository = channels
    assert repository.find("bob").name == "bob"
    other = ChannelRepository(store.clone())
    with other._store.transaction():
        bob = other.get(f"{1:032x}")
        bob.name = "robert"
        other.save(bob)
        other.delete(f"{3:032x}")
    assert repository.find("robert").channel_id == f"{1:032x}"
    with pytest.raises(ChannelNotFound, match=r"no channel 'bob' \(channels: carol, robert\)"):
        repository.find("bob")
    with pytest.raises(ChannelNotFound):
        repository.find("dave")


def test_find_by_prefix_and_its_refusals(channels: tuple[Keystore, ChannelRepository]) -> None:
    store, repository = channels
    odd = _channel(4, "erin")
    odd.channel_id = "feedbeef" + "0" * 24
    with store.transaction():
        repository.save(odd)
    assert repository.find("feedbe").name == "erin"
    with pytest.raises(ChannelNotFound, match="names several channels"):
        repository.find("000000")  # the three others' ids all start so
    with pytest.raises(ChannelNotFound, match="no channel 'feedb'"):
        repository.find("feedb")  # under 6 characters: no prefix search


def test_a_record_deleted_and_written_again_in_one_transaction_moves_last(
    tmp_path: Path,
) -> None:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    for number in (0, 1):
        with store.transaction():
            _write(store, "write", number)
    store.all_sealed(KIND)
    with store.transaction():
        _write(store, "delete", 0)
        _write(store, "write", 0)  # a new row: after the other one
    assert [k for k, _, _ in store.all_sealed(KIND)] == [_key(1), _key(0)]
    assert store.all_sealed(KIND) == fresh(store)


def test_owning_finds_the_channel_of_a_mailbox_and_hands_out_a_copy(
    channels: tuple[Keystore, ChannelRepository],
) -> None:
    store, repository = channels
    bob = repository.owning("01")  # every channel here has inbound mailbox "01"
    assert bob is not None and bob.name == "bob" and bob.version == 1
    bob.peer_moved = True
    bob.links[0].inbound = None
    again = repository.owning("01")
    assert again is not None and again.name == "bob" and not again.peer_moved
    assert again.links[0].inbound is not None
    assert repository.owning("99") is None
    # Retiring links count too.
    dave = repository.find("dave")
    dave.links[0].inbound = Mailbox("77", "02", "03")
    dave.retiring = [Link("ws://r/", Mailbox("88", "02", "03"))]
    with store.transaction():
        repository.save(dave)
    assert [repository.owning(m).name for m in ("77", "88")] == ["dave", "dave"]  # type: ignore[union-attr]


def test_owning_inside_saved_once_sees_what_was_saved_there(
    channels: tuple[Keystore, ChannelRepository],
) -> None:
    store, repository = channels
    with store.transaction(), repository.saved_once():
        carol = repository.get(f"{2:032x}")
        carol.links[0].inbound = Mailbox("55", "02", "03")
        repository.save(carol)
        found = repository.owning("55")
        assert found is not None and found.name == "carol" and found.version == 2
        assert [c.name for c in repository.shared()] == ["bob", "carol", "dave"]
        fresh_one = _channel(9, "frank")
        fresh_one.links[0].inbound = Mailbox("66", "02", "03")
        repository.save(fresh_one)
        assert repository.owning("66") is not None  # saved, not written yet
    assert repository.owning("55").version == 2  # type: ignore[union-attr]
    assert repository.find("frank").version == 1


def test_inside_a_transaction_a_listing_is_read_again_only_after_a_write_of_its_kind(
    tmp_path: Path,
) -> None:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    with store.transaction():
        store.put_sealed_versioned(KIND, b"a", store.seal(KIND, b"a", b"0"), 0)
    reads: list[str] = []
    with store.transaction():
        store.db.set_trace_callback(reads.append)
        first = store.all_sealed(KIND)
        assert store.all_sealed(KIND) is first
        store.put("invite", b"x", b"1")  # another kind: the channels' listing stands
        assert store.all_sealed(KIND) is first
        store.put_sealed_versioned(KIND, b"b", store.seal(KIND, b"b", b"2"), 0)
        assert [k for k, _, _ in store.all_sealed(KIND)] == [b"a", b"b"]
        store.db.set_trace_callback(None)
    listings = [sql for sql in reads if sql.startswith("SELECT key, record")]
    assert len(listings) == 2


def test_inside_saved_once_the_listing_puts_in_what_was_saved_and_keeps_the_order(
    channels: tuple[Keystore, ChannelRepository],
) -> None:
    """Per arrival the listing is the kept one with the saved channels put in: in place
    while their order holds, sorted again when one moved or is new, read again after a
    delete; and what the block wrote is what a fresh handle reads."""
    store, repository = channels

    def listed() -> list[tuple[str, int]]:
        return [(c.name, c.created_at_ms) for c in repository.shared()]

    with store.transaction(), repository.saved_once():
        carol = repository.get(f"{2:032x}")
        carol.retiring = [Link("ws://r2/", Mailbox("99", "02", "03"))]
        repository.save(carol)
        assert listed() == [("bob", 1), ("carol", 2), ("dave", 3)]
        assert repository.owning("99").name == "carol"  # type: ignore[union-attr]
        carol = repository.get(f"{2:032x}")
        carol.created_at_ms = 9  # moved: now last
        repository.save(carol)
        assert listed() == [("bob", 1), ("dave", 3), ("carol", 9)]
        repository.save(_first(0, "erin"))  # new, and the oldest
        assert listed() == [("erin", 0), ("bob", 1), ("dave", 3), ("carol", 9)]
        repository.delete(f"{3:032x}")
        assert listed() == [("erin", 0), ("bob", 1), ("carol", 9)]
    fresh = ChannelRepository(store)
    assert [(c.name, c.created_at_ms, c.version) for c in fresh.all()] == [
        (c.name, c.created_at_ms, c.version) for c in repository.all()]
    assert listed() == [("erin", 0), ("bob", 1), ("carol", 9)]


def _first(created_at_ms: int, name: str) -> ChannelRecord:
    record = _channel(50, name)
    record.created_at_ms = created_at_ms
    return record

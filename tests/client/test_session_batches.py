"""A batch of arrivals encodes each channel's session once, when the batch writes the
channel (`ClientState.keep_session` inside `ChannelRepository.saved_once`): what is
stored is the session after the last envelope, a batch that rolls back leaves the stored
one as it was, and a copy of a channel from a batch that has ended is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backchannel.client.engine import Principal, SyncReport
from backchannel.client.errors import StaleRecord
from backchannel.client.receiving import Receiver
from backchannel.client.records import ChannelRecord
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.envelope import Envelope

from .conftest import FAST_KDF, MakePrincipal, flushed_notes, pair, running_relay


def _count_encodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    encode = Session.encode

    def counted(self: Session) -> bytes:
        calls[0] += 1
        return encode(self)

    monkeypatch.setattr(Session, "encode", counted)
    return calls


async def test_a_batch_stores_the_session_after_its_last_envelope_encoded_once(
    tmp_path: Path, make_principal: MakePrincipal, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await flushed_notes(w, "b", 30)
        encodes = _count_encodes(monkeypatch)
        report = await b.sync()
        assert report.received == 30
        # One batch of 30 notes, then the receipt for them sealed in the next commit
        # (`sync`): two encodes, where each envelope used to encode its own (31).
        assert encodes[0] == 2
        monkeypatch.undo()
        b.close()
        # What the file holds goes on both ways: the session stored is the last one.
        again = Principal.open(tmp_path / "b", "passphrase")
        try:
            again.queue("w", "after the batch")
            await again.sync()
            await w.sync()
            w.queue("b", "and back")
            await w.sync()
            await again.sync()
            assert [e.text for e in again.inbox()][-1] == "and back"
            assert again.status("w")[0].rejected == 0
        finally:
            again.close()
    assert [e.text for e in w.inbox()] == ["after the batch"]


async def test_a_batch_that_rolls_back_leaves_the_stored_session_and_the_next_one_works(
    tmp_path: Path, make_principal: MakePrincipal, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await flushed_notes(w, "b", 10)
        stored = b._state.channels.get(b._state.channel("w").channel_id).session

        store_incoming = Receiver.store_incoming
        calls = [0]

        def fail_at_the_fifth(self: Receiver, *args: Any) -> Any:
            calls[0] += 1
            if calls[0] == 5:
                raise RuntimeError("the disk is full")
            return store_incoming(self, *args)

        # Inside the batch, after four envelopes moved the session kept in it on.
        monkeypatch.setattr(Receiver, "store_incoming", fail_at_the_fifth)
        with pytest.raises(RuntimeError):
            await b.sync()
        monkeypatch.undo()
        assert b._state.channels.get(b._state.channel("w").channel_id).session == stored
        assert b.inbox() == []
        report = await b.sync()  # not acked, so delivered again: and now taken in
        assert report.received == 10 and report.rejected == 0
    assert [e.text for e in b.inbox()] == [f"n{i}" for i in range(10)]


async def test_a_batch_with_envelopes_that_fail_to_open_keeps_the_good_ones(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """A copy and a forgery between good envelopes (each `open` fails and changes nothing)
    leave the session kept in the batch to the envelopes that follow."""
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        w.queue_many("b", ["one", "two", "three"])
        rows = w._state.store.db.execute("SELECT envelope FROM outbox ORDER BY id").fetchall()
        envelopes = [bytes(row[0]) for row in rows]
        await w.flush()
        # Process them as one batch does, with the copy and the forgery between them.
        first, second = Envelope.decode(envelopes[0]), Envelope.decode(envelopes[1])
        # The second's body tampered with: its header opens, its body does not.
        forged = Envelope(second.mailbox_id,
                          second.payload[:-1] + bytes([second.payload[-1] ^ 1]))
        state = b._state
        report = SyncReport()
        with state.store.transaction(), state.channels.saved_once():
            for raw in (envelopes[0], envelopes[0], forged.encode(), envelopes[1],
                        envelopes[2]):
                b._receiver.process(first.mailbox_id, raw, report)
        assert report.received == 3 and report.duplicates == 1 and report.rejected == 1
        w.queue("b", "four")
        await w.flush()
        await b.sync()
    assert [e.text for e in b.inbox()] == ["one", "two", "three", "four"]


def test_a_copy_from_a_batch_that_has_ended_is_refused(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    b = make_principal("b")
    state = b._state
    # A channel comes from pairing; a stand-in session is enough for the cache's rules.
    record = ChannelRecord("ab" * 16, "w", "cd" * 32, "00", [], created_at_ms=1, role="inviter")
    session = object.__new__(Session)
    with state.store.transaction(), state.channels.saved_once():
        state.keep_session(record, session)  # type: ignore[arg-type]
        assert state.session(record) is session  # kept in the block, and still there
        assert state.session(record) is session
        state._sessions.pop(record.channel_id)  # the block ends; its marks name nothing
    with pytest.raises(StaleRecord):
        state.session(record)


def test_no_mark_is_ever_written(tmp_path: Path) -> None:
    """A channel saved in a block whose session mark names no kept session is refused at
    the write, and the block rolls back (a bug, never a silent loss of the session)."""
    home = tmp_path / "b"
    b = Principal.create(home, "b", "passphrase", kdf=FAST_KDF)
    state = b._state
    record = ChannelRecord("ab" * 16, "w", "cd" * 32, "00", [], created_at_ms=1, role="inviter")
    session = object.__new__(Session)
    with pytest.raises(StaleRecord), state.store.transaction(), state.channels.saved_once():
        state.keep_session(record, session)  # type: ignore[arg-type]
        state.channels.save(record)
        state._sessions.clear()
    assert state.channels.all() == []
    b.close()

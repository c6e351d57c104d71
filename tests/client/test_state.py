"""The client's state under two handles and after faults: send claims, retiring
mailboxes a relay lost, and the schema migration of older state files."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.errors import HomeReadOnly
from backchannel.client.keystore import STATE_FILE
from backchannel.client.state.escalations import KEEP_UNTIL_RECEIPTED
from backchannel.protocol.envelope import Envelope

from .conftest import MakePrincipal, pair, running_relay

NOTES = 150


def _held_payloads(relay_db: Path) -> list[bytes]:
    with sqlite3.connect(f"file:{relay_db}?mode=ro", uri=True) as db:
        return [
            Envelope.decode(bytes(r[0])).payload for r in db.execute("SELECT body FROM envelopes")
        ]


def _queued(principal: Principal) -> int:
    return sum(s.queued for s in principal.status())


async def test_two_handles_flushing_at_once_offer_each_row_once(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """The agent's loop and a request's worker flush at once: each row goes once."""
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        before = len(_held_payloads(tmp_path / "relay.db"))
        w.queue_many("b", [f"note {i}" for i in range(NOTES)])
        other = w.worker()
        try:
            sent = await asyncio.gather(w.flush(), other.flush(), w.flush())
        finally:
            other.close()
        assert sum(sent) == NOTES and _queued(w) == 0
        held = _held_payloads(tmp_path / "relay.db")
        assert len(held) - before == NOTES
        assert len(held) == len(set(held))  # the relay never got one ciphertext twice
        await b.sync()
        assert sorted(e.text for e in b.inbox("w")) == sorted(f"note {i}" for i in range(NOTES))


def _synchronous(principal: Principal) -> int:
    return int(principal._store.db.execute("PRAGMA synchronous").fetchone()[0])


def test_a_unit_that_need_not_survive_a_power_cut_is_still_atomic(
    make_principal: MakePrincipal,
) -> None:
    """`transaction(durable=False)` drops only its own fsync: it rolls back whole, and
    every unit after it is synced again (FULL is 2, NORMAL 1)."""
    w = make_principal("w")
    store = w._store
    assert _synchronous(w) == 2
    with store.transaction(durable=False):
        assert _synchronous(w) == 1
        store.put("test", b"kept", b"1")
    assert _synchronous(w) == 2 and store.get("test", b"kept") == b"1"
    with pytest.raises(RuntimeError), store.transaction(durable=False):
        store.put("test", b"lost", b"1")
        raise RuntimeError("stopped half way")
    assert _synchronous(w) == 2 and store.get("test", b"lost") is None


async def test_a_flush_syncs_what_the_relay_stored_and_not_its_claims(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """The claim on outbox rows is committed without an fsync; the unit that takes the
    stored rows out of the outbox and marks their messages stored is synced."""
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        w.queue_many("b", [f"note {i}" for i in range(3)])
        statements: list[str] = []
        w._store.db.set_trace_callback(statements.append)
        try:
            assert await w.flush() == 3
        finally:
            w._store.db.set_trace_callback(None)
    mode, units, current = "FULL", [], []
    for statement in statements:
        if statement.startswith("PRAGMA synchronous="):
            mode = statement.removeprefix("PRAGMA synchronous=")
        elif statement == "BEGIN IMMEDIATE":
            current = [mode]
        elif statement == "COMMIT":
            units.append(current)
        elif current:
            current.append(statement)
    # The trace shows statements with their values: a claim sets a time, a release 0.
    claims = [u for u in units if any(re.search(r"SET in_flight_until_ms = [1-9]", s)
                                      for s in u)]
    removals = [u for u in units if any(s.startswith("DELETE FROM outbox") for s in u)]
    assert claims and all(unit[0] == "NORMAL" for unit in claims)
    assert removals and all(unit[0] == "FULL" for unit in removals)


async def test_a_claim_left_behind_expires_and_a_reopen_ends_it(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """Rows claimed by a handle that never answered are not lost: another handle sends
    them once the claim expires, and a process that takes the home ends every claim."""
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await w.sync()
        w.queue("b", "claimed briefly")
        state = w._state  # as a handle that died mid-send would have left it
        channels = {c.channel_id for c in w.channels()}
        with w._store.transaction():
            now = w.now_ms()
            assert state.outbox.claim(relay.url, channels, now, now + 300, 64)
        assert await w.flush() == 0  # someone else holds it
        await asyncio.sleep(0.4)
        assert await w.flush() == 1  # the claim expired: sent, once

        w.queue("b", "claimed by a dead process")
        with w._store.transaction():
            now = w.now_ms()
            assert state.outbox.claim(relay.url, channels, now, now + 3_600_000, 64)
        assert await w.flush() == 0
        home = w.home
        w.close()
        w = Principal.open(home, "passphrase")
        try:
            assert await w.flush() == 1 and _queued(w) == 0
        finally:
            w.close()
        await b.sync()
        assert [e.text for e in b.inbox("w")] == ["claimed briefly", "claimed by a dead process"]


async def test_invite_mailboxes_a_relay_lost_are_retired_not_asked_for_forever(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    alice, bob = make_principal("alice"), make_principal("bob")
    b_db = tmp_path / "b.db"
    async with running_relay(tmp_path / "a.db") as a:
        async with running_relay(b_db) as b:
            await pair(alice, bob, [a.url, b.url])  # alice still has the invite's mailboxes
            b_url, b_port = b.url, b.port
        assert {link.url for link in alice.channel("bob").retiring} == {a.url, b_url}
        for path in tmp_path.glob("b.db*"):
            path.unlink()  # the relay lost its disk, with the invite mailbox on it
        async with running_relay(b_db, port=b_port):
            await bob.send("alice", "hello")
            await alice.sync()  # bob moved on: both invite mailboxes retire
            assert alice.channel("bob").retiring == []
            assert [e.text for e in alice.inbox("bob")] == ["hello"]


def test_an_older_state_file_gains_digest_times_and_send_claims(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    principal = make_principal("old")
    principal.close()
    with sqlite3.connect(tmp_path / "old" / STATE_FILE) as db:
        db.execute("ALTER TABLE processed DROP COLUMN seen_ms")
        db.execute("ALTER TABLE outbox DROP COLUMN in_flight_until_ms")
    reopened = Principal.open(tmp_path / "old", "passphrase")
    reopened.close()
    with sqlite3.connect(tmp_path / "old" / STATE_FILE) as db:
        processed = {row[1] for row in db.execute("PRAGMA table_info(processed)")}
        outbox = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    assert "seen_ms" in processed and "in_flight_until_ms" in outbox


def test_an_older_state_file_keeps_its_retained_payloads_for_escalation(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """Payloads retained before `retained.until_receipted` were all an escalation's: after
    the upgrade a delivered receipt does not release them; a new one kept until its
    receipt is released."""
    principal = make_principal("old")
    cid = "00" * 16
    with principal._state.store.transaction():
        principal._state.escalations.retain(cid, b"e" * 16, b"escalation payload")
    principal.close()
    with sqlite3.connect(tmp_path / "old" / STATE_FILE) as db:
        db.execute("DROP INDEX retained_by_keep")  # on the columns, made after them
        for column in ("until_receipted", "seq", "kept_at_ms"):
            db.execute(f"ALTER TABLE retained DROP COLUMN {column}")
    reopened = Principal.open(tmp_path / "old", "passphrase")
    try:
        escalations = reopened._state.escalations
        with reopened._state.store.transaction():
            escalations.retain(cid, b"n" * 16, b"note payload", keep=KEEP_UNTIL_RECEIPTED)
            escalations.release(cid, [b"e" * 16, b"n" * 16])
        assert escalations.all_retained(cid) == [(b"e" * 16, b"escalation payload")]
    finally:
        reopened.close()


def test_a_file_made_before_the_retained_index_gains_it_and_receipts_use_it(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """A delivered receipt forgets what owes none below its seq: by the index, not by
    reading every payload the channel keeps."""
    make_principal("old").close()
    with sqlite3.connect(tmp_path / "old" / STATE_FILE) as db:
        db.execute("DROP INDEX retained_by_keep")
    reopened = Principal.open(tmp_path / "old", "passphrase")
    try:
        plan = " ".join(str(row[-1]) for row in reopened._store.db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM retained"
            " WHERE channel = ? AND until_receipted = ? AND seq < ?", (b"c" * 16, 2, 9)))
        assert "retained_by_keep" in plan
    finally:
        reopened.close()


# --- read-only opening (review §4 row 6) -----------------------------------------------------
# These take the read-only flag the library offers, so they run as root too (whom the mode
# bits do not stop); tests/cli/test_errors.py makes the files really unwritable.


def test_a_home_opened_read_only_reads_and_refuses_every_write(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    principal = make_principal("audit")
    principal.set_setting("escalation", "true")
    principal.close()
    home, state = tmp_path / "audit", tmp_path / "audit" / STATE_FILE
    before, files = state.read_bytes(), sorted(os.listdir(home))
    reader = Principal.open(home, "passphrase", read_only=True)
    try:
        assert reader.read_only_reason == "it was opened read-only"
        assert reader.setting("escalation") == "true" and reader.channels() == []
        with pytest.raises(HomeReadOnly, match="is read-only: it was opened read-only"):
            reader.set_setting("escalation", "false")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._store.db.execute("DELETE FROM records")  # past `transaction`: query_only
    finally:
        reader.close()
    # immutable=1: not even a -wal or -shm was made beside the file.
    assert state.read_bytes() == before and sorted(os.listdir(home)) == files


async def test_a_copy_taken_with_its_log_waiting_is_read_with_the_log(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """A copy of a home taken while it was open (a snapshot) has commits in `-wal` only:
    a read-only open reads them (mode=ro with the log, not immutable=1, which would not)."""
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        w.queue("b", "only in the log")
        shutil.copytree(tmp_path / "w", tmp_path / "snapshot")
    assert (tmp_path / "snapshot" / f"{STATE_FILE}-wal").stat().st_size > 0
    w.close()
    copy = Principal.open(tmp_path / "snapshot", "passphrase", read_only=True)
    try:
        assert [m.text for m in copy.transcript("b")][-1] == "only in the log"
    finally:
        copy.close()


def test_an_old_file_in_a_read_only_home_asks_for_one_upgrade(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    make_principal("old").close()
    with sqlite3.connect(tmp_path / "old" / STATE_FILE) as db:
        db.execute("ALTER TABLE outbox DROP COLUMN in_flight_until_ms")
    with pytest.raises(HomeReadOnly, match="older version and must be upgraded"):
        Principal.open(tmp_path / "old", "passphrase", read_only=True)

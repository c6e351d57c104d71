"""The principal's account: passphrase policy and change, invite revoke, a second joiner
on one invite, channel rename and remove. Real principals through real relays."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.errors import ChannelNotFound, ClientError, InviteRefused, WrongPassphrase
from backchannel.client.passphrase import (
    MIN_PASSPHRASE_LENGTH,
    WeakPassphrase,
    check_passphrase,
    passphrase_weakness,
)

from .conftest import FAST_KDF, MakePrincipal, pair, running_relay

# -- the passphrase policy ------------------------------------------------------------


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("a", "character"),
        ("1234", "run"),
        (" ", "whitespace"),
        ("\t \n", "whitespace"),
        ("aaaaaaaaaaaaaaaa", "one character repeated"),
        ("abababababababab", "repeated"),
        ("123456789012", "run"),
        ("abcdefghijklmnop", "run"),
        ("Password1234", "common"),
        ("pass word 1234", "common"),
        ("short phrase", "character"),  # 12 with the space, but see below
        ("tr0ub4dor&3", "character"),
        ("a           b", "character"),  # whitespace runs count once
    ],
)
def test_weak_passphrases_are_refused_with_a_reason(weak: str, why: str) -> None:
    reason = passphrase_weakness(weak)
    if weak == "short phrase":  # exactly 12 characters: the boundary passes
        assert reason is None
        return
    assert reason is not None and why in reason
    with pytest.raises(WeakPassphrase, match="refused"):
        check_passphrase(weak)
    check_passphrase(weak, allow_weak=True)  # the override, for tests and scripts


@pytest.mark.parametrize(
    "strong", ["correct horse battery staple", "x" * 11 + "y", "Washington-Beijing 2026!"]
)
def test_long_enough_passphrases_pass(strong: str) -> None:
    assert len(strong) >= MIN_PASSPHRASE_LENGTH
    assert passphrase_weakness(strong) is None
    check_passphrase(strong)


def test_an_empty_passphrase_is_refused_even_with_the_override() -> None:
    with pytest.raises(WeakPassphrase, match="empty"):
        check_passphrase("", allow_weak=True)


# -- changing the passphrase ------------------------------------------------------------


async def test_changing_the_passphrase_keeps_everything_and_only_the_new_one_opens(
    tmp_path: Path,
) -> None:
    w = Principal.create(tmp_path / "w", "w", "old passphrase", kdf=FAST_KDF)
    b = Principal.create(tmp_path / "b", "b", "b passphrase", kdf=FAST_KDF)
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await b.send("w", "before the change")
        await w.sync()
        before = (w.channels(), [e.text for e in w.inbox()], w.messages("b"), w.status())
        old_blobs = [bytes(r[0]) for r in w._store.db.execute("SELECT record FROM records")]
        w.change_passphrase("new passphrase, longer")
        # No ciphertext under the old key is left in the file or its log.
        on_disk = b"".join(p.read_bytes() for p in w.home.iterdir() if p.name.startswith("state"))
        assert old_blobs and not any(blob in on_disk for blob in old_blobs)
        # Same handle, new key: still reads and writes.
        assert [e.text for e in w.inbox()] == before[1]
        w.close()
        with pytest.raises(WrongPassphrase):
            Principal.open(tmp_path / "w", "old passphrase")
        w = Principal.open(tmp_path / "w", "new passphrase, longer")
        assert w.channels() == before[0]
        assert [e.text for e in w.inbox()] == before[1]
        assert w.messages("b") == before[2]
        assert w.status() == before[3]
        # The kept index key still finds messages and recognises copies; the channel goes on.
        await b.send("w", "after the change")
        await w.sync()
        await w.send("b", "reply")
        await b.sync()
        assert [e.text for e in w.inbox()] == ["before the change", "after the change"]
        assert [e.text for e in b.inbox()] == ["reply"]
        # A second change (the index key now comes from the file) works the same way.
        w.change_passphrase("third passphrase here")
        w.close()
        w = Principal.open(tmp_path / "w", "third passphrase here")
        assert [e.text for e in w.inbox()] == ["before the change", "after the change"]
        w.close()
        b.close()


async def test_a_failed_change_leaves_the_old_passphrase_working(tmp_path: Path) -> None:
    w = Principal.create(tmp_path / "w", "w", "old passphrase", kdf=FAST_KDF)
    # A damaged record: the change must refuse and leave every row as it was.
    with w._store.transaction() as db:
        db.execute("INSERT INTO records VALUES ('junk', x'00', x'0011', 1)")
    with pytest.raises(Exception, match="damaged"):
        w.change_passphrase("new passphrase, longer")
    w.close()
    Principal.open(tmp_path / "w", "old passphrase").close()
    with pytest.raises(WrongPassphrase):
        Principal.open(tmp_path / "w", "new passphrase, longer")


# -- invites ------------------------------------------------------------------------------


async def test_a_revoked_invite_is_refused_to_its_joiner(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        code = await w.invite([relay.url])
        invite = w.pending_invites()[0]
        with pytest.raises(ClientError, match="no waiting invite"):
            await w.revoke_invite("abc")  # too short a prefix
        revoked, left = await w.revoke_invite(invite.invite_id[:8])
        assert revoked.invite_id == invite.invite_id and left == []
        assert w.pending_invites() == []
        with pytest.raises(InviteRefused, match="already used"):
            await b.accept(code)
        assert b.channels() == []
        report = await w.sync()
        assert report.new_channels == [] and w.channels() == []


async def test_two_joiners_racing_one_invite_raise_a_lasting_alarm(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b, c = make_principal("w"), make_principal("b"), make_principal("mallory")
    async with running_relay(tmp_path / "relay.db") as relay:
        code = await w.invite([relay.url])
        # Both accept at once, before the inviter's next sync: both are told they joined.
        joined = await asyncio.gather(b.accept(code), c.accept(code))
        assert [j.name for j in joined] == ["w", "w"]
        report = await w.sync()
        # Whichever hello was read first has the channel; the other is the claim.
        [winner] = report.new_channels
        assert winner in ("b", "mallory")
        assert len(report.invite_claims) == 1
        claim = report.invite_claims[0]
        assert claim.channel_name == winner and claim.relay == relay.url
        [status] = w.status()
        assert len(status.invite_claims) == 1 and "also used the invite" in status.invite_claims[0]
        # Read again later: not counted twice, still there.
        again = await w.sync()
        assert again.invite_claims == []
        # The loser's channel never completes; the winner's does.
        loser, first = (c, b) if winner == "b" else (b, c)
        await loser.sync()
        await first.sync()
        assert loser.status()[0].awaiting_counterpart
        assert not first.status()[0].awaiting_counterpart
    home = w.home
    w.close()
    w = Principal.open(home, "passphrase")
    assert len(w.invite_claims()) == 1 and len(w.status()[0].invite_claims) == 1
    # Removing the channel takes its claims with it (its mailboxes are gone: no relay).
    await w.remove_channel(w.channels()[0].name)
    assert w.invite_claims() == []
    w.close()


# -- channels -----------------------------------------------------------------------------


async def test_rename_is_local_and_names_stay_unique(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b, c = make_principal("w"), make_principal("b"), make_principal("c")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await pair(w, c, [relay.url])
        with pytest.raises(ClientError, match="already named 'c'"):
            w.rename_channel("b", "c")
        with pytest.raises(ClientError, match="1 to 64 bytes"):
            w.rename_channel("b", "   ")
        with pytest.raises(ChannelNotFound):
            w.rename_channel("nobody", "x")
        renamed = w.rename_channel("b", "beijing")
        assert renamed.name == "beijing"
        assert sorted(ch.name for ch in w.channels()) == ["beijing", "c"]
        await w.send("beijing", "still the same channel")
        await b.sync()
        assert [e.text for e in b.inbox()] == ["still the same channel"]
        assert [ch.name for ch in b.channels()] == ["w"]  # the counterpart's name is its own


async def test_remove_retires_the_mailboxes_and_deletes_keys_and_transcript(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await b.send("w", "hello")
        await w.sync()
        cid = w.channel("b").channel_id
        removed, left = await w.remove_channel("b")
        assert removed.channel_id == cid and left == []
        assert w.channels() == []
        with pytest.raises(ChannelNotFound):
            w.channel("b")
        # What the counterpart sends now is refused by the relay: the mailbox is gone.
        sent = await b.send("w", "into the void")
        assert sent.stored_on == ()
    db = sqlite3.connect(w.home / "state.db")
    try:
        for table in ("messages", "outbox", "forks", "pending_receipts", "retained"):
            rows = db.execute(
                f"SELECT COUNT(*) FROM {table} WHERE channel = ?", (bytes.fromhex(cid),)
            ).fetchone()
            assert rows == (0,), table
        assert db.execute(
            "SELECT COUNT(*) FROM records WHERE kind = 'channel' AND key = ?",
            (bytes.fromhex(cid),),
        ).fetchone() == (0,)
    finally:
        db.close()

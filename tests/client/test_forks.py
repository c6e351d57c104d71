"""A copied home (a restored backup, a second laptop) that sends: the fork is loud on both
sides, nothing decrypts into garbage, and the relay cannot recover plaintext."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.errors import HomeBusy, StaleRecord
from backchannel.client.keystore import Keystore
from backchannel.client.records import dump
from backchannel.client.state.channels import ChannelRepository
from backchannel.protocol.envelope import Envelope

from .conftest import MakePrincipal, pair, running_relay


def _envelopes(relay_db: Path) -> list[bytes]:
    import sqlite3

    with sqlite3.connect(relay_db) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = next(t for t in tables if "envelope" in t)
        column = next(
            c[1] for c in db.execute(f"PRAGMA table_info({table})") if c[1] in ("envelope", "body")
        )
        return [bytes(r[0]) for r in db.execute(f"SELECT {column} FROM {table}")]


async def test_a_copied_home_that_sends_is_reported_as_a_fork_on_both_sides(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        alice, bob = make_principal("alice"), make_principal("bob")
        await pair(alice, bob, [relay.url])
        await alice.send("bob", "before the copy")
        await bob.sync()
        alice.close()
        shutil.copytree(tmp_path / "alice", tmp_path / "alice-copy")
        original = Principal.open(tmp_path / "alice", "passphrase")
        copy = Principal.open(tmp_path / "alice-copy", "passphrase")
        try:
            # Both copies stand at the same ratchet position and send different notes:
            # the relay holds them both before bob fetches anything.
            first = original.queue("bob", "the original's note: attack at dawn")
            second = copy.queue("bob", "the copy's own note: retreat at dusk")
            await original.flush()
            await copy.flush()
            held = _envelopes(tmp_path / "relay.db")
            report = await bob.sync()
            assert report.forks == 1
            texts = [m.text for m in bob.inbox("alice")]
            # The first one in is kept; the other is never shown as if it were normal, and
            # nothing decrypted into garbage.
            assert texts[0] == "before the copy"
            assert len(texts) == 2
            assert texts[1] in ("the original's note: attack at dawn",
                                "the copy's own note: retreat at dusk")
            (status,) = bob.status("alice")
            assert len(status.forks) == 1
            assert "used twice" in status.forks[0] or "one sequence number" in status.forks[0]
            # Bob told alice; whichever copy syncs hears of it.
            await bob.sync()
            await original.sync()
            (theirs,) = original.status("bob")
            assert len(theirs.forks) == 1
            assert "our message" in theirs.forks[0]
            assert first != second
        finally:
            original.close()
            copy.close()
        # What the relay held: two different payloads at one ratchet position. With the
        # misuse-resistant body AEAD their XOR is not the XOR of the plaintexts.
        payloads = [Envelope.decode(e).payload for e in held]
        assert len(payloads) >= 2
        a, b = payloads[-2], payloads[-1]
        plain_a = b"the original's note: attack at dawn"
        plain_b = b"the copy's own note: retreat at dusk"
        xor_plain = bytes(x ^ y for x, y in zip(plain_a, plain_b, strict=False))
        xor_cipher = bytes(x ^ y for x, y in zip(a, b, strict=True))
        assert xor_plain not in xor_cipher


async def test_a_second_open_of_a_home_waits_then_gives_up(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    alice = make_principal("alice")
    waited: list[object] = []
    with pytest.raises(HomeBusy, match="in use by another backchannel process"):
        Principal.open(tmp_path / "alice", "passphrase", lock_timeout=0.2,
                       on_wait=waited.append)
    assert len(waited) == 1
    alice.close()
    again = Principal.open(tmp_path / "alice", "passphrase", lock_timeout=0.2)
    again.close()


async def test_a_stale_channel_write_is_refused_not_applied(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        alice, bob = make_principal("alice"), make_principal("bob")
        await pair(alice, bob, [relay.url])
        store = Keystore.open(tmp_path / "alice", "passphrase")
        try:
            channels = ChannelRepository(store)
            stale = channels.all()[0]
            alice.queue("bob", "moves the session on")  # written by the other handle
            with store.transaction():
                before = store.get("channel", bytes.fromhex(stale.channel_id))
                with pytest.raises(StaleRecord):
                    channels.save(stale)
            assert store.get("channel", bytes.fromhex(stale.channel_id)) == before
            assert before != dump(stale)
        finally:
            store.close()


async def test_a_relay_that_tampers_with_a_copy_raises_no_false_fork(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    from backchannel.client.transport import RelayClient

    async with running_relay(tmp_path / "relay.db") as relay:
        alice, bob = make_principal("alice"), make_principal("bob")
        await pair(alice, bob, [relay.url])
        await alice.send("bob", "the genuine note")
        held = _envelopes(tmp_path / "relay.db")[-1]
        await bob.sync()
        # The relay replays the envelope with its body changed behind the genuine header.
        tampered = bytearray(held)
        tampered[-5] ^= 0x01
        link = alice.channels()[0].links[0]
        assert link.outbound is not None
        client = await RelayClient.connect(relay.url)
        try:
            await client.send(bytes.fromhex(link.outbound.mailbox_id),
                              bytes.fromhex(link.outbound.send_token), bytes(tampered))
        finally:
            await client.close()
        report = await bob.sync()
        assert report.forks == 0
        assert report.duplicates == 1
        assert bob.status("alice")[0].forks == ()
        assert [m.text for m in bob.inbox("alice")] == ["the genuine note"]


async def test_a_backup_restored_after_the_original_went_on_is_a_loud_fork(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    """Review §4 row 5. A backup of alice's home is taken; the original sends, hears a
    reply and answers it (its ratchet steps); then the original is lost and the backup
    restored. The restored copy shares the original's header key but not its new ratchet
    key: before `ForkedChain` its messages were taken for duplicates (the first ones) and
    forgeries (the later ones), and lost without a word. Now bob sees a fork for each, and
    `sync` says so; what the copy sent is still unreadable to bob (its keys are the copy's
    own), and the copy reads nothing bob sends after the original's step."""
    async with running_relay(tmp_path / "relay.db") as relay:
        alice, bob = make_principal("alice"), make_principal("bob")
        await pair(alice, bob, [relay.url])
        await alice.send("bob", "before the backup")
        await bob.sync()
        alice.close()
        shutil.copytree(tmp_path / "alice", tmp_path / "backup")
        alice = Principal.open(tmp_path / "alice", "passphrase")
        await alice.send("bob", "after the backup, from the original")
        await bob.sync()
        await bob.send("alice", "a reply the original reads")
        await alice.sync()  # the original steps its ratchet and answers with receipts
        alice.close()
        shutil.rmtree(tmp_path / "alice")
        shutil.copytree(tmp_path / "backup", tmp_path / "alice")  # the disk died: restore

        restored = Principal.open(tmp_path / "alice", "passphrase")
        try:
            await bob.send("alice", "sent after the restore")
            await restored.sync()  # reads it (same chain), and steps apart from the original
            await restored.send("bob", "the restored copy's first note")
            for n in range(3):
                await restored.send("bob", f"the restored copy's note {n + 2}")
            report = await bob.sync()
            assert report.forks >= 1 and report.duplicates == 0 and report.rejected == 0
            texts = [m.text for m in bob.inbox("alice")]
            assert texts == ["before the backup", "after the backup, from the original"]
            (status,) = bob.status("alice")
            assert status.forks and all("used twice" in f for f in status.forks)
            # Bob's fork notices go to the original's chain: the copy cannot open them,
            # nor anything else bob sends now. It sees only its rejected count grow.
            await bob.sync()
            await bob.send("alice", "after the fork")
            before = restored.status("bob")[0].rejected
            await restored.sync()
            assert restored.status("bob")[0].rejected > before
            assert "after the fork" not in [m.text for m in restored.inbox("bob")]
        finally:
            restored.close()

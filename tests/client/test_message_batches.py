"""Marks written for many messages at once: a flush's window marked stored on a relay
(`MessageRepository.mark_stored_many`) and a receipt's messages marked delivered or read
(`Receiver._apply_receipt`), each one read and one write per channel. The same result as
one message at a time: every message once, only ours, each in its place."""

from __future__ import annotations

from pathlib import Path

from backchannel.client.keystore import Keystore
from backchannel.client.receipts import receipt_body
from backchannel.client.records import MessageRecord
from backchannel.client.state.messages import MessageRepository
from backchannel.protocol.message import MessageKind

from .conftest import FAST_KDF, MakePrincipal, flushed_notes, pair, running_relay

A, B = "aa" * 16, "bb" * 16


def _record(number: int, direction: str = "out") -> MessageRecord:
    return MessageRecord(f"{number:032x}", direction, number, int(MessageKind.NOTE), number,
                         "00")


def test_a_window_is_marked_stored_once_each_and_keeps_its_order(tmp_path: Path) -> None:
    store = Keystore.create(tmp_path / "home", "pw", FAST_KDF)
    messages = MessageRepository(store)
    with store.transaction():
        for number in range(1, 6):
            messages.put(A if number % 2 else B, _record(number))
        messages.mark_stored(A, messages.ref(_record(1).message_id), "ws://r1/")
    window = [(A if n % 2 else B, messages.ref(_record(n).message_id)) for n in (1, 2, 3, 4)]
    with store.transaction():
        # A row twice (sent again by an escalation), and one of a message not stored.
        messages.mark_stored_many([*window, window[0], (A, b"\x00" * 16)], "ws://r1/")
        messages.mark_stored_many(window[:1], "ws://r2/")
    stored_on = {m.seq: m.stored_on for c in (A, B) for m in messages.of_channel(c)}
    assert stored_on == {1: ["ws://r1/", "ws://r2/"], 2: ["ws://r1/"], 3: ["ws://r1/"],
                         4: ["ws://r1/"], 5: []}
    assert [m.seq for m in messages.in_stored_order(A)] == [1, 3, 5]  # not moved


async def test_a_receipt_marks_each_of_our_messages_once(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(w, b, [relay.url])
        await flushed_notes(w, "b", 40)
        await b.sync()  # takes them in and sends one receipt for all
        b.queue("w", "theirs")
        await b.sync()
        await w.sync()
        (status,) = w.status("b")
        assert status.sent == 40 and status.delivered == 40 and status.read == 0
        for entry in b.inbox():
            await b.read("w", entry.message_id)
        await b.sync()
        await w.sync()
        (status,) = w.status("b")
        assert status.delivered == 40 and status.read == 40
        # A receipt that names their own note (and one of ours twice) marks only ours.
        (theirs,) = [e for e in w.inbox() if e.text == "theirs"]
        ours = w._state.messages.of_channel(w.channel("b").channel_id)[0].message_id
        b.queue_body("w", MessageKind.RECEIPT_DELIVERED,
                     receipt_body([theirs.message_id, ours, ours]))
        await b.sync()
        report = await w.sync()
        assert report.received == 1
        cid = w.channel("b").channel_id
        marked = {m.message_id: m.delivered_at_ms for m in w._state.messages.of_channel(cid)}
        assert marked[theirs.message_id] == 0 and marked[ours] > 0

"""Notes with precedence and deadlines: acknowledgements, holding replies, overdue, escalation."""

from __future__ import annotations

import pytest

from backchannel.dialogue import (
    Ack,
    Clarify,
    DialogueKind,
    Escalation,
    Hold,
    IllegalTransition,
    LineTest,
    Note,
    Precedence,
    RedLine,
    Side,
    escalations_due,
)
from backchannel.protocol.message import MessageKind
from tests.dialogue.conftest import MINUTE, Channel, assert_refused

NOTE = int(MessageKind.NOTE)


def flash(channel: Channel, sender: str = "alice", within: int = 10 * MINUTE) -> bytes:
    return channel.send(
        sender, Note(Precedence.FLASH, within, "Are your forces moving?")
    ).message_id


def test_a_note_with_a_deadline_awaits_acknowledgement_on_both_sides(channel: Channel) -> None:
    note = flash(channel)
    (ours,) = channel.alice.pending_acks(channel.now_ms, Side.OURS)
    (theirs,) = channel.bob.pending_acks(channel.now_ms, Side.THEIRS)
    assert ours.message_id == theirs.message_id == note
    assert ours.precedence is Precedence.FLASH
    assert ours.deadline_ms == ours.sent_at_ms + 10 * MINUTE == ours.worry_at_ms
    assert not ours.overdue and ours.hold is None
    assert channel.alice.pending_acks(channel.now_ms, Side.THEIRS) == ()


def test_a_note_without_a_deadline_awaits_nothing_but_may_be_acknowledged(
    channel: Channel,
) -> None:
    note = channel.send("alice", Note(Precedence.ROUTINE, 0, "Noted.")).message_id
    assert channel.alice.pending_acks(channel.now_ms) == ()
    channel.send("bob", Ack(note))
    assert channel.alice.acknowledged_at(note) == channel.now_ms


def test_acknowledgement_clears_the_worry_on_both_sides(channel: Channel) -> None:
    note = flash(channel)
    channel.advance(MINUTE)
    channel.send("bob", Ack(note))
    for dialogue in (channel.alice, channel.bob):
        assert dialogue.pending_acks(channel.now_ms) == ()
        assert dialogue.acknowledged_at(note) == channel.now_ms
    assert channel.alice.escalations(channel.now_ms + 60 * MINUTE, set()) == []


def test_overdue_and_escalation_with_a_moving_clock(channel: Channel) -> None:
    note = flash(channel)
    deadline = channel.now_ms + 10 * MINUTE
    assert channel.alice.overdue(deadline) == ()
    assert channel.alice.escalations(deadline, set()) == []
    (late,) = channel.alice.overdue(deadline + 1)
    assert late.message_id == note and late.overdue
    assert channel.alice.escalations(deadline + 1, set()) == [
        Escalation(note, Precedence.FLASH, deadline - 10 * MINUTE, deadline, deadline)
    ]
    # Exactly once: the client passes what it already escalated.
    assert channel.alice.escalations(deadline + 5 * MINUTE, {note}) == []
    # Bob sees that he owes an acknowledgement past its deadline, but he does not escalate.
    assert channel.bob.overdue(deadline + 1, Side.THEIRS)[0].message_id == note
    assert channel.bob.escalations(deadline + 1, set()) == []


def test_a_late_acknowledgement_is_still_an_acknowledgement(channel: Channel) -> None:
    note = flash(channel)
    channel.advance(30 * MINUTE)
    assert channel.alice.overdue(channel.now_ms)
    channel.send("bob", Ack(note))
    assert channel.alice.overdue(channel.now_ms) == ()
    assert channel.alice.escalations(channel.now_ms, set()) == []


def test_a_holding_reply_resets_the_worry_until_its_time(channel: Channel) -> None:
    note = flash(channel)
    sent = channel.now_ms
    channel.advance(MINUTE)
    expected_by = sent + 45 * MINUTE
    channel.send("bob", Hold(note, expected_by, "Consulting the capital."))
    (pending,) = channel.alice.pending_acks(sent + 20 * MINUTE)
    assert pending.hold is not None and pending.hold.expected_by_ms == expected_by
    assert pending.hold.text == "Consulting the capital."
    assert pending.worry_at_ms == expected_by and not pending.overdue
    assert channel.alice.escalations(sent + 20 * MINUTE, set()) == []
    assert channel.alice.escalations(expected_by + 1, set())[0].worry_at_ms == expected_by
    # A hold is not an acknowledgement.
    assert channel.alice.acknowledged_at(note) is None


def test_a_hold_earlier_than_the_deadline_does_not_bring_it_forward(channel: Channel) -> None:
    note = flash(channel, within=60 * MINUTE)
    channel.send("bob", Hold(note, channel.now_ms + 5 * MINUTE))
    (pending,) = channel.alice.pending_acks(channel.now_ms)
    assert pending.worry_at_ms == pending.deadline_ms


def test_a_second_hold_replaces_the_first_and_an_ack_follows(channel: Channel) -> None:
    note = flash(channel)
    channel.send("bob", Hold(note, channel.now_ms + 20 * MINUTE))
    channel.send("bob", Hold(note, channel.now_ms + 40 * MINUTE, "Still working."))
    (pending,) = channel.alice.pending_acks(channel.now_ms)
    assert pending.hold is not None and pending.hold.text == "Still working."
    channel.send("bob", Ack(note))
    assert channel.alice.pending_acks(channel.now_ms) == ()


def test_escalations_come_most_urgent_first(channel: Channel) -> None:
    routine = channel.send("alice", Note(Precedence.ROUTINE, MINUTE, "r")).message_id
    priority = channel.send("alice", Note(Precedence.PRIORITY, 2 * MINUTE, "p")).message_id
    first_flash = flash(channel, within=3 * MINUTE)
    second_flash = flash(channel, within=MINUTE)
    due = channel.alice.escalations(channel.now_ms + 10 * MINUTE, set())
    assert [e.message_id for e in due] == [second_flash, first_flash, priority, routine]
    pending = channel.alice.pending_acks(channel.now_ms + 10 * MINUTE)
    assert escalations_due(pending, channel.now_ms + 10 * MINUTE, {routine, priority}) == due[:2]


# -- illegal transitions: this side's intents ------------------------------------------------


def test_acknowledging_twice_is_refused(channel: Channel) -> None:
    note = flash(channel)
    channel.send("bob", Ack(note))
    with pytest.raises(IllegalTransition, match="already acknowledged"):
        channel.bob.check_ack(note)


def test_acknowledging_ones_own_note_is_refused(channel: Channel) -> None:
    note = flash(channel)
    with pytest.raises(IllegalTransition, match="its own note"):
        channel.alice.check_ack(note)


def test_acknowledging_an_unknown_message_is_refused(channel: Channel) -> None:
    with pytest.raises(IllegalTransition, match="unknown message"):
        channel.bob.check_ack(b"\x42" * 16)


def test_acknowledging_what_is_not_a_note_is_refused(channel: Channel) -> None:
    red_line = channel.send("alice", RedLine(b"\x01" * 16, 1, "Taiwan", "Do not cross.")).message_id
    with pytest.raises(IllegalTransition, match="not a note"):
        channel.bob.check_ack(red_line)


def test_holding_after_acknowledging_is_refused(channel: Channel) -> None:
    note = flash(channel)
    channel.send("bob", Ack(note))
    with pytest.raises(IllegalTransition, match="already acknowledged"):
        channel.bob.check_hold(note, channel.now_ms + MINUTE, channel.now_ms)


def test_holding_ones_own_note_or_a_time_past_is_refused(channel: Channel) -> None:
    note = flash(channel)
    with pytest.raises(IllegalTransition, match="its own note"):
        channel.alice.check_hold(note, channel.now_ms + MINUTE, channel.now_ms)
    with pytest.raises(IllegalTransition, match="time to come"):
        channel.bob.check_hold(note, channel.now_ms, channel.now_ms)
    with pytest.raises(IllegalTransition, match="time to come"):
        channel.bob.check(Hold(note, channel.now_ms - 1), channel.now_ms)


def test_holding_a_message_that_asks_nothing_is_refused(channel: Channel) -> None:
    test = channel.send("alice", LineTest()).message_id
    with pytest.raises(IllegalTransition, match="note or a clarification"):
        channel.bob.check_hold(test, channel.now_ms + MINUTE, channel.now_ms)


def test_check_dispatches_to_the_same_rules(channel: Channel) -> None:
    note = flash(channel)
    with pytest.raises(IllegalTransition):
        channel.alice.check(Ack(note), channel.now_ms)
    channel.bob.check(Ack(note), channel.now_ms)


# -- illegal transitions: the other side's messages -----------------------------------------


def test_their_second_acknowledgement_is_an_anomaly(channel: Channel) -> None:
    note = flash(channel)
    channel.send("bob", Ack(note))
    assert_refused(channel, "alice", DialogueKind.ACK, Ack(note).encode(), "already acknowledged")


def test_their_acknowledgement_of_their_own_note_is_an_anomaly(channel: Channel) -> None:
    note = flash(channel, sender="bob")
    assert_refused(channel, "alice", DialogueKind.ACK, Ack(note).encode(), "its own note")


def test_their_acknowledgement_of_an_unknown_message_is_an_anomaly(channel: Channel) -> None:
    body = Ack(b"\x99" * 16).encode()
    assert_refused(channel, "alice", DialogueKind.ACK, body, "unknown message")


def test_their_acknowledgement_of_a_red_line_is_an_anomaly(channel: Channel) -> None:
    red_line = channel.send("alice", RedLine(b"\x01" * 16, 1, "Taiwan", "No.")).message_id
    assert_refused(channel, "alice", DialogueKind.ACK, Ack(red_line).encode(), "not a note")


def test_their_hold_after_their_ack_is_an_anomaly(channel: Channel) -> None:
    note = flash(channel)
    channel.send("bob", Ack(note))
    body = Hold(note, channel.now_ms + MINUTE).encode()
    assert_refused(channel, "alice", DialogueKind.HOLD, body, "already acknowledged")


def test_their_hold_of_their_own_note_or_of_a_line_test_is_an_anomaly(channel: Channel) -> None:
    note = flash(channel, sender="bob")
    body = Hold(note, channel.now_ms + MINUTE).encode()
    assert_refused(channel, "alice", DialogueKind.HOLD, body, "its own note")
    test = channel.send("alice", LineTest()).message_id
    body = Hold(test, channel.now_ms + MINUTE).encode()
    assert_refused(channel, "alice", DialogueKind.HOLD, body, "note or a clarification")
    body = Hold(b"\x77" * 16, channel.now_ms + MINUTE).encode()
    assert_refused(channel, "alice", DialogueKind.HOLD, body, "unknown message")


def test_a_malformed_note_is_an_anomaly_and_the_fold_goes_on(channel: Channel) -> None:
    assert_refused(channel, "alice", NOTE, b"\x09", "malformed body (unknown precedence 9)")
    assert_refused(channel, "alice", NOTE, b"plain text from an older client", "malformed body")
    flash(channel, sender="bob")
    assert len(channel.alice.pending_acks(channel.now_ms)) == 1


def test_a_duplicate_copy_of_a_message_is_ignored(channel: Channel) -> None:
    sent = channel.send("alice", Note(Precedence.FLASH, MINUTE, "x"))
    ack = channel.send("bob", Ack(sent.message_id))
    dialogue = channel.alice
    before = dialogue.board(channel.now_ms)
    assert dialogue.apply(ack.event(Side.THEIRS, channel.now_ms + 5)) is None
    assert dialogue.apply(sent.event(Side.OURS, channel.now_ms + 5)) is None
    assert dialogue.board(channel.now_ms) == before


def test_our_own_inconsistent_store_is_an_anomaly_too(channel: Channel) -> None:
    anomaly = channel.store_own("alice", DialogueKind.ACK, Ack(b"\x05" * 16).encode())
    assert anomaly is not None and anomaly.side is Side.OURS


def test_a_clarify_kind_hold_target_goes_to_the_request(channel: Channel) -> None:
    note = channel.send("alice", Note(Precedence.ROUTINE, 0, "x"))
    request = channel.send("bob", Clarify(note.message_id, note.message_hash, "Which x?"))
    channel.send("alice", Hold(request.message_id, channel.now_ms + MINUTE, "Checking."))
    clarification = channel.bob.clarification(request.message_id)
    assert clarification is not None and clarification.hold is not None
    assert clarification.is_open

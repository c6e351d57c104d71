"""Clarification requests bound to a message by id and hash, closed by their answer."""

from __future__ import annotations

import pytest

from backchannel.dialogue import (
    Ack,
    Answer,
    Clarify,
    DialogueKind,
    Hold,
    IllegalTransition,
    LineTest,
    Note,
    Precedence,
    RedLine,
    Side,
)
from tests.dialogue.conftest import MINUTE, Channel, Sent, assert_refused


def note(channel: Channel, sender: str = "alice") -> Sent:
    return channel.send(sender, Note(Precedence.PRIORITY, 0, "We will respond proportionately."))


def ask(channel: Channel, target: Sent, asker: str = "bob") -> bytes:
    body = Clarify(target.message_id, target.message_hash, "What does 'proportionately' mean?")
    return channel.send(asker, body).message_id


def test_a_request_is_open_on_both_sides_until_answered(channel: Channel) -> None:
    target = note(channel)
    request = ask(channel, target)
    (theirs,) = channel.alice.clarifications(asked_by=Side.THEIRS)
    (ours,) = channel.bob.clarifications(asked_by=Side.OURS)
    assert theirs.request_id == ours.request_id == request
    assert theirs.target_id == target.message_id and theirs.target_hash == target.message_hash
    assert theirs.question == "What does 'proportionately' mean?" and theirs.is_open
    assert channel.alice.clarifications(asked_by=Side.OURS) == ()
    channel.advance(MINUTE)
    channel.send("alice", Answer(request, "No more than was done to us."))
    for dialogue in (channel.alice, channel.bob):
        assert dialogue.clarifications() == ()
        (closed,) = dialogue.clarifications(open_only=False)
        assert not closed.is_open and closed.answer == "No more than was done to us."
        assert closed.answered_at_ms == channel.now_ms


def test_requests_in_both_directions_are_listed(channel: Channel) -> None:
    ask(channel, note(channel, "alice"), asker="bob")
    ask(channel, note(channel, "bob"), asker="alice")
    assert {c.asked_by for c in channel.alice.clarifications()} == {Side.OURS, Side.THEIRS}
    assert len(channel.bob.clarifications(open_only=False, asked_by=Side.OURS)) == 1


def test_several_requests_about_one_message_each_close_apart(channel: Channel) -> None:
    target = note(channel)
    first, second = ask(channel, target), ask(channel, target)
    channel.send("alice", Answer(second, "Second answered."))
    assert [c.request_id for c in channel.bob.clarifications()] == [first]


def test_a_request_may_be_about_a_red_line(channel: Channel) -> None:
    red_line = channel.send("alice", RedLine(b"\x01" * 16, 1, "Taiwan", "Independence."))
    ask(channel, red_line)
    assert len(channel.alice.clarifications()) == 1


# -- illegal transitions: this side's intents ------------------------------------------------


def test_answering_a_closed_request_is_refused(channel: Channel) -> None:
    request = ask(channel, note(channel))
    channel.send("alice", Answer(request, "Answer."))
    with pytest.raises(IllegalTransition, match="already answered"):
        channel.alice.check_answer(request)


def test_answering_an_unknown_request_is_refused(channel: Channel) -> None:
    with pytest.raises(IllegalTransition, match="unknown clarification request"):
        channel.alice.check_answer(b"\x33" * 16)


def test_answering_ones_own_request_is_refused(channel: Channel) -> None:
    request = ask(channel, note(channel))
    with pytest.raises(IllegalTransition, match="its own"):
        channel.bob.check_answer(request)


def test_asking_about_ones_own_message_is_refused(channel: Channel) -> None:
    target = note(channel)
    with pytest.raises(IllegalTransition, match="other side's messages"):
        channel.alice.check_clarify(target.message_id, target.message_hash)


def test_asking_with_the_wrong_hash_is_refused(channel: Channel) -> None:
    target = note(channel)
    with pytest.raises(IllegalTransition, match="hash differs"):
        channel.bob.check_clarify(target.message_id, b"\x00" * 32)


def test_asking_about_an_unknown_message_or_a_line_test_is_refused(channel: Channel) -> None:
    with pytest.raises(IllegalTransition, match="unknown message"):
        channel.bob.check_clarify(b"\x12" * 16, b"\x00" * 32)
    test = channel.send("alice", LineTest())
    with pytest.raises(IllegalTransition, match="nothing to clarify"):
        channel.bob.check_clarify(test.message_id, test.message_hash)
    ack_target = note(channel, "bob")
    ack = channel.send("alice", Ack(ack_target.message_id))
    with pytest.raises(IllegalTransition, match="nothing to clarify"):
        channel.bob.check(Clarify(ack.message_id, ack.message_hash, "?"), channel.now_ms)


def test_holding_a_closed_request_is_refused(channel: Channel) -> None:
    request = ask(channel, note(channel))
    channel.send("alice", Answer(request, "Answer."))
    with pytest.raises(IllegalTransition, match="already answered"):
        channel.alice.check_hold(request, channel.now_ms + MINUTE, channel.now_ms)
    with pytest.raises(IllegalTransition, match="its own"):
        channel.bob.check_hold(request, channel.now_ms + MINUTE, channel.now_ms)


# -- illegal transitions: the other side's messages -----------------------------------------


def test_their_answer_to_a_closed_request_is_an_anomaly(channel: Channel) -> None:
    target = note(channel, "bob")
    request = ask(channel, target, asker="alice")
    channel.send("bob", Answer(request, "First."))
    body = Answer(request, "Second.").encode()
    assert_refused(channel, "alice", DialogueKind.ANSWER, body, "already answered")


def test_their_answer_to_an_unknown_or_their_own_request_is_an_anomaly(channel: Channel) -> None:
    body = Answer(b"\x44" * 16, "?").encode()
    assert_refused(channel, "alice", DialogueKind.ANSWER, body, "unknown clarification request")
    request = ask(channel, note(channel), asker="bob")
    body = Answer(request, "Answering myself.").encode()
    assert_refused(channel, "alice", DialogueKind.ANSWER, body, "its own")


def test_their_request_about_their_own_message_is_an_anomaly(channel: Channel) -> None:
    target = note(channel, "bob")
    body = Clarify(target.message_id, target.message_hash, "?").encode()
    assert_refused(channel, "alice", DialogueKind.CLARIFY, body, "other side's messages")


def test_their_request_with_a_substituted_hash_is_an_anomaly(channel: Channel) -> None:
    target = note(channel, "alice")
    body = Clarify(target.message_id, bytes(32), "?").encode()
    assert_refused(channel, "alice", DialogueKind.CLARIFY, body, "hash differs")


def test_their_hold_of_a_closed_request_is_an_anomaly(channel: Channel) -> None:
    target = note(channel, "bob")
    request = ask(channel, target, asker="alice")
    channel.send("bob", Answer(request, "Done."))
    body = Hold(request, channel.now_ms + MINUTE).encode()
    assert_refused(channel, "alice", DialogueKind.HOLD, body, "already answered")

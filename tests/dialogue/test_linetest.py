"""Line tests: UP, DOWN, UNKNOWN by our clock; their tests we still owe an answer."""

from __future__ import annotations

import pytest

from backchannel.dialogue import (
    DEFAULT_LINETEST_EVERY_MS,
    DEFAULT_LINETEST_GRACE_MS,
    DialogueKind,
    IllegalTransition,
    LineState,
    LineTest,
    LineTestReply,
)
from backchannel.protocol.errors import LocalProtocolError
from tests.dialogue.conftest import MINUTE, Channel, assert_refused

HOUR = 60 * MINUTE
EVERY, GRACE = HOUR, 5 * MINUTE


def state(channel: Channel, name: str = "alice") -> LineState:
    return channel.dialogues[name].line_status(channel.now_ms, EVERY, GRACE).state


def test_the_defaults_are_the_hotline_s_hour_and_ten_minutes() -> None:
    assert DEFAULT_LINETEST_EVERY_MS == HOUR and DEFAULT_LINETEST_GRACE_MS == 10 * MINUTE


def test_unknown_before_any_test(channel: Channel) -> None:
    status = channel.alice.line_status(channel.now_ms, EVERY, GRACE)
    assert status.state is LineState.UNKNOWN and status.test_due
    assert status.last_test_sent_at_ms is None and status.next_test_due_at_ms is None


def test_up_when_answered_and_their_test_awaits_our_answer(channel: Channel) -> None:
    test = channel.send("alice", LineTest()).message_id
    assert state(channel) is LineState.UNKNOWN  # within grace, nothing known yet
    assert channel.bob.line_status(channel.now_ms, EVERY, GRACE).unanswered_theirs == (test,)
    channel.advance(2_000)
    channel.send("bob", LineTestReply(test))
    status = channel.alice.line_status(channel.now_ms, EVERY, GRACE)
    assert status.state is LineState.UP and status.round_trip_ms == 2_000
    assert status.next_test_due_at_ms == status.last_test_sent_at_ms + EVERY  # type: ignore[operator]
    assert not status.test_due
    assert channel.bob.line_status(channel.now_ms, EVERY, GRACE).unanswered_theirs == ()
    # Bob's view of the line comes from Bob's own tests only.
    assert state(channel, "bob") is LineState.UNKNOWN


def test_down_when_a_test_goes_unanswered_past_grace(channel: Channel) -> None:
    test = channel.send("alice", LineTest(), deliver=False).message_id
    channel.advance(GRACE)
    assert state(channel) is LineState.UNKNOWN
    channel.advance(1)
    assert state(channel) is LineState.DOWN
    channel.deliver("bob")
    channel.send("bob", LineTestReply(test))
    assert state(channel) is LineState.UP  # a late answer: the line works again


def test_a_pending_test_keeps_the_previous_state(channel: Channel) -> None:
    first = channel.send("alice", LineTest()).message_id
    channel.send("bob", LineTestReply(first))
    channel.advance(HOUR)
    assert channel.alice.line_status(channel.now_ms, EVERY, GRACE).test_due
    channel.send("alice", LineTest(), deliver=False)
    assert state(channel) is LineState.UP
    channel.advance(GRACE + 1)
    assert state(channel) is LineState.DOWN


def test_an_old_answer_tells_nothing_about_now(channel: Channel) -> None:
    test = channel.send("alice", LineTest()).message_id
    channel.send("bob", LineTestReply(test))
    channel.advance(EVERY + GRACE)
    assert state(channel) is LineState.UP
    channel.advance(1)
    assert state(channel) is LineState.UNKNOWN


def test_period_and_grace_must_be_positive(channel: Channel) -> None:
    with pytest.raises(LocalProtocolError):
        channel.alice.line_status(channel.now_ms, 0, GRACE)
    with pytest.raises(LocalProtocolError):
        channel.alice.line_status(channel.now_ms, EVERY, -1)


def test_answering_twice_ones_own_or_an_unknown_test_is_refused(channel: Channel) -> None:
    test = channel.send("alice", LineTest()).message_id
    with pytest.raises(IllegalTransition, match="own test"):
        channel.alice.check_linetest_reply(test)
    with pytest.raises(IllegalTransition, match="unknown test"):
        channel.bob.check_linetest_reply(b"\x00" * 16)
    channel.send("bob", LineTestReply(test))
    with pytest.raises(IllegalTransition, match="already answered"):
        channel.bob.check(LineTestReply(test), channel.now_ms)


def test_their_bad_replies_are_anomalies(channel: Channel) -> None:
    test = channel.send("alice", LineTest()).message_id
    kind = DialogueKind.LINETEST_REPLY
    assert_refused(channel, "alice", kind, LineTestReply(b"\x00" * 16).encode(), "unknown test")
    theirs = channel.send("bob", LineTest()).message_id
    assert_refused(channel, "alice", kind, LineTestReply(theirs).encode(), "own test")
    channel.send("bob", LineTestReply(test))
    assert_refused(channel, "alice", kind, LineTestReply(test).encode(), "already answered")

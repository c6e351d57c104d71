"""Notification duties: agreed categories, notifications in time or late, requests due,
missed (and escalated once), answered."""

from __future__ import annotations

import pytest

from backchannel.dialogue import (
    DialogueKind,
    DutyAccept,
    DutyPropose,
    DutyRule,
    IllegalTransition,
    NotificationStatus,
    Notify,
    NotifyRequest,
    decode_body,
)
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Writer
from tests.dialogue.conftest import MINUTE, Channel, assert_refused

HOUR = 60 * MINUTE
TEST = b"\x31" * 16  # "missile test: notify at least 24 h before"
INCIDENT = b"\x32" * 16  # "incident at sea: notify within 1 h"


def _agree(channel: Channel) -> None:
    channel.send("alice", DutyPropose(TEST, 1, DutyRule.BEFORE, 24 * HOUR, "Missile test"))
    channel.send("bob", DutyPropose(INCIDENT, 1, DutyRule.WITHIN, HOUR, "Incident at sea"))
    channel.send("bob", DutyAccept(TEST, 1))
    channel.send("alice", DutyAccept(INCIDENT, 1))


def test_a_duty_is_described_and_its_layout_is_fixed() -> None:
    duty = DutyPropose(TEST, 1, DutyRule.BEFORE, 24 * HOUR, "Missile test", "Any launch.")
    assert duty.describe() == "notify at least 1 d before"
    assert DutyPropose(TEST, 1, DutyRule.WITHIN, HOUR, "x").describe() == "notify within 1 h"
    assert duty.encode() == (Writer().fixed(TEST, 16).u32(1).u8(1).u64(24 * HOUR)
                             .text16("Missile test").text16("Any launch.").getvalue())  # fmt: skip
    assert decode_body(DialogueKind.DUTY_PROPOSE, duty.encode()) == duty
    with pytest.raises(LocalProtocolError):
        DutyPropose(TEST, 1, DutyRule.WITHIN, 0, "x")
    with pytest.raises(RemoteProtocolError, match="rule"):
        bad_rule = Writer().fixed(TEST, 16).u32(1).u8(3).u64(1).text16("t").text16("")
        decode_body(DialogueKind.DUTY_PROPOSE, bad_rule.getvalue())


def test_notifications_are_in_time_or_late_by_the_notifier_s_clock(channel: Channel) -> None:
    _agree(channel)
    t0 = channel.now_ms
    # Two days ahead: in time (24 h before).
    channel.send("bob", Notify(TEST, 1, t0 + 48 * HOUR, "Test launch planned."))
    # Twelve hours ahead: late.
    channel.send("bob", Notify(TEST, 1, t0 + 12 * HOUR, "Another launch."))
    # An incident 30 minutes ago, notified now: in time (within 1 h).
    channel.send("alice", Notify(INCIDENT, 1, t0 - 30 * MINUTE, "Near miss."))
    for dialogue in (channel.alice, channel.bob):
        statuses = [n.status(channel.now_ms) for n in dialogue.notifications()]
        assert statuses == [NotificationStatus.IN_TIME, NotificationStatus.LATE,
                            NotificationStatus.IN_TIME]  # fmt: skip
    board = channel.alice.board(channel.now_ms).to_dict()
    assert [d["describe"] for d in board["duties"]] == ["notify at least 1 d before",
                                                        "notify within 1 h"]  # fmt: skip


def test_a_request_is_due_then_missed_and_escalated_once_then_answered_late(
    channel: Channel,
) -> None:
    _agree(channel)
    request = channel.send("alice", NotifyRequest(INCIDENT, 1, channel.now_ms, "Collision?"))
    (item,) = channel.bob.notifications()
    assert item.owed_by.value == "ours" and item.status(channel.now_ms) is NotificationStatus.DUE
    assert channel.alice.duty_escalations(channel.now_ms, set()) == []
    channel.advance(HOUR + 1)
    assert channel.alice.notifications()[0].status(channel.now_ms) is NotificationStatus.MISSED
    (escalation,) = channel.alice.duty_escalations(channel.now_ms, set())
    assert escalation.message_id == request.message_id
    assert channel.alice.duty_escalations(channel.now_ms, {request.message_id}) == []
    channel.send("bob", Notify(INCIDENT, 1, channel.now_ms - HOUR, "Minor contact.",
                               request.message_id))  # fmt: skip
    (item,) = channel.alice.notifications()
    assert item.status(channel.now_ms) is NotificationStatus.LATE and item.text == "Minor contact."
    with pytest.raises(IllegalTransition, match="already notified"):
        channel.bob.check(Notify(INCIDENT, 1, 0, "again", request.message_id), channel.now_ms)


def test_rule_breaking_duty_messages_are_refused_or_anomalies(channel: Channel) -> None:
    channel.send("alice", DutyPropose(TEST, 1, DutyRule.BEFORE, HOUR, "Missile test"))
    # Not yet accepted: neither side may notify under it.
    with pytest.raises(IllegalTransition, match="not accepted"):
        channel.alice.check(Notify(TEST, 1, 0, "x"), channel.now_ms)
    assert_refused(channel, "alice", DialogueKind.NOTIFY, Notify(TEST, 1, 0, "x").encode(),
                   "not accepted")  # fmt: skip
    with pytest.raises(IllegalTransition, match="owner"):
        channel.alice.check(DutyAccept(TEST, 1), channel.now_ms)
    theirs_now = DutyPropose(TEST, 2, DutyRule.BEFORE, HOUR, "x").encode()
    assert_refused(channel, "alice", DialogueKind.DUTY_PROPOSE, theirs_now, "not theirs")
    channel.send("bob", DutyAccept(TEST, 1))
    # Answering a request nobody made, or one's own request.
    assert_refused(channel, "alice", DialogueKind.NOTIFY,
                   Notify(TEST, 1, 0, "x", b"\x77" * 16).encode(), "unknown request")  # fmt: skip
    own = channel.send("alice", NotifyRequest(TEST, 1, channel.now_ms))
    with pytest.raises(IllegalTransition, match="owed by the other side"):
        channel.alice.check(Notify(TEST, 1, 0, "x", own.message_id), channel.now_ms)

"""Red lines: declared, versioned, acknowledged as understood per version."""

from __future__ import annotations

import pytest

from backchannel.dialogue import DialogueKind, IllegalTransition, RedLine, RedLineAck, Side
from tests.dialogue.conftest import MINUTE, Channel, assert_refused

TAIWAN = b"\x7a" * 16


def declare(channel: Channel, version: int = 1, sender: str = "bob", text: str = "") -> None:
    body = RedLine(
        TAIWAN, version, "Taiwan", text or "The first red line that must not be crossed."
    )
    channel.send(sender, body)


def test_a_red_line_awaits_the_other_side_s_acknowledgement(channel: Channel) -> None:
    declare(channel)
    (mine,) = channel.bob.red_lines(Side.OURS)
    (theirs,) = channel.alice.red_lines(Side.THEIRS)
    assert mine.redline_id == theirs.redline_id == TAIWAN
    assert mine.latest.title == "Taiwan" and mine.latest.version == 1
    assert mine.awaiting_acknowledgement and theirs.awaiting_acknowledgement
    assert channel.bob.board(channel.now_ms).red_lines_awaiting_their_ack == (mine,)
    assert channel.alice.board(channel.now_ms).red_lines_awaiting_our_ack == (theirs,)
    channel.advance(MINUTE)
    channel.send("alice", RedLineAck(TAIWAN, 1))
    for dialogue in (channel.alice, channel.bob):
        view = dialogue.red_line(TAIWAN)
        assert view is not None and not view.awaiting_acknowledgement
        assert view.latest.acknowledged_at_ms == channel.now_ms


def test_a_new_version_needs_a_new_acknowledgement(channel: Channel) -> None:
    declare(channel)
    channel.send("alice", RedLineAck(TAIWAN, 1))
    assert channel.bob.next_redline_version(TAIWAN) == 2
    declare(channel, 2, text="Nor arms sales that change the balance.")
    view = channel.alice.red_line(TAIWAN)
    assert view is not None and view.awaiting_acknowledgement
    assert [v.acknowledged for v in view.versions] == [True, False]
    assert view.latest.text == "Nor arms sales that change the balance."
    channel.send("alice", RedLineAck(TAIWAN, 2))
    view = channel.bob.red_line(TAIWAN)
    assert view is not None and [v.acknowledged for v in view.versions] == [True, True]


def test_both_sides_red_lines_are_listed(channel: Channel) -> None:
    declare(channel)
    channel.send("alice", RedLine(b"\x01" * 16, 1, "Ukraine", "No lethal aid to Russia."))
    owners = [r.owner for r in channel.alice.red_lines()]
    assert owners == [Side.THEIRS, Side.OURS]


def test_a_race_between_a_new_version_and_an_old_ack_converges(channel: Channel) -> None:
    declare(channel)
    channel.send("alice", RedLineAck(TAIWAN, 1), deliver=False)  # in flight
    declare(channel, 2)  # Bob revises before Alice's acknowledgement arrives
    assert channel.deliver("bob") == []
    for dialogue in (channel.alice, channel.bob):
        view = dialogue.red_line(TAIWAN)
        assert view is not None
        assert [v.acknowledged for v in view.versions] == [True, False]


# -- illegal transitions: this side's intents ------------------------------------------------


def test_acknowledging_an_old_version_is_refused(channel: Channel) -> None:
    declare(channel)
    declare(channel, 2)
    with pytest.raises(IllegalTransition, match="superseded by version 2"):
        channel.alice.check_redline_ack(TAIWAN, 1)
    channel.alice.check_redline_ack(TAIWAN, 2)


def test_acknowledging_twice_is_refused(channel: Channel) -> None:
    declare(channel)
    channel.send("alice", RedLineAck(TAIWAN, 1))
    with pytest.raises(IllegalTransition, match="already acknowledged"):
        channel.alice.check_redline_ack(TAIWAN, 1)


def test_acknowledging_ones_own_unknown_or_future_red_line_is_refused(channel: Channel) -> None:
    declare(channel)
    with pytest.raises(IllegalTransition, match="its own red line"):
        channel.bob.check_redline_ack(TAIWAN, 1)
    with pytest.raises(IllegalTransition, match="unknown red line"):
        channel.alice.check_redline_ack(b"\x00" * 16, 1)
    with pytest.raises(IllegalTransition, match="latest version is 1"):
        channel.alice.check_redline_ack(TAIWAN, 2)


def test_declaring_out_of_sequence_or_someone_else_s_red_line_is_refused(channel: Channel) -> None:
    with pytest.raises(IllegalTransition, match="next version is 1"):
        channel.bob.check_redline(TAIWAN, 2)
    declare(channel)
    with pytest.raises(IllegalTransition, match="next version is 2"):
        channel.bob.check_redline(TAIWAN, 1)
    with pytest.raises(IllegalTransition, match="next version is 2"):
        channel.bob.check_redline(TAIWAN, 3)
    with pytest.raises(IllegalTransition, match="belongs to the other side"):
        channel.alice.check(RedLine(TAIWAN, 2, "Taiwan", "Rewritten."), channel.now_ms)


# -- illegal transitions: the other side's messages -----------------------------------------


def test_their_acknowledgement_of_an_old_version_counts_for_that_version(channel: Channel) -> None:
    channel.send("alice", RedLine(TAIWAN, 1, "Ships", "No ships in the strait."))
    channel.send("alice", RedLine(TAIWAN, 2, "Ships", "No ships at all."))
    assert channel.inject("alice", DialogueKind.REDLINE_ACK, RedLineAck(TAIWAN, 1).encode()) is None
    view = channel.alice.red_line(TAIWAN)
    assert view is not None and [v.acknowledged for v in view.versions] == [True, False]


def test_their_second_acknowledgement_is_an_anomaly(channel: Channel) -> None:
    channel.send("alice", RedLine(TAIWAN, 1, "Ships", "No ships."))
    channel.send("bob", RedLineAck(TAIWAN, 1))
    body = RedLineAck(TAIWAN, 1).encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE_ACK, body, "already acknowledged")


def test_their_acknowledgement_of_their_own_or_an_unknown_red_line_is_an_anomaly(
    channel: Channel,
) -> None:
    declare(channel)
    body = RedLineAck(TAIWAN, 1).encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE_ACK, body, "its own red line")
    body = RedLineAck(b"\x00" * 16, 1).encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE_ACK, body, "unknown red line")
    channel.send("alice", RedLine(b"\x02" * 16, 1, "Mine", "Mine."))
    body = RedLineAck(b"\x02" * 16, 9).encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE_ACK, body, "latest version is 1")


def test_their_version_out_of_sequence_or_of_our_red_line_is_an_anomaly(channel: Channel) -> None:
    body = RedLine(TAIWAN, 2, "Taiwan", "Skipping v1.").encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE, body, "next version is 1")
    channel.send("alice", RedLine(b"\x02" * 16, 1, "Mine", "Mine."))
    body = RedLine(b"\x02" * 16, 2, "Mine", "Theirs now.").encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE, body, "belongs to the other side")
    declare(channel)
    body = RedLine(TAIWAN, 1, "Taiwan", "Again v1.").encode()
    assert_refused(channel, "alice", DialogueKind.REDLINE, body, "next version is 2")

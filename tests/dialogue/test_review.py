"""The periodic review: counts by the sender's clock, the same on both sides."""

from __future__ import annotations

import pytest

from backchannel.dialogue import Ack, Clarify, Note, Precedence
from backchannel.dialogue.review import review_channel
from backchannel.protocol.errors import LocalProtocolError
from tests.dialogue.conftest import MINUTE, Channel


def test_both_sides_count_the_same_period_alike(channel: Channel) -> None:
    start = channel.now_ms
    late = channel.send("alice", Note(Precedence.FLASH, 5 * MINUTE, "Confirm."))
    channel.send("alice", Note(Precedence.ROUTINE, 0, "FYI."))
    channel.advance(10 * MINUTE)
    channel.send("bob", Ack(late.message_id))
    channel.send("bob", Clarify(late.message_id, late.message_hash, "Which?"))
    end = channel.advance(MINUTE)
    ours = review_channel(channel.alice, start, end, end).to_dict()
    theirs = review_channel(channel.bob, start, end, end).to_dict()
    assert ours["sent"]["notes"] == {"ours": 2} and theirs["sent"]["notes"] == {"theirs": 2}
    assert ours["deadlines"]["acknowledged_late"] == {"ours": 1}
    assert ours["late"] == [late.message_id.hex()] == theirs["late"]
    assert ours["clarifications"]["asked"] == {"theirs": 1}
    assert theirs["clarifications"]["asked"] == {"ours": 1}
    # Outside the period, nothing.
    assert review_channel(channel.alice, 0, start, end).to_dict()["sent"] == {}
    text = review_channel(channel.alice, start, end, end).to_markdown("alice", "bob")
    assert "| notes | 2 | 0 |" in text and "acknowledged late | 1 | 0" in text
    with pytest.raises(LocalProtocolError):
        review_channel(channel.alice, end, start, end)

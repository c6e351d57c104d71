"""Agendas of numbered meeting rounds: items proposed by either side, decided by the other."""

from __future__ import annotations

import pytest

from backchannel.dialogue import (
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    AgendaStatus,
    DialogueKind,
    IllegalTransition,
    Side,
)
from tests.dialogue.conftest import Channel, assert_refused


def propose(channel: Channel, sender: str, title: str, round_number: int = 4) -> bytes:
    body = AgendaPropose(round_number, title, "Beijing, late August")
    return channel.send(sender, body).message_id


def test_the_agreed_agenda_is_what_both_accepted(channel: Channel) -> None:
    taiwan = propose(channel, "bob", "Taiwan")
    exports = propose(channel, "bob", "Export controls")
    ukraine = propose(channel, "alice", "Support for Russia's war")
    fentanyl = propose(channel, "alice", "Fentanyl precursors")
    channel.send("alice", AgendaAccept(4, taiwan))
    channel.send("alice", AgendaDecline(4, exports, "Not this round."))
    channel.send("bob", AgendaAccept(4, ukraine))
    for dialogue in (channel.alice, channel.bob):
        agenda = dialogue.agenda(4)
        assert [i.item_id for i in agenda.items] == [taiwan, exports, ukraine, fentanyl]
        assert [i.item_id for i in agenda.agreed] == [taiwan, ukraine]
        assert [i.item_id for i in agenda.undecided] == [fentanyl]
        declined = dialogue.agenda_item(exports)
        assert declined is not None and declined.status is AgendaStatus.DECLINED
        assert declined.reason == "Not this round."
    item = channel.alice.agenda_item(taiwan)
    assert item is not None and item.proposed_by is Side.THEIRS and item.detail


def test_rounds_are_kept_apart_and_the_latest_is_on_the_board(channel: Channel) -> None:
    propose(channel, "alice", "Vienna topics", 1)
    propose(channel, "bob", "Malta topics", 2)
    assert [r.round for r in channel.alice.agenda_rounds()] == [1, 2]
    next_round = channel.alice.board(channel.now_ms).next_round
    assert next_round is not None and next_round.round == 2
    assert channel.alice.agenda(3).items == ()


# -- illegal transitions: this side's intents ------------------------------------------------


def test_accepting_twice_or_after_declining_is_refused(channel: Channel) -> None:
    item = propose(channel, "bob", "Taiwan")
    channel.send("alice", AgendaAccept(4, item))
    with pytest.raises(IllegalTransition, match="already accepted"):
        channel.alice.check_agenda_decision(4, item)
    other = propose(channel, "bob", "Export controls")
    channel.send("alice", AgendaDecline(4, other))
    with pytest.raises(IllegalTransition, match="already declined"):
        channel.alice.check(AgendaAccept(4, other), channel.now_ms)


def test_accepting_ones_own_item_is_refused(channel: Channel) -> None:
    item = propose(channel, "alice", "Ukraine")
    with pytest.raises(IllegalTransition, match="proposer accepts it by proposing"):
        channel.alice.check_agenda_decision(4, item)


def test_deciding_an_unknown_item_or_in_the_wrong_round_is_refused(channel: Channel) -> None:
    with pytest.raises(IllegalTransition, match="unknown item"):
        channel.alice.check_agenda_decision(4, b"\x00" * 16)
    item = propose(channel, "bob", "Taiwan")
    with pytest.raises(IllegalTransition, match="belongs to round 4"):
        channel.alice.check(AgendaDecline(5, item), channel.now_ms)


# -- illegal transitions: the other side's messages -----------------------------------------


def test_their_second_decision_is_an_anomaly(channel: Channel) -> None:
    item = propose(channel, "alice", "Ukraine")
    channel.send("bob", AgendaAccept(4, item))
    for body in (AgendaAccept(4, item), AgendaDecline(4, item, "Changed our mind.")):
        assert_refused(channel, "alice", body.KIND, body.encode(), "already accepted")


def test_their_acceptance_of_their_own_item_is_an_anomaly(channel: Channel) -> None:
    item = propose(channel, "bob", "Taiwan")
    body = AgendaAccept(4, item).encode()
    assert_refused(channel, "alice", DialogueKind.AGENDA_ACCEPT, body, "proposer accepts it")


def test_their_decision_on_an_unknown_item_or_round_is_an_anomaly(channel: Channel) -> None:
    body = AgendaDecline(4, b"\x00" * 16).encode()
    assert_refused(channel, "alice", DialogueKind.AGENDA_DECLINE, body, "unknown item")
    item = propose(channel, "alice", "Ukraine")
    body = AgendaAccept(3, item).encode()
    assert_refused(channel, "alice", DialogueKind.AGENDA_ACCEPT, body, "belongs to round 4")

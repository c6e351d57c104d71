"""The status board: a round modelled on the Vienna talks, and a stable JSON form."""

from __future__ import annotations

import json

from backchannel.dialogue import (
    Ack,
    AgendaAccept,
    AgendaPropose,
    Answer,
    Clarify,
    Hold,
    LineState,
    LineTest,
    LineTestReply,
    Note,
    Precedence,
    RecordStatus,
    RedLine,
    RedLineAck,
    Side,
    Statement,
    export_record,
    statement_hash,
    verify_record_file,
)
from tests.dialogue.conftest import MINUTE, Channel

TAIWAN = b"\x7a" * 16
RECORD = b"\x5e" * 16


def play_a_round(channel: Channel) -> dict[str, bytes]:
    """A red line, urgent notes (one held then acknowledged, one missed), a clarification,
    an agenda, an agreed record and a line test."""
    ids: dict[str, bytes] = {}
    channel.send(
        "bob", RedLine(TAIWAN, 1, "Taiwan", "The first red line that must not be crossed.")
    )
    channel.send("alice", RedLineAck(TAIWAN, 1))
    ids["balloon"] = channel.send(
        "alice", Note(Precedence.FLASH, 30 * MINUTE, "An airship is over Montana. Yours?")
    ).message_id
    channel.advance(5 * MINUTE)
    channel.send("bob", Hold(ids["balloon"], channel.now_ms + 20 * MINUTE, "Checking."))
    channel.advance(15 * MINUTE)
    channel.send("bob", Ack(ids["balloon"]))
    ids["missed"] = channel.send(
        "alice", Note(Precedence.PRIORITY, 10 * MINUTE, "Confirm the Bangkok dates.")
    ).message_id
    question = channel.send("bob", Note(Precedence.ROUTINE, 0, "We note your export controls."))
    ids["request"] = channel.send(
        "alice", Clarify(question.message_id, question.message_hash, "Note, or object?")
    ).message_id
    channel.send("bob", Answer(ids["request"], "Object."))
    ids["open_request"] = channel.send(
        "alice", Clarify(question.message_id, question.message_hash, "To which ones?")
    ).message_id
    ids["item"] = channel.send("bob", AgendaPropose(4, "Taiwan", "Beijing")).message_id
    channel.send("alice", AgendaAccept(4, ids["item"]))
    proposal = channel.alice.propose_record(
        channel.keys["alice"], RECORD, Statement.single("Readout", "Candid talks."), channel.now_ms
    )
    channel.send("alice", proposal)
    sign = channel.bob.cosign_record(
        channel.keys["bob"], RECORD, 1, statement_hash(proposal.statement), channel.now_ms
    )
    channel.send("bob", sign)
    test = channel.send("alice", LineTest()).message_id
    channel.send("bob", LineTestReply(test))
    ids["their_test"] = channel.send("bob", LineTest()).message_id
    channel.advance(30 * MINUTE)
    return ids


def test_the_board_after_a_round(channel: Channel) -> None:
    ids = play_a_round(channel)
    board = channel.alice.board(channel.now_ms)
    assert board.last_heard_from_ms == channel.now_ms - 30 * MINUTE
    (missed,) = board.awaiting_their_ack
    assert missed.message_id == ids["missed"] and missed.overdue
    assert board.overdue == (missed,)
    assert board.awaiting_our_ack == ()
    assert [c.request_id for c in board.open_clarifications] == [ids["open_request"]]
    assert not board.red_lines_awaiting_our_ack and board.red_lines[0].owner is Side.THEIRS
    assert board.next_round is not None and [i.item_id for i in board.next_round.agreed] == [
        ids["item"]
    ]
    assert board.records[0].latest.status is RecordStatus.AGREED
    assert board.line.state is LineState.UP
    assert board.line.unanswered_theirs == (ids["their_test"],)
    assert board.anomalies == ()
    assert [e.message_id for e in channel.alice.escalations(channel.now_ms, set())] == [
        ids["missed"]
    ]
    verified = verify_record_file(export_record(channel.bob.agreed_record(RECORD)))
    assert verified.statement.title == "Readout"


def test_the_board_json_has_stable_keys(channel: Channel) -> None:
    play_a_round(channel)
    board = channel.alice.board(channel.now_ms).to_dict()
    assert json.loads(json.dumps(board)) == board
    assert list(board) == [
        "format", "now_ms", "last_heard_from_ms", "awaiting_their_ack", "awaiting_our_ack",
        "overdue", "open_clarifications", "red_lines", "next_round", "records", "codebook",
        "translations", "duties", "notifications", "line",
        "anomalies",
    ]  # fmt: skip
    assert board["format"] == 1
    (pending,) = board["awaiting_their_ack"]  # type: ignore[misc]
    assert sorted(pending) == sorted([
        "message_id", "sent_by", "precedence", "sent_at_ms", "deadline_ms", "worry_at_ms",
        "overdue", "hold",
    ])  # fmt: skip
    assert pending["precedence"] == "priority" and pending["sent_by"] == "ours"
    assert sorted(board["line"]) == sorted([  # type: ignore[call-overload]
        "state", "last_test_sent_at_ms", "last_answered_at_ms", "round_trip_ms",
        "next_test_due_at_ms", "test_due", "unanswered_theirs",
    ])  # fmt: skip
    (record,) = board["records"]  # type: ignore[misc]
    assert record["status"] == "agreed" and record["versions"][0]["cosigned_at_ms"]
    (red_line,) = board["red_lines"]  # type: ignore[misc]
    assert red_line["owner"] == "theirs" and red_line["versions"][0]["acknowledged_at_ms"]
    assert board["next_round"]["round"] == 4  # type: ignore[index]


def test_the_board_shows_a_hold_and_anomalies(channel: Channel) -> None:
    note = channel.send("alice", Note(Precedence.FLASH, MINUTE, "x")).message_id
    channel.send("bob", Hold(note, channel.now_ms + 10 * MINUTE, "Soon."))
    channel.inject("alice", 0x0100, b"\x00")
    board = channel.alice.board(channel.now_ms).to_dict()
    hold = board["awaiting_their_ack"][0]["hold"]  # type: ignore[index]
    assert hold["text"] == "Soon." and hold["expected_by_ms"] == channel.now_ms + 10 * MINUTE
    (anomaly,) = board["anomalies"]  # type: ignore[misc]
    assert anomaly["sent_by"] == "theirs" and "malformed" in anomaly["reason"]


def test_texts_stay_out_of_the_board_s_repr(channel: Channel) -> None:
    secret = "Carrier group turns back at dawn"
    note = channel.send("bob", Note(Precedence.FLASH, MINUTE, secret))
    channel.send("alice", Clarify(note.message_id, note.message_hash, secret))
    channel.send("bob", RedLine(TAIWAN, 1, secret, secret))
    channel.send("bob", AgendaPropose(1, secret, secret))
    assert secret not in repr(channel.alice.board(channel.now_ms))
    assert secret not in repr(channel.bob.board(channel.now_ms))

"""The shared codebook: propose, accept, replace, withdraw, send, render in each language."""

from __future__ import annotations

import pytest

from backchannel.dialogue import (
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeEntryStatus,
    CodeText,
    DialogueKind,
    IllegalTransition,
    Precedence,
    decode_body,
)
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from tests.dialogue.conftest import MINUTE, Channel, assert_refused

ENTRY = b"\x11" * 16
OTHER = b"\x22" * 16


def _entry(
    version: int = 1, number: int = 7, entry_id: bytes = ENTRY, word: str = "BLUE HARBOR"
) -> CodebookPropose:
    return CodebookPropose(
        entry_id,
        version,
        number,
        word,
        (
            CodeText("en", f"Test launch at {{time}} from {{place}} (v{version})."),
            CodeText("ru", f"Испытательный пуск в {{time}} из {{place}} (v{version})."),
        ),
        ("time", "place"),
        Precedence.FLASH,
        10 * MINUTE,
    )


def _agreed(channel: Channel) -> None:
    channel.send("alice", _entry())
    channel.send("bob", CodebookAccept(ENTRY, 1))


def test_an_accepted_entry_is_sent_by_number_and_rendered_in_each_side_s_language(
    channel: Channel,
) -> None:
    _agreed(channel)
    sent = channel.send("alice", CodebookSend(ENTRY, 1, ("06:00Z", "Plesetsk")))
    # Only the number, version and values travel: no text of the entry.
    assert b"Test launch" not in sent.body and "Испытательный".encode() not in sent.body
    for dialogue, language, expected in (
        (channel.alice, "en", "Test launch at 06:00Z from Plesetsk (v1)."),
        (channel.bob, "ru", "Испытательный пуск в 06:00Z из Plesetsk (v1)."),
    ):
        message = dialogue.code_message(sent.message_id)
        assert message is not None and message.code_word == "BLUE HARBOR"
        text, rendered = message.render(language)
        assert (text.language, rendered) == (language, expected)
        # A regional tag reads its language's text; an absent language, the first text.
        assert message.render("ru-RU")[0].language == "ru"
        assert message.render("fr")[0].language == "en"
    board = channel.bob.board(channel.now_ms).to_dict()
    [entry] = board["codebook"]  # type: ignore[misc]
    assert (entry["code_word"], entry["status"], entry["current_version"]) == (
        "BLUE HARBOR", "agreed", 1,
    )  # fmt: skip


def test_an_entry_the_other_side_has_not_accepted_is_refused_before_it_leaves(
    channel: Channel,
) -> None:
    channel.send("alice", _entry())
    for who in ("alice", "bob"):
        with pytest.raises(IllegalTransition, match="not accepted"):
            channel.dialogues[who].check(CodebookSend(ENTRY, 1, ("t", "p")), channel.now_ms)
    # A peer that sends it anyway: an anomaly, nothing rendered.
    anomaly = assert_refused(
        channel, "alice", DialogueKind.CODEBOOK_SEND, CodebookSend(ENTRY, 1, ("t", "p")).encode(),
        "not accepted",
    )  # fmt: skip
    assert channel.alice.code_message(anomaly.message_id) is None


def test_the_owner_cannot_accept_its_own_entry_and_nobody_accepts_twice(channel: Channel) -> None:
    channel.send("alice", _entry())
    with pytest.raises(IllegalTransition, match="owner"):
        channel.alice.check(CodebookAccept(ENTRY, 1), channel.now_ms)
    channel.send("bob", CodebookAccept(ENTRY, 1))
    with pytest.raises(IllegalTransition, match="already accepted"):
        channel.bob.check(CodebookAccept(ENTRY, 1), channel.now_ms)
    assert_refused(
        channel, "alice", DialogueKind.CODEBOOK_ACCEPT, CodebookAccept(ENTRY, 1).encode(),
        "already accepted",
    )  # fmt: skip


def test_only_the_owner_proposes_versions_and_each_follows_the_last(channel: Channel) -> None:
    channel.send("alice", _entry())
    with pytest.raises(IllegalTransition, match="not theirs"):
        channel.bob.check(_entry(version=2), channel.now_ms)
    with pytest.raises(IllegalTransition, match="next version is 2"):
        channel.alice.check(_entry(version=3), channel.now_ms)
    assert_refused(
        channel, "alice", DialogueKind.CODEBOOK_PROPOSE, _entry(version=2).encode(), "not theirs"
    )


def test_a_new_version_replaces_the_old_once_accepted(channel: Channel) -> None:
    _agreed(channel)
    channel.send("alice", _entry(version=2))
    # Until v2 is accepted, v1 stays current and v2 cannot be sent.
    entry = channel.alice.codebook_entry(ENTRY)
    assert entry is not None and entry.current is not None and entry.current.version == 1
    assert entry.awaiting_acceptance is not None and entry.awaiting_acceptance.version == 2
    with pytest.raises(IllegalTransition, match="not accepted"):
        channel.alice.check(CodebookSend(ENTRY, 2, ("t", "p")), channel.now_ms)
    channel.send("bob", CodebookAccept(ENTRY, 2))
    with pytest.raises(IllegalTransition, match="current version is 2"):
        channel.bob.check(CodebookSend(ENTRY, 1, ("t", "p")), channel.now_ms)
    sent = channel.send("bob", CodebookSend(ENTRY, 2, ("t", "p")))
    message = channel.alice.code_message(sent.message_id)
    assert message is not None and message.render("en")[1].endswith("(v2).")


def test_only_the_latest_version_is_accepted_here_but_an_older_one_from_the_peer_is_read(
    channel: Channel,
) -> None:
    channel.send("alice", _entry())
    channel.send("alice", _entry(version=2))
    with pytest.raises(IllegalTransition, match="version 2 replaces it"):
        channel.bob.check(CodebookAccept(ENTRY, 1), channel.now_ms)
    # Bob's acceptance of v1 may have crossed v2 in flight: Alice folds it.
    channel.send("bob", CodebookAccept(ENTRY, 1), check=False)
    assert channel.alice.anomalies == ()
    entry = channel.alice.codebook_entry(ENTRY)
    assert entry is not None and entry.current is not None and entry.current.version == 1


def test_a_send_crossing_a_replacement_in_flight_is_still_read_with_its_own_version(
    channel: Channel,
) -> None:
    _agreed(channel)
    channel.send("alice", _entry(version=2))
    late = channel.send("bob", CodebookSend(ENTRY, 1, ("t", "p")), deliver=False)
    channel.send("bob", CodebookAccept(ENTRY, 2))
    assert channel.alice.anomalies == () and channel.bob.anomalies == ()
    message = channel.alice.code_message(late.message_id)
    assert message is not None and message.render("en")[1].endswith("(v1).")


def test_either_side_withdraws_and_then_nobody_sends_it(channel: Channel) -> None:
    _agreed(channel)
    channel.send("bob", CodebookWithdraw(ENTRY))
    for who in ("alice", "bob"):
        dialogue = channel.dialogues[who]
        entry = dialogue.codebook_entry(ENTRY)
        assert entry is not None and entry.status is CodeEntryStatus.WITHDRAWN
        with pytest.raises(IllegalTransition, match="withdrawn"):
            dialogue.check(CodebookSend(ENTRY, 1, ("t", "p")), channel.now_ms)
        with pytest.raises(IllegalTransition, match="already withdrawn"):
            dialogue.check(CodebookWithdraw(ENTRY), channel.now_ms)
    with pytest.raises(IllegalTransition, match="withdrawn"):
        channel.alice.check(_entry(version=2), channel.now_ms)
    assert channel.alice.codebook_lookup("7") is None


def test_withdrawals_crossing_in_flight_are_both_kept_without_anomaly(channel: Channel) -> None:
    _agreed(channel)
    channel.send("alice", CodebookWithdraw(ENTRY), deliver=False)
    channel.send("bob", CodebookWithdraw(ENTRY), deliver=False)
    assert channel.deliver("alice") == [] and channel.deliver("bob") == []
    for dialogue in (channel.alice, channel.bob):
        entry = dialogue.codebook_entry(ENTRY)
        assert entry is not None and len(entry.withdrawn_by) == 2


def test_a_number_in_use_by_a_live_entry_is_refused_locally(channel: Channel) -> None:
    channel.send("alice", _entry())
    with pytest.raises(IllegalTransition, match="number 7"):
        channel.bob.check(_entry(entry_id=OTHER), channel.now_ms)
    channel.send("alice", CodebookWithdraw(ENTRY))
    channel.bob.check(_entry(entry_id=OTHER), channel.now_ms)


def test_entries_are_found_by_number_or_code_word(channel: Channel) -> None:
    _agreed(channel)
    for code in ("7", "blue harbor", "BLUE HARBOR"):
        found = channel.bob.codebook_lookup(code)
        assert found is not None and found.entry_id == ENTRY
    assert channel.bob.codebook_lookup("8") is None


def test_a_send_with_the_wrong_number_of_values_is_refused(channel: Channel) -> None:
    _agreed(channel)
    with pytest.raises(IllegalTransition, match="2 parameters"):
        channel.alice.check(CodebookSend(ENTRY, 1, ("only one",)), channel.now_ms)
    assert_refused(
        channel, "alice", DialogueKind.CODEBOOK_SEND, CodebookSend(ENTRY, 1, ()).encode(),
        "2 parameters",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("build", "why"),
    [
        (lambda: CodeText("english!", "x"), "BCP 47"),
        (lambda: CodeText("en", "a\x1b[2J"), "control"),
        (lambda: CodebookPropose(ENTRY, 1, 0, "W", (CodeText("en", "x"),)), "number"),
        (lambda: CodebookPropose(ENTRY, 1, 10_000, "W", (CodeText("en", "x"),)), "number"),
        (lambda: CodebookPropose(ENTRY, 1, 1, "W", ()), "languages"),
        (lambda: CodebookPropose(ENTRY, 1, 1, "W", (CodeText("en", "at {time}"),)), "undeclared"),
        (lambda: CodebookPropose(ENTRY, 1, 1, "W", (CodeText("en", "a } b"),)), "brace"),
        (lambda: CodebookPropose(ENTRY, 1, 1, "W", (CodeText("en", "x"),), ("Time",)), "name"),
        (
            lambda: CodebookPropose(ENTRY, 1, 1, "W", (CodeText("en", "x"), CodeText("EN", "y"))),
            "once",
        ),
        (lambda: CodebookSend(ENTRY, 1, ("a\nb",)), "control"),
    ],
)
def test_building_an_impossible_entry_is_the_caller_s_error(build: object, why: str) -> None:
    with pytest.raises(LocalProtocolError, match=why):
        build()  # type: ignore[operator]


def test_a_peer_s_malformed_entry_is_a_remote_protocol_error() -> None:
    good = bytearray(_entry().encode())
    # The number field (after id 16 and version 4) set to 0.
    good[20:22] = b"\x00\x00"
    with pytest.raises(RemoteProtocolError, match="number"):
        decode_body(DialogueKind.CODEBOOK_PROPOSE, bytes(good))
    with pytest.raises(RemoteProtocolError, match="precedence"):
        body = bytearray(_entry().encode())
        body[22 + 2 + len("BLUE HARBOR")] = 9
        decode_body(DialogueKind.CODEBOOK_PROPOSE, bytes(body))


def test_a_codebook_message_with_a_default_deadline_is_acknowledged_or_escalated(
    channel: Channel,
) -> None:
    from backchannel.dialogue import Ack, Hold

    _agreed(channel)  # FLASH, acknowledgement within 10 minutes
    sent = channel.send("alice", CodebookSend(ENTRY, 1, ("06:00Z", "Plesetsk")))
    (pending,) = channel.alice.pending_acks(channel.now_ms)
    assert pending.message_id == sent.message_id and pending.precedence is Precedence.FLASH
    assert pending.deadline_ms == sent.sent_at_ms + 10 * MINUTE
    channel.advance(11 * MINUTE)
    (escalation,) = channel.alice.escalations(channel.now_ms, set())
    assert escalation.message_id == sent.message_id
    # Bob may hold it, then acknowledges it (late): it leaves the lists on both sides.
    channel.send("bob", Hold(sent.message_id, channel.now_ms + MINUTE))
    channel.send("bob", Ack(sent.message_id))
    assert channel.alice.pending_acks(channel.now_ms) == ()
    assert channel.bob.acknowledged_at(sent.message_id) is not None
    with pytest.raises(IllegalTransition, match="own"):
        channel.alice.check(Ack(sent.message_id), channel.now_ms)

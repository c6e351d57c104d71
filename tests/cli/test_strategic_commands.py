"""The strategic channel through the CLI over a real relay: urgent notes, holding replies,
acknowledgements, clarifications, red lines, agendas, escalation, line tests and the
board; each illegal act is one `error:` line, exit 1, and sends nothing."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from backchannel.cli.exitcodes import ExitCode
from tests.cli.conftest import Pair, one_error_line, run


def js(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json").stdout)


def board(home: Path, channel: str) -> dict[str, Any]:
    (channel_board,) = js(home, "status", channel)["channels"]
    assert isinstance(channel_board, dict)
    return channel_board


def test_flash_note_held_then_acknowledged_once(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    sent = js(w, "send", "beijing", "Incident at sea: confirm.", "--flash", "--ack-within", "10m")
    assert (sent["precedence"], sent["ack_within_ms"]) == ("flash", 600_000)
    note = sent["message_id"][:8]
    run(b, "sync")
    inbox = js(b, "inbox", "washington")["messages"]
    assert (inbox[0]["precedence"], inbox[0]["ack_within_ms"]) == ("flash", 600_000)
    assert "FLASH, ack within 10m" in run(b, "read", "washington").stdout

    held = js(b, "hold", "washington", note, "--until", "2h", "Consulting the capital.")
    assert held["act"] == "hold" and held["target"] == sent["message_id"]
    run(w, "sync")
    (waiting,) = board(w, "beijing")["awaiting_their_ack"]
    assert waiting["hold"]["text"] == "Consulting the capital." and not waiting["overdue"]

    acked = run(b, "ack", "washington", note)
    assert f"Acknowledged {note}" in acked.stdout
    line = one_error_line(run(b, "ack", "washington", note, code=1))
    assert "already acknowledged" in line
    run(w, "sync")
    assert board(w, "beijing")["awaiting_their_ack"] == []
    # One's own note cannot be acknowledged, and a precedence is chosen once.
    assert "error: " in one_error_line(run(w, "ack", "beijing", note, code=1))
    run(w, "send", "beijing", "x", "--flash", "--routine", code=2)


def test_clarification_asked_answered_and_closed(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    note = js(w, "send", "beijing", "Our policy has not changed.")["message_id"]
    run(b, "sync")
    asked = js(b, "clarify", "washington", note[:8], "Does this include arms sales?")
    request = asked["message_id"]
    synced = run(w, "sync").stdout
    assert "beijing asks about" in synced and "Does this include arms sales?" in synced
    (opened,) = board(w, "beijing")["open_clarifications"]
    assert (opened["request_id"], opened["target_id"], opened["asked_by"]) == (
        request, note, "theirs")

    run(w, "answer", "beijing", request[:8], "It does not change them either.")
    line = one_error_line(run(w, "answer", "beijing", request[:8], "Again.", code=1))
    assert "closed" in line or "already" in line
    assert "washington answered your request" in run(b, "sync").stdout
    assert board(b, "washington")["open_clarifications"] == []
    assert "error: " in one_error_line(run(b, "answer", "washington", "zz", "?", code=1))


def test_red_lines_versioned_and_acknowledged_as_understood(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    text = "Taiwan is the first red line that must not be crossed."
    declared = js(b, "redline", "add", "washington", "Taiwan", text)
    redline, ref = declared["redline_id"], declared["redline_id"][:8]
    assert declared["version"] == 1
    run(w, "sync")
    (listed,) = js(w, "redline", "list")["red_lines"]
    assert (listed["channel"], listed["owner"], listed["awaiting_acknowledgement"]) == (
        "beijing", "theirs", True)
    assert listed["versions"][0]["text"] == text
    line = one_error_line(run(w, "redline", "ack", "beijing", ref, "--version", "2", code=1))
    assert "no version 2 yet" in line and "latest is version 1" in line
    run(w, "redline", "ack", "beijing", ref, "--version", "1")

    assert js(b, "redline", "add", "washington", "Taiwan", "Revised.", "--update", ref)[
        "version"] == 2
    run(w, "sync")
    line = one_error_line(run(w, "redline", "ack", "beijing", ref, "--version", "1", code=1))
    assert "version 2" in line and "no longer" in line
    run(w, "redline", "ack", "beijing", ref)
    assert "already" in one_error_line(run(w, "redline", "ack", "beijing", ref, code=1))
    run(b, "sync")
    (mine,) = js(b, "redline", "list", "washington")["red_lines"]
    assert mine["redline_id"] == redline and mine["owner"] == "ours"
    assert [v["acknowledged_at_ms"] is not None for v in mine["versions"]] == [True, True]
    shown = run(b, "redline", "list").stdout
    assert "v2 understood" in shown and "v1 understood" in shown


def test_agenda_proposed_decided_and_agreed(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    taiwan = js(w, "agenda", "propose", "beijing", "--round", "2", "Taiwan Strait",
                "--detail", "Vienna, 12-13 May")["item_id"]
    controls = js(b, "agenda", "propose", "washington", "--round", "2",
                  "Export controls")["item_id"]
    run(w, "sync")
    run(b, "sync")
    run(b, "agenda", "accept", "washington", taiwan[:8])
    assert "error: " in one_error_line(run(b, "agenda", "accept", "washington", taiwan[:8],
                                           code=1))
    assert "error: " in one_error_line(run(b, "agenda", "decline", "washington",
                                           controls[:8], code=1))  # one's own item
    run(w, "agenda", "decline", "beijing", controls[:8], "--reason", "Not at this round.")
    run(w, "sync")
    shown = js(w, "agenda", "show", "beijing", "--round", "2")
    (meeting,) = shown["rounds"]
    assert meeting["agreed"] == [taiwan]
    states = {i["item_id"]: (i["status"], i["proposed_by"]) for i in meeting["items"]}
    assert states == {taiwan: ("accepted", "ours"), controls: ("declined", "theirs")}
    # One shape wherever an agenda appears.
    assert board(w, "beijing")["next_round"] == meeting
    human = run(w, "agenda", "show", "beijing").stdout
    assert "Round 2" in human and "Agreed agenda" in human and "Not at this round." in human


def test_missed_deadline_escalates_runs_the_command_and_shows_overdue(
    pair: Pair, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    marker = tmp_path / "paged"
    pager = tmp_path / "page.py"
    pager.write_text("import os, pathlib, sys\n"
                     "pathlib.Path(sys.argv[1]).write_text(os.environ['BACKCHANNEL_MESSAGE_ID'])\n")
    command = shlex.join([sys.executable, "-I", str(pager), str(marker)])
    run(w, "escalation", "set", command)
    assert js(w, "escalation", "show")["command"] == command
    note = js(w, "send", "beijing", "Please acknowledge.", "--priority",
              "--ack-within", "300ms")["message_id"]
    run(b, "sync")
    time.sleep(0.4)
    synced = run(w, "sync", "--json")
    assert json.loads(synced.stdout)["escalated"] == 1
    assert marker.read_text() == note
    shown = board(w, "beijing")
    assert shown["overdue"] == [note] and shown["escalated"] == [note]
    assert "OVERDUE, escalated" in run(w, "status", "beijing").stdout
    assert json.loads(run(w, "sync", "--json").stdout)["escalated"] == 0  # once only


def test_line_test_configured_sent_answered_and_up(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    tested = js(w, "linetest", "beijing", "--every", "30m", "--grace", "5m", "--now")
    assert (tested["every_ms"], tested["grace_ms"]) == (1_800_000, 300_000)
    assert tested["sent"]["stored_on"] == [pair.relay.url]
    assert js(b, "sync")["line_tests_answered"] >= 1
    run(w, "sync")
    line = js(w, "linetest", "beijing")["line"]
    assert line["state"] == "up" and line["round_trip_ms"] is not None
    assert js(w, "linetest", "beijing", "--every", "0")["every_ms"] == 0
    assert "UP" in run(w, "linetest", "beijing").stdout
    run(w, "linetest", "beijing", "--every", "soon", code=2)


def test_status_json_is_the_channel_status_and_the_board_merged(pair: Pair) -> None:
    shown = board(pair.washington, "beijing")
    channel_keys = {"name", "id", "verified", "identity_changed", "relays", "relay_health",
                    "last_heard", "sent", "delivered", "read", "received", "unread", "queued",
                    "rejected", "gaps"}
    board_keys = {"format", "now_ms", "last_heard_from_ms", "awaiting_their_ack",
                  "awaiting_our_ack", "overdue", "open_clarifications", "red_lines",
                  "next_round", "records", "line", "anomalies"}
    assert channel_keys | board_keys | {"escalated", "line_test"} <= set(shown)
    assert shown["format"] == 1 and shown["name"] == "beijing"
    assert shown["relay_health"][0]["up"] is True
    assert set(shown["line"]) >= {"state", "last_answered_at_ms", "round_trip_ms",
                                  "next_test_due_at_ms"}
    assert shown["line_test"] == {"every_ms": 3_600_000, "grace_ms": 600_000}
    human = run(pair.washington, "status").stdout
    assert "status board" in human and "Line test" in human and "Red lines" in human


def test_meet_propose_sends_the_best_venue_as_an_agenda_item(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    sent = json.loads(run(w, "meet", "propose", "beijing", "--round", "4", "--between",
                          "Washington", "--between", "Beijing", "--after", "2023-05-01",
                          "--json").stdout)
    assert sent["venue"] == "Vienna" and sent["round"] == 4
    run(b, "sync")
    run(b, "agenda", "accept", "washington", sent["item_id"][:8])
    run(w, "sync")
    shown = json.loads(run(w, "agenda", "show", "beijing", "--round", "4", "--json").stdout)
    meeting = shown["rounds"][0]
    assert meeting["agreed"] == [sent["item_id"]]
    (item,) = meeting["items"]
    assert "Vienna" in item["title"] and item["detail"]
    line = one_error_line(run(w, "meet", "propose", "beijing", "--round", "5", "--between",
                              "Xqzzyville", "--between", "Beijing", code=1))
    assert "Xqzzyville" in line


def test_items_proposed_across_each_other_are_agreed_in_one_order(pair: Pair) -> None:
    """Both propose before hearing from the other, then accept each other's item: both
    `agenda show` list the agreed agenda in the same order (review §4 row 3)."""
    w, b = pair.washington, pair.beijing
    first = js(w, "agenda", "propose", "beijing", "--round", "3", "Taiwan Strait")["item_id"]
    time.sleep(0.01)  # a later send time, so the canonical order is first, second
    second = js(b, "agenda", "propose", "washington", "--round", "3", "Exports")["item_id"]
    for home in (w, b, w):
        run(home, "sync")
    run(w, "agenda", "accept", "beijing", second[:8])
    run(b, "agenda", "accept", "washington", first[:8])
    for home in (w, b, w):
        run(home, "sync")
    mine = js(w, "agenda", "show", "beijing", "--round", "3")["rounds"][0]
    theirs = js(b, "agenda", "show", "washington", "--round", "3")["rounds"][0]
    assert mine["agreed"] == theirs["agreed"] == [first, second]
    assert [i["item_id"] for i in mine["items"]] == [i["item_id"] for i in theirs["items"]]


def test_the_console_refuses_a_red_line_ack_in_the_cli_s_words(pair: Pair) -> None:
    import asyncio

    import pytest

    from backchannel.cli.context import _message_of
    from backchannel.client.engine import Principal
    from backchannel.client.errors import UnknownReference
    from backchannel.tui.live import ConsoleData
    from tests.cli.conftest import PASSPHRASE

    note = json.loads(run(pair.washington, "send", "beijing", "not a red line",
                          "--json").stdout)["message_id"][:8]
    said = one_error_line(run(pair.washington, "redline", "ack", "beijing", note,
                              code=ExitCode.NOT_FOUND))
    principal = Principal.open(pair.washington, PASSPHRASE)
    try:
        with pytest.raises(UnknownReference) as refused:
            asyncio.run(ConsoleData(principal).redline_ack("beijing", note))
    finally:
        principal.close()
    assert said == f"error: {_message_of(refused.value)}"
    assert said == f"error: '{note}' is not a red line of 'beijing'"

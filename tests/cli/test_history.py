"""`backchannel history` over a real relay: a scripted dialogue of every act kind (driven
through the client, so the test stays fast), then the command shows each in order; its
`--json` parses and matches; `--since` and paging select the right entries, and the
paging hint runs as it is."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backchannel.cli.history import history_json as history_json_of
from backchannel.client.history import HistoryEntry, HistoryFork, HistoryGap, HistoryPage
from backchannel.testing import FixedClock
from tests.cli.conftest import ThreadRelay, one_error_line, run
from tests.client.dialogue_script import PHASE_GAP_MS, Script, principals, run_script

DAY_MS = 24 * 3600 * 1000

# What the text shows for each act (the script's order), seen from Washington.
SHOWN = {
    "note": "note",
    "hold": "holding reply to",
    "ack": "acknowledged note",
    "clarify": "asks about",
    "answer": "answers request",
    "redline": "red line",
    "redline_ack": "understood (not: agreed to) red line",
    "agenda_propose": "proposes for round 2: Maritime incidents",
    "agenda_accept": "accepts agenda item",
    "record_propose": "proposes record",
    "record_sign": "co-signs record",
    "linetest": "line test",
    "linetest_reply": "answers line test",
}


@dataclass
class Scripted:
    washington: Path
    beijing: Path
    script: Script

    @property
    def ids(self) -> list[str]:
        return [i for _, _, i in self.script.acts]


@pytest.fixture()
def scripted(tmp_path: Path, relay: ThreadRelay) -> Scripted:
    # Three days ago, then (PHASE_GAP_MS later) two days ago: `--since 60h` is the second.
    assert PHASE_GAP_MS == DAY_MS
    clock = FixedClock(int(time.time() * 1000) - 3 * DAY_MS)
    w, b = principals(tmp_path, clock)
    script = asyncio.run(run_script(w, b, relay.url, clock))
    w.close()
    b.close()
    return Scripted(tmp_path / "washington", tmp_path / "beijing", script)


def history(home: Path | None, *args: str, code: int = 0, command: str = "history") -> str:
    return run(home, command, "beijing", *args, passphrase="pw", code=code).stdout


def history_json(home: Path, *args: str) -> dict[str, Any]:
    data = json.loads(history(home, *args, "--json"))
    assert isinstance(data, dict)
    return data


def entry_lines(out: str) -> list[str]:
    """The first line of each message (the status lines under them are indented), without
    the urgency word a FLASH note's line starts with where there is no colour."""
    lines = [line.removeprefix("FLASH: ") for line in out.splitlines()]
    return [line for line in lines if re.match(r"\d{4}-\d\d-\d\d |\d\d:\d\d:", line)]


def shown_ids(out: str) -> list[str]:
    """The id column (the script's messages are days old: date, time, who, id)."""
    return [line.split()[3] for line in entry_lines(out)]


def test_every_act_shown_in_order_with_receipts(scripted: Scripted) -> None:
    out = history(scripted.washington, "--limit", "100")
    lines = entry_lines(out)
    assert len(lines) == len(scripted.script.acts), out
    for line, (act, direction, message_id) in zip(lines, scripted.script.acts, strict=True):
        who = "you" if direction == "out" else "beijing"
        assert f"  {who}  " in line.replace("you    ", "you  ") and message_id[:8] in line, line
        assert SHOWN[act] in line, (act, line)
    assert "note [FLASH, ack within 10m]: Incident at sea: confirm." in out
    # In a pipe a FLASH note's line starts with its word, as in `read` and `watch`, and
    # only that line does.
    (flash,) = [line for line in out.splitlines() if line.startswith("FLASH: ")]
    assert "Incident at sea: confirm." in flash
    assert "Consulting the capital." in out and "It does not." in out
    # Under each of ours: its receipts, and the acknowledgement of the FLASH note.
    assert out.count("    delivered ") == sum(1 for _, d, _ in scripted.script.acts if d == "out")
    assert "· read " in out and "· acknowledged " in out
    # Times are local and human, never raw milliseconds.
    assert str(scripted.script.second_phase_ms) not in out
    assert dt.datetime.fromtimestamp(scripted.script.second_phase_ms / 1000).strftime(
        "%Y-%m-%d %H:%M") in out
    # The alias shows the same.
    assert history(scripted.washington, "--limit", "100", command="transcript") == out
    # The ids shown are the ids commands take.
    (line,) = [x for x in entry_lines(out) if "Our policy has not changed." in x]
    shown = line.split()[3]
    assert "Our policy has not changed." in run(
        scripted.washington, "read", "beijing", shown, passphrase="pw").stdout
    asked = run(scripted.washington, "clarify", "beijing", shown, "Since when?", "--json",
                passphrase="pw").stdout
    assert json.loads(asked)["target"].startswith(shown)


def test_json_parses_and_matches_the_script(scripted: Scripted) -> None:
    data = history_json(scripted.washington, "--limit", "100")
    assert (data["channel"], data["total"], data["earlier"], data["later"], data["before"]) == (
        "beijing", len(scripted.ids), 0, 0, None)
    items = data["items"]
    assert [(i["act"], i["direction"], i["message_id"]) for i in items] == scripted.script.acts
    first = scripted.script.first
    note, hold = items[first], items[first + 1]
    assert (note["precedence"], note["ack_within_ms"], note["text"]) == (
        "flash", 600_000, "Incident at sea: confirm.")
    assert note["delivered_at"].endswith("Z") and note["acknowledged_at"] and note["read_at"]
    assert hold["target_id"] == note["message_id"] and hold["expected_by"]
    assert items[first + 5]["target_id"] == items[first + 4]["message_id"]  # answer -> request
    assert set(items[0]) >= {"type", "at", "sent_at", "seq", "title", "subject_id", "anomaly"}


def test_since_and_paging_select_the_right_entries(scripted: Scripted) -> None:
    w, ids = scripted.washington, scripted.ids
    second = scripted.script.first + 6  # the red line opens the second phase
    recent = history_json(w, "--since", "60h", "--limit", "100")
    assert [i["message_id"] for i in recent["items"]] == ids[second:]
    day = dt.datetime.fromtimestamp(scripted.script.second_phase_ms / 1000).date()
    by_date = history_json(w, "--since", day.isoformat(), "--limit", "100")
    assert [i["message_id"] for i in by_date["items"]] == ids[second:]

    page = history(w, "--limit", "5")
    assert shown_ids(page) == [i[:8] for i in ids[-5:]]
    (hint,) = [line for line in page.splitlines() if "earlier message(s)" in line]
    assert hint.startswith(f"{len(ids) - 5} earlier message(s): backchannel --home ")
    argv = shlex.split(hint.split(": ", 1)[1])
    assert argv[0] == "backchannel" and argv[-2:] == ["--before", ids[-5][:8]]
    earlier = run(None, *argv[1:], passphrase="pw").stdout  # pasted as it is
    assert shown_ids(earlier) == [i[:8] for i in ids[-10:-5]]
    assert "5 later message(s): backchannel --home" in earlier
    as_json = history_json(w, "--limit", "5")
    assert as_json["before"] == ids[-5] and as_json["earlier"] == len(ids) - 5


def test_line_tests_can_be_left_out(scripted: Scripted) -> None:
    w, acts = scripted.washington, scripted.script.acts
    every = history_json(w, "--limit", "100")["items"]
    (test,) = [i for i in every if i["act"] == "linetest" and i["direction"] == "out"][-1:]
    assert test["answered_at"] is not None
    quiet = history_json(w, "--limit", "100", "--no-line-tests")
    assert [i["message_id"] for i in quiet["items"]] == [
        i for a, _, i in acts if a not in ("linetest", "linetest_reply")]
    page = history(w, "--limit", "2", "--no-line-tests")
    (hint,) = [line for line in page.splitlines() if "earlier message(s)" in line]
    assert hint.endswith("--no-line-tests --before " + quiet["items"][-2]["message_id"][:8])
    assert "· answered " in history(w, "--limit", "2")  # the last test and its answer


def test_bad_paging_and_dates_are_refused(scripted: Scripted) -> None:
    w = scripted.washington
    assert "no message 'ffffffff'" in one_error_line(
        run(w, "history", "beijing", "--before", "ffffffff", passphrase="pw", code=3))  # not found
    run(w, "history", "beijing", "--since", "yesterday", passphrase="pw", code=2)
    run(w, "history", "beijing", "--limit", "0", passphrase="pw", code=2)
    assert "error: " in one_error_line(
        run(w, "history", "nobody", passphrase="pw", code=3))
    assert "No messages in 'beijing' since 1m." in history(w, "--since", "1m")


def test_gap_and_fork_marks_in_json() -> None:
    entry = HistoryEntry("ab" * 16, "in", 5, "note", 1_000, 900, text="hi")
    page = HistoryPage("beijing", (HistoryGap(3, 4), HistoryFork("theirs", "two messages at one "
                       "sequence number", 5, 2_000, "ab" * 16), entry), 1, 0, 0)
    gap, fork, message = history_json_of(page)["items"]
    assert gap == {"type": "gap", "first_seq": 3, "last_seq": 4}
    assert (fork["type"], fork["side"], fork["seq"], fork["message_id"]) == (
        "fork", "theirs", 5, "ab" * 16)
    assert (message["type"], message["act"], message["text"], message["precedence"]) == (
        "message", "note", "hi", "routine")

"""Notification duties through the CLI over a real relay: proposed, accepted, notified in
time or late, requested and missed (escalated once, with the escalation command run), and
the channel review that sums it all up."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import Pair, one_error_line, run


def js(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json").stdout)


def _agreed(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    assert js(w, "duty", "propose", "beijing", "Missile test", "--before", "24h")["act"] == (
        "duty_propose")  # fmt: skip
    js(b, "duty", "propose", "washington", "Incident at sea", "--within", "1h")
    synced = run(b, "sync").stdout
    assert "proposes the notification duty Missile test" in synced
    assert "notify at least 1 d before" in synced
    run(w, "sync")
    js(b, "duty", "accept", "washington", "missile test")
    js(w, "duty", "accept", "beijing", "Incident at sea")
    run(w, "sync")
    run(b, "sync")


def test_duties_are_agreed_and_notifications_are_in_time_or_late(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    # Not agreed yet: refused before anything leaves.
    js(w, "duty", "propose", "beijing", "Exercise", "--before", "2d")
    assert "not accepted" in one_error_line(run(w, "duty", "notify", "beijing", "Exercise",
                                                "x", "--event-at", "+3d", code=1))  # fmt: skip
    _agreed(pair)
    on_time = js(b, "duty", "notify", "washington", "Missile test", "Launch from Jiuquan.",
                 "--event-at", "+2d", "--lang", "en",
                 "--translation", "zh-Hans=酒泉发射。")  # fmt: skip
    assert on_time["status"] == "notified_in_time"
    late = js(b, "duty", "notify", "washington", "Missile test", "Launch.", "--event-at", "+2h")
    assert late["status"] == "late"
    run(w, "sync")
    listed = js(w, "duty", "list", "beijing")
    assert sorted(d["describe"] for d in listed["duties"]) == [
        "notify at least 1 d before", "notify at least 2 d before", "notify within 1 h",
    ]  # fmt: skip
    assert [n["status"] for n in listed["notifications"]] == ["late", "notified_in_time"]
    human = run(w, "duty", "list", "beijing").stdout
    assert "NOTIFIED IN TIME" in human and "LATE" in human
    # The notification's translation is read side by side like a note's.
    (entry,) = [e for e in js(w, "history", "beijing")["items"]
                if e.get("act") == "notify" and e.get("texts")]  # fmt: skip
    assert entry["texts"][1]["text"] == "酒泉发射。"


def test_a_missed_requested_notification_is_escalated_once(pair: Pair, tmp_path: Path) -> None:
    w, b = pair.washington, pair.beijing
    _agreed(pair)
    marker = tmp_path / "paged"
    pager = tmp_path / "page.py"
    pager.write_text("import os, pathlib, sys\n"
                     "pathlib.Path(sys.argv[1]).write_text(os.environ['BACKCHANNEL_MESSAGE_ID'])\n")
    run(w, "escalation", "set", shlex.join([sys.executable, "-I", str(pager), str(marker)]))
    asked = js(w, "duty", "request", "beijing", "Incident at sea", "Contact near the strait.",
               "--event-at", "-2h")  # fmt: skip
    assert asked["act"] == "notify_request"
    (item,) = js(w, "duty", "list", "beijing")["notifications"]
    assert (item["status"], item["owed_by"]) == ("missed", "theirs")
    assert json.loads(run(w, "sync", "--json").stdout)["escalated"] == 1
    assert marker.read_text() == asked["message_id"]
    assert json.loads(run(w, "sync", "--json").stdout)["escalated"] == 0  # once only
    run(b, "sync")
    (item,) = js(b, "duty", "list", "washington")["notifications"]
    assert (item["status"], item["owed_by"]) == ("missed", "ours")
    assert "MISSED: you owe a notification" in run(b, "status", "washington").stdout
    answered = js(b, "duty", "notify", "washington", "Incident at sea", "Minor contact.",
                  "--event-at", "-2h", "--answers", asked["message_id"][:8])  # fmt: skip
    assert answered["status"] == "late"
    assert "already notified" in one_error_line(run(
        b, "duty", "notify", "washington", "Incident at sea", "again", "--event-at", "-2h",
        "--answers", asked["message_id"][:8], code=1))  # fmt: skip
    run(w, "sync")
    (item,) = js(w, "duty", "list", "beijing")["notifications"]
    assert item["status"] == "late" and item["text"] == "Minor contact."
    assert run(w, "duty", "notify", "beijing", "Missile test", "x", "--event-at", "yesterday",
               code=2).exit_code == 2  # fmt: skip


def test_the_channel_review_counts_the_period_and_exports_markdown_and_json(
    pair: Pair, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    _agreed(pair)
    note = js(w, "send", "beijing", "Please confirm.", "--priority", "--ack-within", "1h")
    js(w, "send", "beijing", "For information.")
    js(w, "duty", "notify", "beijing", "Missile test", "Launch.", "--event-at", "+2h")  # late
    run(b, "sync")
    js(b, "ack", "washington", note["message_id"][:8])
    js(b, "clarify", "washington", note["message_id"][:8], "Which confirmation?")
    run(w, "sync")
    out = tmp_path / "review.json"
    shape = js(w, "review", "beijing", "--since", "-1h", "--out", str(out))["review"]
    assert shape["sent"]["notes"] == {"ours": 2}
    assert shape["sent"]["acknowledgements"] == {"theirs": 1}
    assert shape["deadlines"]["acknowledged_in_time"] == {"ours": 1}
    assert shape["clarifications"]["asked"] == {"theirs": 1}
    assert shape["notifications"] == {"late": 1}
    assert json.loads(out.read_text()) == shape
    md = tmp_path / "review.md"
    run(w, "review", "beijing", "--since", "-1h", "--out", str(md))
    text = md.read_text()
    assert text.startswith("# Channel review") and "| notes | 2 | 0 |" in text
    assert "- late: 1" in text
    # Nothing before the period: an empty review.
    empty = js(w, "review", "beijing", "--since", "2020-01-01", "--until", "2020-02-01")
    assert empty["review"]["sent"] == {}
    # Proposed as a record, for a joint readout.
    proposed = js(w, "review", "beijing", "--since", "-1h", "--propose-record")
    assert proposed["act"] == "record_propose"
    run(b, "sync")
    (record,) = js(b, "record", "show", "washington")["records"]
    assert record["versions"][0]["title"].startswith("Channel review")

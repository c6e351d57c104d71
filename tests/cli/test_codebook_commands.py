"""The shared codebook through the CLI over a real relay: proposed by one side, accepted by
the other, sent by number, refused before it leaves while not accepted, replaced by a new
version, withdrawn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import Pair, one_error_line, run

EN = "en=Test launch at {time} from {place}."
RU = "ru=Испытательный пуск в {time} из {place}."


def js(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json").stdout)


def _propose(home: Path, *extra: str) -> Any:
    return js(home, "codebook", "propose", "beijing", "--number", "7", "--word", "BLUE HARBOR",
              "--param", "time", "--param", "place", "--lang", EN, "--lang", RU,
              "--precedence", "flash", *extra)  # fmt: skip


def test_an_entry_is_proposed_accepted_sent_by_number_and_read_in_each_language(
    pair: Pair,
) -> None:
    w, b = pair.washington, pair.beijing
    assert _propose(w)["act"] == "codebook_propose"
    # Not accepted yet: refused before it leaves, on both sides.
    line = one_error_line(run(w, "codebook", "send", "beijing", "7", "time=06:00Z",
                              "place=Plesetsk", code=1))  # fmt: skip
    assert "not accepted" in line
    assert "proposes codebook entry 7 BLUE HARBOR" in run(b, "sync").stdout
    (entry,) = js(b, "codebook", "list", "washington")["codebook"]
    assert (entry["number"], entry["code_word"], entry["status"], entry["owner"]) == (
        7, "BLUE HARBOR", "proposed", "theirs",
    )  # fmt: skip
    assert "owner" in one_error_line(run(w, "codebook", "accept", "beijing", "7", code=1))
    assert js(b, "codebook", "accept", "washington", "blue harbor")["act"] == "codebook_accept"
    run(w, "sync")
    (entry,) = js(w, "status", "beijing")["channels"][0]["codebook"]
    assert (entry["status"], entry["current_version"]) == ("agreed", 1)
    assert "7 BLUE HARBOR (agreed)" in run(w, "status", "beijing").stdout

    # A missing parameter is refused; then the message travels with its values only.
    assert "parameters" in one_error_line(
        run(w, "codebook", "send", "beijing", "7", "time=06:00Z", code=1)
    )
    sent = js(w, "codebook", "send", "beijing", "BLUE HARBOR", "time=06:00Z", "place=Plesetsk")
    assert sent["act"] == "codebook_send"
    run(b, "sync")
    listed = run(b, "codebook", "list", "washington", "--lang", "ru").stdout
    assert "BLUE HARBOR" in listed and "Испытательный" in listed
    # History shows the code word and the agreed text filled in, in both languages.
    (entry,) = [e for e in js(b, "history", "washington")["items"]
                if e["act"] == "codebook_send"]  # fmt: skip
    assert entry["title"] == "7 BLUE HARBOR"
    assert "ru: Испытательный пуск в 06:00Z из Plesetsk." in entry["text"]
    assert "en: Test launch at 06:00Z from Plesetsk." in entry["text"]


def test_a_new_version_waits_for_acceptance_and_a_withdrawn_entry_is_not_sent(
    pair: Pair,
) -> None:
    w, b = pair.washington, pair.beijing
    _propose(w)
    run(b, "sync")
    run(b, "codebook", "accept", "washington", "7")
    run(w, "sync")
    _propose(w, "--replaces", "7")
    run(b, "sync")
    (entry,) = js(b, "codebook", "list", "washington")["codebook"]
    assert (entry["current_version"], entry["awaiting_acceptance"]) == (1, 2)
    run(b, "codebook", "accept", "washington", "7")
    (entry,) = js(b, "codebook", "list", "washington")["codebook"]
    assert (entry["current_version"], entry["awaiting_acceptance"]) == (2, None)

    run(b, "codebook", "withdraw", "washington", "7")
    run(w, "sync")
    (entry,) = js(w, "codebook", "list", "beijing")["codebook"]
    assert entry["status"] == "withdrawn" and entry["withdrawn_by"] == ["theirs"]
    line = one_error_line(run(w, "codebook", "send", "beijing", "7", "time=1", "place=2", code=1))
    assert "withdrawn" in line


def test_a_codebook_message_is_listed_in_the_reader_s_language_acknowledged_or_escalated(
    pair: Pair, tmp_path: Path
) -> None:
    import shlex
    import sys
    import time

    w, b = pair.washington, pair.beijing
    marker = tmp_path / "paged"
    pager = tmp_path / "page.py"
    pager.write_text("import os, pathlib, sys\n"
                     "pathlib.Path(sys.argv[1]).write_text(os.environ['BACKCHANNEL_MESSAGE_ID'])\n")
    run(w, "escalation", "set", shlex.join([sys.executable, "-I", str(pager), str(marker)]))
    _propose(w, "--ack-within", "300ms")
    run(b, "sync")
    run(b, "codebook", "accept", "washington", "7")
    run(w, "sync")
    run(b, "translate", "language", "ru")
    sent = js(w, "codebook", "send", "beijing", "7", "time=06:00Z", "place=Plesetsk")
    run(b, "sync")
    (message,) = js(b, "inbox")["codebook_messages"]
    assert (message["code_word"], message["language"], message["owed_ack"]) == (
        "BLUE HARBOR", "ru", True)  # fmt: skip
    assert message["text"] == "Испытательный пуск в 06:00Z из Plesetsk."
    shown = run(b, "read", "washington", sent["message_id"][:8]).stdout
    assert "codebook 7 BLUE HARBOR" in shown and "Испытательный" in shown
    assert "Acknowledge:" in shown
    assert "Испытательный" in run(b, "codebook", "list", "washington").stdout
    time.sleep(0.4)
    assert json.loads(run(w, "sync", "--json").stdout)["escalated"] == 1
    assert marker.read_text() == sent["message_id"]
    js(b, "ack", "washington", sent["message_id"][:8])
    run(w, "sync")
    assert js(w, "status", "beijing")["channels"][0]["overdue"] == []
    (message,) = js(b, "inbox")["codebook_messages"]
    assert message["acknowledged"] is True and message["owed_ack"] is False

"""Translations through the CLI over a real relay: a bilingual note with an attributed
translation, read side by side; the receiver's own translation shared back; the
translation command proposing one (a local script, nothing downloaded); hostile tags
refused before anything is sent."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from tests.cli.conftest import Pair, one_error_line, run

# A stand-in translation command: it "translates" by tagging the text with the target
# language, so the test sees what the command received and from which language.
_FAKE_TRANSLATOR = """\
import os, sys
text = sys.stdin.read()
env = os.environ
source, target = env["BACKCHANNEL_SOURCE_LANGUAGE"], env["BACKCHANNEL_TARGET_LANGUAGE"]
print(f"[{source}>{target}] {text}")
"""


def js(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json").stdout)


def test_a_bilingual_note_is_read_side_by_side_and_the_receiver_shares_its_translation(
    pair: Pair,
) -> None:
    w, b = pair.washington, pair.beijing
    sent = js(w, "send", "beijing", "Please confirm receipt.", "--lang", "en", "--translation",
              "zh-Hans=请确认收到。", "--translated-by", "translator:Li Wei")  # fmt: skip
    assert sent["languages"]["translations"][0]["by"] == {"kind": "translator", "name": "Li Wei"}
    run(b, "sync")
    (message,) = js(b, "read", "washington")["messages"]
    original, translation = message["texts"]
    assert (original["language"], original["role"], original["authoritative"]) == (
        "en", "original", True)  # fmt: skip
    assert (translation["language"], translation["by"], translation["text"]) == (
        "zh-Hans", "translator Li Wei", "请确认收到。")  # fmt: skip
    shown = run(b, "translate", "show", "washington", sent["message_id"][:8]).stdout
    assert "AUTHORITATIVE" in shown and "translation by translator Li Wei" in shown
    assert "请确认收到。" in shown and "Please confirm receipt." in shown

    # Beijing shares its own Russian rendering, attributed to its staff.
    added = js(b, "translate", "add", "washington", sent["message_id"][:8], "--lang", "ru",
               "Прошу подтвердить получение.", "--by", "staff:duty officer")  # fmt: skip
    assert added["act"] == "translation"
    assert "shared a ru translation of" in run(w, "sync").stdout
    (entry,) = [e for e in js(w, "history", "beijing")["items"] if e.get("act") == "note"]
    assert [t["language"] for t in entry["texts"]] == ["en", "zh-Hans", "ru"]
    assert entry["texts"][2]["shared_by"] == "theirs"
    assert entry["texts"][2]["by"] == "staff (duty officer)"
    board = js(w, "status", "beijing")["channels"][0]
    assert board["translations"][0]["translated_by"] == "theirs"
    # Washington cannot "translate" its own note after the fact: that goes in the note.
    assert "own author" in one_error_line(run(w, "translate", "add", "beijing",
                                              sent["message_id"][:8], "--lang", "fr", "x",
                                              code=1))  # fmt: skip


def test_the_translation_command_proposes_and_nothing_runs_unless_configured(
    pair: Pair, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    assert "no translation command" in one_error_line(
        run(w, "translate", "draft", "Hello", "--from", "en", "--to", "ru", code=1)
    )
    script = tmp_path / "translate.py"
    script.write_text(_FAKE_TRANSLATOR)
    run(b, "translate", "command", "set", shlex.join([sys.executable, "-I", str(script)]))
    run(b, "translate", "language", "ru")
    assert js(b, "translate", "language")["language"] == "ru"
    sent = js(w, "send", "beijing", "Incident at sea.", "--lang", "en")
    run(b, "sync")
    proposal = js(b, "translate", "suggest", "washington", sent["message_id"][:8])
    assert proposal["text"] == "[en>ru] Incident at sea." and proposal["sent"] is False
    shared = js(b, "translate", "suggest", "washington", sent["message_id"][:8], "--share")
    # Attributed to the tool, named after the command the principal configured.
    assert shared["by"] == {"kind": "machine", "name": Path(sys.executable).name}
    run(w, "sync")
    (entry,) = [e for e in js(w, "history", "beijing")["items"] if e.get("act") == "note"]
    assert entry["texts"][1]["text"] == "[en>ru] Incident at sea."
    assert entry["texts"][1]["by"].startswith("machine (")
    draft = js(b, "translate", "draft", "Принято.", "--to", "en")
    assert draft["text"] == "[ru>en] Принято."


def test_hostile_language_tags_and_attributions_are_refused_before_sending(pair: Pair) -> None:
    w = pair.washington
    for tag in ("en\u202e", "en-", "zh_Hans", "x" * 40, "en\n"):
        run(w, "send", "beijing", "hello", "--lang", tag, code=2)
    run(w, "send", "beijing", "hello", "--lang", "en", "--translation", "ru=привет",
        "--translated-by", "translator:\u202eevil", code=2)  # fmt: skip
    run(w, "send", "beijing", "hello", "--lang", "en", "--authoritative", "fr", code=2)
    run(w, "translate", "language", "e\u0301n", code=1)
    assert all(e.get("act") != "note" for e in js(w, "history", "beijing")["items"])


def test_the_configuration_file_s_language_is_the_default_and_is_checked(
    pair: Pair, tmp_path: Path, monkeypatch: Any
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('language = "zh-Hans"\n')
    monkeypatch.setenv("BACKCHANNEL_CONFIG", str(config))
    assert js(pair.beijing, "translate", "language")["language"] == "zh-Hans"
    run(pair.beijing, "translate", "language", "ru")  # the principal's own setting wins
    assert js(pair.beijing, "translate", "language")["language"] == "ru"
    config.write_text('language = "zh_Hans"\n')
    assert "BCP 47" in one_error_line(run(pair.beijing, "translate", "language", code=2))


def test_every_translatable_act_is_written_with_its_translations_from_the_cli(
    pair: Pair,
) -> None:
    w, b = pair.washington, pair.beijing
    note = js(w, "send", "beijing", "Exercise postponed.")
    run(b, "sync")
    by = ("--translated-by", "staff:interpreter")
    asked = js(b, "clarify", "washington", note["message_id"][:8], "推迟到什么时候？",
               "--lang", "zh-Hans", "--translation", "en=Postponed until when?", *by)
    run(w, "sync")
    js(w, "answer", "beijing", asked["message_id"][:8], "Until March.", "--lang", "en",
       "--translation", "zh-Hans=推迟到三月。", "--authoritative", "zh-Hans", *by)
    js(w, "redline", "add", "beijing", "Strait", "No live fire in the strait.", "--lang", "en",
       "--translation", "zh-Hans=海峡|海峡内不得实弹射击。", *by)
    js(w, "agenda", "propose", "beijing", "Notification", "--round", "2", "--detail",
       "Vienna", "--lang", "en", "--translation", "zh-Hans=通报|维也纳", *by)
    run(b, "sync")
    items = js(b, "history", "washington")["items"]
    texts = {e["act"]: e["texts"] for e in items if e.get("texts")}
    assert [t["language"] for t in texts["answer"]] == ["zh-Hans", "en"]  # authoritative first
    assert texts["answer"][0]["text"] == "推迟到三月。"
    redline = {t["language"]: t for t in texts["redline"]}
    assert redline["zh-Hans"]["text"] == "海峡内不得实弹射击。"
    assert redline["zh-Hans"]["by"] == "staff (interpreter)"
    assert {t["language"] for t in texts["agenda_propose"]} == {"en", "zh-Hans"}
    theirs = {e["act"]: e["texts"] for e in js(w, "history", "beijing")["items"]
              if e.get("texts")}
    assert [t["language"] for t in theirs["clarify"]] == ["zh-Hans", "en"]
    # A titled act needs TAG=TITLE|TEXT: refused before anything is sent.
    bad = run(w, "redline", "add", "beijing", "T", "x", "--lang", "en", "--translation",
              "zh-Hans=no title", code=2)
    assert "TAG=TITLE|TEXT" in bad.stderr


def test_a_bilingual_note_sent_without_waiting_leaves_with_the_next_sync(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    sent = js(w, "send", "beijing", "Please confirm receipt.", "--no-wait", "--lang", "en",
              "--translation", "ru=Прошу подтвердить получение.", "--ack-within", "1h")
    assert (sent["waited"], sent["queued"], sent["stored_on"]) == (False, True, [])
    assert sent["languages"]["original"] == "en" and sent["ack_within_ms"] == 3_600_000
    run(b, "sync")
    assert js(b, "read", "washington")["messages"] == []  # nothing left without a sync
    run(w, "sync")
    run(b, "sync")
    (message,) = js(b, "read", "washington")["messages"]
    assert [t["language"] for t in message["texts"]] == ["en", "ru"]

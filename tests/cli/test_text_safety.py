"""No text from the counterpart or a relay reaches the terminal as anything a terminal acts
on (review §2d): every command that shows such text, driven with names, URLs, reasons and
bodies that carry CSI, OSC 8, OSC 52, C1 and bidi controls.

The decoders refuse such text now, so to test the output layer the hostile text is brought
in where it could still come from: a "decoder gap" (the text policy's check switched off
in `dialogue.text`, on both sides, as if a future body type forgot it), hostile values
written straight into the local state (a name, a relay URL, a relay's error kept by an
older version), and a relay that answers with a crafted reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from backchannel.cli.context import CliContext, plain_console
from backchannel.cli.output import json_text, shown
from backchannel.client import engine, invite
from backchannel.client.engine import Principal
from backchannel.client.records import Link, Mailbox
from backchannel.dialogue import text as dialogue_text
from backchannel.protocol.text import REFUSED_CATEGORIES, first_refused

from .conftest import PASSPHRASE, Pair, run

# One of each: CSI clear and home, OSC 52 (clipboard), OSC 8 (link), C1 CSI, the bidi
# override and isolates, a zero-width space, a line separator, a BOM, and markup.
HOSTILE = ("\x1b[2J\x1b[H\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b]8;;http://evil.example/\x07x"
           "\x1b]8;;\x07\x9b31m\u202e1000\u2066a\u2067b\u2068c\u2069\u200b\u2028\ufeff[bold]z")
HOSTILE_NAME = "bei\x1b[2Jjing\u202e"
HOSTILE_URL = "wss://relay\x1b]52;c;eA==\x07.invalid/"
# Every character above that a terminal would act on.
BAD = set("\x1b\x07\x9b\u202e\u2066\u2067\u2068\u2069\u200b\u2028\ufeff")


def clean(result: Result | str) -> str:
    """All a command printed; fails if anything in it would act on a terminal."""
    text = result if isinstance(result, str) else result.stdout + result.stderr
    assert not BAD & set(text), [c for c in text if c in BAD][:5]
    assert first_refused(text, multiline=True) is None
    return text


@pytest.fixture()
def decoder_gap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The body checks switched off: hostile bodies are built, sent and decoded."""
    monkeypatch.setattr(dialogue_text, "check_safe_text", lambda *a, **k: None)
    yield


def _hostile_state(home: Path, peer: str) -> str:
    """Rename the channel to a hostile name, add a relay with a hostile URL, and keep a
    hostile "error" for it, as an older version would have; returns the channel id."""
    principal = Principal.open(home, PASSPHRASE)
    try:
        state = principal._state
        record = principal.channel(peer)
        with state.store.transaction():
            record.name = HOSTILE_NAME
            record.links.append(Link(HOSTILE_URL, Mailbox("ab" * 16, "cd" * 32, "ef" * 32)))
            state.channels.save(record)
            state.relays.record_health([], {HOSTILE_URL: HOSTILE}, state.clock())
        return record.channel_id
    finally:
        principal.close()


def test_every_command_escapes_counterpart_and_relay_text(
    pair: Pair, decoder_gap: None, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    run(b, "send", "washington", "line one\n" + HOSTILE)
    run(b, "redline", "add", "washington", "title " + HOSTILE, "text " + HOSTILE)
    run(b, "agenda", "propose", "washington", "item " + HOSTILE, "--round", "1",
        "--detail", HOSTILE)
    run(b, "record", "propose", "washington", "record " + HOSTILE, "0001" + HOSTILE)
    cid = _hostile_state(w, "beijing")

    synced = clean(run(w, "sync"))
    assert "<U+202E>" in synced and "\\x1b" in synced  # it arrived, and shows escaped
    assert "relay wss://relay\\x1b]52;c;eA==\\x07.invalid/ is unreachable" in synced
    inbox = clean(run(w, "inbox"))
    assert "<U+202E>" in inbox
    read = clean(run(w, "read", cid))
    assert "line one\n" in read and "\\x1b[2J" in read
    status = clean(run(w, "status"))
    assert "down since" in status and "\\x1b]52;c;ZWNobyBwd25lZA==\\x07" in status
    channels = clean(run(w, "channels"))
    assert "bei\\x1b[2Jjing<U+202E>" in channels
    clean(run(w, "verify", cid))
    clean(run(w, "redline", "list"))
    clean(run(w, "agenda", "show", cid))
    records = json.loads(run(w, "record", "show", cid, "--json").stdout)
    rid = records["records"][0]["record_id"]
    shown_record = clean(run(w, "record", "show", cid, rid))
    assert "0001\\x1b[2J" in shown_record and "\\x9b31m<U+202E>1000<U+2066>" in shown_record
    clean(run(w, "record", "sign", cid, rid))
    path = tmp_path / "record.txt"
    clean(run(w, "record", "export", cid, rid, "--output", str(path)))
    assert "0001\\x1b[2J" in clean(run(w, "record", "verify", str(path)))
    # JSON: the same strings once parsed, with nothing raw a terminal would act on.
    for args in (("inbox",), ("status",), ("channels",), ("sync",), ("redline", "list")):
        result = run(w, *args, "--json")
        clean(result)
        json.loads(result.stdout)
    messages = json.loads(run(w, "inbox", "--json").stdout)["messages"]
    assert messages[0]["text"] == "line one\n" + HOSTILE


def test_watch_lines_and_events_are_escaped(
    pair: Pair, decoder_gap: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from backchannel.cli import watching as watch

    w, b = pair.washington, pair.beijing
    run(b, "send", "washington", HOSTILE)
    run(b, "redline", "add", "washington", "title " + HOSTILE, "text " + HOSTILE)
    _hostile_state(w, "beijing")
    run(w, "sync")
    capsys.readouterr()
    for as_json in (False, True):
        emit = watch.emitter(CliContext(w, json=as_json))
        principal = Principal.open(w, PASSPHRASE)
        try:
            observer = watch._Observer(principal, emit)
            observer.relays[HOSTILE_URL] = True  # seen up before: now reported down
            observer.look()  # a new channel, its dialogue acts, the relay down
            for entry in principal.inbox():
                watch._note_printer(emit)(entry)
        finally:
            principal.close()
        out = clean(capsys.readouterr().out)
        if as_json:
            events = [json.loads(line) for line in out.splitlines()]
            assert {e["event"] for e in events} >= {"channel", "dialogue", "relay", "message"}
            assert any(e.get("text") == HOSTILE for e in events)
        else:
            assert "new channel: bei\\x1b[2Jjing<U+202E>" in out
            assert "declared red line" in out and "is down (" in out


def test_accept_shows_a_hostile_inviters_name_escaped(
    tmp_path: Path, relay: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inviter's client and the joiner's decoder both skipped the name check.
    monkeypatch.setattr(engine, "check_safe_text", lambda *a, **k: None)
    monkeypatch.setattr(invite, "check_safe_text", lambda *a, **k: None)
    mallory, bob = tmp_path / "mallory", tmp_path / "bob"
    run(mallory, "init", "--name", "\x1b[2J\x1b[H\x1b[32mVERIFIED OK\x1b[8m")
    run(bob, "init", "--name", "bob")
    code = run(mallory, "invite", "--relay", relay.url).stdout.strip()
    joined = clean(run(bob, "accept", code))
    assert "Joined channel '\\x1b[2J\\x1b[H\\x1b[32mVERIFIED OK\\x1b[8m'" in joined
    assert "compare the safety number" in joined


def test_hostile_names_and_relays_are_refused_at_the_command_line(
    tmp_path: Path, relay: Any
) -> None:
    home = tmp_path / "w"
    result = run(home, "init", "--name", "wash\u202eington", code=1)
    assert "the name contains U+202E (RIGHT-TO-LEFT OVERRIDE" in clean(result)
    run(home, "init", "--name", "washington")
    for url, why in (("ws://relay.example.org/", "not encrypted: use wss://"),
                     ("http://relay.example.org/", "is a web address"),
                     ("https://relay.example.org/", "is a web address")):
        result = run(home, "invite", "--relay", url, code=2)
        assert why in " ".join(clean(result).split())
    run(home, "invite", "--relay", relay.url)  # ws:// on loopback is fine
    # An error that quotes what was typed shows it escaped, on one line.
    error = clean(run(home, "read", "no\x1b[2Jbody\nX", code=3)).strip()  # not found
    assert error.startswith("error: ") and "no\\x1b[2Jbody\\x0aX" in error


def test_our_own_outgoing_text_is_refused(pair: Pair) -> None:
    w = pair.washington
    for args in (("send", "beijing", "hi\x1b[2J"), ("send", "beijing", "1000\u202e"),
                 ("redline", "add", "beijing", "t\u200bitle", "text"),
                 ("agenda", "propose", "beijing", "item\u2066", "--round", "1"),
                 ("record", "propose", "beijing", "title", "0001\u202e")):
        result = run(w, *args, code=1)
        assert "U+" in clean(result), args


@contextlib.contextmanager
def _relay_in_thread(reason: str) -> Iterator[str]:
    """A refusing relay served from a thread of its own (each CLI command runs its own
    event loop in the test's thread); yields its URL."""
    from tests.client.fault_relays import refusing_relay

    urls: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with refusing_relay(reason) as url:
            urls.put(url)
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield urls.get(timeout=10)
    finally:
        stop.set()
        thread.join(10)


def test_a_relays_crafted_reason_never_reaches_the_terminal(tmp_path: Path) -> None:
    with _relay_in_thread(HOSTILE) as url:
        home = tmp_path / "w"
        run(home, "init", "--name", "washington")
        text = clean(run(home, "invite", "--relay", url, code=1))
    assert "relay error 4: the relay is limiting requests" in text
    assert "1000" not in text and "evil" not in text


def test_the_demo_narrator_escapes_what_it_quotes(capsys: pytest.CaptureFixture[str]) -> None:
    from backchannel.cli.demo_round import Narrator

    narrator = Narrator(plain_console())
    narrator.quote(HOSTILE)
    narrator.say(HOSTILE)
    assert "<U+202E>" in clean(capsys.readouterr().out)


def test_escaping_helpers_on_their_own() -> None:
    assert shown(HOSTILE_NAME) == "bei\\x1b[2Jjing<U+202E>"
    assert shown("[bold]北京 Москва 👍") == "[bold]北京 Москва 👍"
    data = {"name": HOSTILE, "zh": "北京"}
    printed = json_text(data)
    assert json.loads(printed) == data and "北京" in printed
    assert not any(c != "\n" and unicodedata.category(c) in REFUSED_CATEGORIES for c in printed)


def test_a_hostile_note_is_refused_on_arrival_and_says_why(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the sender skips the check (a hostile client); the receiver's decoder refuses.
    monkeypatch.setattr(dialogue_text, "check_safe_text", lambda *a, **k: None)
    run(pair.beijing, "send", "washington", "1000\u202e")
    monkeypatch.undo()
    run(pair.washington, "sync")
    inbox = clean(run(pair.washington, "inbox"))
    assert "(note refused: its text contains U+202E (RIGHT-TO-LEFT OVERRIDE" in inbox
    assert "1000" not in inbox

"""FLASH and overdue notes cannot be missed (review §4 row 15): in colour with the bell on
a terminal, with their word at the start of the line without colour, never a bell in a
pipe; `sync`, `read` and `watch` over a real relay, and the one rule they share."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from backchannel.cli.main import app
from backchannel.cli.urgency import (
    BEL,
    CALM,
    NO_BELL_ENV,
    Bell,
    event_urgency,
    note_urgency,
    print_urgent,
)
from backchannel.dialogue import Precedence
from tests.cli.conftest import PASSPHRASE, Pair, run

# What a terminal's colour looks like in the output: an SGR sequence.
SGR = "\x1b["
# The environment of a pipe, whatever the one running the tests says about colour.
PIPED = {"FORCE_COLOR": None, "TTY_COMPATIBLE": None, "NO_COLOR": None, NO_BELL_ENV: None}
# Rich takes FORCE_COLOR as "this is a terminal", as a user forcing colour means it.
FORCED = {**PIPED, "FORCE_COLOR": "1", "TERM": "xterm-256color"}


def cli(home: Path, *args: str, env: dict[str, str | None]) -> Result:
    """`run` with an environment of our own (colour forced or not)."""
    result = CliRunner().invoke(app, ["--home", str(home), *args], env={
        "BACKCHANNEL_PASSPHRASE": PASSPHRASE, "BACKCHANNEL_HOME": None, "COLUMNS": "200",
        **env})
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def lines_starting(text: str, word: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"{word}: ")]


# -- the rule ------------------------------------------------------------------------------


def test_flash_and_overdue_are_urgent_and_the_rest_is_calm() -> None:
    flash = note_urgency(Precedence.FLASH)
    assert (flash.word, flash.bell, flash.urgent) == ("FLASH", True, True)
    assert note_urgency("flash") == flash and note_urgency(int(Precedence.FLASH)) == flash
    assert note_urgency(Precedence.PRIORITY) == CALM == note_urgency(Precedence.ROUTINE)
    assert note_urgency("immediate").word == "IMMEDIATE" and not note_urgency("immediate").bell
    assert note_urgency(99) == CALM
    # Overdue says more than the precedence; the bell only when it has just happened.
    seen = note_urgency(Precedence.FLASH, overdue=True)
    assert (seen.word, seen.bell) == ("OVERDUE", False)
    assert note_urgency(Precedence.ROUTINE, newly_overdue=True).bell
    assert event_urgency({"event": "message", "precedence": "flash"}) == flash
    assert event_urgency({"event": "escalated", "precedence": "priority"}).word == "OVERDUE"
    assert event_urgency({"event": "line", "state": "down"}) == CALM


def _console(**options: object) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, highlight=False, markup=False, **options), out  # type: ignore[arg-type]


def test_a_terminal_gets_colour_and_one_bell_a_pipe_the_word_and_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(NO_BELL_ENV, raising=False)
    flash = note_urgency(Precedence.FLASH)
    terminal, shown = _console(force_terminal=True, color_system="standard")
    bell = Bell()
    for _ in range(3):
        print_urgent(terminal, "washington · id 3f9a2c1e", flash, bell=bell)
    assert shown.getvalue().count(BEL) == 1 and SGR in shown.getvalue()
    assert "FLASH: " not in shown.getvalue()  # the colour says it

    piped, plain = _console(force_terminal=False)
    print_urgent(piped, "washington · id 3f9a2c1e", flash, bell=Bell())
    assert plain.getvalue() == "FLASH: washington · id 3f9a2c1e\n"

    # NO_COLOR and a dumb terminal: the word, though the bell still rings on a terminal.
    no_colour, out = _console(force_terminal=True, color_system="standard", no_color=True)
    print_urgent(no_colour, "x", flash, bell=Bell())
    assert out.getvalue().startswith(BEL) and "FLASH: x" in out.getvalue()

    monkeypatch.setenv(NO_BELL_ENV, "1")
    silenced, quiet = _console(force_terminal=True, color_system="standard")
    print_urgent(silenced, "x", flash, bell=Bell())
    assert BEL not in quiet.getvalue() and SGR in quiet.getvalue()


def test_the_bell_of_a_watch_rings_again_only_after_a_pause() -> None:
    now = [0.0]
    bell = Bell(every_s=5.0, clock=lambda: now[0])
    terminal, out = _console(force_terminal=True, color_system="standard")
    flash = note_urgency(Precedence.FLASH)
    rang = [bell.ring(terminal, flash), bell.ring(terminal, flash)]
    now[0] = 6.0
    rang += [bell.ring(terminal, flash), bell.ring(terminal, CALM)]
    assert rang == [True, False, True, False] and out.getvalue() == BEL * 2


# -- through the commands, over a real relay -----------------------------------------------


def test_sync_and_read_make_a_flash_note_impossible_to_miss(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    first = json.loads(run(w, "send", "beijing", "Incident at sea: confirm.", "--flash",
                           "--ack-within", "10m", "--json").stdout)["message_id"][:8]
    run(w, "send", "beijing", "A routine note.")
    synced = cli(b, "sync", env=PIPED).stdout
    (line,) = lines_starting(synced, "FLASH")
    assert f"id {first}" in line and line.endswith(f"backchannel --home {b} read washington "
                                                   f"{first}")
    assert BEL not in synced and SGR not in synced

    opened = cli(b, "read", "washington", env=FORCED).stdout
    assert opened.count(BEL) == 1 and SGR in opened and "Incident at sea" in opened
    assert not lines_starting(opened, "FLASH")  # colour instead of the word

    second = json.loads(run(w, "send", "beijing", "Second incident.", "--flash",
                            "--json").stdout)["message_id"][:8]
    synced = cli(b, "sync", env=FORCED).stdout
    assert synced.count(BEL) == 1 and SGR in synced and f"id {second}" in synced
    opened = cli(b, "read", "washington", env=PIPED).stdout
    (header,) = lines_starting(opened, "FLASH")
    assert f"id {second}" in header and BEL not in opened and SGR not in opened

    # The history shows both FLASH notes as `read` does, and rings no bell: it is read
    # back, not arriving.
    past = cli(b, "history", "washington", env=PIPED).stdout
    assert [line.split()[-1] for line in lines_starting(past, "FLASH")] == [
        "confirm.", "incident."] and SGR not in past
    coloured = cli(b, "history", "washington", env=FORCED).stdout
    # FLASH's style (bold red reverse) on both FLASH lines, and on no other.
    styled = [line for line in coloured.splitlines() if f"{SGR}1;7;31m" in line]
    assert len(styled) == 2 and all("incident" in line.lower() for line in styled)
    assert BEL not in coloured and not lines_starting(coloured, "FLASH")

    # JSON is not styled: the same shapes, and `urgent` says what the colour would.
    messages = json.loads(cli(b, "inbox", "--json", env=FORCED).stdout)["messages"]
    assert [m["urgent"] for m in messages] == [True, False, True]
    assert BEL not in json.dumps(messages)


def test_an_overdue_note_is_said_overdue_when_read(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    run(w, "send", "beijing", "Please acknowledge.", "--priority", "--ack-within", "300ms")
    run(b, "sync")
    time.sleep(0.5)  # past the deadline
    opened = cli(b, "read", "washington", env=PIPED).stdout
    (header,) = lines_starting(opened, "OVERDUE")
    assert "PRIORITY, ack within 300ms" in header and BEL not in opened  # not *newly*
    escalated = cli(w, "sync", env=PIPED)
    assert lines_starting(escalated.stderr, "OVERDUE")[0].startswith("OVERDUE: Escalated 1")
    assert BEL not in escalated.stderr


@pytest.mark.timeout(120)
def test_watch_shows_a_flash_note_and_an_escalation_as_urgent(pair: Pair) -> None:
    from tests.cli.test_watch import watching

    w, b = pair.washington, pair.beijing
    run(w, "send", "beijing", "Please acknowledge.", "--priority", "--ack-within", "300ms")
    run(b, "sync")
    with watching(b, env=PIPED) as piped:
        run(w, "send", "beijing", "Incident at sea: confirm.", "--flash")
        line = piped.wait_for(lambda s: "Incident at sea" in s, "the FLASH note")
        assert line.startswith("FLASH: ") and BEL not in line and SGR not in line
    # Washington's watch escalates the note Beijing read but did not acknowledge.
    with watching(w, env=FORCED) as forced:
        line = forced.wait_for(lambda s: "ESCALATED" in s, "the escalation")
        assert line.count(BEL) == 1 and line.startswith(BEL + SGR) and "OVERDUE" not in line

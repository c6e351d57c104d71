"""The rest of the strategic round from the console: new versions (red line, record,
codebook entry), a codebook withdrawal, a record in two languages with its authentic-text
clause, holds until a chosen time, notification duties, the review, and invites waiting.

Textual's pilot drives Washington's console over the real relay on 127.0.0.1 while Beijing
(a real principal in this process) answers. Every refusal is compared with what the CLI
says for it: the engine's own error, or the CLI parser's usage error as Click words it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path

import pytest
import typer
from textual.widgets import Input, Static

from backchannel.cli.context import _message_of
from backchannel.cli.demo_script import RECORD_EN, RECORD_TITLE, RECORD_ZH
from backchannel.cli.durations import parse_duration, parse_when
from backchannel.cli.records import parse_languages
from backchannel.cli.translations import parse_attribution
from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import DutyRule, NotificationStatus, Side
from backchannel.tui.app import ConsoleApp
from backchannel.tui.dialogs import Form, Reading
from backchannel.tui.live import ConsoleData

from .conftest import Opened
from .test_acts import SIZE, beijing_syncs, fill, select, status

pytestmark = pytest.mark.timeout(60)


def usage_error(call: object) -> str:
    """What the CLI prints for the usage error `call()` raises (after `Error: `)."""
    with pytest.raises(typer.BadParameter) as raised:
        call()  # type: ignore[operator]
    return f"error: {raised.value.format_message()}"


async def engine_error(act: Awaitable[object]) -> str:
    """What the CLI prints for the refusal the engine raises on `await act`."""
    with pytest.raises(Exception) as raised:  # any refusal: compared by its words
        await act
    return f"error: {_message_of(raised.value)}"


async def test_a_red_line_gets_a_new_version_and_theirs_cannot(opened: Opened) -> None:
    b = StrategicChannel(opened.beijing, "washington")
    await b.declare_red_line("Taiwan", "No independence.")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("d")
        await fill(app, pilot, "Sanctions", "No new sanctions during the talks.")
        await app.reload(sync=True)
        await select(app, lambda line: line.act == "redline v1" and line.direction == "out")
        await pilot.press("D")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, Form)  # offered with the latest wording
        assert form.query_one("#field0", Input).value == "Sanctions"
        await fill(app, pilot, "Sanctions", "No new sanctions while the talks go on.")
        assert "revised" in status(app), status(app)
        # A new version of their red line is refused as `redline add --update` refuses it.
        theirs = next(line for line in app._lines
                      if line.act == "redline v1" and line.direction == "in")
        await select(app, lambda line: line == theirs)
        await pilot.press("D")
        await fill(app, pilot, "Taiwan", "Changed.")
        expected = await engine_error(StrategicChannel(opened.washington, "beijing")
                                      .declare_red_line("Taiwan", "Changed.", theirs.subject_id))
        assert status(app) == expected, status(app)
    b = await beijing_syncs(opened.beijing)
    lines = {r.latest.title: r for r in b.board().red_lines}
    assert lines["Sanctions"].latest.version == 2
    assert lines["Sanctions"].latest.text == "No new sanctions while the talks go on."
    assert lines["Sanctions"].awaiting_acknowledgement
    assert lines["Taiwan"].latest.version == 1


async def test_a_record_in_two_equally_authentic_languages_and_its_new_version(
    opened: Opened,
) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        # Two languages and no clause: refused in the words of `record propose`.
        await pilot.press("p")
        await fill(app, pilot, RECORD_TITLE, "", f"en={RECORD_EN} | zh={RECORD_ZH}", "", "")
        assert status(app) == usage_error(lambda: parse_languages(
            None, [f"en={RECORD_EN}", f"zh={RECORD_ZH}"], None, None)), status(app)
        await pilot.press("p")
        await fill(app, pilot, RECORD_TITLE, "", f"en={RECORD_EN} | zh={RECORD_ZH}", "",
                   "en, zh")
        assert "awaits their co-signature" in status(app), status(app)
        (proposal,) = [line for line in app._lines if line.act == "record_propose v1"]
        clause = "The en, zh texts are equally authentic."
        assert proposal.clause == clause
        assert proposal.text == f"{RECORD_TITLE}: [en, authentic] {RECORD_EN}"
        assert proposal.translations == (f"[zh, authentic] {RECORD_ZH}",)
        assert any(clause in r for r in app.snapshot.board.records), app.snapshot.board
        shown = str(app.query_one("#board", Static).content)
        assert "equally authentic" in shown
        # A new version, English prevailing over the Chinese.
        await select(app, lambda line: line.act == "record_propose v1")
        await pilot.press("P")
        await fill(app, pilot, RECORD_TITLE, "", f"en={RECORD_EN} | zh={RECORD_ZH}", "en",
                   "en, zh")
        assert "revised" in status(app), status(app)
        record_id = proposal.subject_id
    b = await beijing_syncs(opened.beijing)
    (record,) = b.board().records
    assert record.record_id.hex() == record_id and record.latest.version == 2
    statement = record.latest.statement
    assert [(v.language, v.authentic, v.authoritative) for v in statement.versions] == [
        ("en", True, True), ("zh", True, False)]
    assert statement.authentic_clause().endswith("the en text prevails.")


async def test_a_codebook_entry_gets_a_new_version_and_is_withdrawn(opened: Opened) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")  # a precedence the engine has not: refused as the CLI does
        await fill(app, pilot, "8", "RED TIDE", "en=Talks moved to {day}.", "day", "urgent")
        assert status(app) == ("error: Invalid value for --precedence: routine, priority or "
                               "flash"), status(app)
        await pilot.press("o")
        await fill(app, pilot, "8", "RED TIDE", "en=Talks moved to {day}.", "day", "")
        assert status(app) == "proposed codebook entry 8", status(app)
        await pilot.press("O")  # a bad deadline: refused as `--ack-within` refuses it
        await fill(app, pilot, "8", "8", "RED TIDE", "en=Talks moved to {day} at {hour}.",
                   "day, hour", "flash", "soon")
        assert status(app) == usage_error(lambda: parse_duration(
            "soon", option="--ack-within")), status(app)
        await pilot.press("O")
        await fill(app, pilot, "8", "8", "RED TIDE", "en=Talks moved to {day} at {hour}.",
                   "day, hour", "flash", "10m")
        assert status(app) == "proposed a new version of codebook entry 8", status(app)
        assert any("8 RED TIDE v2" in c for c in app.snapshot.board.codebook), \
            app.snapshot.board.codebook
        b = await beijing_syncs(opened.beijing)
        (entry,) = b.dialogue().codebook()
        assert entry.latest.version == 2
        assert entry.latest.proposal.parameters == ("day", "hour")
        assert entry.latest.proposal.ack_within_ms == 600_000
        await pilot.press("W")
        await fill(app, pilot, "RED TIDE")
        assert status(app) == "withdrew codebook entry RED TIDE", status(app)
        assert any("(withdrawn)" in c for c in app.snapshot.board.codebook)
        await pilot.press("W")  # unknown: refused as `codebook withdraw` refuses it
        await fill(app, pilot, "99")
        expected = await engine_error(
            StrategicChannel(opened.washington, "beijing").withdraw_code("99"))
        assert status(app) == expected, status(app)
    b = await beijing_syncs(opened.beijing)
    (entry,) = b.dialogue().codebook()
    assert entry.withdrawn_by == frozenset({Side.THEIRS})


async def test_a_hold_until_a_time_of_day_and_a_bad_time_refused(opened: Opened) -> None:
    b = StrategicChannel(opened.beijing, "washington")
    await b.note("Please confirm the dates.", ack_within_ms=3_600_000)
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and line.act == "note")
        await pilot.press("h")
        await fill(app, pilot, "soon", "")
        assert status(app) == usage_error(lambda: parse_when(
            "soon", now_ms=opened.clock.now_ms, option="--until")), status(app)
        await pilot.press("h")
        await fill(app, pilot, "1h30m", "Checking the calendar.")
        assert status(app).startswith("held "), status(app)
        (pending,) = app.snapshot.board.pending
        assert pending.held
    b = await beijing_syncs(opened.beijing)
    (pending,) = b.board().awaiting_their_ack
    assert pending.hold is not None
    assert pending.hold.expected_by_ms == opened.clock.now_ms + 90 * 60_000


async def test_notification_duties_from_the_console(opened: Opened) -> None:
    b = StrategicChannel(opened.beijing, "washington")
    await b.propose_duty("Missile test", DutyRule.BEFORE, 24 * 3_600_000)
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        assert any("Missile test: notify at least 1 d before (theirs, awaits acceptance)"
                   in d for d in app.snapshot.board.duties), app.snapshot.board.duties
        # Neither or both of before and within: refused as `duty propose` refuses them.
        await pilot.press("t")
        await fill(app, pilot, "Incident at sea", "1h", "1h", "", "")
        assert status(app) == ("error: Invalid value: give one of --before DURATION and "
                               "--within DURATION"), status(app)
        await pilot.press("t")
        await fill(app, pilot, "Incident at sea", "", "an hour", "", "")
        assert status(app) == usage_error(lambda: parse_duration(
            "an hour", option="--within")), status(app)
        await pilot.press("t")
        await fill(app, pilot, "Incident at sea", "", "1h", "Contact between vessels.", "")
        assert status(app) == "proposed the notification duty 'Incident at sea'", status(app)
        await pilot.press("t")  # a new version of ours, before they accept it
        await fill(app, pilot, "Incident at sea", "", "2h", "Contact between vessels.",
                   "Incident at sea")
        assert status(app) == "proposed the notification duty 'Incident at sea'", status(app)
        # Notifying under a duty not yet accepted: refused in the engine's words.
        await pilot.press("b")
        await fill(app, pilot, "Incident at sea", "Contact near the strait.", "now", "")
        expected = await engine_error(StrategicChannel(opened.washington, "beijing").notify(
            "Incident at sea", opened.clock.now_ms, "x"))
        assert status(app) == expected, status(app)
        # Theirs accepted from the console (the form offers it).
        await pilot.press("T")
        await pilot.pause()
        offered = app.screen.query_one("#field0", Input).value
        assert offered and any(d.startswith(offered) and "Missile" in d
                               for d in app.snapshot.board.duties)
        await fill(app, pilot, "Missile test")
        assert status(app) == "accepted the duty 'Missile test'", status(app)
        b = await beijing_syncs(opened.beijing)
        await b.accept_duty("Incident at sea")
        await app.reload(sync=True)
        assert all("agreed" in d for d in app.snapshot.board.duties), app.snapshot.board
        await pilot.press("b")
        await fill(app, pilot, "Incident at sea", "Minor contact; no injuries.", "-20m", "")
        assert status(app) == "notified under 'Incident at sea' (notified in time)", \
            status(app)
        await pilot.press("B")
        await fill(app, pilot, "Missile test", "+2d", "A launch window was announced.")
        assert status(app).startswith("asked for the notification owed"), status(app)
        await pilot.press("B")  # a bad time: refused as `--event-at` refuses it
        await fill(app, pilot, "Missile test", "tomorrow", "")
        assert status(app).startswith("error: Invalid value for --event-at: now, +DURATION"), \
            status(app)
        notes = app.snapshot.board.notifications
        assert any("Incident at sea, owed by us: NOTIFIED IN TIME" in n for n in notes), notes
        assert any("Missile test, owed by them: DUE" in n for n in notes), notes
        assert any(line.act == "notify" and line.text == "Minor contact; no injuries."
                   for line in app._lines)
    b = await beijing_syncs(opened.beijing)
    duties = {(d.current or d.latest).title: d for d in b.dialogue().duties()}
    incident = duties["Incident at sea"].current
    assert incident is not None and (incident.version, incident.window_ms) == (2, 7_200_000)
    items = {n.owed_by: n for n in b.dialogue().notifications()}
    now = opened.beijing.now_ms()
    assert items[Side.THEIRS].status(now) is NotificationStatus.IN_TIME
    assert items[Side.OURS].requested and items[Side.OURS].status(now) is NotificationStatus.DUE


async def test_the_review_is_shown_and_written_as_the_cli_writes_it(
    opened: Opened, tmp_path: Path
) -> None:
    from backchannel.dialogue.review import review_channel

    await StrategicChannel(opened.beijing, "washington").note("Noted.")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await pilot.press("R")
        await fill(app, pilot, "yesterday", "now", "", "n")
        assert status(app).startswith("error: Invalid value for --since: now, +DURATION"), \
            status(app)
        target = tmp_path / "review.md"
        await pilot.press("R")
        await fill(app, pilot, "-30d", "now", str(target), "n")
        assert status(app) == f"wrote the review to {target}", status(app)
        shown = app.screen
        assert isinstance(shown, Reading)
        assert str(shown.body).startswith("# Channel review, ")
        assert str(shown.body) == target.read_text(encoding="utf-8")
        await pilot.press("escape")
        as_json = tmp_path / "review.json"
        await pilot.press("R")
        await fill(app, pilot, "-30d", "now", str(as_json), "n")
        assert status(app) == f"wrote the review to {as_json}", status(app)
    written = json.loads(as_json.read_text(encoding="utf-8"))
    strategic = StrategicChannel(opened.washington, "beijing")
    now = opened.clock.now_ms
    expected = review_channel(strategic.dialogue(), now - 30 * 86_400_000, now + 1, now)
    assert written == json.loads(json.dumps(expected.to_dict()))


async def test_invites_waiting_are_listed_and_revoked(opened: Opened) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await fill(app, pilot, opened.pair.relay.url)
        await pilot.press("escape")
        await app.reload(sync=False)
        (waiting,) = app.snapshot.invites
        assert waiting.expires_in_ms > 0
        shown = str(app.query_one("#channels", Static).content)
        assert f"invite {waiting.ref} waiting" in shown and "expires in 7d\n" in shown
        opened.clock.advance(3_600_000)
        await app.reload(sync=False)
        assert "expires in 6d23h" in str(app.query_one("#channels", Static).content)
        await pilot.press("I")
        await pilot.pause()
        assert app.screen.query_one("#field0", Input).value == waiting.ref
        await fill(app, pilot, waiting.ref)
        assert status(app) == (f"revoked invite {waiting.ref}: the code can no longer be "
                               "used"), status(app)
        assert app.snapshot.invites == ()
        await pilot.press("I")  # gone: refused as `invite revoke` refuses it
        await fill(app, pilot, waiting.ref)
        expected = await engine_error(opened.washington.revoke_invite(waiting.ref))
        assert status(app) == expected, status(app)
    assert opened.washington.pending_invites() == []


async def test_their_note_in_chinese_gets_our_translation_shared(opened: Opened) -> None:
    from backchannel.cli.demo_round import BILINGUAL_EN, BILINGUAL_ZH, INTERPRETER
    from backchannel.dialogue import Languages

    await StrategicChannel(opened.beijing, "washington").note(
        BILINGUAL_ZH, languages=Languages("zh-Hans"))
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and line.act == "note")
        await pilot.press("z")
        await fill(app, pilot, "en", BILINGUAL_EN, "interpreter", "")
        assert status(app) == usage_error(lambda: parse_attribution("interpreter")), \
            status(app)
        await pilot.press("z")
        await fill(app, pilot, "en", BILINGUAL_EN, f"staff:{INTERPRETER}", "")
        assert status(app).startswith("shared a en translation of "), status(app)
        line = next(line for line in app._lines if line.direction == "in")
        assert line.translations == (f"[en, shared by ours: staff ({INTERPRETER})] "
                                     f"{BILINGUAL_EN}",), line
    b = await beijing_syncs(opened.beijing)
    sent = next(e for e in opened.beijing.history("washington").entries if e.act == "note")
    original, shared = b.versions(sent.message_id)
    assert original.authoritative and original.text == BILINGUAL_ZH
    assert (shared.language, shared.text) == ("en", BILINGUAL_EN)

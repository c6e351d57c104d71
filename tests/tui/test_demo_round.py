"""The demo's strategic round (cli/demo_round.py) with Washington at the console alone:
every act of Washington's is a key of its console (Textual's pilot over the real relay on
127.0.0.1); Beijing plays its part through the engine, as in the demo."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Input, Select, Static

from backchannel.cli.demo_round import (
    BILINGUAL_EN,
    BILINGUAL_ZH,
    DUTY_TITLE,
    INCIDENT,
    INTERPRETER,
)
from backchannel.cli.demo_script import (
    AGENDA,
    ANSWER,
    CODE_EN,
    CODE_NUMBER,
    CODE_VALUES,
    CODE_WORD,
    CODE_ZH,
    FLASH_NOTE,
    HOLDING_REPLY,
    NEXT_ROUND,
    PRIORITY_NOTE,
    QUESTION,
    RECORD_EN,
    RECORD_TITLE,
    RECORD_ZH,
    RED_LINE_TEXT,
    RED_LINE_TITLE,
    WHILE_OFFLINE,
)
from backchannel.client.strategic import StrategicChannel, perform_duties
from backchannel.dialogue import CodeText, Languages, NotificationStatus, Precedence, Side
from backchannel.tui.app import ConsoleApp
from backchannel.tui.dialogs import Compose
from backchannel.tui.live import ConsoleData

from .conftest import Opened
from .test_acts import SIZE, beijing_syncs, fill, select, status

# About twenty seconds: every step of the round, each a sync both ways over the relay.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


async def compose(app: ConsoleApp, pilot: object, text: str, precedence: str,
                  minutes: str) -> None:
    """`n`: a note with its precedence and acknowledgement deadline."""
    await pilot.press("n")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    dialog = app.screen
    assert isinstance(dialog, Compose)
    dialog.query_one("#text", Input).value = text
    dialog.query_one("#precedence", Select).value = precedence
    dialog.query_one("#within", Input).value = minutes
    dialog._submit()
    await pilot.pause()  # type: ignore[attr-defined]


async def test_washington_plays_the_demo_round_from_its_console(
    opened: Opened, tmp_path: Path
) -> None:
    beijing = StrategicChannel(opened.beijing, "washington")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        # A red line, declared by Beijing and understood by Washington.
        await beijing.declare_red_line(RED_LINE_TITLE, RED_LINE_TEXT)
        await app.reload(sync=True)
        await select(app, lambda line: line.act == "redline v1")
        await pilot.press("k")
        await pilot.pause()
        assert "acknowledged as understood" in status(app), status(app)

        # A FLASH note: Beijing holds it, then acknowledges it in time.
        await compose(app, pilot, FLASH_NOTE.text, "FLASH", "10")
        assert status(app) == "sent", status(app)
        beijing = await beijing_syncs(opened.beijing)
        flash = next(e for e in opened.beijing.history("washington").entries
                     if e.text == FLASH_NOTE.text)
        await beijing.hold(flash.message_id, opened.beijing.now_ms() + 3_600_000,
                           HOLDING_REPLY)
        await app.reload(sync=True)
        assert [p.held for p in app.snapshot.board.pending] == [True]
        await beijing.ack(flash.message_id)
        await app.reload(sync=True)
        assert app.snapshot.board.pending == ()

        # A codebook entry of Beijing's in two languages, accepted, then sent as a FLASH.
        await beijing.propose_code(CODE_NUMBER, CODE_WORD, [CodeText("zh-Hans", CODE_ZH),
                                   CodeText("en", CODE_EN)], ("time", "place"),
                                   Precedence.FLASH)
        await app.reload(sync=True)
        await pilot.press("u")
        await fill(app, pilot, str(CODE_NUMBER))
        assert status(app) == f"accepted codebook entry {CODE_NUMBER}", status(app)
        beijing = await beijing_syncs(opened.beijing)
        await beijing.send_code(str(CODE_NUMBER), dict(CODE_VALUES))
        await app.reload(sync=True)
        assert any(line.act.startswith("codebook_send") and "Jiuquan" in line.text
                   for line in app._lines)

        # Beijing writes in Chinese; Washington's interpreter shares the English.
        await beijing.note(BILINGUAL_ZH, Precedence.ROUTINE, 0, Languages("zh-Hans"))
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and BILINGUAL_ZH in line.text)
        await pilot.press("z")
        await fill(app, pilot, "en", BILINGUAL_EN, f"staff:{INTERPRETER}", "")
        assert status(app).startswith("shared a en translation"), status(app)

        # A notification duty, agreed and kept.
        await pilot.press("t")
        await fill(app, pilot, DUTY_TITLE, "", "1h", "", "")
        beijing = await beijing_syncs(opened.beijing)
        await beijing.accept_duty(DUTY_TITLE)
        await beijing.notify(DUTY_TITLE, opened.beijing.now_ms() - 20 * 60_000, INCIDENT)
        await app.reload(sync=True)
        assert any("owed by them: NOTIFIED IN TIME" in n
                   for n in app.snapshot.board.notifications), app.snapshot.board

        # A PRIORITY note misses its deadline and is escalated.
        await compose(app, pilot, PRIORITY_NOTE.text, "PRIORITY", "1")
        opened.clock.advance(2 * 60_000)
        await app.reload(sync=True)
        (overdue,) = app.snapshot.board.pending
        assert overdue.precedence == "PRIORITY" and overdue.overdue and overdue.escalated

        # A clarification of Washington's note, answered from the console.
        await compose(app, pilot, WHILE_OFFLINE[0].text, "ROUTINE", "")
        beijing = await beijing_syncs(opened.beijing)
        target = next(e for e in opened.beijing.history("washington").entries
                      if e.text == WHILE_OFFLINE[0].text)
        await beijing.clarify(target.message_id, QUESTION)
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and line.act == "clarify")
        await pilot.press("r")
        await fill(app, pilot, ANSWER)
        assert status(app).startswith("answered"), status(app)

        # The agenda of the next round: ours proposed, theirs accepted, ours accepted.
        for line in AGENDA:
            if line.speaker == "washington":
                await pilot.press("g")
                await fill(app, pilot, str(NEXT_ROUND), line.text, "")
            else:
                await beijing.propose_agenda_item(NEXT_ROUND, line.text)
        beijing = await beijing_syncs(opened.beijing)
        round_two = beijing.dialogue().agenda(NEXT_ROUND)
        for item in round_two.undecided:
            if item.proposed_by is Side.THEIRS:
                await beijing.decide_agenda_item(item.item_id.hex(), accept=True)
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and line.act == "agenda_propose")
        await pilot.press("y")
        await pilot.pause()
        assert status(app).startswith("accepted agenda item"), status(app)

        # The joint statement, English and Chinese equally authentic: co-signed, exported
        # and verified offline.
        await pilot.press("p")
        await fill(app, pilot, RECORD_TITLE, "", f"en={RECORD_EN} | zh={RECORD_ZH}", "",
                   "en, zh")
        beijing = await beijing_syncs(opened.beijing)
        (record,) = beijing.board().records
        await beijing.sign_record(record.record_id.hex())
        await app.reload(sync=True)
        await select(app, lambda line: line.act.startswith("record_sign"))
        exported = tmp_path / "agreed-record.txt"
        await pilot.press("e")
        await fill(app, pilot, str(exported))
        await pilot.press("v")
        await fill(app, pilot, str(exported))
        assert status(app).startswith("verified: record"), status(app)

        # A line test, answered; then the round's review, written to a file.
        await pilot.press("l")
        await pilot.pause()
        await opened.beijing.sync()
        perform_duties(opened.beijing)
        await opened.beijing.sync()
        await app.reload(sync=True)
        assert app.snapshot.channels[0].line == "UP"
        review = tmp_path / "review.md"
        await pilot.press("R")
        await fill(app, pilot, "-1d", "now", str(review), "n")
        assert status(app) == f"wrote the review to {review}", status(app)
        assert "Notification duties" in str(app.query_one("#board", Static).content)
    beijing = await beijing_syncs(opened.beijing)
    agreed = beijing.dialogue().agenda(NEXT_ROUND).agreed
    assert sorted(i.title for i in agreed) == sorted(line.text for line in AGENDA)
    (record,) = beijing.board().records
    assert record.latest.status.name == "AGREED"
    (notified,) = beijing.dialogue().notifications()
    assert notified.status(opened.beijing.now_ms()) is NotificationStatus.IN_TIME
    written = review.read_text(encoding="utf-8")
    assert written.startswith("# Channel review, ") and RECORD_TITLE in written

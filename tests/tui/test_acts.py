"""The strategic round from the console: Textual's pilot drives Washington's console over
the real relay on 127.0.0.1 while Beijing (a real principal in this process) answers.
Each act is done on the selected message of the conversation, as a principal does it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, OptionList, Static

from backchannel.client.engine import Principal
from backchannel.client.strategic import StrategicChannel, perform_duties
from backchannel.dialogue import LanguageVersion, Precedence
from backchannel.tui.app import ConsoleApp
from backchannel.tui.dialogs import Form, Reading, SafetyNumber
from backchannel.tui.live import ConsoleData
from backchannel.tui.views import ConversationLine

from .conftest import Opened

pytestmark = pytest.mark.timeout(60)

SIZE = (120, 40)


def status(app: ConsoleApp) -> str:
    return str(app.query_one("#status", Static).content)


async def select(app: ConsoleApp, chosen: Callable[[ConversationLine], bool]) -> None:
    """Highlight the last conversation line for which `chosen` holds."""
    index = max(i for i, line in enumerate(app._lines) if chosen(line))
    app.query_one("#conversation", OptionList).highlighted = index + (
        1 if app._options_earlier else 0)
    assert app.selected_line() == app._lines[index]


async def fill(app: ConsoleApp, pilot: object, *values: str) -> None:
    """Type `values` into the open form's fields and submit it."""
    form = app.screen
    assert isinstance(form, Form)
    for index, value in enumerate(values):
        form.query_one(f"#field{index}", Input).value = value
    form._submit()
    await pilot.pause()  # type: ignore[attr-defined]


async def settled(app: ConsoleApp, pilot: object, before: str) -> str:
    """The status line once it changed from `before` (an act finishing in its
    callback); bounded by the test's timeout."""
    while status(app) == before:
        await pilot.pause(0.05)  # type: ignore[attr-defined]
    return status(app)


async def beijing_syncs(b: Principal) -> StrategicChannel:
    await b.sync()
    return StrategicChannel(b, "washington")


async def test_a_clarification_is_asked_and_answered_from_the_console(opened: Opened) -> None:
    b = StrategicChannel(opened.beijing, "washington")
    await b.note("The delegation lands at nine.")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and line.act == "note")
        await pilot.press("c")
        await fill(app, pilot, "Nine local time or UTC?")
        assert status(app).startswith("asked about"), status(app)
        b = await beijing_syncs(opened.beijing)
        (request,) = b.board().open_clarifications
        await b.answer(request.request_id.hex(), "Local time.")
        # Beijing asks back; the console answers the selected request.
        mine = next(e for e in opened.beijing.history("washington").entries
                    if e.direction == "in" and e.act == "clarify")
        await b.clarify(mine.message_id, "Which airport?")
        await app.reload(sync=True)
        await select(app, lambda line: line.direction == "in" and line.act == "clarify")
        await pilot.press("r")
        await fill(app, pilot, "Schwechat.")
        assert status(app).startswith("answered"), status(app)
        # An answer to a message that is no request is refused in the CLI's words.
        await select(app, lambda line: line.act == "note")
        await pilot.press("r")
        await fill(app, pilot, "Again.")
        assert status(app).startswith("error: "), status(app)
    b = await beijing_syncs(opened.beijing)
    assert b.board().open_clarifications == ()
    answers = [e.text for e in opened.beijing.history("washington").entries if e.act == "answer"]
    assert answers == ["Local time.", "Schwechat."]


async def test_a_red_line_is_declared_and_theirs_acknowledged(opened: Opened) -> None:
    b = StrategicChannel(opened.beijing, "washington")
    await b.declare_red_line("Taiwan", "No independence.")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        assert any("awaiting ack" in r for r in app.snapshot.board.red_lines)
        await select(app, lambda line: line.act.startswith("redline"))
        await pilot.press("k")
        await pilot.pause()
        assert "acknowledged as understood" in status(app), status(app)
        await pilot.press("d")
        await fill(app, pilot, "Sanctions", "No new sanctions during the talks.")
        assert status(app) == "red line declared"
        # Acknowledging our own red line is refused as the CLI refuses it.
        await app.reload(sync=False)
        await select(app, lambda line: line.act.startswith("redline") and line.direction == "out"
                     and line.act != "redline_ack v1")
        await pilot.press("k")
        await pilot.pause()
        assert status(app).startswith("error: "), status(app)
    b = await beijing_syncs(opened.beijing)
    lines = {r.latest.title: r for r in b.board().red_lines}
    assert not lines["Taiwan"].awaiting_acknowledgement
    assert lines["Sanctions"].awaiting_acknowledgement


async def test_an_agenda_is_agreed_from_the_console(opened: Opened) -> None:
    b = StrategicChannel(opened.beijing, "washington")
    await b.propose_agenda_item(2, "Maritime incidents")
    await b.propose_agenda_item(2, "Trade")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await select(app, lambda line: "Maritime" in line.text)
        await pilot.press("y")
        await pilot.pause()
        assert status(app).startswith("accepted agenda item"), status(app)
        await select(app, lambda line: "Trade" in line.text)
        await pilot.press("x")
        await fill(app, pilot, "Not this round.")
        assert status(app).startswith("declined agenda item"), status(app)
        await pilot.press("g")
        await fill(app, pilot, "2", "Hotline upgrade", "")
        assert status(app) == "agenda item proposed"
    b = await beijing_syncs(opened.beijing)
    round_two = b.board().next_round
    assert round_two is not None
    states = {i.title: i.status.name for i in round_two.items}
    assert states["Maritime incidents"] == "ACCEPTED" and states["Trade"] == "DECLINED"
    assert states["Hotline upgrade"] == "PROPOSED"


async def test_a_record_is_proposed_cosigned_exported_and_verified(
    opened: Opened, tmp_path: Path
) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("p")
        await fill(app, pilot, "Vienna round", "The two sides held candid talks.")
        assert "awaits their co-signature" in status(app), status(app)
        b = await beijing_syncs(opened.beijing)
        (record,) = b.board().records
        await b.sign_record(record.record_id.hex())
        await app.reload(sync=True)
        assert any("agreed" in r for r in app.snapshot.board.records), app.snapshot.board
        await select(app, lambda line: line.act.startswith("record_sign"))
        target = tmp_path / "vienna.txt"
        await pilot.press("e")
        await fill(app, pilot, str(target))
        assert status(app).startswith("exported record"), status(app)
        await pilot.press("v")
        await fill(app, pilot, str(target))
        assert status(app).startswith("verified: record"), status(app)
        target.write_bytes(target.read_bytes().replace(b"candid", b"frank"))
        await pilot.press("v")
        await fill(app, pilot, str(target))
        assert status(app).startswith(f"error: {target} is not a valid agreed record"), \
            status(app)
    assert LanguageVersion  # the statement is in one language, en


async def test_our_overdue_flash_escalates_and_shows_so(opened: Opened) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        await pilot.click("#text")
        await pilot.press(*"Confirm receipt.")
        compose = app.screen
        compose.query_one("#within", Input).value = "1"
        from textual.widgets import Select

        compose.query_one("#precedence", Select).value = "FLASH"
        await pilot.press("enter")
        await pilot.pause()
        assert status(app) == "sent"
        (pending,) = app.snapshot.board.pending
        assert pending.ours and not pending.overdue
        opened.clock.advance(2 * 60_000)
        await app.reload(sync=True)  # the duties run: the note is escalated
        (pending,) = app.snapshot.board.pending
        assert pending.overdue and pending.escalated
        assert "escalated" in str(app.query_one("#board", Static).content)
    assert Precedence.FLASH


async def test_the_line_goes_down_with_the_relay_and_up_when_it_returns(
    opened: Opened,
) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await pilot.pause()
        assert status(app) == "line test sent"
        await opened.beijing.sync()
        perform_duties(opened.beijing)  # Beijing answers the test
        await opened.beijing.sync()
        await app.reload(sync=True)
        assert app.snapshot.channels[0].line == "UP", app.snapshot.channels
        assert (app.snapshot.channels[0].relays_up, app.snapshot.channels[0].relays) == (1, 1)
        opened.pair.relay.stop()
        opened.clock.advance(2 * 3_600_000)  # the next test is due and goes unanswered
        await app.reload(sync=True)
        opened.clock.advance(3_600_000)
        await app.reload(sync=True)
        assert app.snapshot.channels[0].line == "DOWN", app.snapshot.board.line
        assert app.snapshot.channels[0].relays_up == 0
        assert "relays 0/1 up" in str(app.query_one("#channels", Static).content)
        opened.pair.relay.start()
        await app.reload(sync=True)  # our queued test goes out
        await opened.beijing.sync()
        perform_duties(opened.beijing)
        await opened.beijing.sync()
        await app.reload(sync=True)
        assert app.snapshot.channels[0].line == "UP", app.snapshot.board.line


async def test_the_safety_number_is_shown_in_digits_and_words_and_confirmed(
    opened: Opened,
) -> None:
    digits, words, verified = opened.washington.safety_number("beijing")
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, SafetyNumber)
        assert str(dialog.query_one("#digits", Static).content).split() == digits.split()
        assert str(dialog.query_one("#words", Static).content).split() == list(words)
        await pilot.press("y")
        await pilot.pause()
        assert "is verified" in status(app) or verified, status(app)
    assert opened.washington.channel("beijing").verified


async def test_pairing_through_the_console(tmp_path: Path, opened: Opened) -> None:
    # Washington invites from its console; a third principal joins from its own console.
    from backchannel.client.keystore import KdfParameters

    moscow = Principal.create(tmp_path / "moscow", "moscow", "a passphrase for moscow",
                              kdf=KdfParameters(memory_kib=8 * 1024, iterations=1, lanes=1))
    try:
        inviter = ConsoleApp(ConsoleData(opened.washington), live=False)
        async with inviter.run_test(size=SIZE) as pilot:
            await pilot.press("i")
            await fill(inviter, pilot, opened.pair.relay.url)
            shown = inviter.screen
            assert isinstance(shown, Reading)
            body = shown.body
            code = str(body).split("\n", 1)[0]
            assert code.startswith("BC1-") and "▀" in str(body)
        joiner = ConsoleApp(ConsoleData(moscow), live=False)
        async with joiner.run_test(size=SIZE) as pilot:
            assert "no channels yet" in str(joiner.query_one("#channels", Static).content)
            await pilot.press("j")
            await fill(joiner, pilot, code, "washington")
            assert status(joiner).startswith("joined channel 'washington'"), status(joiner)
            assert joiner.snapshot.selected == "washington"
            await pilot.press("j")
            await fill(joiner, pilot, code, "again")
            assert status(joiner).startswith("error: "), status(joiner)
        await opened.washington.sync()
        assert len(opened.washington.channels()) == 2
    finally:
        moscow.close()


async def test_a_long_channel_pages_back_from_its_top_and_returns(opened: Opened) -> None:
    opened.washington.queue_many("beijing", [f"note {i}" for i in range(900)])
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        widget = app.query_one("#conversation", OptionList)
        total = app.snapshot.total
        assert (app.snapshot.earlier, len(app._lines)) == (total - 200, 200)
        first = app._lines[0]
        widget.highlighted = 0  # the "earlier" line: the page before comes in
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert (app.snapshot.earlier, app.snapshot.later) == (total - 400, 0)
        assert app.selected_line() == first  # the selection stayed on its message
        widget.scroll_end(animate=False)
        await pilot.pause()
        widget.scroll_home(animate=False)  # scrolled to the top: one page more
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert app.snapshot.earlier == total - 600
        await pilot.press("less_than_sign")  # the very first page, in a bounded window
        await app.workers.wait_for_complete()
        assert (app.snapshot.earlier, app.snapshot.later) == (0, total - 600)
        assert "note 0" in [line.text for line in app._lines[:total - 900 + 1]]
        widget.highlighted = widget.option_count - 1  # the "later" line: a page on
        await pilot.pause()
        await app.workers.wait_for_complete()
        assert (app.snapshot.earlier, app.snapshot.later) == (200, total - 800)
        await pilot.press("greater_than_sign")  # back to the latest page, following
        await app.workers.wait_for_complete()
        assert (app.snapshot.earlier, app.snapshot.later) == (total - 200, 0)


@pytest.mark.slow  # loading the gazetteer takes most of its 6 to 9 s
async def test_a_meeting_is_planned_with_the_ranked_venues_and_proposed(opened: Opened) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        await fill(app, pilot, "2", "Washington, Beijing", "2027-03-01")
        said = await settled(app, pilot, "")
        assert said.startswith("proposed meeting in "), said
        table = app.screen
        assert isinstance(table, Reading)
        venue = status(app).removeprefix("proposed meeting in ").split(" as ")[0]
        assert table.body.row_count >= 2  # type: ignore[union-attr]
        assert any(venue in line.text for line in app._lines if line.act == "agenda_propose")
        await pilot.press("escape")
        await pilot.press("m")
        await fill(app, pilot, "2", "Nowhere-upon-Nothing, Beijing", "2027-03-01")
        said = await settled(app, pilot, said)
        assert said.startswith("error: "), said



async def test_a_codebook_entry_is_agreed_and_sent_from_the_console(opened: Opened) -> None:
    from backchannel.cli.demo_script import CODE_EN, CODE_NUMBER, CODE_VALUES, CODE_WORD
    from backchannel.dialogue import CodeText

    b = StrategicChannel(opened.beijing, "washington")
    await b.propose_code(CODE_NUMBER, CODE_WORD, [CodeText("en", CODE_EN)], ("time", "place"),
                         Precedence.FLASH)
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        assert any("(proposed)" in c for c in app.snapshot.board.codebook)
        await pilot.press("w")  # not accepted yet: refused as the CLI refuses it
        await fill(app, pilot, str(CODE_NUMBER), "time=06:00Z, place=Jiuquan")
        assert status(app).startswith("error: "), status(app)
        await pilot.press("u")
        await fill(app, pilot, str(CODE_NUMBER))
        assert status(app) == f"accepted codebook entry {CODE_NUMBER}", status(app)
        b = await beijing_syncs(opened.beijing)
        await b.send_code(str(CODE_NUMBER), dict(CODE_VALUES))
        await app.reload(sync=True)
        rendered = [line.text for line in app._lines if line.act.startswith("codebook_send")]
        assert rendered and "06:00Z" in rendered[-1] and CODE_WORD in rendered[-1], rendered
        # Ours: proposed from the console, accepted by them, sent by number.
        await pilot.press("o")
        await fill(app, pilot, "8", "RED TIDE", "en=Talks moved to {day}.", "day", "")
        assert status(app) == "proposed codebook entry 8", status(app)
        b = await beijing_syncs(opened.beijing)
        await b.accept_code("8")
        await app.reload(sync=True)
        await pilot.press("w")
        await fill(app, pilot, "RED TIDE", "day=Friday")
        assert status(app) == "sent codebook entry RED TIDE", status(app)
    b = await beijing_syncs(opened.beijing)
    sends = [e for e in opened.beijing.history("washington").entries
             if e.act == "codebook_send" and e.direction == "in"]
    assert sends and "Talks moved to Friday." in sends[-1].text


async def test_a_bilingual_note_shows_its_translations_under_it(opened: Opened) -> None:
    from backchannel.dialogue import Attribution, AttributionKind, Languages, Translation

    b = StrategicChannel(opened.beijing, "washington")
    interpreter = Attribution(AttributionKind.TRANSLATOR, "Li Wei")
    await b.note("请确认收到。", languages=Languages(
        "zh-Hans", (Translation("en", interpreter, "Please confirm receipt."),)))
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await pilot.pause()
        line = next(line for line in app._lines if line.direction == "in")
        assert line.text == "[zh-Hans, authoritative] 请确认收到。"
        (english,) = line.translations
        assert english == "[en, translator Li Wei] Please confirm receipt."
        shown = app.query_one("#conversation", OptionList)
        assert any("translator Li Wei" in str(shown.get_option_at_index(i).prompt)
                   for i in range(shown.option_count))

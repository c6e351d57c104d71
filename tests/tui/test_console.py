"""The console driven by Textual's pilot, over two principals paired through a real relay
on 127.0.0.1: what it sends arrives, a FLASH takes over the screen until acknowledged, the
acknowledgement reaches the sender, and hostile text is shown escaped."""

from __future__ import annotations

import html

import pytest
from textual.widgets import Input, Static

from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import Precedence
from backchannel.dialogue import text as dialogue_text
from backchannel.tui.app import ConsoleApp
from backchannel.tui.dialogs import Form
from backchannel.tui.live import ConsoleData

from .conftest import Opened

pytestmark = pytest.mark.timeout(120)

SIZE = (120, 40)


def screen_text(app: ConsoleApp) -> str:
    """The characters on screen (from Textual's SVG export: entities and the no-break
    spaces it writes for blanks turned back into text)."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def test_a_note_composed_in_the_console_reaches_the_other_side(opened: Opened) -> None:
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        await pilot.click("#text")
        await pilot.press(*"Talks at noon?")
        await pilot.press("enter")
        await pilot.pause()
        assert "sent" in str(app.query_one("#status", Static).content)
    await opened.beijing.sync()
    texts = [e.text for e in opened.beijing.inbox("washington")]
    assert texts == ["Talks at noon?"]


async def test_a_flash_shows_a_banner_until_acknowledged_and_the_sender_sees_the_ack(
    opened: Opened,
) -> None:
    sender = StrategicChannel(opened.beijing, "washington")
    await sender.note("Incident at sea: confirm.", Precedence.FLASH, 600_000)
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.query_one("#flash", Static)
        assert not banner.has_class("shown")  # nothing fetched yet
        await app.reload(sync=True)
        await pilot.pause()
        assert banner.has_class("shown")
        assert "FLASH" in str(banner.content)
        assert "Incident at sea: confirm." in screen_text(app)
        await pilot.press("a")
        await pilot.pause()
        assert "acknowledged" in str(app.query_one("#status", Static).content)
        assert not banner.has_class("shown")
    await opened.beijing.sync()
    assert sender.board().awaiting_their_ack == ()
    notes = [e for e in opened.beijing.history("washington").entries if e.act == "note"]
    assert notes[-1].acknowledged_at_ms > 0


async def test_hostile_counterpart_text_reaches_the_screen_escaped(
    opened: Opened, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decoders refuse such text, so it is brought in through a "decoder gap" (the
    # body check switched off on both sides, as tests/cli/test_text_safety.py does): what
    # is tested is that the console escapes whatever reaches it.
    monkeypatch.setattr(dialogue_text, "check_safe_text", lambda *a, **k: None)
    hostile = "ok\x1b[2J\u202egnp.exe\x07 [bold]x[/bold]"
    await StrategicChannel(opened.beijing, "washington").note(hostile)
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await pilot.pause()
        shown = screen_text(app)
    for raw in ("\x1b", "\u202e", "\x07"):
        assert raw not in shown
    assert "\\x1b[2J<U+202E>gnp.exe\\x07" in shown
    # Shown as text, not as markup: the brackets are on screen.
    assert "[bold]x[/bold]" in shown


async def test_holding_a_flash_takes_the_banner_down_and_the_sender_sees_the_hold(
    opened: Opened,
) -> None:
    sender = StrategicChannel(opened.beijing, "washington")
    await sender.note("Confirm the ceasefire.", Precedence.FLASH, 600_000)
    app = ConsoleApp(ConsoleData(opened.washington), live=False)
    async with app.run_test(size=SIZE) as pilot:
        await app.reload(sync=True)
        await pilot.pause()
        banner = app.query_one("#flash", Static)
        assert banner.has_class("shown")
        await pilot.press("h")  # the hold form: the expected time as `hold --until` takes it
        await pilot.pause()
        form = app.screen
        assert isinstance(form, Form)
        form.query_one("#field0", Input).value = "2h"
        form.query_one("#field1", Input).value = "Consulting the capital."
        form._submit()
        await pilot.pause()
        assert "held" in str(app.query_one("#status", Static).content)
        assert not banner.has_class("shown")
    await opened.beijing.sync()
    (pending,) = sender.board().awaiting_their_ack
    assert pending.hold is not None
    assert pending.hold.expected_by_ms == opened.clock.now_ms + 2 * 3_600_000
    assert pending.hold.text == "Consulting the capital."


async def test_what_arrives_appears_by_itself_while_the_keys_stay_live(opened: Opened) -> None:
    # The live console: the refresh runs in a worker once a second (sync, duties, read in
    # a thread); a note sent meanwhile appears without a key, and a key is answered.
    app = ConsoleApp(ConsoleData(opened.washington), live=True)
    async with app.run_test(size=SIZE) as pilot:
        await StrategicChannel(opened.beijing, "washington").note("Arrived by itself.")
        while not any(line.text == "Arrived by itself." for line in app._lines):
            await pilot.pause(0.1)
        await pilot.press("question_mark")
        await pilot.pause()
        from backchannel.tui.dialogs import Help

        assert isinstance(app.screen, Help)

"""The console driven by Textual's pilot, over two principals paired through a real relay
on 127.0.0.1: what it sends arrives, a FLASH takes over the screen until acknowledged, the
acknowledgement reaches the sender, and hostile text is shown escaped."""

from __future__ import annotations

import asyncio
import html
import json
from pathlib import Path

import pytest
from textual.widgets import Static

from backchannel.client.engine import Principal
from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import text as dialogue_text
from backchannel.tui.app import ConsoleApp
from backchannel.tui.live import ConsoleData
from tests.cli.conftest import PASSPHRASE, Pair, run

pytestmark = pytest.mark.timeout(120)

SIZE = (120, 40)


async def cli(home: Path, *args: str) -> str:
    """A CLI command's output; in a thread, as each command runs its own event loop."""
    return (await asyncio.to_thread(run, home, *args)).stdout


def screen_text(app: ConsoleApp) -> str:
    """The characters on screen (from Textual's SVG export: entities and the no-break
    spaces it writes for blanks turned back into text)."""
    return html.unescape(app.export_screenshot()).replace("\xa0", " ")


async def test_a_note_composed_in_the_console_reaches_the_other_side(pair: Pair) -> None:
    principal = await asyncio.to_thread(Principal.open, pair.washington, PASSPHRASE)
    try:
        app = ConsoleApp(ConsoleData(principal), live=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("n")
            await pilot.pause()
            await pilot.click("#text")
            await pilot.press(*"Talks at noon?")
            await pilot.press("enter")
            await pilot.pause()
            assert "sent" in str(app.query_one("#status", Static).content)
    finally:
        principal.close()
    await cli(pair.beijing, "sync")
    texts = [m["text"] for m in json.loads(await cli(pair.beijing, "inbox", "--json"))["messages"]]
    assert texts == ["Talks at noon?"]


async def test_a_flash_shows_a_banner_until_acknowledged_and_the_sender_sees_the_ack(
    pair: Pair,
) -> None:
    await cli(pair.beijing, "send", "washington", "Incident at sea: confirm.", "--flash",
              "--ack-within", "10m")
    principal = await asyncio.to_thread(Principal.open, pair.washington, PASSPHRASE)
    try:
        app = ConsoleApp(ConsoleData(principal), live=False)
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
    finally:
        principal.close()
    sender = await asyncio.to_thread(Principal.open, pair.beijing, PASSPHRASE)
    try:
        await sender.sync()
        board = StrategicChannel(sender, "washington").board()
        assert board.awaiting_their_ack == ()
        page = sender.history("washington")
        notes = [e for e in page.entries if e.act == "note"]
        assert notes[-1].acknowledged_at_ms > 0
    finally:
        sender.close()


async def test_hostile_counterpart_text_reaches_the_screen_escaped(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decoders refuse such text, so it is brought in through a "decoder gap" (the
    # body check switched off on both sides, as tests/cli/test_text_safety.py does): what
    # is tested is that the console escapes whatever reaches it.
    monkeypatch.setattr(dialogue_text, "check_safe_text", lambda *a, **k: None)
    hostile = "ok\x1b[2J\u202egnp.exe\x07 [bold]x[/bold]"
    await cli(pair.beijing, "send", "washington", hostile)
    principal = await asyncio.to_thread(Principal.open, pair.washington, PASSPHRASE)
    try:
        app = ConsoleApp(ConsoleData(principal), live=False)
        async with app.run_test(size=SIZE) as pilot:
            await app.reload(sync=True)
            await pilot.pause()
            shown = screen_text(app)
    finally:
        principal.close()
    for raw in ("\x1b", "\u202e", "\x07"):
        assert raw not in shown
    assert "\\x1b[2J<U+202E>gnp.exe\\x07" in shown
    # Shown as text, not as markup: the brackets are on screen.
    assert "[bold]x[/bold]" in shown


async def test_holding_a_flash_takes_the_banner_down_and_the_sender_sees_the_hold(
    pair: Pair,
) -> None:
    await cli(pair.beijing, "send", "washington", "Confirm the ceasefire.", "--flash",
              "--ack-within", "10m")
    principal = await asyncio.to_thread(Principal.open, pair.washington, PASSPHRASE)
    try:
        app = ConsoleApp(ConsoleData(principal), live=False)
        async with app.run_test(size=SIZE) as pilot:
            await app.reload(sync=True)
            await pilot.pause()
            banner = app.query_one("#flash", Static)
            assert banner.has_class("shown")
            await pilot.press("h")
            await pilot.pause()
            assert "held" in str(app.query_one("#status", Static).content)
            assert not banner.has_class("shown")
    finally:
        principal.close()
    sender = await asyncio.to_thread(Principal.open, pair.beijing, PASSPHRASE)
    try:
        await sender.sync()
        (pending,) = StrategicChannel(sender, "washington").board().awaiting_their_ack
        assert pending.hold is not None
    finally:
        sender.close()

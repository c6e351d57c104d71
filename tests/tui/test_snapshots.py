"""SVG snapshots of the console at 80x24 and 160x48, from fixed data (no clock, no ids
from a random source): a layout change shows up as a reviewed snapshot change.
Regenerate with `pytest tests/tui/test_snapshots.py --snapshot-update`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from textual import events
from textual.widgets import Input

from backchannel.dialogue.review import ChannelReview
from backchannel.tui.app import ConsoleApp
from backchannel.tui.views import (
    BoardView,
    ChannelRow,
    ConversationLine,
    InviteRow,
    Pending,
    Snapshot,
)

FIXED = Snapshot(
    channels=(
        ChannelRow(key="beijing", name="beijing", line="UP", unread=2, urgent=True,
                   relays=2, relays_up=2),
        ChannelRow(key="moscow", name="moscow", line="DOWN", unread=0, urgent=False,
                   verified=False, relays=1, relays_up=0, relays_lost=1),
    ),
    selected="beijing",
    conversation=(
        ConversationLine("0a1b2c3d", "out", "redline", "Taiwan Strait: no live fire", "ROUTINE",
                         "delivered"),
        ConversationLine("1b2c3d4e", "in", "redline_ack", "", "ROUTINE", ""),
        ConversationLine("", "", "gap", "their messages 7-8 not received", "ROUTINE", ""),
        ConversationLine("2c3d4e5f", "out", "note", "Talks at noon?", "PRIORITY", "read"),
        ConversationLine("3d4e5f60", "in", "note", "Incident at sea: confirm.", "FLASH", "",
                         message_id="3d4e5f60" + "0" * 24),
    ),
    earlier=196,
    board=BoardView(
        pending=(
            Pending("3d4e5f60", ours=False, precedence="FLASH", remaining_ms=545_000,
                    overdue=False, held=False),
            Pending("2c3d4e5f", ours=True, precedence="PRIORITY", remaining_ms=-190_000,
                    overdue=True, held=False),
        ),
        clarifications=("4e5f6071 theirs: which vessel?",),
        red_lines=("ours: Taiwan Strait v1",),
        agenda=("round 1: Maritime incidents (accepted)",),
        records=("5f607182 v1 proposed: Vienna round (The en, zh texts are equally "
                 "authentic.)",),
        line="line UP, answered 42s ago",
        duties=("6a7b8c9d Incident at sea: notify within 1 h (ours, agreed)",),
        notifications=("7b8c9d0e Incident at sea, owed by them: NOTIFIED IN TIME: Minor "
                       "contact; no injuries.",),
    ),
    invites=(InviteRow("8c9d0e1f", ("wss://relay.example.org",), 6 * 86_400_000),),
    flash=Pending("3d4e5f60", ours=False, precedence="FLASH", remaining_ms=545_000,
                  overdue=False, held=False),
)


# A review of a fixed period, as `review` prints it.
REVIEW = ChannelReview(
    since_ms=1_796_000_000_000, until_ms=1_796_600_000_000, now_ms=1_796_600_000_000,
    sent={"notes": {"ours": 3, "theirs": 2}, "red lines": {"ours": 1}},
    deadlines={"acknowledged_in_time": {"ours": 1, "theirs": 1}},
    clarifications={"asked": {"theirs": 1}, "answered": {"theirs": 1}},
    notifications={"notified_in_time": 1}, agreed_records=("Vienna round: joint statement",),
).to_markdown("you", "beijing")


class FixedData:
    """A console source that always shows `FIXED` and refuses every act."""

    async def refresh(self, selected: str | None, *, sync: bool = True,
                      first: int | None = None) -> Snapshot:
        return FIXED

    async def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("fixed data")

    send = ack = hold = clarify = linetest_now = answer = redline_add = _refuse
    redline_ack = agenda_propose = agenda_decide = record_propose = record_sign = _refuse
    record_export = record_verify = invite = accept = confirm_verified = meet = _refuse
    code_propose = code_accept = code_send = hold_until = redline_revise = _refuse
    record_propose_languages = code_revise = code_withdraw = invite_revoke = _refuse
    duty_propose = duty_accept = duty_notify = duty_request = translation_share = _refuse

    async def review(self, channel: str, since: str = "-365d", until: str = "now",
                     out: str = "", file_format: str = "",
                     propose_record: bool = False) -> str:
        return REVIEW

    def relays(self) -> list[str]:
        return ["wss://relay.example.org"]

    def safety_number(self, channel: str) -> tuple[str, tuple[str, ...], bool]:
        digits = " ".join(f"{i:05d}" for i in range(10_000, 130_000, 10_000))
        words = ("anchor", "beacon", "cedar", "delta", "ember", "falcon", "granite",
                 "harbor", "island", "juniper", "kestrel", "lantern")
        return digits, words, False


class Steady(ConsoleApp):
    """The console with steady cursors: a form's focused field blinks every half second,
    and a snapshot must not depend on when (on a loaded machine) it is taken."""

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, Input):
            event.widget.cursor_blink = False


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_the_console_with_a_flash_waiting(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(Steady(FixedData(), live=False), terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
@pytest.mark.parametrize("key", ["question_mark", "f", "d"])
def test_the_console_dialogs(snap_compare: Any, size: tuple[int, int], key: str) -> None:
    # The help screen, the safety number (digits and words side by side), a form.
    assert snap_compare(Steady(FixedData(), live=False), press=[key], terminal_size=size)


@pytest.mark.parametrize("key", ["h", "p", "O", "t", "b", "z", "R", "I"])
def test_the_forms_of_the_round(snap_compare: Any, key: str) -> None:
    # A hold with its expected time, a record in several languages with its clause, a new
    # version of a codebook entry (seven fields: the form scrolls), a notification duty,
    # a notification, a translation, the review's period, an invite to revoke.
    assert snap_compare(Steady(FixedData(), live=False), press=[key],
                        terminal_size=(80, 24))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_the_review_dialog(snap_compare: Any, size: tuple[int, int]) -> None:
    async def reviewed(pilot: Any) -> None:
        await pilot.press("R")
        await pilot.pause()
        pilot.app.screen._submit()
        await pilot.pause()

    assert snap_compare(Steady(FixedData(), live=False), run_before=reviewed,
                        terminal_size=size)


async def test_a_refused_act_is_shown_as_the_cli_prints_it_and_help_opens() -> None:
    from textual.widgets import Static

    from backchannel.cli.context import _message_of
    from backchannel.tui.dialogs import Help

    app = ConsoleApp(FixedData(), live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("l")
        await pilot.pause()
        expected = f"error: {_message_of(RuntimeError('fixed data'))}"
        assert str(app.query_one("#status", Static).content) == expected
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, Help)


class Selecting(FixedData):
    """`FIXED`, with the channel the console asks for selected."""

    async def refresh(self, selected: str | None, *, sync: bool = True,
                      first: int | None = None) -> Snapshot:
        return replace(FIXED, selected=selected or "beijing")


class Counting(ConsoleApp):
    rings = 0

    def bell(self) -> None:
        self.rings += 1


async def test_brackets_select_the_next_channel_and_the_bell_rings_once_per_flash() -> None:
    app = Counting(Selecting(), live=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.snapshot.selected == "beijing"
        await app.reload(sync=False)  # the same FLASH again: no second ring
        assert app.rings == 1
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert app.snapshot.selected == "moscow"
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert app.snapshot.selected == "beijing"


@pytest.mark.parametrize(("doc", "snapshot"), [
    ("tui-main.svg", "test_the_console_with_a_flash_waiting[size1].svg"),
    ("tui-help.svg", "test_the_console_dialogs[question_mark-size1].svg"),
    ("tui-safety.svg", "test_the_console_dialogs[f-size1].svg"),
    ("tui-form.svg", "test_the_console_dialogs[d-size1].svg"),
    ("tui-review.svg", "test_the_review_dialog[size1].svg"),
])
def test_the_screenshots_in_the_docs_are_the_reviewed_snapshots(doc: str, snapshot: str) -> None:
    from pathlib import Path

    here = Path(__file__).parent
    reviewed = here / "__snapshots__" / "test_snapshots" / snapshot
    assert (here.parents[1] / "docs" / doc).read_text() == reviewed.read_text()


async def test_every_act_is_in_the_palette_the_footer_and_the_help() -> None:
    from backchannel.tui.app import ACTS, help_text

    app = ConsoleApp(FixedData(), live=False)
    async with app.run_test(size=(80, 24)):
        titles = [c.title for c in app.get_system_commands(app.screen)]
        footer = {b.binding.action for b in app.active_bindings.values() if b.binding.show}
    for _, action, label, text in ACTS:
        assert action in footer, action
        assert text in help_text()
        if action != "quit":
            assert any(t.startswith(f"{label} (") for t in titles), label

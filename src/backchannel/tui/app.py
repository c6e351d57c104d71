"""The console: channels (left), conversation (centre), board (right), a FLASH banner.

The app reads and acts only through a `ConsoleSource` (`live.ConsoleData` over an open
principal; fixed values in the snapshot tests), refreshing once a second in a worker so
countdowns run and what arrives appears while the keys stay live. The conversation is a
list of its lines: the highlighted one is the selected message that the acts apply to;
moving above its first line reads the page before it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from backchannel.tui.dialogs import Compose, Form, Help, Reading, SafetyNumber
from backchannel.tui.panes import (
    board_text,
    channels_text,
    conversation_line,
    earlier_text,
    flash_text,
    later_text,
    meet_table,
    qr_text,
)
from backchannel.tui.views import ConversationLine, Snapshot

# The conversation's pages (`live.PAGE_SIZE`) and the window shown once paged back.
PAGE_SIZE: Final = 200
WINDOW: Final = 3 * PAGE_SIZE

# How often the console syncs and redraws: countdowns show whole seconds.
REFRESH_S: Final = 1.0
# A holding reply's expected time as the hold form first offers it (`hold --until`).
HOLD_UNTIL: Final = "1h"
# The review's period as the review form first offers it (`review --since/--until`).
REVIEW_SINCE: Final = "-365d"
# A meeting proposed from the console is after this many days from today by default.
MEET_AFTER_DAYS: Final = 7


class ConsoleSource(Protocol):
    """What the console reads and does (see `live.ConsoleData`, `source.AgentSource`)."""

    # Seconds between two timed refreshes; `changes` refresh at once between them
    # (`source.Changed`), or say the agent is lost (`source.Lost`) or back (`Back`).
    refresh_every_s: float
    def changes(self) -> AsyncIterator[object]: ...
    async def refresh(self, selected: str | None, *, sync: bool = True,
                      first: int | None = None) -> Snapshot: ...
    async def send(self, channel: str, text: str, precedence: str,
                   ack_within_ms: int) -> None: ...
    async def ack(self, channel: str, ref: str) -> None: ...
    async def hold(self, channel: str, ref: str, expected_in_ms: int,
                   text: str = "") -> None: ...
    async def clarify(self, channel: str, ref: str, question: str) -> None: ...
    async def answer(self, channel: str, ref: str, text: str) -> None: ...
    async def linetest_now(self, channel: str) -> None: ...
    async def redline_add(self, channel: str, title: str, text: str) -> None: ...
    async def redline_ack(self, channel: str, ref: str) -> None: ...
    async def agenda_propose(self, channel: str, round_number: int, title: str,
                             detail: str) -> None: ...
    async def agenda_decide(self, channel: str, ref: str, accept: bool,
                            reason: str = "") -> None: ...
    async def record_propose(self, channel: str, title: str, text: str) -> None: ...
    async def code_propose(self, channel: str, number: int, code_word: str,
                           texts: list[str], parameters: list[str],
                           precedence: str) -> None: ...
    async def code_accept(self, channel: str, ref: str) -> None: ...
    async def code_send(self, channel: str, ref: str, values: list[str]) -> None: ...
    async def record_sign(self, channel: str, ref: str) -> None: ...
    async def record_export(self, channel: str, ref: str, path: Path) -> Path: ...
    async def record_verify(self, path: Path) -> str: ...
    async def invite(self, relays: list[str]) -> str: ...
    def relays(self) -> list[str]: ...
    async def accept(self, code: str, name: str | None = None) -> str: ...
    def safety_number(self, channel: str) -> tuple[str, tuple[str, ...], bool]: ...
    async def confirm_verified(self, channel: str) -> None: ...
    async def meet(self, channel: str, round_number: int, between: list[str],
                   after: dt.date) -> tuple[str, tuple[Any, ...]]: ...
    async def hold_until(self, channel: str, ref: str, until: str,
                         text: str = "") -> None: ...
    async def redline_revise(self, channel: str, ref: str, title: str, text: str) -> None: ...
    async def record_propose_languages(self, channel: str, title: str, text: str,
                                       langs: list[str], authoritative: str = "",
                                       authentic: list[str] | None = None,
                                       update: str = "") -> None: ...
    async def code_revise(self, channel: str, replaces: str, number: int, code_word: str,
                          texts: list[str], parameters: list[str], precedence: str = "",
                          ack_within: str = "") -> None: ...
    async def code_withdraw(self, channel: str, ref: str) -> None: ...
    async def invite_revoke(self, ref: str) -> str: ...
    async def duty_propose(self, channel: str, title: str, before: str = "",
                           within: str = "", detail: str = "", replaces: str = "") -> None: ...
    async def duty_accept(self, channel: str, ref: str) -> None: ...
    async def duty_notify(self, channel: str, ref: str, text: str, event_at: str,
                          answers: str = "") -> str: ...
    async def duty_request(self, channel: str, ref: str, event_at: str,
                           text: str = "") -> None: ...
    async def review(self, channel: str, since: str = "-365d", until: str = "now",
                     out: str = "", file_format: str = "",
                     propose_record: bool = False) -> str: ...
    async def translation_share(self, channel: str, ref: str, language: str, text: str,
                                by: str = "", title: str = "") -> None: ...


# Every act: key, action, footer label, what the help screen and the palette say.
ACTS: Final[tuple[tuple[str, str, str, str], ...]] = (
    ("n", "compose", "Note", "compose a note (precedence, acknowledgement deadline)"),
    ("a", "ack", "Ack", "acknowledge the FLASH of the banner, else the selected note, "
                        "else their most urgent"),
    ("h", "hold", "Hold", "holding reply to that note (or the selected clarification "
                          "request), with an expected time: 2h, 14:00"),
    ("c", "clarify", "Clarify", "ask a clarification about the selected message"),
    ("z", "translate", "Translate", "share our translation of the selected message of "
                                    "theirs (language, text, who made it)"),
    ("r", "answer", "Answer", "answer the selected clarification request"),
    ("d", "redline_add", "Red line", "declare a red line (title, text)"),
    ("D", "redline_revise", "Revise red line", "a new version of the selected red line of "
                                               "ours (title, text)"),
    ("k", "redline_ack", "Ack red line", "acknowledge the selected red line as understood"),
    ("g", "agenda_propose", "Agenda", "propose an agenda item (round, title, detail)"),
    ("y", "agenda_accept", "Accept item", "accept the selected agenda item"),
    ("x", "agenda_decline", "Decline item", "decline the selected agenda item (reason)"),
    ("p", "record_propose", "Record", "propose a statement for the record: one text, or "
                                      "TAG=TEXT | TAG=TEXT with the authentic-text clause"),
    ("P", "record_revise", "Revise record", "a new version of the selected record of ours "
                                            "(its texts as for p)"),
    ("s", "record_sign", "Sign", "co-sign the selected record (its latest version)"),
    ("e", "record_export", "Export", "export the selected co-signed record to a file"),
    ("v", "record_verify", "Verify file", "verify an agreed-record file offline"),
    ("o", "code_propose", "Code", "propose a codebook entry (number, word, texts, parameters)"),
    ("u", "code_accept", "Accept code", "accept their codebook entry (number or word)"),
    ("w", "code_send", "Send code", "send an agreed codebook entry with its values"),
    ("O", "code_revise", "Revise code", "a new version of our codebook entry (number, word, "
                                        "texts, parameters, precedence, deadline)"),
    ("W", "code_withdraw", "Withdraw code", "withdraw a codebook entry, ours or theirs "
                                            "(number or word)"),
    ("t", "duty_propose", "Duty", "propose a notification duty (title, notify before or "
                                  "within a duration, detail)"),
    ("T", "duty_accept", "Accept duty", "accept their notification duty (title or id)"),
    ("b", "duty_notify", "Notify", "notify an event under an agreed duty (duty, text, when: "
                                   "now, -30m, ISO)"),
    ("B", "duty_request", "Request", "ask them for the notification they owe (duty, when, "
                                     "what you know)"),
    ("R", "review", "Review", "the channel's review of a period (shown; written to a file "
                              "if one is named)"),
    ("m", "meet", "Meet", "plan a round's meeting: the ranked venues; the best is proposed"),
    ("l", "linetest", "Line test", "send a line test now"),
    ("i", "invite", "Invite", "make an invite code (shown with its QR code)"),
    ("I", "invite_revoke", "Revoke invite", "revoke an invite of ours nobody has used"),
    ("j", "join", "Join", "accept an invite code"),
    ("f", "safety", "Safety no.", "the safety number: compare, then confirm"),
    ("less_than_sign", "oldest", "Oldest", "the conversation's first page"),
    ("greater_than_sign", "latest", "Latest", "the conversation's latest page"),
    ("right_square_bracket", "next_channel(1)", "Next", "next channel"),
    ("left_square_bracket", "next_channel(-1)", "Previous", "previous channel"),
    ("question_mark", "help", "Help", "this help"),
    ("q", "quit", "Quit", "quit"),
)
_KEY_NAMES: Final = {"right_square_bracket": "]", "left_square_bracket": "[",
                     "less_than_sign": "<", "greater_than_sign": ">",
                     "question_mark": "?"}


def help_text() -> str:
    """The help screen: every key, then the keys of the conversation list."""
    lines = ["Keys (also in the command palette, ctrl+p)"]
    lines += [f"  {_KEY_NAMES.get(key, key):<3} {text}" for key, _, _, text in ACTS]
    lines.append("  up/down select a message; the first (last) line reads a page earlier "
                 "(later)")
    return "\n".join(lines)


class ConversationList(OptionList):
    """The conversation: an option list that asks for the page before it when scrolled
    to its top (by the wheel or the scroll bar) while earlier messages are not shown."""

    class ScrolledToTop(Message):
        """Scrolled to the top with the earlier line first."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value == 0 < old_value and self.option_count and \
                self.get_option_at_index(0).id == "earlier":
            self.post_message(self.ScrolledToTop())


class ConsoleApp(App[None]):
    """`backchannel tui`."""

    TITLE = "backchannel"
    CSS = """
    #flash { display: none; height: 1; }
    #flash.shown { display: block; }
    #agent { display: none; height: 1; background: $warning; color: $text; }
    #agent.shown { display: block; }
    #main { height: 1fr; }
    #channels { width: 20%; max-width: 28; height: 1fr; border: round $primary; }
    #conversation { width: 1fr; height: 1fr; border: round $primary; }
    #board { width: 35%; max-width: 56; height: 1fr; border: round $primary; }
    #status { height: 1; }
    #dialog { width: 64; max-height: 90%; height: auto; border: thick $accent;
              background: $surface; padding: 1; }
    #dialog.wide { width: 90%; }
    #reading, #helpbody { height: auto; max-height: 75vh; }
    #fields { height: auto; max-height: 55vh; }
    #safety { height: auto; }
    #digits { width: auto; height: auto; padding-right: 4; }
    #words { width: 1fr; height: auto; }
    Compose, Form, Reading, SafetyNumber, Help { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(key, action, label) for key, action, label, _ in ACTS
    ]

    def __init__(self, source: ConsoleSource, *, live: bool = True) -> None:
        super().__init__()
        self.source = source
        self.live = live
        self.snapshot = Snapshot()
        self._busy = False
        self._rang_for: str | None = None
        # The conversation's window: from which entry of the history it starts (None:
        # the latest page, which follows what arrives).
        self._view_first: int | None = None
        self._lines: tuple[ConversationLine, ...] = ()
        self._options_earlier = 0
        self._later = 0
        self._moving = False
        # Each line's rendering, kept while its channel is shown (a refresh renders only
        # the lines that changed: a receipt, a new message).
        self._drawn: dict[ConversationLine, Text] = {}
        self._drawn_for: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="flash")
        yield Static(id="agent")
        with Horizontal(id="main"):
            yield Static(id="channels")
            yield ConversationList(id="conversation")
            yield Static(id="board")
        yield Static(id="status")
        yield Footer()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The palette: every act, then Textual's own (theme, keys, quit...)."""
        for key, action, label, text in ACTS:
            if action == "quit":
                continue
            yield SystemCommand(f"{label} ({_KEY_NAMES.get(key, key)})", text,
                                partial(self.run_action, action))
        yield from super().get_system_commands(screen)

    async def on_mount(self) -> None:
        # The first paint reads the store only; the first sync comes with the timer.
        await self.reload(sync=False)
        if self.live:
            self.set_interval(self.source.refresh_every_s, self.tick)
            self.run_worker(self._follow(), group="changes")

    async def _follow(self) -> None:
        """Refresh on each change the source reports; show a lost agent in a banner."""
        import asyncio

        from backchannel.tui.source import Back, Lost

        banner = self.query_one("#agent", Static)
        async for change in self.source.changes():
            if isinstance(change, Lost):
                banner.update(f"agent lost ({change.reason}); retrying")
                banner.add_class("shown")
            elif isinstance(change, Back):
                banner.remove_class("shown")
            else:
                while self._busy:  # the refresh in hand may have read before it
                    await asyncio.sleep(0.05)
                await self.reload(sync=True)

    def tick(self) -> None:
        """One refresh in a worker (sync, duties, read), unless the previous one runs."""
        if not self._busy:
            self.run_worker(self.reload(sync=True), group="refresh")

    async def reload(self, *, sync: bool) -> None:
        """Read a new snapshot and show it; a client error goes to the status line."""
        self._busy = True
        try:
            snapshot = await self.source.refresh(self.snapshot.selected, sync=sync,
                                                 first=self._view_first)
            # The app may have begun shutting down while the read was in flight: its
            # widgets are going, and there is nothing left to draw on.
            if self.is_running:
                self.show(snapshot)
        except Exception as error:
            if self.is_running:
                self.report(error)
        finally:
            self._busy = False

    def show(self, snapshot: Snapshot) -> None:
        """Draw `snapshot`; ring the bell once for each new FLASH awaiting our ack."""
        self.snapshot = snapshot
        self.query_one("#channels", Static).update(
            channels_text(snapshot.channels, snapshot.selected, snapshot.invites))
        self._show_conversation()
        self.query_one("#board", Static).update(board_text(snapshot.board))
        banner = self.query_one("#flash", Static)
        if snapshot.flash is None:
            banner.remove_class("shown")
            self._rang_for = None
            return
        banner.update(flash_text(snapshot.flash))
        banner.add_class("shown")
        if self._rang_for != snapshot.flash.ref:
            self._rang_for = snapshot.flash.ref
            self.bell()

    def _show_conversation(self, keep: str | None = None) -> None:
        """The lines, rebuilt only when they changed; the selection stays on its message
        (or on `keep`, a message id), or on the last line if it was there."""
        lines = self.snapshot.conversation
        earlier, later = self.snapshot.earlier, self.snapshot.later
        if (lines, earlier, later) == (self._lines, self._options_earlier, self._later):
            return
        widget = self.query_one("#conversation", OptionList)
        chosen = self.selected_line()
        keep = keep or (chosen.message_id if chosen is not None else None)
        at_end = widget.highlighted is None or widget.highlighted >= widget.option_count - 1
        self._lines, self._options_earlier, self._later = lines, earlier, later
        options: list[Option] = []
        if earlier:
            options.append(Option(earlier_text(earlier), id="earlier"))
        if self._drawn_for != self.snapshot.selected:
            self._drawn, self._drawn_for = {}, self.snapshot.selected
        drawn = {line: self._drawn.get(line) or conversation_line(line) for line in lines}
        self._drawn = drawn
        options += [Option(drawn[line]) for line in lines]
        if later:
            options.append(Option(later_text(later), id="later"))
        widget.set_options(options)
        if not options:
            return
        index = len(options) - 1
        ids = [line.message_id for line in lines]
        if keep in ids and (not at_end or self._view_first is not None):
            index = ids.index(keep) + (1 if earlier else 0)
        with widget.prevent(OptionList.OptionHighlighted):
            widget.highlighted = index
        widget.scroll_to_highlight()

    def selected_line(self) -> ConversationLine | None:
        """The highlighted message (None: none, or a mark, or an earlier/later line)."""
        widget = self.query_one("#conversation", OptionList)
        index = widget.highlighted
        if index is None:
            return None
        index -= 1 if self._options_earlier else 0
        if not 0 <= index < len(self._lines):
            return None
        line = self._lines[index]
        return line if line.message_id and line.act not in ("gap", "fork") else None

    async def on_option_list_option_highlighted(
        self, event: OptionList.OptionHighlighted
    ) -> None:
        """The earlier (or later) line highlighted: move the window a page that way."""
        if event.option.id == "earlier":
            self._paging(-1)
        elif event.option.id == "later":
            self._paging(1)

    def on_conversation_list_scrolled_to_top(self) -> None:
        self._paging(-1)

    def _paging(self, step: int) -> None:
        """`page(step)` in a worker, unless a move is still being read."""
        if not self._moving:
            self._moving = True
            self.run_worker(self.page(step), group="page")

    async def page(self, step: int) -> None:
        """Move the conversation's window a page back (-1) or on (1), or to the very
        start (-2) or to the latest page (2); the selection stays on its message."""
        try:
            await self._page(step)
        finally:
            self._moving = False

    async def _page(self, step: int) -> None:
        if self.snapshot.selected is None:
            return
        start = self.snapshot.earlier
        keep_at = self._lines[0] if step < 0 and self._lines else (
            self._lines[-1] if self._lines else None)
        if step == -2:
            self._view_first = 0
        elif step == 2:
            self._view_first = None
        elif step < 0:
            self._view_first = max(0, start - PAGE_SIZE)
        else:
            following = start + PAGE_SIZE
            live = following + WINDOW >= self.snapshot.total
            self._view_first = None if live else following
        try:
            snapshot = await self.source.refresh(self.snapshot.selected, sync=False,
                                                 first=self._view_first)
        except Exception as error:
            self.report(error)
            return
        self.snapshot = snapshot
        self._show_conversation(keep=keep_at.message_id if keep_at and abs(step) == 1
                                else None)

    def action_oldest(self) -> None:
        self._paging(-2)

    def action_latest(self) -> None:
        self._paging(2)

    def report(self, error: BaseException) -> None:
        """The error line, in the CLI's words (`error: ...`): a value the CLI's parsers
        refuse as Click says it (`Invalid value for --until: ...`)."""
        import typer

        from backchannel.cli.context import _message_of

        said = (error.format_message() if isinstance(error, typer.BadParameter)
                else _message_of(error))
        self.query_one("#status", Static).update(f"error: {said}")

    def _say(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def _their_most_urgent(self) -> str | None:
        """Their note we owe an acknowledgement for: the FLASH first, then the selected
        note of theirs, then the soonest due."""
        if self.snapshot.flash is not None:
            return self.snapshot.flash.ref
        line = self.selected_line()
        if line is not None and line.direction == "in" and line.act == "note":
            return line.ref
        theirs = [p for p in self.snapshot.board.pending if not p.ours]
        return min(theirs, key=lambda p: p.remaining_ms).ref if theirs else None

    async def _act(self, done: str, act: Awaitable[object]) -> None:
        try:
            await act
        except Exception as error:
            self.report(error)
            return
        self._say(done)
        await self.reload(sync=False)

    def _channel(self) -> str | None:
        if self.snapshot.selected is None:
            self._say("error: no channel yet (i: invite, j: join with a code)")
        return self.snapshot.selected

    def _selected(self, what: str) -> ConversationLine | None:
        line = self.selected_line()
        if line is None:
            self._say(f"error: select {what} in the conversation first (up/down)")
        return line

    def _ask(self, title: str, fields: list[tuple[str, str]],
             then: Callable[[list[str]], Awaitable[None]]) -> None:
        async def submitted(values: list[str] | None) -> None:
            if values is not None:
                await then(values)

        self.push_screen(Form(title, fields), submitted)

    # -- the acts ---------------------------------------------------------------------

    def action_compose(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def sent(result: tuple[str, str, int] | None) -> None:
            if result is not None:
                text, precedence, within = result
                await self._act("sent", self.source.send(channel, text, precedence, within))

        self.push_screen(Compose(), sent)

    async def action_ack(self) -> None:
        ref = self._their_most_urgent()
        if self.snapshot.selected is None or ref is None:
            self._say("error: no note of theirs awaits our acknowledgement")
            return
        await self._act(f"acknowledged {ref}", self.source.ack(self.snapshot.selected, ref))

    def action_hold(self) -> None:
        line = self.selected_line()
        channel = self.snapshot.selected
        ref = line.ref if line is not None and line.direction == "in" and \
            line.act == "clarify" else self._their_most_urgent()
        if channel is None or ref is None:
            self._say("error: no note of theirs awaits our acknowledgement")
            return

        async def held(values: list[str]) -> None:
            await self._act(f"held {ref} (answer expected: {values[0]})",
                            self.source.hold_until(channel, ref, values[0], values[1]))

        self._ask(f"Holding reply to {ref}", [
            ("answer expected by: a duration (2h) or a time (14:00) *", HOLD_UNTIL),
            ("a word on why", "")], held)

    def action_clarify(self) -> None:
        channel = self._channel()
        if channel is None:
            return
        line = self.selected_line()
        if line is None:
            theirs = [x for x in self.snapshot.conversation if x.direction == "in"]
            line = theirs[-1] if theirs else None
        if line is None:
            self._say("error: no message of theirs to clarify")
            return
        ref = line.ref

        async def asked(values: list[str]) -> None:
            await self._act(f"asked about {ref}", self.source.clarify(channel, ref, values[0]))

        self._ask(f"Question about {ref}", [("question *", "")], asked)

    def action_translate(self) -> None:
        channel = self._channel()
        line = self._selected("their message") if channel else None
        if channel is None or line is None:
            return
        ref = line.ref

        async def shared(values: list[str]) -> None:
            await self._act(f"shared a {values[0]} translation of {ref}",
                            self.source.translation_share(channel, ref, values[0], values[1],
                                                          values[2], values[3]))

        self._ask(f"Our translation of {ref}", [
            ("language (BCP 47: en, zh-Hans) *", ""), ("translation *", ""),
            ("by: staff, staff:NAME, translator:NAME, machine:TOOL", ""),
            ("translated title (red lines, agenda items)", "")], shared)

    def action_answer(self) -> None:
        channel = self._channel()
        line = self._selected("their clarification request") if channel else None
        if channel is None or line is None:
            return
        ref = line.ref

        async def answered(values: list[str]) -> None:
            await self._act(f"answered {ref}", self.source.answer(channel, ref, values[0]))

        self._ask(f"Answer to {ref}", [("answer *", "")], answered)

    async def action_linetest(self) -> None:
        channel = self._channel()
        if channel is not None:
            await self._act("line test sent", self.source.linetest_now(channel))

    def action_redline_add(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def declared(values: list[str]) -> None:
            await self._act("red line declared",
                            self.source.redline_add(channel, values[0], values[1]))

        self._ask("Declare a red line", [("title *", ""), ("text *", "")], declared)

    def action_redline_revise(self) -> None:
        channel = self._channel()
        line = self._selected("a red line of ours") if channel else None
        if channel is None or line is None:
            return
        ref = line.subject_id if line.act.startswith("redline") else line.message_id
        title, _, text = line.text.partition(": ") if line.act.startswith("redline v") \
            else ("", "", "")

        async def revised(values: list[str]) -> None:
            await self._act(f"red line {ref[:8]} revised: the new version awaits their "
                            "acknowledgement",
                            self.source.redline_revise(channel, ref, values[0], values[1]))

        self._ask(f"A new version of red line {ref[:8]}",
                  [("title *", title), ("text *", text)], revised)

    async def action_redline_ack(self) -> None:
        channel = self._channel()
        line = self._selected("their red line") if channel else None
        if channel is None or line is None:
            return
        ref = line.subject_id if line.act.startswith("redline") else line.message_id
        await self._act(f"red line {ref[:8]} acknowledged as understood",
                        self.source.redline_ack(channel, ref))

    def action_agenda_propose(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def proposed(values: list[str]) -> None:
            if not values[0].isdigit():
                self._say(f"error: '{values[0]}' is not a round number")
                return
            await self._act("agenda item proposed", self.source.agenda_propose(
                channel, int(values[0]), values[1], values[2]))

        self._ask("Propose an agenda item",
                  [("round *", ""), ("title *", ""), ("detail", "")], proposed)

    def _agenda_ref(self, line: ConversationLine) -> str:
        return line.message_id if line.act == "agenda_propose" else line.subject_id \
            if line.act.startswith("agenda") else line.message_id

    async def action_agenda_accept(self) -> None:
        channel = self._channel()
        line = self._selected("an agenda item") if channel else None
        if channel is None or line is None:
            return
        ref = self._agenda_ref(line)
        await self._act(f"accepted agenda item {ref[:8]}",
                        self.source.agenda_decide(channel, ref, True))

    def action_agenda_decline(self) -> None:
        channel = self._channel()
        line = self._selected("an agenda item") if channel else None
        if channel is None or line is None:
            return
        ref = self._agenda_ref(line)

        async def declined(values: list[str]) -> None:
            await self._act(f"declined agenda item {ref[:8]}",
                            self.source.agenda_decide(channel, ref, False, values[0]))

        self._ask(f"Decline agenda item {ref[:8]}", [("reason", "")], declined)

    # The record form: one text, or its language versions, and the authentic-text clause
    # (`record propose TITLE [TEXT] --lang TAG=TEXT --authoritative TAG --authentic TAG`).
    _RECORD_FIELDS: Final = [
        ("title *", ""), ("text, in one language (en unless authoritative names another)", ""),
        ("or its texts: TAG=TEXT | TAG=TEXT", ""), ("authoritative: the TAG that prevails", ""),
        ("authentic: TAGs equally authentic (comma)", "")]

    def _record(self, channel: str, title: str, update: str = "") -> None:
        async def proposed(values: list[str]) -> None:
            langs = [t.strip() for t in values[2].split("|") if t.strip()]
            authentic = [t.strip() for t in values[4].split(",") if t.strip()]
            done = (f"record {update[:8]} revised" if update else "record proposed") + \
                " and signed; it awaits their co-signature"
            await self._act(done, self.source.record_propose_languages(
                channel, values[0], values[1], langs, values[3], authentic, update))

        self._ask(title, list(self._RECORD_FIELDS), proposed)

    def action_record_propose(self) -> None:
        channel = self._channel()
        if channel is not None:
            self._record(channel, "Propose a statement for the record")

    def action_record_revise(self) -> None:
        channel = self._channel()
        line = self._selected("a record of ours") if channel else None
        if channel is None or line is None:
            return
        ref = self._record_ref(line)
        self._record(channel, f"A new version of record {ref[:8]}", update=ref)

    def _record_ref(self, line: ConversationLine) -> str:
        return line.subject_id if line.act.startswith("record") else line.message_id

    async def action_record_sign(self) -> None:
        channel = self._channel()
        line = self._selected("their record") if channel else None
        if channel is None or line is None:
            return
        ref = self._record_ref(line)
        await self._act(f"co-signed record {ref[:8]}: it is on the record",
                        self.source.record_sign(channel, ref))

    def action_record_export(self) -> None:
        channel = self._channel()
        line = self._selected("a co-signed record") if channel else None
        if channel is None or line is None:
            return
        ref = self._record_ref(line)

        async def exported(values: list[str]) -> None:
            path = Path(values[0]).expanduser()
            await self._act(f"exported record {ref[:8]} to {path}",
                            self.source.record_export(channel, ref, path))

        self._ask(f"Export record {ref[:8]} to", [("file *", f"record-{ref[:8]}.txt")],
                  exported)

    def action_record_verify(self) -> None:
        async def verify(values: list[str]) -> None:
            try:
                said = await self.source.record_verify(Path(values[0]).expanduser())
            except Exception as error:
                self.report(error)
                return
            self._say(said)

        self._ask("Verify an agreed-record file", [("file *", "")], verify)

    def action_code_propose(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def proposed(values: list[str]) -> None:
            if not values[0].isdigit():
                self._say(f"error: '{values[0]}' is not a codebook number")
                return
            if values[4] and values[4].lower() not in ("routine", "priority", "flash"):
                # As `codebook propose --precedence` refuses it.
                self._say("error: Invalid value for --precedence: routine, priority or flash")
                return
            texts = [t.strip() for t in values[2].split("|") if t.strip()]
            names = [n.strip() for n in values[3].split(",") if n.strip()]
            await self._act(f"proposed codebook entry {values[0]}", self.source.code_propose(
                channel, int(values[0]), values[1], texts, names, values[4]))

        self._ask("Propose a codebook entry", [
            ("number *", ""), ("code word *", ""),
            ("texts: TAG=TEXT | TAG=TEXT ({name} marks a parameter) *", ""),
            ("parameters (comma)", ""), ("precedence (ROUTINE, PRIORITY, FLASH)", "")],
            proposed)

    def action_code_revise(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def revised(values: list[str]) -> None:
            if not values[1].isdigit():
                self._say(f"error: '{values[1]}' is not a codebook number")
                return
            texts = [t.strip() for t in values[3].split("|") if t.strip()]
            names = [n.strip() for n in values[4].split(",") if n.strip()]
            await self._act(f"proposed a new version of codebook entry {values[0]}",
                            self.source.code_revise(channel, values[0], int(values[1]),
                                                    values[2], texts, names, values[5],
                                                    values[6]))

        self._ask("A new version of our codebook entry", [
            ("entry replaced: number or code word *", ""), ("number *", ""),
            ("code word *", ""), ("texts: TAG=TEXT | TAG=TEXT *", ""),
            ("parameters (comma)", ""), ("precedence (routine, priority, flash)", ""),
            ("acknowledgement deadline (10m)", "")], revised)

    def action_code_withdraw(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def withdrawn(values: list[str]) -> None:
            await self._act(f"withdrew codebook entry {values[0]}",
                            self.source.code_withdraw(channel, values[0]))

        self._ask("Withdraw a codebook entry", [("number or code word *", "")], withdrawn)

    def _duty_of(self, wanted: str) -> str:
        """The short id of the first duty on the board whose state says `wanted`."""
        return next((d.split(" ", 1)[0] for d in self.snapshot.board.duties if wanted in d), "")

    def action_duty_propose(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def proposed(values: list[str]) -> None:
            await self._act(f"proposed the notification duty '{values[0]}'",
                            self.source.duty_propose(channel, values[0], values[1],
                                                     values[2], values[3], values[4]))

        self._ask("Propose a notification duty", [
            ("title *", ""), ("notify at least this long before the event (24h)", ""),
            ("or notify within this long after it (1h)", ""),
            ("what counts as an event", ""),
            ("replaces: a duty of ours (title or id)", "")], proposed)

    def action_duty_accept(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def accepted(values: list[str]) -> None:
            await self._act(f"accepted the duty '{values[0]}'",
                            self.source.duty_accept(channel, values[0]))

        self._ask("Accept their notification duty",
                  [("duty: title or id *", self._duty_of("theirs, awaits"))], accepted)

    def action_duty_notify(self) -> None:
        channel = self._channel()
        if channel is None:
            return
        # Their request selected: the notification answers it.
        line = self.selected_line()
        request = line.ref if line is not None and line.direction == "in" and \
            line.act == "notify_request" else ""

        async def notified(values: list[str]) -> None:
            try:
                status = await self.source.duty_notify(channel, values[0], values[1],
                                                       values[2], values[3])
            except Exception as error:
                self.report(error)
                return
            self._say(f"notified under '{values[0]}' ({status})")
            await self.reload(sync=False)

        self._ask("Notify an event under a duty", [
            ("duty: title or id *", self._duty_of("agreed")), ("notification *", ""),
            ("the event is or was: now, +2d, -30m, 2026-12-03T06:00Z *", "now"),
            ("answers their request (id)", request)], notified)

    def action_duty_request(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def requested(values: list[str]) -> None:
            await self._act(f"asked for the notification owed under '{values[0]}'",
                            self.source.duty_request(channel, values[0], values[1],
                                                     values[2]))

        self._ask("Ask for the notification they owe", [
            ("duty: title or id *", self._duty_of("agreed")),
            ("the event is or was: now, +2d, -30m, 2026-12-03T06:00Z *", "now"),
            ("what you know of it", "")], requested)

    def action_review(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def reviewed(values: list[str]) -> None:
            propose = values[3].lower() in ("y", "yes")
            try:
                text = await self.source.review(channel, values[0], values[1], values[2],
                                                "", propose)
            except Exception as error:
                self.report(error)
                return
            said = [f"wrote the review to {values[2]}"] if values[2] else ["review shown"]
            if propose:
                said.append("proposed it as a record, signed; it awaits their co-signature")
            self._say("; ".join(said))
            shown = next((r.name for r in self.snapshot.channels if r.key == channel), channel)
            self.push_screen(Reading(f"Review of '{shown}'", Text(text), wide=True))
            await self.reload(sync=False)

        self._ask("Review a period of the channel", [
            ("since: -30d, an ISO date, now *", REVIEW_SINCE), ("until *", "now"),
            ("write it to a file (.md or .json)", ""),
            ("also propose it as a record (y/n)", "n")], reviewed)

    def action_invite_revoke(self) -> None:
        waiting = self.snapshot.invites

        async def revoked(values: list[str]) -> None:
            try:
                said = await self.source.invite_revoke(values[0])
            except Exception as error:
                self.report(error)
                return
            self._say(said)
            await self.reload(sync=False)

        self._ask("Revoke an invite nobody has used",
                  [("invite id *", waiting[0].ref if waiting else "")], revoked)

    def action_code_accept(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def accepted(values: list[str]) -> None:
            await self._act(f"accepted codebook entry {values[0]}",
                            self.source.code_accept(channel, values[0]))

        self._ask("Accept their codebook entry", [("number or code word *", "")], accepted)

    def action_code_send(self) -> None:
        channel = self._channel()
        if channel is None:
            return

        async def sent(values: list[str]) -> None:
            assigned = [v.strip() for v in values[1].split(",") if v.strip()]
            await self._act(f"sent codebook entry {values[0]}",
                            self.source.code_send(channel, values[0], assigned))

        self._ask("Send a codebook entry", [("number or code word *", ""),
                                            ("values: NAME=VALUE, NAME=VALUE", "")], sent)

    def action_meet(self) -> None:
        channel = self._channel()
        if channel is None:
            return
        after = (dt.date.today() + dt.timedelta(days=MEET_AFTER_DAYS)).isoformat()

        async def planned(values: list[str]) -> None:
            try:
                number = int(values[0])
                day = dt.date.fromisoformat(values[2])
            except ValueError:
                self._say("error: give a round number and a date as YYYY-MM-DD")
                return
            between = [p.strip() for p in values[1].split(",") if p.strip()]
            try:
                venue, table = await self.source.meet(channel, number, between, day)
            except Exception as error:
                self.report(error)
                return
            self._say(f"proposed meeting in {venue} as an agenda item of round {number}")
            self.push_screen(Reading(f"Round {number}: ranked venues (the first is proposed)",
                                     meet_table(table), wide=True))
            await self.reload(sync=False)

        self._ask("Plan a meeting", [("round *", ""), ("between (places, comma) *", ""),
                                     ("after (YYYY-MM-DD) *", after)], planned)

    def action_invite(self) -> None:
        async def made(values: list[str]) -> None:
            relays = [u.strip() for u in values[0].split(",") if u.strip()]
            try:
                code = await self.source.invite(relays)
            except Exception as error:
                self.report(error)
                return
            self._say("invite made: give the code (or its QR code) to your counterpart")
            self.push_screen(Reading("Invite code (its QR code below)", qr_text(code),
                                     wide=True))

        self._ask("Invite over relays", [("relay URLs (comma) *", ", ".join(
            self.source.relays()))], made)

    def action_join(self) -> None:
        async def joined(values: list[str]) -> None:
            try:
                name = await self.source.accept(values[0], values[1] or None)
            except Exception as error:
                self.report(error)
                return
            self._say(f"joined channel '{name}'; now compare the safety number (f)")
            self.snapshot = Snapshot(channels=self.snapshot.channels, selected=name)
            self._view_first = None
            await self.reload(sync=False)

        self._ask("Accept an invite code", [("code *", ""), ("your name for the channel", "")],
                  joined)

    def action_safety(self) -> None:
        channel = self._channel()
        if channel is None:
            return
        try:
            digits, words, verified = self.source.safety_number(channel)
        except Exception as error:
            self.report(error)
            return

        async def confirmed(matched: bool | None) -> None:
            if matched and not verified:
                await self._act(f"recorded: channel '{channel}' is verified",
                                self.source.confirm_verified(channel))

        shown = next((r.name for r in self.snapshot.channels if r.key == channel), channel)
        self.push_screen(SafetyNumber(shown, digits, words, verified), confirmed)

    async def action_next_channel(self, step: int) -> None:
        names = [row.key for row in self.snapshot.channels]
        if self.snapshot.selected not in names:
            return
        current = names.index(self.snapshot.selected)
        self.snapshot = Snapshot(channels=self.snapshot.channels,
                                 selected=names[(current + step) % len(names)])
        self._view_first = None
        await self.reload(sync=False)

    def action_help(self) -> None:
        self.push_screen(Help(help_text()))


def conversation_lines(app: ConsoleApp) -> list[Text]:
    """The conversation's lines as drawn (for tests and the benchmark)."""
    return [conversation_line(line) for line in app._lines]

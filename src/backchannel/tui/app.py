"""The console: channels (left), conversation (centre), board (right), a FLASH banner.

The app reads and acts only through a `ConsoleSource` (`live.ConsoleData` over an open
principal; fixed values in the snapshot tests), refreshing once a second so countdowns
run and what arrives appears.
"""

from __future__ import annotations

from typing import ClassVar, Final, Protocol

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Static

from backchannel.tui.dialogs import AskLine, Compose, Help
from backchannel.tui.panes import board_text, channels_text, conversation_text, flash_text
from backchannel.tui.views import Snapshot

# How often the console syncs and redraws: countdowns show whole seconds.
REFRESH_S: Final = 1.0
# A holding reply from the console promises an answer within this (the CLI's `hold`
# takes any time; the console offers the common one).
HOLD_FOR_MS: Final = 3_600_000


class ConsoleSource(Protocol):
    """What the console reads and does (see `live.ConsoleData`)."""

    async def refresh(self, selected: str | None, *, sync: bool = True) -> Snapshot: ...
    async def send(self, channel: str, text: str, precedence: str,
                   ack_within_ms: int) -> None: ...
    async def ack(self, channel: str, ref: str) -> None: ...
    async def hold(self, channel: str, ref: str, expected_in_ms: int,
                   text: str = "") -> None: ...
    async def clarify(self, channel: str, ref: str, question: str) -> None: ...
    async def linetest_now(self, channel: str) -> None: ...


class ConsoleApp(App[None]):
    """`backchannel tui`."""

    TITLE = "backchannel"
    CSS = """
    #flash { display: none; height: 1; }
    #flash.shown { display: block; }
    #main { height: 1fr; }
    #channels { width: 20%; max-width: 28; height: 1fr; border: round $primary; }
    #conversation { width: 1fr; border: round $primary; }
    #board { width: 35%; max-width: 56; height: 1fr; border: round $primary; }
    #status { height: 1; }
    #dialog { width: 60; height: auto; border: thick $accent; background: $surface;
              padding: 1; }
    Compose, AskLine, Help { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "compose", "Note"),
        Binding("a", "ack", "Ack"),
        Binding("h", "hold", "Hold"),
        Binding("c", "clarify", "Clarify"),
        Binding("l", "linetest", "Line test"),
        Binding("right_square_bracket", "next_channel(1)", "Next", show=False),
        Binding("left_square_bracket", "next_channel(-1)", "Previous", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: ConsoleSource, *, live: bool = True) -> None:
        super().__init__()
        self.source = source
        self.live = live
        self.snapshot = Snapshot()
        self._busy = False
        self._rang_for: str | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static(id="flash")
        with Horizontal(id="main"):
            yield Static(id="channels")
            with VerticalScroll(id="conversation"):
                yield Static(id="messages")
            yield Static(id="board")
        yield Static(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        # The first paint reads the store only; the first sync comes with the timer.
        await self.reload(sync=False)
        if self.live:
            self.set_interval(REFRESH_S, self.tick)

    async def tick(self) -> None:
        """One refresh: sync and redraw, unless the previous one still runs."""
        if self._busy:
            return
        await self.reload(sync=True)

    async def reload(self, *, sync: bool) -> None:
        """Read a new snapshot and show it; a client error goes to the status line."""
        self._busy = True
        try:
            self.show(await self.source.refresh(self.snapshot.selected, sync=sync))
        except Exception as error:
            self.report(error)
        finally:
            self._busy = False

    def show(self, snapshot: Snapshot) -> None:
        """Draw `snapshot`; ring the bell once for each new FLASH awaiting our ack."""
        self.snapshot = snapshot
        self.query_one("#channels", Static).update(
            channels_text(snapshot.channels, snapshot.selected))
        self.query_one("#messages", Static).update(conversation_text(snapshot))
        self.query_one("#conversation", VerticalScroll).scroll_end(animate=False)
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

    def report(self, error: BaseException) -> None:
        """The error line, in the CLI's words (`error: ...`)."""
        from backchannel.cli.context import _message_of

        self.query_one("#status", Static).update(f"error: {_message_of(error)}")

    def _say(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def _their_most_urgent(self) -> str | None:
        """Their note we owe an acknowledgement for: the FLASH first, then the soonest."""
        if self.snapshot.flash is not None:
            return self.snapshot.flash.ref
        theirs = [p for p in self.snapshot.board.pending if not p.ours]
        return min(theirs, key=lambda p: p.remaining_ms).ref if theirs else None

    async def _act(self, done: str, act: object) -> None:
        try:
            await act  # type: ignore[misc]
        except Exception as error:
            self.report(error)
            return
        self._say(done)
        await self.reload(sync=False)

    def action_compose(self) -> None:
        channel = self.snapshot.selected
        if channel is None:
            self._say("error: no channel")
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

    async def action_hold(self) -> None:
        ref = self._their_most_urgent()
        if self.snapshot.selected is None or ref is None:
            self._say("error: no note of theirs awaits our acknowledgement")
            return
        await self._act(f"held {ref}",
                        self.source.hold(self.snapshot.selected, ref, HOLD_FOR_MS))

    def action_clarify(self) -> None:
        channel = self.snapshot.selected
        theirs = [line for line in self.snapshot.conversation if line.direction == "in"]
        if channel is None or not theirs:
            self._say("error: no message of theirs to clarify")
            return
        ref = theirs[-1].ref

        async def asked(question: str | None) -> None:
            if question:
                await self._act(f"asked about {ref}",
                                self.source.clarify(channel, ref, question))

        self.push_screen(AskLine(f"Question about {ref}"), asked)

    async def action_linetest(self) -> None:
        if self.snapshot.selected is None:
            self._say("error: no channel")
            return
        await self._act("line test sent", self.source.linetest_now(self.snapshot.selected))

    async def action_next_channel(self, step: int) -> None:
        names = [row.key for row in self.snapshot.channels]
        if self.snapshot.selected not in names:
            return
        current = names.index(self.snapshot.selected)
        self.snapshot = Snapshot(selected=names[(current + step) % len(names)])
        await self.reload(sync=False)

    def action_help(self) -> None:
        self.push_screen(Help())

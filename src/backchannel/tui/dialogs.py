"""The console's dialogs: compose a note, ask one line of text, and the help screen."""

from __future__ import annotations

from typing import ClassVar, Final

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

PRECEDENCES: Final = ("ROUTINE", "IMMEDIATE", "FLASH")
MS_PER_MINUTE: Final = 60_000


class Compose(ModalScreen[tuple[str, str, int] | None]):
    """Text, precedence and an acknowledgement deadline in minutes (empty: none)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("New note")
            yield Input(placeholder="text", id="text")
            yield Select([(p, p) for p in PRECEDENCES], value="ROUTINE", id="precedence",
                         allow_blank=False)
            yield Input(placeholder="ack within minutes (empty: no deadline)", id="within",
                        type="integer")
            yield Button("Send", variant="primary", id="send")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def _submit(self) -> None:
        text = self.query_one("#text", Input).value
        if not text:
            return
        precedence = str(self.query_one("#precedence", Select).value)
        within = self.query_one("#within", Input).value
        self.dismiss((text, precedence, int(within) * MS_PER_MINUTE if within else 0))

    def action_cancel(self) -> None:
        self.dismiss(None)


class AskLine(ModalScreen[str | None]):
    """One line of text (a clarification's question)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str) -> None:
        super().__init__()
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.prompt)
            yield Input(id="line")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value:
            self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


HELP_TEXT: Final = """\
Keys
  n  compose a note (precedence, ack deadline)
  a  acknowledge their most urgent note awaiting our ack
  h  hold it (an answer expected within an hour)
  c  ask a clarification about their latest message
  l  line test now
  ] / [  next / previous channel
  ?  this help      q  quit
"""


class Help(ModalScreen[None]):
    """The key bindings."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(HELP_TEXT)

    def action_close(self) -> None:
        self.dismiss(None)

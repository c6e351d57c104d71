"""The console's dialogs: compose a note, a form of a few fields, a text to read (the QR
code of an invite, a meeting table), the safety number to confirm, and the help screen."""

from __future__ import annotations

from typing import ClassVar, Final

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

PRECEDENCES: Final = ("ROUTINE", "PRIORITY", "FLASH")
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


class Form(ModalScreen[list[str] | None]):
    """A few lines of text, one per field; Enter in the last one (or OK) submits.

    Fields are (label, default); a field whose label ends in "*" must not be empty.
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text)
            # The fields scroll (to the focused one) when they outgrow the screen, so the
            # OK button and every field stay reachable at 80x24.
            with VerticalScroll(id="fields", can_focus=False):
                for index, (label, default) in enumerate(self.fields):
                    field = Input(value=default, placeholder=label, id=f"field{index}")
                    field.border_title = label if default else ""
                    yield field
            yield Button("OK", variant="primary", id="ok")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._submit()

    def on_input_changed(self, event: Input.Changed) -> None:
        """A field says what it is: its placeholder while empty, then on its border (a
        field offered filled in, or typed in, still shows its label)."""
        index = int(str(event.input.id).removeprefix("field"))
        event.input.border_title = self.fields[index][0] if event.value else ""

    def on_input_submitted(self, event: Input.Submitted) -> None:
        ids = [f"field{i}" for i in range(len(self.fields))]
        if event.input.id == ids[-1]:
            self._submit()
        else:
            self.query_one(f"#{ids[ids.index(str(event.input.id)) + 1]}", Input).focus()

    def _submit(self) -> None:
        values = [self.query_one(f"#field{i}", Input).value.strip()
                  for i in range(len(self.fields))]
        if any(not v and label.endswith("*")
               for v, (label, _) in zip(values, self.fields, strict=True)):
            return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Reading(ModalScreen[None]):
    """A text to read (an invite code and its QR code, the ranked venues); any of
    escape, enter or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, body: RenderableType, *, wide: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.wide = wide

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide" if self.wide else ""):
            yield Label(self.title_text)
            with VerticalScroll(id="reading"):
                yield Static(self.body)

    def action_close(self) -> None:
        self.dismiss(None)


class SafetyNumber(ModalScreen[bool]):
    """The safety number, digits and words side by side; `y` records that it matched."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "It matches"),
        Binding("escape,n", "close", "Not now"),
    ]

    def __init__(self, channel: str, digits: str, words: tuple[str, ...],
                 verified: bool) -> None:
        super().__init__()
        self.channel = channel
        self.digits = digits.split()
        self.words = words
        self.verified = verified

    def compose(self) -> ComposeResult:
        groups = [" ".join(self.digits[row:row + 4]) for row in range(0, len(self.digits), 4)]
        words = [" ".join(self.words[row:row + 4]) for row in range(0, len(self.words), 4)]
        state = ("Verified: you confirmed this number earlier." if self.verified else
                 f"Compare all {len(self.digits)} groups (or all {len(self.words)} words) "
                 "with your counterpart's, to the last one. y: it matches  n: not now")
        with Vertical(id="dialog", classes="wide"):
            yield Label(f"Safety number of channel '{self.channel}'")
            with Horizontal(id="safety"):
                yield Static("\n".join(groups), id="digits")
                yield Static("\n".join(words), id="words")
            yield Static(state)

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)


class Help(ModalScreen[None]):
    """The key bindings."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide"), VerticalScroll(id="helpbody"):
            yield Static(self.text)

    def action_close(self) -> None:
        self.dismiss(None)

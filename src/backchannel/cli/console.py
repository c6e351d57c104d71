"""The console every command prints through: Rich, with counterpart text made harmless.

Its own module so that the root group and `--help` load without Rich: `context` imports
it only when a command prints.
"""

from __future__ import annotations

from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text

from backchannel.protocol.text import escaped

__all__ = ["EscapingConsole"]


class EscapingConsole(Console):
    """A Rich console that never prints a control, format or separator character that
    was in a string it was given.

    Every string printed, a table's cells and titles included, goes through
    `render_str`, which escapes it with the text policy's `escaped` (line feeds and tabs
    kept: tables and bodies span lines). So text from the counterpart or a relay cannot
    reach the terminal as an escape sequence or a bidi override even where a command forgot
    to pass it through `output.shown`. Rich's own styles are added after this, and are
    not affected. Text objects built by hand bypass it: build them from `shown(...)`.
    """

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            escaped(text, multiline=True), style=style, justify=justify, overflow=overflow,
            emoji=emoji, markup=markup, highlight=highlight, highlighter=highlighter,
        )

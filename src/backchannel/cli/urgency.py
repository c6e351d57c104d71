"""How urgent a line is, and how that is shown: the one rule for `sync`, `read`, `watch`,
the board (and the TUI to come), so that a FLASH note cannot look like any other
(review §4 row 15; docs/cli.md, "Urgent notes").

The rule:

- a FLASH note (and an IMMEDIATE one, should the hotline's fourth precedence be added to
  `dialogue.Precedence`) is urgent; so is an overdue note, one whose acknowledgement
  deadline passed;
- on a console that shows colour, an urgent line is in its style (FLASH: bold red
  reverse; overdue: bold red); on one that does not (a pipe, a file, ``NO_COLOR``, a dumb
  terminal) it starts with its word instead (``FLASH:``, ``OVERDUE:``), which a script or a
  reader of a log can find at the start of the line;
- the terminal bell (BEL) rings for a FLASH note and for a note that has just become
  overdue, only on a terminal (Rich's `Console.is_terminal`, which also honours
  ``FORCE_COLOR`` and ``TTY_COMPATIBLE``), never in a pipe, and never when
  ``BACKCHANNEL_NO_BELL`` is set (to anything but ``""`` or ``0``).

JSON is not styled; its objects only gain an ``urgent`` flag where they describe a note.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from backchannel.dialogue import Precedence

if TYPE_CHECKING:
    # Only for annotations: the commands that print bring Rich in (`context.plain_console`).
    from rich.console import Console

__all__ = [
    "BEL",
    "CALM",
    "NEWLY_OVERDUE",
    "NO_BELL_ENV",
    "Bell",
    "Urgency",
    "event_urgency",
    "note_urgency",
    "print_urgent",
    "shows_colour",
    "urgent_text",
]

NO_BELL_ENV: Final = "BACKCHANNEL_NO_BELL"
BEL: Final = "\a"


@dataclass(frozen=True, slots=True)
class Urgency:
    """How one line is made impossible to miss.

    Attributes:
        word: what starts the line where there is no colour (``FLASH``); "" for none.
        style: the Rich style of the line where there is colour; "" for none.
        bell: whether showing it rings the terminal bell.
    """

    word: str
    style: str
    bell: bool

    @property
    def urgent(self) -> bool:
        """True when the line is styled at all (the JSON ``urgent`` flag)."""
        return bool(self.word)


CALM: Final = Urgency("", "", bell=False)
_FLASH: Final = Urgency("FLASH", "bold red reverse", bell=True)
# IMMEDIATE, in the hotline's scale, is below FLASH: as loud on the screen, but the bell
# stays FLASH's, so that the bell keeps meaning "act on it now".
_IMMEDIATE: Final = Urgency("IMMEDIATE", "bold red", bell=False)
_OVERDUE: Final = Urgency("OVERDUE", "bold red", bell=False)
# A note that has just become overdue: what an escalation says.
NEWLY_OVERDUE: Final = Urgency("OVERDUE", "bold red", bell=True)
# By name, so that a precedence added to the enum later (IMMEDIATE) takes its entry
# without a change here; every other precedence is calm.
_BY_PRECEDENCE: Final = {"FLASH": _FLASH, "IMMEDIATE": _IMMEDIATE}


def note_urgency(
    precedence: int | str, *, overdue: bool = False, newly_overdue: bool = False
) -> Urgency:
    """The urgency of a note: by its precedence, unless overdue, which says more.

    Args:
        precedence: a `Precedence`, its value, or its name in any case (``"flash"``, as
            the JSON spells it); an unknown one is calm.
        overdue: its acknowledgement deadline passed (the board, `read`).
        newly_overdue: it passed just now (an escalation): as overdue, and the bell rings.
    """
    if newly_overdue:
        return NEWLY_OVERDUE
    if overdue:
        return _OVERDUE
    if isinstance(precedence, str):
        name = precedence.upper()
    else:
        try:
            name = Precedence(precedence).name
        except ValueError:
            return CALM
    return _BY_PRECEDENCE.get(name, CALM)


def event_urgency(event: Mapping[str, object]) -> Urgency:
    """The urgency of one `watch --json` event (docs/cli.md), from its fields alone, so
    that whatever shows the event stream (`watch`, the agent's subscribers, a TUI) shows
    it the same way: a new note by its precedence, an escalation as newly overdue."""
    match event.get("event"):
        case "message":
            precedence = event.get("precedence")
            return note_urgency(precedence) if isinstance(precedence, str) else CALM
        case "escalated":
            return NEWLY_OVERDUE
        case _:
            return CALM


def shows_colour(console: Console) -> bool:
    """Whether `console` shows colour: a terminal (or one forced), not dumb, no NO_COLOR."""
    return console.color_system is not None and not console.no_color


def urgent_text(console: Console, text: str, urgency: Urgency) -> str:
    """`text` with the urgency's word in front where `console` shows no colour."""
    if urgency.word and not shows_colour(console):
        return f"{urgency.word}: {text}"
    return text


def _bell_silenced() -> bool:
    return os.environ.get(NO_BELL_ENV, "") not in ("", "0")


class Bell:
    """The terminal bell of one command: it rings at most once per `every_s` seconds
    (once per command by default), so that ten FLASH notes arriving together ring once,
    not ten times.

    Written straight to the console's stream: the console escapes every control
    character it is given to print (`console.EscapingConsole`), BEL included.
    """

    def __init__(self, every_s: float = math.inf,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._last: float | None = None

    def ring(self, console: Console, urgency: Urgency) -> bool:
        """Ring if `urgency` calls for it, `console` is a terminal and the bell is not
        silenced or rung too recently. Returns whether it rang."""
        if not urgency.bell or not console.is_terminal or _bell_silenced():
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self._every_s:
            return False
        self._last = now
        console.file.write(BEL)
        console.file.flush()
        return True


def print_urgent(
    console: Console,
    text: str,
    urgency: Urgency,
    *,
    bell: Bell | None = None,
    style: str = "",
    soft_wrap: bool = False,
) -> None:
    """Ring `bell` if the urgency calls for it, then print one line (or a block) with
    its urgency: styled, or with its word in front. The bell comes first so that it
    travels with its line (a reader of our stdout gets it before the line's newline).

    Args:
        text: the line, counterpart text in it already passed through `output.shown`.
        style: the line's own style (`read`'s bold header); the urgency's is added.
        soft_wrap: as `Console.print` (hints are never wrapped).
    """
    if bell is not None:
        bell.ring(console, urgency)
    combined = " ".join(part for part in (style, urgency.style) if part)
    console.print(urgent_text(console, text, urgency), style=combined or None,
                  soft_wrap=soft_wrap)

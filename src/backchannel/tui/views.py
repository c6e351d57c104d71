"""What the console shows, as plain values: every counterpart string already escaped.

The app renders only these, so a fixed set of them (the snapshot tests) gives a fixed
screen, and the text policy is applied in one place (`live.ConsoleData`) before anything
reaches a widget.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ChannelRow:
    """One channel in the left pane."""

    key: str  # its name as the engine knows it (never displayed)
    name: str  # its name, escaped for display
    line: str  # "UP", "DOWN" or "UNKNOWN"
    unread: int
    urgent: bool  # a FLASH or overdue note waits on it


@dataclass(frozen=True, slots=True)
class ConversationLine:
    """One message of the conversation (text escaped)."""

    ref: str  # short id, as the CLI shows it
    direction: str  # "in" or "out"
    act: str
    text: str
    precedence: str  # "ROUTINE", "IMMEDIATE", "FLASH"
    receipt: str  # "", "delivered", "read", "acknowledged"


@dataclass(frozen=True, slots=True)
class Pending:
    """A note with an acknowledgement deadline: whose, and how long is left."""

    ref: str
    ours: bool  # True: we await their acknowledgement
    precedence: str
    remaining_ms: int  # negative: overdue by that much
    overdue: bool
    held: bool


@dataclass(frozen=True, slots=True)
class BoardView:
    """The right pane: what is owed, open and agreed on one channel."""

    pending: tuple[Pending, ...] = ()
    clarifications: tuple[str, ...] = ()
    red_lines: tuple[str, ...] = ()
    agenda: tuple[str, ...] = ()
    records: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the console shows at one moment."""

    channels: tuple[ChannelRow, ...] = ()
    selected: str | None = None
    conversation: tuple[ConversationLine, ...] = ()
    earlier: int = 0  # messages before the page shown
    board: BoardView = field(default_factory=BoardView)
    flash: Pending | None = None  # their FLASH note awaiting our acknowledgement

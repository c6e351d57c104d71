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
    verified: bool = True  # its safety number was compared and confirmed
    relays: int = 0  # its relays
    relays_up: int = 0  # of those, the ones the last sync reached
    relays_lost: int = 0  # relays that lost its mailbox (not yet re-provisioned)
    identity_changed: bool = False  # the counterpart's identity key changed


@dataclass(frozen=True, slots=True)
class ConversationLine:
    """One message of the conversation (text escaped), or a gap or fork mark.

    `act` is "gap" or "fork" for a mark (its `ref` is empty and its `text` says what is
    missing or what forked); the ids are whole hex ids, for the acts on a selected line.
    """

    ref: str  # short id, as the CLI shows it
    direction: str  # "in" or "out" ("" for a mark)
    act: str
    text: str
    precedence: str  # "ROUTINE", "PRIORITY", "FLASH"
    receipt: str  # "", "delivered", "read", "acknowledged"
    message_id: str = ""
    subject_id: str = ""  # the red line or record it is about
    version: int = 0
    # Its other language versions, each "[tag, who made it] text", escaped: shown under it,
    # side by side in reading order (docs/dialogue.md §4.8).
    translations: tuple[str, ...] = ()
    # A record's authentic-text clause, as signed with it ("The en, zh texts are equally
    # authentic."); "" for any other act.
    clause: str = ""


@dataclass(frozen=True, slots=True)
class Pending:
    """A note with an acknowledgement deadline: whose, and how long is left."""

    ref: str
    ours: bool  # True: we await their acknowledgement
    precedence: str
    remaining_ms: int  # negative: overdue by that much
    overdue: bool
    held: bool
    escalated: bool = False  # overdue and its escalation ran


@dataclass(frozen=True, slots=True)
class BoardView:
    """The right pane: what is owed, open and agreed on one channel."""

    pending: tuple[Pending, ...] = ()
    clarifications: tuple[str, ...] = ()
    red_lines: tuple[str, ...] = ()
    agenda: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    line: str = ""  # the line test's state and when it was last answered
    codebook: tuple[str, ...] = ()
    # Notification duties with their rule and state, and each notification or request
    # under them with its status (due, missed, notified in time, late).
    duties: tuple[str, ...] = ()
    notifications: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InviteRow:
    """An invite we made that nobody has taken up yet, in the left pane."""

    ref: str  # its id's first 8 hex digits, as `invite revoke` takes it
    relays: tuple[str, ...]
    expires_in_ms: int  # negative: expired that long ago


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the console shows at one moment."""

    channels: tuple[ChannelRow, ...] = ()
    selected: str | None = None
    conversation: tuple[ConversationLine, ...] = ()
    earlier: int = 0  # messages before the page shown
    board: BoardView = field(default_factory=BoardView)
    flash: Pending | None = None  # their FLASH note awaiting our acknowledgement
    total: int = 0  # entries in the selected channel's whole history
    later: int = 0  # messages after the window shown (0 on the latest page)
    invites: tuple[InviteRow, ...] = ()  # ours, waiting (or expired, not revoked)

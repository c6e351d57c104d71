"""What the client's operations report: plain frozen values for the CLI and scripts."""

from __future__ import annotations

from dataclasses import dataclass, field

from backchannel.client.records import InviteClaimRecord
from backchannel.dialogue.kinds import Precedence

__all__ = ["ChannelStatus", "InboxEntry", "RelayHealth", "SendResult", "SyncReport"]


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    seq: int
    stored_on: tuple[str, ...]
    queued_for: tuple[str, ...]
    # Seconds within which a running watch's slots send it (`client.slots`: the channel
    # sends in slots, so the flush left it queued); None when it was offered at once.
    next_slot_s: float | None = None


@dataclass(slots=True)
class SyncReport:
    received: int = 0
    new_notes: list[str] = field(default_factory=list)  # message ids of notes that arrived
    duplicates: int = 0
    rejected: int = 0
    deferred: int = 0  # authentic but too far ahead: left on the relay for a later pass
    cover: int = 0  # cover messages received and dropped (`client.slots`)
    fragments: int = 0  # pieces of large envelopes received in slots (`client.fragments`)
    sent: int = 0
    new_channels: list[str] = field(default_factory=list)
    relays_up: list[str] = field(default_factory=list)
    relays_down: dict[str, str] = field(default_factory=dict)
    line_tests_sent: int = 0
    line_tests_answered: int = 0
    escalated: int = 0
    escalation_commands_failed: int = 0
    forks: int = 0  # forks of the counterpart's messages seen in this run (see forks.py)
    # "channel url" for each channel given a fresh inbound mailbox on a relay that had
    # lost its old one (the counterpart is told with a move).
    reprovisioned: list[str] = field(default_factory=list)
    # Claims on a spent invite read in this run (someone else used a code whose channel
    # already exists: `records.InviteClaimRecord`).
    invite_claims: list[InviteClaimRecord] = field(default_factory=list)
    # What the slot sender reported while a watch ran (`client.slots`: a failure and its
    # restart, a row a relay refused and when it is offered again), oldest first.
    slot_events: list[str] = field(default_factory=list)
    # A line per destination relay not reached through a forwarding relay as the settings
    # ask (`routing.plan_route`): sent directly, or not sent because forwarding is required.
    routes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboxEntry:
    channel: str
    message_id: str
    seq: int
    direction: str
    kind: int
    text: str
    sent_at_ms: int
    received_at_ms: int
    delivered_at_ms: int
    read_at_ms: int
    stored_on: tuple[str, ...]
    precedence: int = Precedence.ROUTINE
    ack_within_ms: int = 0


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    name: str
    channel_id: str
    verified: bool
    relays: tuple[str, ...]
    last_heard_ms: int
    sent: int
    delivered: int
    read: int
    received: int
    unread: int
    queued: int
    gaps: tuple[tuple[int, int], ...]
    rejected: int
    relay_health: tuple[RelayHealth, ...] = ()
    identity_changed: bool = False
    # True until the counterpart has been heard from at all: for a joiner, the inviter has
    # not yet taken up the invite (a code someone else already used never completes).
    awaiting_counterpart: bool = False
    # Forks seen on this channel, oldest first, each described in a line (forks.py).
    forks: tuple[str, ...] = ()
    # Relays that no longer know one of this channel's mailboxes (they lost their disk or
    # expired it) and are not yet re-provisioned; the other relays carry the channel.
    relays_lost: tuple[str, ...] = ()
    # Someone other than the first joiner used the invite this channel came from: one
    # line each, when and on which relay (`records.InviteClaimRecord`).
    invite_claims: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RelayHealth:
    """What this principal last saw of one relay."""

    url: str
    last_ok_ms: int
    last_error: str
    last_error_ms: int

    @property
    def up(self) -> bool:
        """Reachable at the last attempt (never tried counts as down)."""
        return self.last_ok_ms > 0 and self.last_ok_ms >= self.last_error_ms

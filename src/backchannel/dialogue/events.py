"""What the dialogue fold consumes (`DialogueEvent`) and what it records when a rule breaks.

The client stores every message of a channel, in both directions. Each stored message,
fed in the order the client stored it, is one `DialogueEvent`; the dialogue state is a
deterministic fold over them (`Dialogue.apply`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from backchannel.dialogue.kinds import HASH_SIZE, ID_SIZE, MAX_TIMESTAMP_MS
from backchannel.dialogue.text import check_id, check_time
from backchannel.protocol.errors import LocalProtocolError

__all__ = ["Anomaly", "DialogueEvent", "IllegalTransition", "KnownMessage", "Side", "short_id"]


class Side(Enum):
    """Who sent a message, seen from this principal's side of the channel."""

    OURS = "ours"
    THEIRS = "theirs"

    @property
    def other(self) -> Side:
        return Side.THEIRS if self is Side.OURS else Side.OURS


class IllegalTransition(LocalProtocolError):
    """A dialogue rule forbids this: acknowledging twice, answering a closed request, ...

    Raised by the `Dialogue.check_*` methods before this side sends anything. When the
    other side's message breaks a rule, the fold records an `Anomaly` instead.
    """


@dataclass(frozen=True, slots=True)
class DialogueEvent:
    """One stored message of the channel, as the dialogue fold sees it.

    Attributes:
        message_id: the message's 16-byte id (`Message.message_id`).
        message_hash: its 32-byte chain hash (`Message.hash`).
        side: who sent it.
        sent_at_ms: the sender's clock (`Message.sent_at_ms`).
        received_at_ms: our clock when it was stored (for our own messages: when queued).
        kind: `Message.kind`.
        body: `Message.body`, undecoded.
    """

    message_id: bytes
    message_hash: bytes
    side: Side
    sent_at_ms: int
    received_at_ms: int
    kind: int
    body: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_id(self.message_id, ID_SIZE, "message id")
        check_id(self.message_hash, HASH_SIZE, "message hash")
        if not isinstance(self.side, Side):
            raise LocalProtocolError("side is Side.OURS or Side.THEIRS")
        # Clocks are the sender's and may be wrong; only the range is checked, so any
        # stored message can be folded.
        check_time(self.sent_at_ms, 2**64 - 1, "sent_at_ms")
        check_time(self.received_at_ms, MAX_TIMESTAMP_MS, "received_at_ms")


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A stored message that the fold ignored because it broke the dialogue's rules.

    Attributes:
        message_id: the offending message.
        side: who sent it (usually THEIRS; OURS only if our own store is inconsistent).
        kind: its message kind.
        at_ms: when we stored it.
        reason: what rule it broke, in words (contains ids, never message text).
    """

    message_id: bytes
    side: Side
    kind: int
    at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class KnownMessage:
    """What the fold remembers of every message it has seen, to check references to it."""

    message_id: bytes
    side: Side
    kind: int
    message_hash: bytes
    sent_at_ms: int
    received_at_ms: int


def short_id(value: bytes) -> str:
    """An id as it appears in error messages and anomalies: hex, whole, never text."""
    return value.hex()

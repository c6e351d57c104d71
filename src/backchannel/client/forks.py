"""Forks: two different messages where one sender's history allows only one.

A principal's state must have one writer; when it had two anyway (a restored backup, a
copied home, a VM snapshot), the same sender position carries two different messages. The
receiver notices it three ways (docs/protocol.md §8):

- *chain*: a message's `prev_hash` is not the hash of the sender's previous message that
  we hold (or the one we hold after it does not chain to it);
- *position*: a second authentic message, with another id, at a sequence number we already
  received;
- *replay*: an authentic header at a ratchet position already consumed, carried by bytes
  other than the payload we accepted there (a copy would be the same bytes).

Each is recorded, shown on the board and in `status`, raised as an agent event, and told
to the counterpart inside the channel (a fork notice) so the side that forked learns it
too. A fork is never counted as a silent duplicate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from backchannel.client.errors import StateCorrupted
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = ["KIND_FORK_NOTICE", "ForkNotice", "ForkReason", "ForkRecord"]

# The pairing kinds are 4 (hello) and 5 (move); a fork notice is the channel's own
# business too, below the dialogue range (0x0100 and up).
KIND_FORK_NOTICE: Final = 0x0006


class ForkReason(IntEnum):
    CHAIN = 1
    POSITION = 2
    REPLAY = 3

    @property
    def label(self) -> str:
        return {
            ForkReason.CHAIN: "hash chain broken",
            ForkReason.POSITION: "two messages at one sequence number",
            ForkReason.REPLAY: "a ratchet position used twice",
        }[self]


@dataclass(frozen=True, slots=True)
class ForkNotice:
    """What the receiver tells the sender: at `seq` of your messages, I saw a fork."""

    seq: int
    reason: ForkReason

    def encode(self) -> bytes:
        return Writer().u64(self.seq).u8(int(self.reason)).getvalue()

    @classmethod
    def decode(cls, body: bytes) -> ForkNotice:
        """Raises RemoteProtocolError: not a fork notice."""
        r = Reader(body, "fork notice")
        seq, reason = r.u64(), r.u8()
        r.finish()
        try:
            return cls(seq, ForkReason(reason))
        except ValueError:
            raise RemoteProtocolError("fork notice has an unknown reason") from None


@dataclass(frozen=True, slots=True)
class ForkRecord:
    """One fork, as stored.

    Attributes:
        side: "theirs" (we saw their messages fork) or "ours" (they saw ours fork).
        seq: the sender's sequence number where it showed.
        message_id: hex id of the message that revealed it ("" if it did not decrypt).
        notified: for "theirs": the counterpart has been told (a notice is queued).
    """

    side: str
    reason: ForkReason
    seq: int
    detected_at_ms: int
    message_id: str = ""
    notified: bool = False

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "side": self.side,
                "reason": int(self.reason),
                "seq": self.seq,
                "at": self.detected_at_ms,
                "id": self.message_id,
                "notified": self.notified,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ForkRecord:
        try:
            data = json.loads(raw)
            return cls(
                str(data["side"]),
                ForkReason(int(data["reason"])),
                int(data["seq"]),
                int(data["at"]),
                str(data["id"]),
                bool(data["notified"]),
            )
        except (ValueError, KeyError, TypeError):
            raise StateCorrupted("a stored fork record is damaged") from None

    def describe(self) -> str:
        whose = "their" if self.side == "theirs" else "our"
        return f"{self.reason.label} at {whose} message #{self.seq}"

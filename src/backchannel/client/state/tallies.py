"""What `status` counts of a channel's messages, kept per handle and brought up to date
by what changed since the last count.

`status` is asked for often (the console refreshes on every request the agent serves, a
script polls it), and counting opened every message of the channel: 60 ms at 5,000
messages, a second at a year's traffic. Each message's part of the count is kept here by
its row's stamp (`keystore.stamp`); a count reads every row's ref and stamp, in one
statement, and opens only the rows that are new or were written since (a receipt, a read
mark). A row gone since is gone from the count. The stamp is the check, as the sealed
bytes are for channel records (`ChannelRepository`): whoever wrote the row, and whatever
was rolled back, the same stamp is the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from backchannel.client.records import MessageRecord
from backchannel.client.state.messages import MessageRepository
from backchannel.protocol.message import MessageKind

__all__ = ["MessageTallies", "Tally"]


class _Part(NamedTuple):
    """One message's part of a tally."""

    inbound: bool
    note: bool
    seq: int
    delivered: bool
    read: bool


@dataclass(frozen=True, slots=True)
class Tally:
    """A channel's messages as `status` counts them.

    Attributes:
        sent: our notes; delivered, read: of those, receipted as delivered, as read.
        received: their notes; unread: of those, not yet read here.
        inbound_seqs: the sequence numbers of every message of theirs we hold (any kind),
            in no order: where the gaps are.
    """

    sent: int
    delivered: int
    read: int
    received: int
    unread: int
    inbound_seqs: tuple[int, ...]


def _part(record: MessageRecord) -> _Part:
    return _Part(record.direction == "in", record.kind == MessageKind.NOTE, record.seq,
                 bool(record.delivered_at_ms), bool(record.read_at_ms))


class MessageTallies:
    """The tallies of one handle's channels (one database connection)."""

    def __init__(self, messages: MessageRepository) -> None:
        self._messages = messages
        # Per channel id: each row's part of the tally, by ref, with the stamp it was
        # counted at.
        self._parts: dict[str, dict[bytes, tuple[bytes, _Part]]] = {}
        self.opened = 0  # records opened for a tally (what the cache saves is visible)

    def __repr__(self) -> str:
        return f"MessageTallies({self._messages!r})"

    def of_channel(self, channel_id: str) -> Tally:
        """The channel's tally as stored now.

        Raises:
            StateCorrupted: a record written since the last tally does not open.
        """
        kept = self._parts.get(channel_id, {})
        parts: dict[bytes, tuple[bytes, _Part]] = {}
        changed: list[bytes] = []
        for ref, row_stamp in self._messages.stamps(channel_id):
            known = kept.get(ref)
            if known is not None and known[0] == row_stamp:
                parts[ref] = known
            else:
                changed.append(ref)
        if changed:
            # Read in the statement after the stamps: a row written in between is counted
            # as it is now, under the stamp it has now, and opened again next time.
            for ref, row_stamp, record in self._messages.with_stamps(channel_id, changed):
                parts[ref] = (row_stamp, _part(record))
                self.opened += 1
        self._parts[channel_id] = parts
        return _tally([part for _, part in parts.values()])

    def forget(self, channel_id: str) -> None:
        """Drop a removed channel's counts."""
        self._parts.pop(channel_id, None)


def _tally(parts: list[_Part]) -> Tally:
    sent = delivered = read = received = unread = 0
    seqs: list[int] = []
    for part in parts:
        if part.inbound:
            seqs.append(part.seq)
            if part.note:
                received += 1
                unread += not part.read
        elif part.note:
            sent += 1
            delivered += part.delivered
            read += part.read
    return Tally(sent, delivered, read, received, unread, tuple(seqs))

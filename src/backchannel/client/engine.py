"""The client engine: one principal, its channels, the outbox and the inbox.

Rules that make it dependable (design §5):

1. A message is written to the outbox, with the session state that produced it, in one
   transaction *before* anything is sent; it leaves the outbox only when a relay answered
   `stored`. A crash at any point leaves it there to send again.
2. An envelope received is decrypted, its message stored, the ratchet state advanced and
   its payload digest recorded, in one transaction; only then is the relay acked. A crash
   before the commit means the relay delivers it again, and the old ratchet state still
   decrypts it; a crash after means the digest recognises the copy.
3. Copies (the same payload via two relays, or redelivered) are recognised by payload
   digest and by message id; order is by sequence number; a gap is shown until it fills.
"""

from __future__ import annotations

from backchannel.client.forks import ForkRecord
from backchannel.client.pairing import DEFAULT_INVITE_TTL_MS, Pairing
from backchannel.client.receipts import sequence_gaps
from backchannel.client.records import ChannelRecord
from backchannel.client.reports import (
    ChannelStatus,
    InboxEntry,
    RelayHealth,
    SendResult,
    SyncReport,
)
from backchannel.protocol.e2e.keys import PublicIdentity, safety_number
from backchannel.protocol.message import MessageKind

__all__ = [
    "DEFAULT_INVITE_TTL_MS",
    "ChannelStatus",
    "InboxEntry",
    "Principal",
    "RelayHealth",
    "SendResult",
    "SyncReport",
]


class Principal(Pairing):
    """One principal's client: identity, channels and their messages.

    Built in layers, a module each: `core.PrincipalCore` (state, store, lookups) <-
    `outbox.Outbox` (sending) <- `inbox.Inbox` (receiving, receipts, duties) <-
    `pairing.Pairing` (invites) <- `Principal` (verification and status).

    Create with `Principal.create` or `Principal.open`; every network operation is async.
    `clock` (milliseconds) and `rng` are injectable for tests.
    """

    def safety_number(self, channel_name: str) -> tuple[str, tuple[str, ...], bool]:
        """(digits, words, verified) for a channel."""
        channel = self.channel(channel_name)
        peer = PublicIdentity.decode(bytes.fromhex(channel.peer_identity))
        number = safety_number(self.identity, peer)
        return str(number), number.words, channel.verified

    def confirm_verified(self, channel_name: str) -> None:
        """Record that the safety number was compared out of band and matched."""
        channel_id = self.channel(channel_name).channel_id

        def verified(record: ChannelRecord) -> None:
            record.verified = True

        self.update_channel(channel_id, verified)

    def forks(self, channel_id: str) -> list[ForkRecord]:
        """Every fork seen on a channel, oldest first (see `client.forks`)."""
        return [fork for _, fork in self._forks.of_channel(channel_id)]

    def status(self, channel_name: str | None = None) -> list[ChannelStatus]:
        channels = [self.channel(channel_name)] if channel_name else self._channels()
        result = []
        for channel in channels:
            messages = self._messages(channel)
            out = [m for m in messages if m.direction == "out" and m.kind == MessageKind.NOTE]
            inbound = [m for m in messages if m.direction == "in"]
            notes_in = [m for m in inbound if m.kind == MessageKind.NOTE]
            cid = channel.channel_id
            (queued,) = self._store.db.execute(
                "SELECT COUNT(DISTINCT ref) FROM outbox WHERE channel = ?",
                (bytes.fromhex(cid),),
            ).fetchone()
            result.append(
                ChannelStatus(
                    channel.name,
                    channel.channel_id,
                    channel.verified,
                    tuple(link.url for link in channel.links),
                    channel.last_heard_ms,
                    len(out),
                    sum(1 for m in out if m.delivered_at_ms),
                    sum(1 for m in out if m.read_at_ms),
                    len(notes_in),
                    sum(1 for m in notes_in if not m.read_at_ms),
                    int(queued),
                    sequence_gaps([m.seq for m in inbound]),
                    channel.rejected,
                    tuple(self.relay_health(link.url) for link in channel.links),
                    channel.identity_changed,
                    channel.last_heard_ms == 0,
                    relays_lost=self.relays_lost(channel.channel_id),
                    forks=tuple(fork.describe() for _, fork in self._forks.of_channel(cid)),
                )
            )
        return result

"""Sending: the outbox first, then every relay of the channel, with backoff."""

from __future__ import annotations

import asyncio
import json
from typing import Final

from backchannel.client.core import PrincipalCore
from backchannel.client.errors import (
    ClientError,
    IdentityChanged,
)
from backchannel.client.records import (
    ChannelRecord,
    MessageRecord,
    load,
)
from backchannel.client.relays import RelayPool
from backchannel.client.reports import (
    SendResult,
)
from backchannel.client.transport import (
    RelayRequestError,
)
from backchannel.dialogue.bodies import Note
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import (
    LocalProtocolError,
)
from backchannel.protocol.message import Message, MessageKind
from backchannel.protocol.relayframes import ErrorCode

__all__ = ["Outbox"]

# Envelopes in flight to one relay at once: enough to fill the relay's group commit, few
# enough that a relay going down mid-flush leaves little to resend.
_SEND_WINDOW: Final = 64
# A relay that says "rate limited" or "unavailable" is asked again after 0.1 s, doubling
# to 2 s; after 30 such rounds in one flush the rest waits for the next sync.
_RETRYABLE: Final = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})
_RETRY_FIRST_DELAY: Final = 0.1
_RETRY_MAX_DELAY: Final = 2.0
_MAX_RETRY_ROUNDS: Final = 30


class Outbox(PrincipalCore):
    """Sending: the outbox first, then every relay of the channel, with backoff."""

    def _queue(
        self,
        channel: ChannelRecord,
        session: Session,
        kind: int,
        body: bytes,
        *,
        retain: bool = False,
    ) -> Message:
        """Seal a message and put it in the outbox (inside the caller's transaction)."""
        sealed = session.seal(kind, body, self._clock(), self._rng)
        if retain:
            self._store.db.execute(
                "INSERT OR REPLACE INTO retained VALUES (?, ?, ?)",
                (bytes.fromhex(channel.channel_id), sealed.message.message_id, sealed.payload),
            )
        self._keep_session(channel, session)
        self._save_channel(channel)
        message = sealed.message
        record = MessageRecord(
            message.message_id.hex(),
            "out",
            message.seq,
            message.kind,
            message.sent_at_ms,
            message.body.hex(),
            message_hash=message.hash.hex(),
            prev_hash=message.prev_hash.hex(),
        )
        self._put_message(channel, record)
        ref = self._store.index(b"msg", message.message_id)
        for link in channel.links:
            if link.outbound is None:
                continue
            envelope = Envelope(bytes.fromhex(link.outbound.mailbox_id), sealed.payload)
            self._store.db.execute(
                "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
                (bytes.fromhex(channel.channel_id), link.url, ref, envelope.encode()),
            )
        return message

    def queue(
        self,
        channel_name: str,
        text: str,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
    ) -> str:
        """Put a note in the outbox without touching the network; returns its message id.

        The next `flush`, `sync` or running `watch` sends it.

        Args:
            precedence: FLASH, PRIORITY or ROUTINE (the hotline's terms).
            ack_within_ms: a deadline for the counterpart's explicit acknowledgement (0:
                none); missed, the note is escalated.

        Raises:
            ChannelNotFound: no such channel.
            IdentityChanged: the counterpart's key changed and was not yet confirmed.
            ClientError: the channel cannot send yet, or the note is invalid.
        """
        try:
            note = Note(precedence, ack_within_ms, text)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return self.queue_body(
            channel_name, MessageKind.NOTE, note.encode(), retain=ack_within_ms > 0
        )

    def queue_many(
        self,
        channel_name: str,
        texts: list[str],
        *,
        precedence: Precedence = Precedence.ROUTINE,
    ) -> list[str]:
        """Put several notes in the outbox in one transaction; returns their message ids.

        One commit (one fsync) for all of them instead of one each: for a principal sending
        a prepared series, or a script. All are queued, or none.

        Raises:
            ChannelNotFound, IdentityChanged, ClientError: as for `queue`.
        """
        try:
            bodies = [Note(precedence, 0, text).encode() for text in texts]
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        channel_id = self.channel(channel_name).channel_id
        try:
            with self._store.transaction():
                # Read inside the transaction that writes it back: the session advances
                # from the state as stored now, never from a copy read earlier.
                channel = self._sendable(channel_id)
                session = self._session(channel)
                messages = [
                    self._queue(channel, session, MessageKind.NOTE, body) for body in bodies
                ]
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return [message.message_id.hex() for message in messages]

    def _sendable(self, channel_id: str) -> ChannelRecord:
        """The channel as stored now (call inside the sending transaction), if it may send."""
        channel = self._channel_by_id(channel_id)
        if channel.identity_changed and not channel.verified:
            raise IdentityChanged(
                f"'{channel.name}' has a different identity key than the earlier channel of "
                f"that name; compare the safety number (backchannel verify {channel.name}) "
                f"and confirm it before sending"
            )
        return channel

    def queue_body(self, channel_name: str, kind: int, body: bytes, *, retain: bool = False) -> str:
        """Put a message of any kind in the outbox; returns its message id.

        Args:
            retain: keep the sealed payload so that an escalation can send it again.

        Raises:
            ChannelNotFound, IdentityChanged, ClientError: as for `queue`.
        """
        channel_id = self.channel(channel_name).channel_id
        try:
            with self._store.transaction():
                channel = self._sendable(channel_id)
                session = self._session(channel)
                message = self._queue(channel, session, kind, body, retain=retain)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return message.message_id.hex()

    async def send(
        self,
        channel_name: str,
        text: str,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
    ) -> SendResult:
        """Send a note: stored in the outbox first, then offered to every relay.

        Returns:
            Where it was stored now and where it is still queued (sent by a later sync).

        Raises:
            ChannelNotFound: no such channel.
            ClientError: the channel cannot send yet (its first message has not arrived).
        """
        message_id = self.queue(
            channel_name, text, precedence=precedence, ack_within_ms=ack_within_ms
        )
        return await self.deliver(channel_name, message_id)

    async def deliver(self, channel_name: str, message_id: str) -> SendResult:
        """Flush the outbox and report where one queued message now is."""
        channel = self.channel(channel_name)
        await self.flush()
        record = self._get_message(channel.channel_id, message_id)
        stored = tuple(record.stored_on) if record else ()
        queued = tuple(
            link.url
            for link in channel.links
            if link.url not in stored and link.outbound is not None
        )
        seq = record.seq if record else 0
        return SendResult(message_id, seq, stored, queued)

    async def flush(self, pool: RelayPool | None = None) -> int:
        """Offer every queued envelope to its relay; returns how many were stored.

        The relays are served concurrently and each on its own (design §5): one that does
        not answer costs at most its request timeout and delays no other.

        Args:
            pool: connections to reuse (default: those of a running `watch`, or new ones).

        Returns:
            How many envelopes the relays stored.
        """
        own_pool = pool is None and self._live is None
        pool = pool or self._live or RelayPool()
        try:
            relays = [
                r
                for (r,) in self._store.db.execute(
                    "SELECT DISTINCT relay FROM outbox ORDER BY relay"
                ).fetchall()
            ]
            results = await asyncio.gather(
                *(self._flush_relay(pool, url) for url in relays), return_exceptions=True
            )
        finally:
            if own_pool:
                await pool.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result  # a bug or a damaged state, not a relay's doing
        return sum(r for r in results if isinstance(r, int))

    async def _flush_relay(self, pool: RelayPool, url: str) -> int:
        client = await pool.get(url)
        if client is None:
            return 0
        self._drop_for_lost_relay(url)
        rows = self._store.db.execute(
            "SELECT id, channel, ref, envelope FROM outbox WHERE relay = ? ORDER BY id", (url,)
        ).fetchall()
        tokens = {
            channel.channel_id: link.outbound.send_token
            for channel in self._channels()
            for link in channel.links
            if link.url == url and link.outbound is not None
        }
        pending = [r for r in rows if bytes(r[1]).hex() in tokens]
        sent, backoff, rounds = 0, _RETRY_FIRST_DELAY, 0
        while pending:
            window, pending = pending[:_SEND_WINDOW], pending[_SEND_WINDOW:]
            # Pipelined: the relay batches these into one commit; we wait for all receipts.
            results = await asyncio.gather(
                *(
                    client.send(
                        bytes(raw)[1:17], bytes.fromhex(tokens[bytes(cid).hex()]), bytes(raw)
                    )
                    for _, cid, _, raw in window
                ),
                return_exceptions=True,
            )
            stored = [
                row for row, result in zip(window, results, strict=True) if isinstance(result, int)
            ]
            retry = [
                row
                for row, result in zip(window, results, strict=True)
                if isinstance(result, RelayRequestError) and result.code in _RETRYABLE
            ]
            with self._store.transaction():
                for row_id, cid, ref, _ in stored:
                    self._store.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                    self._mark_stored(bytes(cid).hex(), bytes(ref), url)
                for (row_id, cid, _, _), result in zip(window, results, strict=True):
                    if not isinstance(result, RelayRequestError) or result.code in _RETRYABLE:
                        continue
                    channel_id = bytes(cid).hex()
                    if result.code == ErrorCode.UNAUTHORIZED and self._outbound_refused(
                        channel_id, url, tokens[channel_id]
                    ):
                        continue
                    self.refused_codes[int(row_id)] = result.code
                    # Refused for good (quota, not an envelope): the message stays queued
                    # and `status` shows the reason.
                    self._store.db.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?"
                        " WHERE id = ?",
                        (self._clock(), row_id),
                    )
                    self._store.put("relay-error", url.encode(), str(result).encode())
            sent += len(stored)
            if stored:
                pool.reached(url)
            failure = next(
                (
                    r
                    for r in results
                    if isinstance(r, BaseException) and not isinstance(r, RelayRequestError)
                ),
                None,
            )
            if failure is not None:
                await pool.mark_down(url, str(failure) or type(failure).__name__)
                break
            if retry:
                # The relay asked us to slow down: back off, then resend those first.
                rounds += 1
                if rounds > _MAX_RETRY_ROUNDS:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_DELAY)
                pending = retry + pending
            else:
                backoff = _RETRY_FIRST_DELAY
        return sent

    # --- relays lost for a channel (they forgot its mailboxes) ----------------------------

    def relays_lost(self, channel_id: str) -> tuple[str, ...]:
        """The relays that no longer know one of this channel's mailboxes (they lost their
        disk, or expired the mailbox) and are not yet re-provisioned; the channel goes on
        over its other relays meanwhile.

        Args:
            channel_id: the channel's id (hex).

        Returns:
            Their URLs, in the channel's order.
        """
        channel = self._channel_by_id(channel_id)
        return tuple(link.url for link in channel.links if any(self._lost(channel_id, link.url)))

    def _lost(self, channel_id: str, url: str) -> tuple[bool, bool]:
        """(inbound lost, outbound lost) for one relay of a channel."""
        raw = self._store.get("relay-lost", bytes.fromhex(channel_id) + url.encode())
        if raw is None:
            return False, False
        data = json.loads(raw)
        return bool(data.get("inbound")), bool(data.get("outbound"))

    def _set_lost(
        self, channel_id: str, url: str, *, inbound: bool | None = None,
        outbound: bool | None = None,
    ) -> None:
        """Change what is lost on one relay of a channel (inside the caller's transaction)."""
        key = bytes.fromhex(channel_id) + url.encode()
        was_in, was_out = self._lost(channel_id, url)
        now_in = was_in if inbound is None else inbound
        now_out = was_out if outbound is None else outbound
        if not (now_in or now_out):
            self._store.delete("relay-lost", key)
        elif (now_in, now_out) != (was_in, was_out):
            record = {"inbound": now_in, "outbound": now_out, "changed_ms": self._clock()}
            self._store.put("relay-lost", key, json.dumps(record).encode())

    def _outbound_refused(self, channel_id: str, url: str, token: str) -> bool:
        """The relay refused a send as unauthorised (inside the caller's transaction).

        Once the channel is established, that means the relay no longer knows the
        counterpart's mailbox there: the relay is lost for sending on this channel until
        the counterpart's *move* names a fresh mailbox. Its outbox rows for that relay are
        dropped (the other relays carry the messages), so nothing is offered there forever.

        Returns:
            True when the refusal was handled here; False when it is the caller's (the
            channel has not yet heard its counterpart: an invite mailbox that is gone
            means the invite was spent, which pairing reports).
        """
        channel = self._channel_by_id(channel_id)
        if channel.last_heard_ms == 0:
            return False
        link = next((lk for lk in channel.links if lk.url == url), None)
        if link is None or link.outbound is None or link.outbound.send_token != token:
            return True  # readdressed by a move since this send left: the row goes again
        self._set_lost(channel_id, url, outbound=True)
        self._store.db.execute(
            "DELETE FROM outbox WHERE channel = ? AND relay = ?",
            (bytes.fromhex(channel_id), url),
        )
        return True

    def _drop_for_lost_relay(self, url: str) -> None:
        """Drop outbox rows queued since for channels whose mailbox on `url` is lost."""
        lost = [
            channel.channel_id
            for channel in self._channels()
            if self._lost(channel.channel_id, url)[1]
        ]
        if not lost:
            return
        with self._store.transaction():
            for channel_id in lost:
                if self._lost(channel_id, url)[1]:
                    self._store.db.execute(
                        "DELETE FROM outbox WHERE channel = ? AND relay = ?",
                        (bytes.fromhex(channel_id), url),
                    )

    def _mark_stored(self, channel_id: str, ref: bytes, url: str) -> None:
        cid = bytes.fromhex(channel_id)
        row = self._store.db.execute(
            "SELECT record FROM messages WHERE channel = ? AND ref = ?", (cid, ref)
        ).fetchone()
        if row is None:
            return
        record: MessageRecord = load(
            MessageRecord, self._store.unseal("messages", cid + ref, bytes(row[0]))
        )
        if url not in record.stored_on:
            record.stored_on.append(url)
            self._put_message(self._channel_by_id(channel_id), record)

    def escalated_ids(self, channel_id: str) -> set[bytes]:
        """Notes of this channel already escalated (each is escalated once)."""
        prefix = bytes.fromhex(channel_id)
        return {key[16:] for key, _ in self._store.all("escalated") if key[:16] == prefix}

    def escalate(self, channel_id: str, message_id: bytes) -> None:
        """Mark a note escalated and send its sealed payload again on every relay."""
        cid = bytes.fromhex(channel_id)
        ref = self._store.index(b"msg", message_id)
        with self._store.transaction():
            channel = self._channel_by_id(channel_id)
            row = self._store.db.execute(
                "SELECT payload FROM retained WHERE channel = ? AND message_id = ?",
                (cid, message_id),
            ).fetchone()
            self._store.put("escalated", cid + message_id, b"1")
            if row is None:
                return
            for link in channel.links:
                if link.outbound is not None:
                    envelope = Envelope(bytes.fromhex(link.outbound.mailbox_id), bytes(row[0]))
                    self._store.db.execute(
                        "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
                        (cid, link.url, ref, envelope.encode()),
                    )

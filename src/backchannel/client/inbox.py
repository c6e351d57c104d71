"""Receiving: fetch or watch, decrypt-store-advance in one transaction, then ack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Final, cast

from backchannel.client.errors import (
    ClientError,
)
from backchannel.client.forks import KIND_FORK_NOTICE, ForkNotice, ForkReason, ForkRecord
from backchannel.client.invite import KIND_HELLO, KIND_MOVE, Hello, Move, RelayAddress
from backchannel.client.outbox import Outbox
from backchannel.client.receipts import (
    MAX_RECEIPT_IDS,
    RECEIPT_KINDS,
    receipt_body,
    receipt_ids,
)
from backchannel.client.records import (
    ChannelRecord,
    InviteRecord,
    Link,
    Mailbox,
    MessageRecord,
    load,
)
from backchannel.client.relays import RelayPool
from backchannel.client.reports import (
    InboxEntry,
    SyncReport,
)
from backchannel.client.transport import (
    RelayClient,
    RelayClosed,
    RelayRequestError,
)
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.ratchet import DuplicateMessage, TooFarAhead
from backchannel.protocol.e2e.session import Session, starts_session
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import (
    DecryptionFailed,
    RemoteProtocolError,
)
from backchannel.protocol.message import GENESIS_HASH, Message, MessageKind
from backchannel.protocol.relayframes import Delivery

if TYPE_CHECKING:
    from backchannel.client.engine import Principal
    from backchannel.client.strategic import EscalationCommand

__all__ = ["Inbox"]


class _Deferred(Exception):
    """An envelope to leave on its relay unacknowledged and process on a later pass."""


_FETCH_BATCH: Final = 100
# How long `watch` waits for arrivals before it looks at the outbox and the relays again.
_WATCH_TICK: Final = 0.2
# Seconds between `watch`'s rounds of duties: line tests and escalations need no finer
# grain than a second.
_DUTY_INTERVAL: Final = 1.0
# Seconds between `watch`'s records of relay reachability when nothing changes.
_HEALTH_EVERY: Final = 60.0
# Seconds before `watch` tries a relay that went down again.
_RECONNECT_DELAY: Final = 2.0


class Inbox(Outbox):
    """Receiving: fetch or watch, decrypt-store-advance in one transaction, then ack."""

    async def sync(self) -> SyncReport:
        """Send everything queued, fetch and process everything waiting, send receipts."""
        report = SyncReport()
        pool = RelayPool()
        try:
            report.sent += await self.flush(pool)
            await self._drain_all(pool, report)
            with self._store.transaction():
                self._queue_receipts()
            self._perform_duties(report)
            report.sent += await self.flush(pool)
            await self._retire_mailboxes(pool, report)
            await self._settle_commands()
            report.relays_down = dict(pool.failures)
            report.relays_up = sorted(set(self._all_relays()) - set(pool.failures))
            self._record_health(report.relays_up, report.relays_down)
        finally:
            await pool.close()
        return report

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_message: Callable[[InboxEntry], None] | None = None,
        reconnect_after: float = _RECONNECT_DELAY,
        duty_interval: float = _DUTY_INTERVAL,
    ) -> SyncReport:
        """Stay connected: receive as envelopes arrive, send receipts and the outbox,
        reconnect to relays that drop, until `stop` is set.

        Args:
            stop: set it to end the watch (after the work in hand is committed).
            on_message: called with each new note as soon as it is stored.
            reconnect_after: seconds before a relay that is down is tried again.
            duty_interval: seconds between rounds of duties (line tests, escalations).
        """
        report = SyncReport()
        pool = self._live = RelayPool()
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]] = asyncio.Queue()
        readers: dict[str, asyncio.Task[None]] = {}
        subscribed: set[tuple[str, str]] = set()
        retry_at: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        next_duties = 0.0
        retried_deferred = 0
        last_health: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        next_health = 0.0

        async def read(url: str, client: RelayClient) -> None:
            try:
                while True:
                    mailbox_id, delivery = await client.receive()
                    arrivals.put_nowait((url, mailbox_id, delivery))
            except RelayClosed as error:
                await pool.mark_down(url, str(error))

        try:
            while not stop.is_set():
                for url in self._all_relays():
                    task = readers.get(url)
                    if task is not None and task.done():
                        del readers[url]
                        subscribed = {s for s in subscribed if s[0] != url}
                        retry_at[url] = loop.time() + reconnect_after
                    if url in pool.failures and loop.time() >= retry_at.setdefault(
                        url, loop.time() + reconnect_after
                    ):
                        del pool.failures[url]
                        retry_at.pop(url, None)
                    client = await pool.get(url)
                    if client is None:
                        continue
                    for mailbox in self._inbound_mailboxes(url):
                        if (url, mailbox.mailbox_id) in subscribed:
                            continue
                        try:
                            await client.subscribe(
                                bytes.fromhex(mailbox.mailbox_id),
                                bytes.fromhex(mailbox.receive_token),
                            )
                        except (RelayClosed, RelayRequestError):
                            break
                        subscribed.add((url, mailbox.mailbox_id))
                    if url not in readers:
                        readers[url] = asyncio.create_task(read(url, client))
                await self._take_arrivals(arrivals, pool, report, on_message)
                if self._store.db.execute("SELECT 1 FROM pending_receipts LIMIT 1").fetchone():
                    with self._store.transaction():
                        self._queue_receipts()
                if loop.time() >= next_duties:
                    self._perform_duties(report)
                    await self._retire_mailboxes(pool, report)
                    if report.deferred > retried_deferred:
                        # Deferred envelopes are not pushed again on a live subscription:
                        # fetch them (with whatever filled their gap since).
                        retried_deferred = report.deferred
                        await self._drain_all(pool, report)
                    next_duties = loop.time() + duty_interval
                    up = sorted(u for u, task in readers.items() if not task.done())
                    health = (tuple(up), tuple(sorted(pool.failures)))
                    if health != last_health or loop.time() >= next_health:
                        # Written when it changes, and once a minute to keep "last
                        # reached" honest; not on every tick (each write is an fsync).
                        self._record_health(up, dict(pool.failures))
                        last_health, next_health = health, loop.time() + _HEALTH_EVERY
                report.sent += await self.flush(pool)
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)
            self._live = None
            await self._settle_commands()
            report.relays_down = dict(pool.failures)
            await pool.close()
        return report

    async def _take_arrivals(
        self,
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]],
        pool: RelayPool,
        report: SyncReport,
        on_message: Callable[[InboxEntry], None] | None,
    ) -> None:
        """Process what arrived (waiting briefly if nothing has), then ack it in batches."""
        try:
            first = await asyncio.wait_for(arrivals.get(), _WATCH_TICK)
        except TimeoutError:
            return
        batch = [first]
        while not arrivals.empty() and len(batch) < _FETCH_BATCH:
            batch.append(arrivals.get_nowait())
        acks: dict[tuple[str, bytes], list[int]] = {}
        arrived = []
        with self._store.transaction():
            for url, mailbox_id, delivery in batch:
                try:
                    entry = self._process(mailbox_id, delivery.envelope, report)
                except _Deferred:
                    continue  # not acked: delivered again when the relay connection renews
                acks.setdefault((url, mailbox_id), []).append(delivery.seq)
                if entry is not None:
                    arrived.append(entry)
        if on_message is not None:
            for entry in arrived:
                on_message(entry)
        for (url, mailbox_id), seqs in acks.items():
            client = await pool.get(url)
            mailbox = next(
                (m for m in self._inbound_mailboxes(url) if m.mailbox_id == mailbox_id.hex()),
                None,
            )
            if client is None or mailbox is None:
                continue
            try:
                await client.ack(mailbox_id, bytes.fromhex(mailbox.receive_token), tuple(seqs))
            except (RelayClosed, RelayRequestError):
                continue  # unacked envelopes come again and are recognised as copies

    def _perform_duties(self, report: SyncReport) -> None:
        from backchannel.client.strategic import perform_duties  # it builds on this module

        duties = perform_duties(cast("Principal", self))
        report.line_tests_sent += duties.line_tests_sent
        report.line_tests_answered += duties.line_tests_answered
        report.escalated += duties.escalated
        report.escalation_commands_failed += duties.commands_failed
        for command in duties.commands:
            # Run beside the loop, never in it: a slow pager must not hold up a FLASH note.
            task = asyncio.get_running_loop().create_task(self._escalation(command, report))
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)

    async def _escalation(self, command: EscalationCommand, report: SyncReport) -> None:
        from backchannel.client.strategic import run_escalation_command

        if not await run_escalation_command(command):
            report.escalation_commands_failed += 1

    async def _settle_commands(self) -> None:
        """Wait for the escalation commands still running (each is bounded by its
        timeout), so a one-shot sync reports them and leaves none behind."""
        while self._command_tasks:
            await asyncio.gather(*list(self._command_tasks), return_exceptions=True)

    async def _drain(self, client: RelayClient, mailbox: Mailbox, report: SyncReport) -> None:
        mailbox_id = bytes.fromhex(mailbox.mailbox_id)
        token = bytes.fromhex(mailbox.receive_token)
        after = 0
        while True:
            deliveries, more = await client.fetch(mailbox_id, token, after, _FETCH_BATCH)
            done = []
            with self._store.transaction():
                for delivery in deliveries:
                    after = max(after, delivery.seq)
                    try:
                        self._process(mailbox_id, delivery.envelope, report)
                    except _Deferred:
                        continue  # not acked: the relay delivers it again next time
                    done.append(delivery.seq)
            if done:
                await client.ack(mailbox_id, token, tuple(done))
            if not more or not deliveries:
                return

    async def _drain_all(self, pool: RelayPool, report: SyncReport) -> None:
        for url in self._all_relays():
            client = await pool.get(url)
            if client is None:
                continue
            for mailbox in self._inbound_mailboxes(url):
                try:
                    await self._drain(client, mailbox, report)
                except RelayClosed as error:
                    await pool.mark_down(url, str(error))
                    break

    def _owner(self, mailbox_id: bytes) -> ChannelRecord | InviteRecord | None:
        hex_id = mailbox_id.hex()
        for channel in self._channels():
            if any(link.inbound.mailbox_id == hex_id for link in channel.links):
                if channel.retiring and not channel.peer_moved:
                    channel.peer_moved = True  # the joiner writes to the new mailboxes now
                return channel
            if any(link.inbound.mailbox_id == hex_id for link in channel.retiring):
                return channel
        for invite in self.pending_invites():
            if any(link.inbound.mailbox_id == hex_id for link in invite.links):
                return invite
        return None

    def _process(self, mailbox_id: bytes, raw: bytes, report: SyncReport) -> InboxEntry | None:
        """Decrypt, store and advance. Runs inside the caller's transaction, which covers a
        whole batch: one commit (one fsync) per batch, and a crash loses the batch's work
        but never its envelopes, which were not yet acked.

        Returns:
            The note that arrived, if the envelope carried a new one.
        """
        try:
            envelope = Envelope.decode(raw)
        except RemoteProtocolError:
            report.rejected += 1
            return None
        digest = self._store.index(b"payload", envelope.payload)
        seen = self._store.db.execute(
            "SELECT 1 FROM processed WHERE digest = ?", (digest,)
        ).fetchone()
        if seen:
            report.duplicates += 1
            return None
        owner = self._owner(mailbox_id)
        entry = None
        if isinstance(owner, InviteRecord):
            self._accept_joiner(owner, envelope.payload, report)
        elif isinstance(owner, ChannelRecord):
            entry = self._receive(owner, envelope.payload, report)  # may raise _Deferred
        else:
            report.rejected += 1
        self._store.db.execute("INSERT INTO processed VALUES (?)", (digest,))
        return entry

    def _accept_joiner(self, invite: InviteRecord, payload: bytes, report: SyncReport) -> None:
        if not starts_session(payload) or self._clock() >= invite.expires_at_ms:
            report.rejected += 1
            return
        prekeys = PrekeySecrets.decode(bytes.fromhex(invite.prekeys))
        try:
            session, message, _remaining = Session.respond(
                self._identity, prekeys, payload, self._rng
            )
            hello = Hello.decode(message.body) if message.kind == KIND_HELLO else None
        except (DecryptionFailed, RemoteProtocolError):
            report.rejected += 1
            return
        if hello is None:
            report.rejected += 1
            return
        by_url = {address.url: address for address in hello.relays}
        own = {link.url: link for link in invite.channel_links}
        links, retiring = [], []
        for link in invite.links:
            address = by_url.get(link.url)
            private = own.get(link.url)
            if private is not None:
                retiring.append(link)
                link = Link(link.url, private.inbound)
            if address is not None:
                link.outbound = Mailbox(address.mailbox_id.hex(), address.send_token.hex())
            links.append(link)
        channel = ChannelRecord(
            channel_id=self._rng(16).hex(),
            identity_changed=self._identity_changed(hello.name, session.peer_identity),
            name=self._unique_name(hello.name),
            peer_identity=session.peer_identity.encode().hex(),
            session=session.encode().hex(),
            links=links,
            created_at_ms=self._clock(),
            role="inviter",
            last_heard_ms=self._clock(),
            retiring=retiring,
        )
        # The invite is spent: its one-time prekey goes with it, so a second use fails.
        self._store.delete("invite", bytes.fromhex(invite.invite_id))
        self._store_incoming(channel, message)
        if retiring:
            move = Move(
                tuple(
                    RelayAddress(
                        link.url,
                        bytes.fromhex(link.inbound.mailbox_id),
                        bytes.fromhex(link.inbound.send_token),
                    )
                    for link in links
                )
            )
            self._queue(channel, session, KIND_MOVE, move.encode())
        self._save_channel(channel)
        report.new_channels.append(channel.name)
        report.received += 1

    def _receive(
        self, channel: ChannelRecord, payload: bytes, report: SyncReport
    ) -> InboxEntry | None:
        session = self._session(channel)
        try:
            message = session.open(payload, self._rng)
        except TooFarAhead:
            # Authentic but more than MAX_SKIP ahead: the messages in between may still
            # come by another relay. Keep it on the relay (no ack) and try again later.
            report.deferred += 1
            raise _Deferred() from None
        except DuplicateMessage:
            if self._forks.was_accepted(channel.channel_id, payload):
                report.duplicates += 1
            else:
                # Authentic, at a position already used, but not the bytes we took there:
                # the sender's state was copied and both copies sent.
                self._record_fork(channel, ForkReason.REPLAY, 0, "", report)
            return None
        except (DecryptionFailed, RemoteProtocolError):
            # Tampered, forged or foreign: counted and reported, never shown.
            channel.rejected += 1
            self._save_channel(channel)
            report.rejected += 1
            return None
        self._keep_session(channel, session)
        channel.last_heard_ms = self._clock()
        self._forks.accept_payload(channel.channel_id, payload)
        entry = None
        if self._get_message(channel.channel_id, message.message_id.hex()) is not None:
            report.duplicates += 1
        elif (reason := self._chain_fork(channel, message)) is ForkReason.POSITION:
            # Two different messages claim one place in their history: keep the first,
            # raise the alarm, show neither as if nothing happened.
            self._record_fork(channel, reason, message.seq, message.message_id.hex(), report)
        else:
            if reason is not None:
                self._record_fork(channel, reason, message.seq, message.message_id.hex(), report)
            record = self._store_incoming(channel, message)
            report.received += 1
            if message.kind == MessageKind.NOTE:
                entry = self._entry(channel, record)
                report.new_notes.append(record.message_id)
        self._save_channel(channel)
        return entry

    def _chain_fork(self, channel: ChannelRecord, message: Message) -> ForkReason | None:
        """Check a new message against the sender's history we hold (protocol.md §8):
        POSITION if another message has its sequence number, CHAIN if its prev_hash is not
        the hash of the message before it, or the message after it does not chain to it."""
        cid = bytes.fromhex(channel.channel_id)
        rows = self._store.db.execute(
            "SELECT ref, seq, record FROM messages WHERE channel = ? AND direction = 1"
            " AND seq BETWEEN ? AND ?",
            (cid, message.seq - 1, message.seq + 1),
        ).fetchall()
        held: dict[int, MessageRecord] = {}
        for ref, seq, raw in rows:
            held[int(seq)] = load(
                MessageRecord, self._store.unseal("messages", cid + bytes(ref), bytes(raw))
            )
        if message.seq in held:
            return ForkReason.POSITION
        before, after = held.get(message.seq - 1), held.get(message.seq + 1)
        if message.seq == 1 and message.prev_hash != GENESIS_HASH:
            return ForkReason.CHAIN
        if before is not None and before.message_hash != message.prev_hash.hex():
            return ForkReason.CHAIN
        if after is not None and after.prev_hash and after.prev_hash != message.hash.hex():
            return ForkReason.CHAIN
        return None

    def _record_fork(
        self,
        channel: ChannelRecord,
        reason: ForkReason,
        seq: int,
        message_id: str,
        report: SyncReport,
    ) -> None:
        record = ForkRecord("theirs", reason, seq, self._clock(), message_id)
        self._forks.add(channel.channel_id, record)
        report.forks += 1

    def _store_incoming(self, channel: ChannelRecord, message: Message) -> MessageRecord:
        now = self._clock()
        record = MessageRecord(
            message.message_id.hex(),
            "in",
            message.seq,
            message.kind,
            message.sent_at_ms,
            message.body.hex(),
            received_at_ms=now,
            message_hash=message.hash.hex(),
            prev_hash=message.prev_hash.hex(),
        )
        self._put_message(channel, record)
        if message.kind == KIND_FORK_NOTICE:
            self._note_reported_fork(channel, message.body)
            return record
        if message.kind == KIND_MOVE and channel.role == "joiner":
            self._follow_move(channel, message.body)
            return record
        if message.kind in RECEIPT_KINDS:
            try:
                ids = receipt_ids(message.body)
            except RemoteProtocolError:
                return record
            for message_id in ids:
                ours = self._get_message(channel.channel_id, message_id)
                if ours is None or ours.direction != "out":
                    continue
                if message.kind == MessageKind.RECEIPT_DELIVERED:
                    ours.delivered_at_ms = ours.delivered_at_ms or message.sent_at_ms
                else:
                    ours.read_at_ms = ours.read_at_ms or message.sent_at_ms
                    ours.delivered_at_ms = ours.delivered_at_ms or message.sent_at_ms
                self._put_message(channel, ours)
        else:
            self._pending_receipt(channel, MessageKind.RECEIPT_DELIVERED, message.message_id)
        return record

    def _note_reported_fork(self, channel: ChannelRecord, body: bytes) -> None:
        """The counterpart saw our messages fork: a copy of our state sent too."""
        try:
            notice = ForkNotice.decode(body)
        except RemoteProtocolError:
            return
        self._forks.add(
            channel.channel_id, ForkRecord("ours", notice.reason, notice.seq, self._clock())
        )

    def _queue_fork_notices(self) -> None:
        """Tell each counterpart about forks of theirs we saw and have not yet reported
        (inside the caller's transaction)."""
        for channel in self._channels():
            unsent = [
                (row_id, fork)
                for row_id, fork in self._forks.of_channel(channel.channel_id)
                if fork.side == "theirs" and not fork.notified
            ]
            if not unsent:
                continue
            session = self._session(channel)
            if not session.can_send or not any(link.outbound for link in channel.links):
                continue
            for row_id, fork in unsent:
                notice = ForkNotice(fork.seq, fork.reason)
                self._queue(channel, session, KIND_FORK_NOTICE, notice.encode())
                self._forks.replace(channel.channel_id, row_id, replace(fork, notified=True))

    def _follow_move(self, channel: ChannelRecord, body: bytes) -> None:
        """Send to the inviter's new mailboxes from now on, queued envelopes included."""
        try:
            move = Move.decode(body)
        except RemoteProtocolError:
            return
        cid = bytes.fromhex(channel.channel_id)
        for address in move.relays:
            link = next((lk for lk in channel.links if lk.url == address.url), None)
            if link is None:
                continue
            link.outbound = Mailbox(address.mailbox_id.hex(), address.send_token.hex())
            rows = self._store.db.execute(
                "SELECT id, envelope FROM outbox WHERE channel = ? AND relay = ?",
                (cid, address.url),
            ).fetchall()
            for row_id, raw in rows:
                moved = Envelope(address.mailbox_id, Envelope.decode(bytes(raw)).payload)
                self._store.db.execute(
                    "UPDATE outbox SET envelope = ? WHERE id = ?", (moved.encode(), row_id)
                )

    async def _retire_mailboxes(self, pool: RelayPool, report: SyncReport) -> None:
        """Drain and delete the invite mailboxes of channels whose joiner has moved on."""
        for channel in self._channels():
            if not (channel.retiring and channel.peer_moved):
                continue
            kept = []
            for link in channel.retiring:
                client = await pool.get(link.url)
                if client is None:
                    kept.append(link)
                    continue
                mailbox_id = bytes.fromhex(link.inbound.mailbox_id)
                token = bytes.fromhex(link.inbound.receive_token)
                try:
                    await self._drain(client, link.inbound, report)
                    await client.delete(mailbox_id, token)
                except (RelayClosed, RelayRequestError):
                    kept.append(link)
            still_retiring = {link.inbound.mailbox_id for link in kept}
            with self._store.transaction():
                # Read again inside the write: the channel moved on while we were away.
                fresh = self._channel_by_id(channel.channel_id)
                fresh.retiring = [
                    link
                    for link in fresh.retiring
                    if link.inbound.mailbox_id in still_retiring
                ]
                self._save_channel(fresh)

    def _pending_receipt(self, channel: ChannelRecord, kind: int, message_id: bytes) -> None:
        self._store.db.execute(
            "INSERT OR IGNORE INTO pending_receipts VALUES (?, ?, ?)",
            (bytes.fromhex(channel.channel_id), kind, message_id),
        )

    def _queue_receipts(self) -> None:
        """Seal one receipt message per channel and kind for everything stored since the
        last one (inside the caller's transaction, with the receipts' removal), and the
        fork notices owed."""
        self._queue_fork_notices()
        rows = self._store.db.execute(
            "SELECT channel, kind, message_id FROM pending_receipts ORDER BY rowid"
        ).fetchall()
        grouped: dict[tuple[str, int], list[str]] = {}
        for cid, kind, message_id in rows:
            grouped.setdefault((bytes(cid).hex(), kind), []).append(bytes(message_id).hex())
        for (channel_id, kind), ids in grouped.items():
            channel = self._channel_by_id(channel_id)
            if channel.identity_changed and not channel.verified:
                continue  # receipts wait too, until the changed key has been looked at
            session = self._session(channel)
            if not session.can_send or not any(link.outbound for link in channel.links):
                continue
            for start in range(0, len(ids), MAX_RECEIPT_IDS):
                self._queue(
                    channel, session, kind, receipt_body(ids[start : start + MAX_RECEIPT_IDS])
                )
            self._store.db.execute(
                "DELETE FROM pending_receipts WHERE channel = ? AND kind = ?",
                (bytes.fromhex(channel_id), kind),
            )

    async def read(self, channel_name: str, message_id: str | None = None) -> list[InboxEntry]:
        """Open received notes (one, or all unread), mark them read and send read receipts."""
        channel = self.channel(channel_name)
        now = self._clock()
        with self._store.transaction():
            # Chosen inside the transaction that marks them: a receipt stored meanwhile by
            # another handle is kept, not overwritten with a copy read before it.
            chosen = [
                m
                for m in self._messages(channel)
                if m.direction == "in"
                and m.kind == MessageKind.NOTE
                and (m.message_id.startswith(message_id) if message_id else not m.read_at_ms)
            ]
            if message_id and not chosen:
                raise ClientError(f"no received message {message_id} in '{channel.name}'")
            for record in chosen:
                if not record.read_at_ms:
                    record.read_at_ms = now
                    self._pending_receipt(
                        channel, MessageKind.RECEIPT_READ, bytes.fromhex(record.message_id)
                    )
                    self._put_message(channel, record)
            self._queue_receipts()
        await self.flush()
        return [self._entry(channel, m) for m in chosen]

    def transcript(self, channel_name: str) -> list[InboxEntry]:
        """Notes both ways, in the order they were sent (by sender time, then seq)."""
        channel = self.channel(channel_name)
        notes = [m for m in self._messages(channel) if m.kind == MessageKind.NOTE]
        notes.sort(key=lambda m: (m.sent_at_ms, m.direction, m.seq))
        return [self._entry(channel, m) for m in notes]

    def inbox(self, channel_name: str | None = None) -> list[InboxEntry]:
        """Received notes, per channel in sequence order."""
        channels = [self.channel(channel_name)] if channel_name else self._channels()
        entries = []
        for channel in channels:
            for record in self._messages(channel):
                if record.direction == "in" and record.kind == MessageKind.NOTE:
                    entries.append(self._entry(channel, record))
        return entries

"""Receiving: fetch or watch, decrypt-store-advance in one transaction, then ack."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
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
    MailboxCaps,
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
from backchannel.protocol.relayframes import Delivery, ErrorCode

if TYPE_CHECKING:
    from backchannel.client.engine import Principal
    from backchannel.client.strategic import EscalationCommand

__all__ = ["SYNC_DEADLINE", "Inbox"]


class _Deferred(Exception):
    """An envelope to leave on its relay unacknowledged and process on a later pass."""


_FETCH_BATCH: Final = 100
# Fetch batches per mailbox in one pass. A relay holds at most 1,000 envelopes per mailbox
# (its default quota, docs/relay.md), which is 10 batches; twice that leaves room for what
# arrives meanwhile, and stops a relay that always answers "more" (review §2g) from keeping
# a sync busy: the rest waits for the next pass.
_MAX_DRAIN_BATCHES: Final = 20
# Seconds a `sync` takes at most, whatever one relay does (design §5): two request
# timeouts, so a relay that stopped answering is found out and the others still finish.
SYNC_DEADLINE: Final = 10.0
# The share of a sync's deadline for sending and fetching; the rest is for what arrived
# calls for (receipts, a move), so a slow relay cannot leave the others' answers unsent.
_EXCHANGE_SHARE: Final = 0.6
# Payload digests are kept 37 days: a relay delivers nothing older than its envelope TTL
# (30 days by default, docs/relay.md), and a week more covers a sweep not yet run and a
# clock that is off. See `_expire_digests` for why forgetting one is safe.
_DIGEST_KEEP_MS: Final = (30 + 7) * 24 * 3600 * 1000
# Seconds between looks, on a live connection, for inbound mailboxes new since (a
# re-provisioned one, a new channel's) to subscribe to.
_SUBSCRIBE_EVERY: Final = 1.0
# Seconds `watch`, when stopped, lets work in hand (a send, an ack) finish.
_STOP_GRACE: Final = 1.0
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

    # Whether this state file's `processed` table has its `seen_ms` column (checked once).
    _digests_dated: bool = False

    async def sync(self, *, deadline: float = SYNC_DEADLINE) -> SyncReport:
        """Send everything queued, fetch and process everything waiting, send receipts.

        Each relay is served on its own and concurrently: a relay that is down, silent or
        slow delays no other, and the whole sync returns within about `deadline` seconds
        whatever one relay does (what is left waits, safely, for the next sync). A relay
        that no longer knows one of a channel's mailboxes is marked lost for that channel,
        re-provisioned when it answers again, and reported in `status`.

        Args:
            deadline: seconds the sync may take in all.

        Returns:
            What was sent, received and refused, and which relays were up or down.
        """
        report = SyncReport()
        pool = RelayPool()
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + deadline
        try:
            self._expire_digests()

            async def exchange(url: str) -> None:
                sent = await self._flush_relay(pool, url)  # then add: relays run at once
                report.sent += sent
                await self._drain_relay(pool, url, report)

            # Most of the time for sending and receiving; the rest for the answers (receipts,
            # a move) that what arrived calls for.
            await self._each_relay(
                pool, self._all_relays(), exchange, start + deadline * _EXCHANGE_SHARE
            )
            with self._store.transaction():
                self._queue_receipts()
            self._perform_duties(report)

            async def reprovision(url: str) -> None:
                await self._reprovision(pool, url, report)

            async def send(url: str) -> None:
                sent = await self._flush_relay(pool, url)  # then add: relays run at once
                report.sent += sent

            await self._each_relay(pool, self._all_relays(), reprovision, end)
            await self._each_relay(pool, self._outbox_relays(), send, end)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._retire_mailboxes(pool, report), max(0.0, end - loop.time())
                )
            await self._settle_commands()
            report.relays_down = dict(pool.failures)
            report.relays_up = sorted(set(self._all_relays()) - set(pool.failures))
            self._record_health(report.relays_up, report.relays_down)
        finally:
            await pool.close()
        return report

    async def _each_relay(
        self,
        pool: RelayPool,
        urls: list[str],
        work: Callable[[str], Awaitable[None]],
        until: float,
    ) -> None:
        """Run `work` for every relay at once, each stopped (and counted down) at `until`.

        Stopping is safe at any await: nothing is acked before its results are committed,
        and nothing leaves the outbox before a relay stored it.
        """
        loop = asyncio.get_running_loop()

        async def bounded(url: str) -> None:
            try:
                await asyncio.wait_for(work(url), max(0.0, until - loop.time()))
            except TimeoutError:
                await pool.mark_down(url, "did not finish within the sync's deadline")

        results = await asyncio.gather(*(bounded(url) for url in urls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # a bug or a damaged state, not a relay's doing

    def _outbox_relays(self) -> list[str]:
        return [
            r for (r,) in self._store.db.execute("SELECT DISTINCT relay FROM outbox").fetchall()
        ]

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

        Each relay has its own task (connect, subscribe, receive) and its own sends and
        acks in the background, so a relay that is down or silent never holds up another;
        a relay that drops is tried again after `reconnect_after` seconds, doubling up to a
        minute while it stays down.

        Args:
            stop: set it to end the watch (after the work in hand is committed).
            on_message: called with each new note as soon as it is stored.
            reconnect_after: seconds before a relay that is down is tried again (first).
            duty_interval: seconds between rounds of duties (line tests, escalations).

        Returns:
            What was sent, received and refused while it ran.
        """
        report = SyncReport()
        pool = self._live = RelayPool()
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]] = asyncio.Queue()
        readers: dict[str, asyncio.Task[None]] = {}
        # Background work by name, one task per name at a time: sends and re-provisioning
        # per relay, retiring mailboxes, fetching deferred envelopes; and acks.
        chores: dict[str, asyncio.Task[None]] = {}
        acks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        next_duties = 0.0
        retried_deferred = 0
        last_health: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        next_health = 0.0

        def chore(name: str, work: Callable[[], Coroutine[object, object, None]]) -> None:
            task = chores.get(name)
            if task is not None and not task.done():
                return
            error = task.exception() if task is not None else None
            if error is not None:
                raise error  # a bug or a damaged state, not a relay's doing
            chores[name] = asyncio.create_task(work())

        async def send(url: str) -> None:
            sent = await self._flush_relay(pool, url)  # then add: relays run at once
            report.sent += sent

        async def reprovision(url: str) -> None:
            await self._reprovision(pool, url, report)

        async def retire() -> None:
            await self._retire_mailboxes(pool, report)

        async def deferred() -> None:
            await self._drain_all(pool, report)

        try:
            self._expire_digests()
            while not stop.is_set():
                relays = self._all_relays()
                for url in relays:
                    task = readers.get(url)
                    if task is not None and task.done():
                        task.result()  # a reader ends only by a bug: let it be seen
                    if task is None:
                        readers[url] = asyncio.create_task(
                            self._listen(pool, url, arrivals, reconnect_after)
                        )
                await self._take_arrivals(arrivals, pool, report, on_message, acks)
                if self._store.db.execute("SELECT 1 FROM pending_receipts LIMIT 1").fetchone():
                    with self._store.transaction():
                        self._queue_receipts()
                if loop.time() >= next_duties:
                    self._perform_duties(report)
                    chore("retire", retire)
                    for url in relays:
                        chore(f"reprovision {url}", functools.partial(reprovision, url))
                    if report.deferred > retried_deferred:
                        # Deferred envelopes are not pushed again on a live subscription:
                        # fetch them (with whatever filled their gap since).
                        retried_deferred = report.deferred
                        chore("deferred", deferred)
                    next_duties = loop.time() + duty_interval
                    up = sorted(u for u in relays if u in pool.clients)
                    health = (tuple(up), tuple(sorted(pool.failures)))
                    if health != last_health or loop.time() >= next_health:
                        # Written when it changes, and once a minute to keep "last
                        # reached" honest; not on every tick (each write is an fsync).
                        self._record_health(up, dict(pool.failures))
                        if loop.time() >= next_health:
                            self._expire_digests()
                        last_health, next_health = health, loop.time() + _HEALTH_EVERY
                for url in self._outbox_relays():
                    chore(f"send {url}", functools.partial(send, url))
        finally:
            # Work in hand may finish (briefly), then everything else is stopped.
            busy = [t for t in (*chores.values(), *acks) if not t.done()]
            if busy:
                await asyncio.wait(busy, timeout=_STOP_GRACE)
            tasks = [*readers.values(), *chores.values(), *acks]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._live = None
            await self._settle_commands()
            report.relays_down = dict(pool.failures)
            await pool.close()
        return report

    async def _listen(
        self,
        pool: RelayPool,
        url: str,
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]],
        first_delay: float,
    ) -> None:
        """One relay's part of `watch`, until cancelled: connect (again, with backoff, when
        it drops), subscribe to every inbound mailbox there (new ones as they appear), and
        pass on what it delivers."""
        loop = asyncio.get_running_loop()
        while True:
            client = None
            if pool.retry_due(url, loop.time(), first_delay):
                client = await pool.get(url)
            if client is None:
                await asyncio.sleep(_WATCH_TICK)
                continue
            subscribed: set[str] = set()
            try:
                while True:
                    await self._subscribe_new(client, url, subscribed)
                    pool.reached(url)
                    until = loop.time() + _SUBSCRIBE_EVERY
                    while (left := until - loop.time()) > 0:
                        try:
                            mailbox_id, delivery = await client.receive(left)
                        except TimeoutError:
                            break
                        arrivals.put_nowait((url, mailbox_id, delivery))
            except RelayClosed as error:
                await pool.mark_down(url, str(error))

    async def _subscribe_new(self, client: RelayClient, url: str, subscribed: set[str]) -> None:
        """Subscribe to the inbound mailboxes on `url` not yet subscribed (or refused) on
        this connection. A mailbox the relay does not know marks it lost for its channel.

        Raises:
            RelayClosed: the connection failed (timed out, closed, broke the protocol).
        """
        for owner, mailbox in self._inbound_owners(url):
            if mailbox.mailbox_id in subscribed:
                continue
            try:
                await client.subscribe(
                    bytes.fromhex(mailbox.mailbox_id), bytes.fromhex(mailbox.receive_token)
                )
            except RelayRequestError as error:
                if error.code != ErrorCode.UNAUTHORIZED:
                    return  # rate limited, too many: tried again on the next round
                if owner is not None:
                    with self._store.transaction():
                        self._inbound_refused(owner, url, mailbox.mailbox_id)
            subscribed.add(mailbox.mailbox_id)

    async def _take_arrivals(
        self,
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]],
        pool: RelayPool,
        report: SyncReport,
        on_message: Callable[[InboxEntry], None] | None,
        acks_in_flight: set[asyncio.Task[None]] | None = None,
    ) -> None:
        """Process what arrived (waiting briefly if nothing has), then ack it in batches.

        Args:
            acks_in_flight: where to keep the acks, sent in the background (one task per
                relay and mailbox) so that a relay slow to answer them holds up nothing;
                without it the acks are awaited, all relays at once.
        """
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

        async def ack(url: str, mailbox_id: bytes, seqs: list[int]) -> None:
            client = await pool.get(url)
            mailbox = next(
                (m for m in self._inbound_mailboxes(url) if m.mailbox_id == mailbox_id.hex()),
                None,
            )
            if client is None or mailbox is None:
                return
            try:
                await client.ack(mailbox_id, bytes.fromhex(mailbox.receive_token), tuple(seqs))
            except (RelayClosed, RelayRequestError):
                return  # unacked envelopes come again and are recognised as copies

        work = [ack(url, mailbox_id, seqs) for (url, mailbox_id), seqs in acks.items()]
        if acks_in_flight is None:
            await asyncio.gather(*work)
            return
        for coro in work:
            task = asyncio.create_task(coro)
            acks_in_flight.add(task)
            task.add_done_callback(acks_in_flight.discard)

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
        """Fetch, process and ack one mailbox's envelopes, at most `_MAX_DRAIN_BATCHES`
        batches (the rest waits for the next pass).

        Raises:
            RelayRequestError: the relay refused a fetch or an ack.
            RelayClosed: the connection failed.
        """
        mailbox_id = bytes.fromhex(mailbox.mailbox_id)
        token = bytes.fromhex(mailbox.receive_token)
        after = 0
        for _ in range(_MAX_DRAIN_BATCHES):
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
        """Drain every inbound mailbox, all relays at once (each bounded by its request
        timeouts and `_MAX_DRAIN_BATCHES`)."""

        async def drain(url: str) -> None:
            await self._drain_relay(pool, url, report)

        loop = asyncio.get_running_loop()
        await self._each_relay(pool, self._all_relays(), drain, loop.time() + SYNC_DEADLINE)

    async def _drain_relay(self, pool: RelayPool, url: str, report: SyncReport) -> None:
        """Drain the inbound mailboxes on one relay. A mailbox it no longer knows marks the
        relay lost for that channel; a mailbox refused for another reason waits for the
        next pass; a failed connection marks the relay down."""
        client = await pool.get(url)
        if client is None:
            return
        for owner, mailbox in self._inbound_owners(url):
            try:
                await self._drain(client, mailbox, report)
            except RelayRequestError as error:
                if error.code == ErrorCode.UNAUTHORIZED and owner is not None:
                    with self._store.transaction():
                        self._inbound_refused(owner, url, mailbox.mailbox_id)
                continue
            except RelayClosed as error:
                await pool.mark_down(url, str(error))
                return
        pool.reached(url)

    def _inbound_owners(self, url: str) -> list[tuple[str | None, Mailbox]]:
        """The inbound mailboxes on `url`, each with the id of the channel whose current
        link it is (None for invite and retiring mailboxes, which are never re-provisioned:
        they are one-time by design)."""
        boxes: list[tuple[str | None, Mailbox]] = []
        for channel in self._channels():
            boxes += [(channel.channel_id, lk.inbound) for lk in channel.links if lk.url == url]
            boxes += [(None, lk.inbound) for lk in channel.retiring if lk.url == url]
        for invite in self.pending_invites():
            boxes += [(None, lk.inbound) for lk in invite.links if lk.url == url]
        return boxes

    def _inbound_refused(self, channel_id: str, url: str, mailbox_id: str) -> None:
        """The relay at `url` does not know our inbound mailbox there (inside the caller's
        transaction): lost for this channel, until `_reprovision` makes a new one."""
        channel = self._channel_by_id(channel_id)
        link = next((lk for lk in channel.links if lk.url == url), None)
        if link is not None and link.inbound.mailbox_id == mailbox_id:
            self._set_lost(channel_id, url, inbound=True)

    async def _reprovision(self, pool: RelayPool, url: str, report: SyncReport) -> None:
        """For each channel whose inbound mailbox on `url` is lost: create a fresh one
        there and tell the counterpart with a *move* naming it (sent over every relay of
        the channel, so over the healthy ones too). The counterpart follows the move; once
        its own mailbox there is back as well, the relay carries the channel again."""
        lost = [c for c in self._channels() if self._lost(c.channel_id, url)[0]]
        if not lost:
            return
        client = await pool.get(url)
        if client is None:
            return
        for channel in lost:
            if channel.identity_changed and not channel.verified:
                continue  # nothing is sent until the changed key has been looked at
            if not self._session(channel).can_send:
                continue
            caps = MailboxCaps(self._rng(16), self._rng(32), self._rng(32))
            try:
                await client.create_mailbox(caps)
            except RelayRequestError:
                continue  # rate limited or unavailable: the next pass tries again
            except RelayClosed as error:
                await pool.mark_down(url, str(error))
                return
            # A mailbox made here but not recorded (a crash, a change meanwhile) is empty
            # and unknown to anyone; the relay deletes it after its idle TTL.
            with self._store.transaction():
                fresh = self._channel_by_id(channel.channel_id)
                link = next((lk for lk in fresh.links if lk.url == url), None)
                if link is None or not self._lost(fresh.channel_id, url)[0]:
                    continue
                session = self._session(fresh)
                link.inbound = Mailbox(
                    caps.mailbox_id.hex(), caps.send_token.hex(), caps.receive_token.hex()
                )
                move = Move((RelayAddress(url, caps.mailbox_id, caps.send_token),))
                self._queue(fresh, session, KIND_MOVE, move.encode())
                self._set_lost(fresh.channel_id, url, inbound=False)
            report.reprovisioned.append(f"{fresh.name} {url}")

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
        rejected = report.rejected
        owner = self._owner(mailbox_id)
        entry = None
        if isinstance(owner, InviteRecord):
            self._accept_joiner(owner, envelope.payload, report)
        elif isinstance(owner, ChannelRecord):
            entry = self._receive(owner, envelope.payload, report)  # may raise _Deferred
        else:
            report.rejected += 1
        if report.rejected == rejected:
            # Only what authenticated is remembered: junk a relay sends (review §2g) is
            # counted and acked away, and leaves nothing in the state to grow.
            self._remember_digest(digest)
        return entry

    def _remember_digest(self, digest: bytes) -> None:
        """Record an authentic payload's digest with the time it was first processed."""
        self._date_digests()
        self._store.db.execute(
            "INSERT OR IGNORE INTO processed (digest, seen_ms) VALUES (?, ?)",
            (digest, self._clock()),
        )

    def _date_digests(self) -> None:
        """Give the `processed` table its `seen_ms` column, once per state file (older
        files have digests without a time: they count from now)."""
        if self._digests_dated:
            return
        columns = {row[1] for row in self._store.db.execute("PRAGMA table_info(processed)")}
        if "seen_ms" in columns:
            self._digests_dated = True
            return
        self._store.db.execute(
            "ALTER TABLE processed ADD COLUMN seen_ms INTEGER NOT NULL DEFAULT 0"
        )
        self._store.db.execute("UPDATE processed SET seen_ms = ?", (self._clock(),))

    def _expire_digests(self) -> None:
        """Forget payload digests older than `_DIGEST_KEEP_MS`.

        Safe: the digest only spares a decrypt. An authentic copy that comes back after
        its digest expired is still never a second message: the ratchet refuses a key it
        already used (`DuplicateMessage`, counted as a duplicate), a copy from a chain it
        has long left no longer opens (`DecryptionFailed`, counted as rejected, nothing
        stored), and `_receive` also finds the message id already stored.
        """
        with self._store.transaction():
            self._date_digests()
            self._store.db.execute(
                "DELETE FROM processed WHERE seen_ms < ?", (self._clock() - _DIGEST_KEEP_MS,)
            )

    def _accept_joiner(self, invite: InviteRecord, payload: bytes, report: SyncReport) -> None:
        if not starts_session(payload) or self._clock() >= invite.expires_at_ms:
            report.rejected += 1
            return
        prekeys = PrekeySecrets.decode(bytes.fromhex(invite.prekeys))
        try:
            session, first, _remaining = Session.respond_with_position(
                self._identity, prekeys, payload, self._rng
            )
            message = first.message
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
        self._forks.remember_position(channel.channel_id, first.position)
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
            opened = session.open_with_position(payload, self._rng)
            message = opened.message
        except TooFarAhead:
            # Authentic but more than MAX_SKIP ahead: the messages in between may still
            # come by another relay. Keep it on the relay (no ack) and try again later.
            report.deferred += 1
            raise _Deferred() from None
        except DuplicateMessage as duplicate:
            if self._forks.same_header(channel.channel_id, duplicate.position) is False:
                # Authentic, at a position already used, but sealed a second time: the
                # sender's state was copied and both copies sent.
                self._record_fork(channel, ForkReason.REPLAY, 0, "", report)
            else:
                report.duplicates += 1  # a copy (or from before positions were kept)
            return None
        except (DecryptionFailed, RemoteProtocolError):
            # Tampered, forged or foreign: counted and reported, never shown.
            channel.rejected += 1
            self._save_channel(channel)
            report.rejected += 1
            return None
        self._keep_session(channel, session)
        channel.last_heard_ms = self._clock()
        self._forks.remember_position(channel.channel_id, opened.position)
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
        if message.kind == KIND_MOVE:
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
        """Send to the counterpart's new mailboxes from now on, queued envelopes included.

        Either side may move: the inviter once, from the invite's mailboxes to the
        channel's; either, later, to a fresh mailbox on a relay that lost the old one. Only
        the links the move names change, and a relay lost for sending is back.
        """
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
            self._set_lost(channel.channel_id, address.url, outbound=False)
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

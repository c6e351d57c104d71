"""The exchange with the relays: one-shot `sync`, long-running `watch`, and what both do
per relay (drain and ack mailboxes, re-provision lost ones, retire invite mailboxes).

Each relay is served on its own and concurrently (design §5): a relay that is down, silent
or slow delays no other. Nothing is acked before what it carried is committed
(`Receiver.process`), and nothing leaves the outbox before a relay stored it (`Sender`),
so stopping at any await is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Final

from backchannel.client.duties import Duties
from backchannel.client.invite import KIND_MOVE, Move, RelayAddress
from backchannel.client.receiving import Deferred, Receiver
from backchannel.client.records import ChannelRecord, Mailbox
from backchannel.client.relays import RelayPool
from backchannel.client.reports import InboxEntry, SyncReport
from backchannel.client.sending import Sender
from backchannel.client.slots import SlotSender
from backchannel.client.state.shared import ClientState
from backchannel.client.transport import (
    MailboxCaps,
    RelayClient,
    RelayClosed,
    RelayRequestError,
)
from backchannel.protocol.relayframes import Delivery, ErrorCode

__all__ = [
    "DEFAULT_HEAL_AFTER_S",
    "DUTY_INTERVAL",
    "HEAL_AFTER_SETTING",
    "RECONNECT_DELAY",
    "SYNC_DEADLINE",
    "Exchange",
    "heal_after_ms",
]

_FETCH_BATCH: Final = 100
# Turns of the event loop a batch of arrivals waits for more, when none is waiting: what
# the readers' connections already hold comes in meanwhile (each delivery takes a reader
# about two turns), and nothing waits on the network.
_GATHER_TURNS: Final = 3
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
# Seconds between looks, on a live connection, for inbound mailboxes new since (a
# re-provisioned one, a new channel's) to subscribe to.
_SUBSCRIBE_EVERY: Final = 1.0
# Seconds `watch`, when stopped, lets work in hand (a send, an ack) finish.
_STOP_GRACE: Final = 1.0
# How long `watch` waits for arrivals before it looks at the outbox and the relays again.
_WATCH_TICK: Final = 0.2
# Seconds between `watch`'s rounds of duties: line tests and escalations need no finer
# grain than a second.
DUTY_INTERVAL: Final = 1.0
# Seconds between `watch`'s records of relay reachability when nothing changes.
_HEALTH_EVERY: Final = 60.0
# Seconds before `watch` tries a relay that went down again.
RECONNECT_DELAY: Final = 2.0

# Seconds every relay holding our mailboxes of a channel must have been unreachable
# before we take one on a relay of the counterpart's share (`Exchange._stranded`); the
# setting takes a number of seconds, or "never" (the channel then waits for its relays).
HEAL_AFTER_SETTING: Final = "relay-heal-after-s"
DEFAULT_HEAL_AFTER_S: Final = 300


def heal_after_ms(setting: str) -> int | None:
    """The wait in ms from the setting's text (None: never; unreadable: the default)."""
    text = setting.strip().lower()
    if text == "never":
        return None
    try:
        seconds = int(text) if text else DEFAULT_HEAL_AFTER_S
    except ValueError:
        seconds = DEFAULT_HEAL_AFTER_S
    return max(0, seconds) * 1000


Arrivals = asyncio.Queue[tuple[str, bytes, Delivery]]


class Exchange:
    """Syncs and watches: the relays' side of sending, receiving and duties."""

    def __init__(
        self, state: ClientState, sender: Sender, receiver: Receiver, duties: Duties
    ) -> None:
        self._state = state
        self._sender = sender
        self._receiver = receiver
        self._duties = duties

    def __repr__(self) -> str:
        return f"Exchange({self._state!r})"

    def _record_health(self, up: list[str], down: dict[str, str]) -> None:
        with self._state.store.transaction():
            self._state.relays.record_health(up, down, self._state.clock())

    async def sync(self, *, deadline: float = SYNC_DEADLINE) -> SyncReport:
        """See `Principal.sync`."""
        state = self._state
        report = SyncReport()
        pool = state.pool()
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + deadline
        try:
            self._receiver.expire_digests()

            async def exchange(url: str) -> None:
                sent = await self._sender.flush_relay(pool, url)  # then add: relays run at once
                report.sent += sent
                await self._drain_relay(pool, url, report)

            # Most of the time for sending and receiving; the rest for the answers (receipts,
            # a move) that what arrived calls for.
            await self._each_relay(
                pool, state.all_relays(), exchange, start + deadline * _EXCHANGE_SHARE
            )
            with state.store.transaction():
                self._receiver.queue_receipts()
            self._duties.perform_into(report)

            async def reprovision(url: str) -> None:
                await self._reprovision(pool, url, report)

            async def send(url: str) -> None:
                sent = await self._sender.flush_relay(pool, url)  # then add: relays run at once
                report.sent += sent

            await self._each_relay(pool, state.all_relays(), reprovision, end)
            await self._each_relay(pool, state.outbox.relays(), send, end)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can drop a
            # cancellation that comes in the same turn as the result (`transport`).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(end):
                    await self._retire_mailboxes(pool, report)
            await self._duties.settle()
            report.routes = dict(self._sender.route_status)
            report.relays_down = dict(pool.failures)
            report.relays_up = sorted(set(state.all_relays()) - set(pool.failures))
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
        async def bounded(url: str) -> None:
            try:
                async with asyncio.timeout_at(until):  # not wait_for: see `sync`
                    await work(url)
            except TimeoutError:
                await pool.mark_down(url, "did not finish within the sync's deadline")

        results = await asyncio.gather(*(bounded(url) for url in urls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # a bug or a damaged state, not a relay's doing

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_message: Callable[[InboxEntry], None] | None = None,
        reconnect_after: float = RECONNECT_DELAY,
        duty_interval: float = DUTY_INTERVAL,
    ) -> SyncReport:
        """See `Principal.watch`."""
        state = self._state
        report = SyncReport()
        pool = self._sender.live = state.pool()
        arrivals: Arrivals = asyncio.Queue()
        # One reader per inbound mailbox, each on its own connection (`RelayPool` lanes).
        readers: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Background work by name, one task per name at a time: sends and re-provisioning
        # per relay, retiring mailboxes, fetching deferred envelopes; and acks.
        chores: dict[str, asyncio.Task[None]] = {}
        acks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        next_duties = 0.0
        retried_deferred = 0
        last_health: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        next_health = 0.0
        next_readers = 0.0

        def chore(name: str, work: Callable[[], Coroutine[object, object, None]]) -> bool:
            """Start `work` unless the chore of that name is still busy; says whether."""
            task = chores.get(name)
            if task is not None and not task.done():
                return False
            error = task.exception() if task is not None else None
            if error is not None:
                raise error  # a bug or a damaged state, not a relay's doing
            chores[name] = asyncio.create_task(work())
            return True

        async def send(url: str) -> None:
            sent = await self._sender.flush_relay(pool, url)  # then add: relays run at once
            report.sent += sent

        async def reprovision(url: str) -> None:
            await self._reprovision(pool, url, report)

        async def retire() -> None:
            await self._retire_mailboxes(pool, report)

        async def deferred() -> None:
            await self._drain_all(pool, report)

        # Each direction of each established channel sends in its slots (`client.slots`).
        slots = SlotSender(state, self._sender, pool, report)
        chores["slots"] = slots.start(stop)
        try:
            self._receiver.expire_digests()
            while not stop.is_set():
                relays = state.all_relays()
                if loop.time() >= next_readers:
                    self._start_readers(pool, relays, readers, arrivals, reconnect_after)
                    next_readers = loop.time() + _SUBSCRIBE_EVERY
                await self._take_arrivals(arrivals, pool, report, on_message, acks)
                if self._receiver.owes_receipts():
                    with state.store.transaction():
                        self._receiver.queue_receipts()
                if loop.time() >= next_duties:
                    self._duties.perform_into(report)
                    chore("retire", retire)
                    for url in relays:
                        chore(f"reprovision {url}", functools.partial(reprovision, url))
                    if report.deferred > retried_deferred and chore("deferred", deferred):
                        # Deferred envelopes are not pushed again on a live subscription:
                        # fetch them (with whatever filled their gap since). Counted only
                        # when the fetch starts: one deferred while the last fetch was
                        # still running waits for the next round, not for ever.
                        retried_deferred = report.deferred
                    next_duties = loop.time() + duty_interval
                    up = sorted(u for u in relays if pool.connected(u))
                    health = (tuple(up), tuple(sorted(pool.failures)))
                    if health != last_health or loop.time() >= next_health:
                        # Written when it changes, and once a minute to keep "last
                        # reached" honest; not on every tick (each write is an fsync).
                        self._record_health(up, dict(pool.failures))
                        if loop.time() >= next_health:
                            self._receiver.expire_digests()
                        last_health, next_health = health, loop.time() + _HEALTH_EVERY
                for url in state.outbox.relays():
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
            self._sender.live = None
            await self._duties.settle()
            report.routes = dict(self._sender.route_status)
            report.relays_down = dict(pool.failures)
            await pool.close()
        return report

    def _start_readers(
        self,
        pool: RelayPool,
        relays: list[str],
        readers: dict[tuple[str, str], asyncio.Task[None]],
        arrivals: Arrivals,
        first_delay: float,
    ) -> None:
        """A reader for every inbound mailbox that has none (new ones as they appear: a
        re-provisioned mailbox, a new channel's, an invite's); the reader of a mailbox no
        longer ours (retired, replaced) is stopped."""
        wanted = {
            (url, mailbox.mailbox_id): (owner, mailbox)
            for url in relays
            for owner, mailbox in self._state.inbound_owners(url)
        }
        for key, task in list(readers.items()):
            if task.done():
                if not task.cancelled():
                    task.result()  # a reader ends by itself only by a bug: let it be seen
                del readers[key]
            elif key not in wanted and not task.cancelling():
                task.cancel()  # it closes its connection, and is forgotten once done
        for key, (owner, mailbox) in wanted.items():
            if key not in readers:
                readers[key] = asyncio.create_task(
                    self._listen(pool, key[0], owner, mailbox, arrivals, first_delay)
                )

    async def _listen(
        self,
        pool: RelayPool,
        url: str,
        owner: str | None,
        mailbox: Mailbox,
        arrivals: Arrivals,
        first_delay: float,
    ) -> None:
        """One inbound mailbox's part of `watch`, over a connection of its own, until
        cancelled (the mailbox is no longer ours, or the watch ends): connect (again, with
        backoff, when it drops), subscribe, and pass on what the relay delivers."""
        loop = asyncio.get_running_loop()
        mailbox_id = bytes.fromhex(mailbox.mailbox_id)
        while True:
            client = None
            if pool.retry_due(url, loop.time(), first_delay):
                client = await pool.get(url, mailbox.mailbox_id)
            if client is None:
                await asyncio.sleep(_WATCH_TICK)
                continue
            try:
                subscribed = False
                while True:
                    if not subscribed:
                        try:
                            await client.subscribe(
                                mailbox_id, bytes.fromhex(mailbox.receive_token)
                            )
                            subscribed = True
                        except RelayRequestError as error:
                            if error.code == ErrorCode.UNAUTHORIZED:
                                # Not asked again: the mailbox is gone there. A fresh one
                                # (`_reprovision`) gets a reader of its own, and this one
                                # is stopped.
                                subscribed = True
                                if owner is not None:
                                    self._inbound_refused(owner, url, mailbox.mailbox_id)
                            # rate limited, too many: tried again on the next round
                    pool.reached(url)
                    until = loop.time() + _SUBSCRIBE_EVERY
                    while (left := until - loop.time()) > 0:
                        try:
                            got, delivery = await client.receive(left)
                        except TimeoutError:
                            break
                        arrivals.put_nowait((url, got, delivery))
            except RelayClosed as error:
                await pool.mark_down(url, str(error))
            except asyncio.CancelledError:
                await pool.release(url, mailbox.mailbox_id)
                raise

    async def _take_arrivals(
        self,
        arrivals: Arrivals,
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
            # Not wait_for, which on Python 3.11 can lose a cancellation (`transport`).
            async with asyncio.timeout(_WATCH_TICK):
                first = await arrivals.get()
        except TimeoutError:
            return
        batch = [first]
        while len(batch) < _FETCH_BATCH:
            if arrivals.empty():
                # Each reader hands over one delivery per turn of the loop: give them a
                # few turns, so that a burst is stored in one commit, not one each.
                for _ in range(_GATHER_TURNS):
                    await asyncio.sleep(0)
                if arrivals.empty():
                    break
            batch.append(arrivals.get_nowait())
        acks: dict[tuple[str, bytes], list[int]] = {}
        arrived = []
        # Each channel written once for the batch (`ChannelRepository.saved_once`).
        with self._state.store.transaction(), self._state.channels.saved_once():
            for url, mailbox_id, delivery in batch:
                try:
                    entry = self._receiver.process(mailbox_id, delivery.envelope, report)
                except Deferred:
                    continue  # not acked: delivered again when the relay connection renews
                acks.setdefault((url, mailbox_id), []).append(delivery.seq)
                if entry is not None:
                    arrived.append(entry)
            if arrived and self._receiver.owes_receipts():
                # In the same commit as the notes they answer (one fsync, not two): if it
                # fails, the notes roll back too and, not acked, are delivered again.
                self._receiver.queue_receipts()
        if on_message is not None:
            for entry in arrived:
                on_message(entry)

        async def ack(url: str, mailbox_id: bytes, seqs: list[int]) -> None:
            client = await pool.get(url, mailbox_id.hex())  # the lane it was delivered on
            mailbox = next(
                (
                    m
                    for _, m in self._state.inbound_owners(url)
                    if m.mailbox_id == mailbox_id.hex()
                ),
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
            # Each channel written once for the batch (`ChannelRepository.saved_once`).
            with self._state.store.transaction(), self._state.channels.saved_once():
                for delivery in deliveries:
                    after = max(after, delivery.seq)
                    try:
                        self._receiver.process(mailbox_id, delivery.envelope, report)
                    except Deferred:
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
        await self._each_relay(
            pool, self._state.all_relays(), drain, loop.time() + SYNC_DEADLINE
        )

    async def _drain_relay(self, pool: RelayPool, url: str, report: SyncReport) -> None:
        """Drain the inbound mailboxes on one relay. A mailbox it no longer knows marks the
        relay lost for that channel; a mailbox refused for another reason waits for the
        next pass; a failed connection marks the relay down. Each mailbox is drained over
        its own connection, all at once."""
        if url in pool.failures:
            return

        async def drain(owner: str | None, mailbox: Mailbox) -> None:
            client = await pool.get(url, mailbox.mailbox_id)
            if client is None:
                return
            try:
                await self._drain(client, mailbox, report)
            except RelayRequestError as error:
                if error.code == ErrorCode.UNAUTHORIZED and owner is not None:
                    self._inbound_refused(owner, url, mailbox.mailbox_id)
            except RelayClosed as error:
                await pool.mark_down(url, str(error))
            except asyncio.CancelledError:
                await pool.release(url, mailbox.mailbox_id)
                raise

        results = await asyncio.gather(
            *(drain(owner, mailbox) for owner, mailbox in self._state.inbound_owners(url)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result  # a bug or a damaged state, not a relay's doing
        if url not in pool.failures:
            pool.reached(url)

    def _inbound_refused(self, channel_id: str, url: str, mailbox_id: str) -> None:
        """The relay at `url` does not know our inbound mailbox there: lost for this
        channel, until `_reprovision` makes a new one (one transaction)."""
        state = self._state
        with state.store.transaction():
            channel = state.channels.get(channel_id)
            link = next((lk for lk in channel.links if lk.url == url), None)
            if link is not None and link.inbound and link.inbound.mailbox_id == mailbox_id:
                state.relays.set_lost(channel_id, url, state.clock(), inbound=True)

    def _stranded(self, channel: ChannelRecord, pool: RelayPool, url: str) -> bool:
        """True when `url` is a relay of the channel without our mailbox and every relay
        that has one is down in this pass, and has been for `HEAL_AFTER_SETTING` (by the
        passes before): the counterpart cannot reach us, so we take a mailbox on `url`,
        which then holds both directions of the channel (the price of delivery; waiting
        first makes a relay that is only restarting cost nothing; docs/threat-model.md)."""
        state = self._state
        ours = [lk.url for lk in channel.links if lk.inbound is not None]
        here = next((lk for lk in channel.links if lk.url == url), None)
        if (
            here is None
            or here.inbound is not None
            or here.outbound is None
            or not ours
            or not all(u in pool.failures for u in ours)
        ):
            return False
        wait_ms = heal_after_ms(state.settings.get(HEAL_AFTER_SETTING))
        if wait_ms is None:
            return False
        now = state.clock()
        since = [state.relays.down_since(u) for u in ours]
        return wait_ms == 0 or all(s is not None and now - s >= wait_ms for s in since)

    async def _reprovision(self, pool: RelayPool, url: str, report: SyncReport) -> None:
        """For each channel whose inbound mailbox on `url` is lost, or which has none on
        `url` while every relay that holds one is down (`_stranded`): create a fresh one
        there and tell the counterpart with a *move* naming it (sent over every relay of
        the channel, so over the healthy ones too). The counterpart follows the move; once
        its own mailbox there is back as well, the relay carries the channel again."""
        state = self._state
        if url in pool.failures:
            return
        lost = [
            c
            for c in state.channels.all()
            if state.relays.lost(c.channel_id, url)[0] or self._stranded(c, pool, url)
        ]
        if not lost:
            return
        for channel in lost:
            if channel.identity_changed and not channel.verified:
                continue  # nothing is sent until the changed key has been looked at
            if not state.session(channel).can_send:
                continue
            caps = MailboxCaps(state.rng(16), state.rng(32), state.rng(32))
            client = await pool.get(url, caps.mailbox_id.hex())  # the new mailbox's lane
            if client is None:
                return
            try:
                await client.create_mailbox(caps)
            except RelayRequestError:
                continue  # rate limited or unavailable: the next pass tries again
            except RelayClosed as error:
                await pool.mark_down(url, str(error))
                return
            # A mailbox made here but not recorded (a crash, a change meanwhile) is empty
            # and unknown to anyone; the relay deletes it after its idle TTL.
            with state.store.transaction():
                fresh = state.channels.get(channel.channel_id)
                link = next((lk for lk in fresh.links if lk.url == url), None)
                if link is None or not (
                    state.relays.lost(fresh.channel_id, url)[0]
                    or self._stranded(fresh, pool, url)
                ):
                    continue
                session = state.session(fresh)
                link.inbound = Mailbox(
                    caps.mailbox_id.hex(), caps.send_token.hex(), caps.receive_token.hex()
                )
                move = Move((RelayAddress(url, caps.mailbox_id, caps.send_token),))
                self._sender.enqueue(fresh, session, KIND_MOVE, move.encode())
                state.relays.set_lost(fresh.channel_id, url, state.clock(), inbound=False)
            report.reprovisioned.append(f"{fresh.name} {url}")

    async def _retire_mailboxes(self, pool: RelayPool, report: SyncReport) -> None:
        """Drain and delete the invite mailboxes of channels whose joiner has moved on.

        A relay that answers UNAUTHORIZED for one (it lost its disk, or expired the
        mailbox) no longer has it: there is nothing left to drain or delete, so it is
        retired too, not asked again on every sync.
        """
        state = self._state
        for channel in state.channels.all():
            if not (channel.retiring and channel.peer_moved):
                continue
            kept = []
            for link in channel.retiring:
                mailbox = link.inbound
                if mailbox is None:
                    continue  # never stored so (`records.load` refuses it)
                client = await pool.get(link.url, mailbox.mailbox_id)
                if client is None:
                    kept.append(link)
                    continue
                mailbox_id = bytes.fromhex(mailbox.mailbox_id)
                token = bytes.fromhex(mailbox.receive_token)
                try:
                    await self._drain(client, mailbox, report)
                    await client.delete(mailbox_id, token)
                except RelayRequestError as error:
                    if error.code != ErrorCode.UNAUTHORIZED:
                        kept.append(link)
                except RelayClosed:
                    kept.append(link)
            still_retiring = {link.inbound.mailbox_id for link in kept if link.inbound}
            with state.store.transaction():
                # Read again inside the write: the channel moved on while we were away.
                fresh = state.channels.get(channel.channel_id)
                fresh.retiring = [
                    link
                    for link in fresh.retiring
                    if link.inbound and link.inbound.mailbox_id in still_retiring
                ]
                state.channels.save(fresh)

"""Constant-rate slots and cover traffic (design §10, issue 14 §3).

While a watch or the agent runs, each *direction* of each established channel (our writes
to the counterpart's mailbox on one relay) sends exactly one envelope per slot, at fixed
times: every `interval` seconds from a random phase of its own. What goes out in a slot:

- the oldest queued envelope of that direction (a FLASH note first, if one is queued:
  it takes the next slot), whatever it is (a note, a receipt, a line test, a move, a
  dialogue act; post-quantum chunks ride in the padding of every one of them);
- or, when nothing is queued, *cover*: a real message of kind `KIND_COVER` with an empty
  body, sealed by the channel's ratchet like any other, so it fills the same bucket and
  only the recipient, after decrypting it, can tell. The recipient drops it without
  storing it anywhere (no history, no receipt, no digest) and acks it at the relay like
  any envelope, so mailboxes do not fill.

A slot's envelope leaves `SEND_LAG` seconds after the slot begins, whatever it carries, so
the time spent choosing (a claim of a queued row, or a seal) does not show in the time of
the send. Nothing decides *when* to send from what arrived: a receipt waits in the
outbox for its direction's next slot, whose time was fixed before the note came.

Route: each slot's envelope goes as the flush's would (`client.slotroutes`): through a
forwarding relay with the destination's key (its connection opened at the send time), or
directly where the settings allow; with forwarding required and no forwarding relay fit,
the slot sends nothing, not even cover, and the routing line says why.

Size policy: every slot envelope that fits the smallest bucket (`SLOT_BUCKET`, 1,024
bytes: a note of up to about 900 bytes, every receipt, line test and move) is exactly
that size, as cover is. A longer note (a 4, 16 or 64 KiB envelope) crosses in pieces,
one per slot (`client.fragments`): 6, 22 or 86 slots; a FLASH note that fits one slot goes
ahead of a split's remaining pieces, other rows wait behind it.

Failures: a direction whose slot loop fails (a damaged record, a bug) is restarted after
a delay (`_RESTART_FIRST`, doubling to `_RESTART_MAX`) with the failure logged (logger
``backchannel.client.slots``) and in the watch's report (`SyncReport.slot_events`). The
slotted channels stay slotted meanwhile: their envelopes wait for the restarted slots and
never leave directly (the timing protection does not silently vanish); only turning slots
off (`slots CHANNEL --every off`) sends them at once.

Refusals: a queued row a relay refuses for good (its mailbox is full: QUOTA_EXCEEDED; the
relay is full: STORE_FULL) stays queued and is held back from the slots for two intervals,
doubling with each refusal, at most `_MAX_HOLD` seconds; the slots carry cover (or other
rows) meanwhile, and the row goes in the first slot after its hold once the relay takes it.
A cover the relay refused is sent again, the same bytes, in the next slots until one is
stored: a mailbox full for hours does not burn the ratchet's message keys (a receiver skips
at most `ratchet.MAX_SKIP` of them). When that cover is stored at last, the mailbox has
room again, and the held rows of that direction go in the next slots (before more cover
fills the room).

Cover is not part of the sender's history (protocol.md §8): it carries the sequence number
of the next real message and does not advance the hash chain, so the counterpart's
history has no gap where cover was, and a cover lost on the way costs nothing but the one
message key the ratchet skips.

A channel's interval is a setting (`interval_key`), else the principal's default
(`DEFAULT_KEY`), else the environment's (`SLOTS_ENV`), else `DEFAULT_SLOT_INTERVAL`;
"off" sends that channel's envelopes as soon as they are queued, as `sync` always does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from dataclasses import dataclass
from typing import Final

from backchannel.client import fragments
from backchannel.client.errors import ChannelNotFound, IdentityChanged
from backchannel.client.fragments import KIND_FRAGMENT
from backchannel.client.relays import RelayPool
from backchannel.client.reports import SyncReport
from backchannel.client.routing import Route
from backchannel.client.sending import Sender
from backchannel.client.slotpolicy import (
    KIND_COVER,
    SEND_LAG,
    SLOT_BUCKET,
    slot_interval_or_default,
)
from backchannel.client.slotroutes import NotDelivered, SlotRoutes
from backchannel.client.state.outbox import OutboxRow
from backchannel.client.state.shared import ClientState
from backchannel.client.transport import RelayClient, RelayRequestError
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.relayframes import ErrorCode

__all__ = ["SlotSender"]

log = logging.getLogger("backchannel.client.slots")

# Seconds between looks at which directions exist (a new channel, a move, a setting).
_SUPERVISE_EVERY: Final = 1.0
# A direction whose loop failed is restarted after this many seconds, doubling to the most
# (reset by a slot that completes): a failure that repeats costs a log line a minute.
_RESTART_FIRST: Final = 0.5
_RESTART_MAX: Final = 60.0
# The longest a row refused for good waits between offers: ten minutes, so a mailbox
# that frees (its owner fetched) carries the row within that; until then the slots carry
# cover, and the relay sees one send per slot whatever it refuses.
_MAX_HOLD: Final = 600.0
# Answers after which a row is offered again in the next slot (as a flush does).
_RETRYABLE: Final = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})
# Event lines kept (the report's list is bounded too): the newest.
_MAX_EVENTS: Final = 100


@dataclass(frozen=True, slots=True)
class _Direction:
    channel_id: str
    url: str
    interval: float


@dataclass(frozen=True, slots=True)
class _Way:
    """How one slot's envelope goes: its route (`client.slotroutes`), the direct lane when
    not forwarded, and the deposit's mailbox and send token."""

    route: Route
    client: RelayClient | None
    mailbox: str
    token: bytes


@dataclass(slots=True)
class _Split:
    """A large row going out in pieces, one per slot (`client.fragments`)."""

    row: OutboxRow
    pieces: list[fragments.Piece]
    sent: int = 0  # pieces the relay stored
    spare: bytes | None = None  # the sealed piece the relay refused: sent again


@dataclass(slots=True)
class _Hold:
    until: float  # loop time before which the row is not offered
    refusals: int
    direction: _Direction


class SlotSender:
    """Sends every direction's slots while a watch runs (see the module docstring).

    The watch's own flushes, and those of the agent's request handles, leave the slotted
    channels' rows alone (`Sender.slotted`).
    """

    def __init__(
        self, state: ClientState, sender: Sender, pool: RelayPool, report: SyncReport
    ) -> None:
        self._state = state
        self._sender = sender
        self._pool = pool
        self._report = report
        self._routes = SlotRoutes(sender, pool)
        self._tasks: dict[_Direction, asyncio.Task[None]] = {}
        self._random = random.SystemRandom()
        self.slots_sent = 0  # envelopes sent in slots (queued ones and cover)
        self.cover_sent = 0
        self.restarts = 0  # directions restarted after a failure
        self.events: list[str] = []  # the newest `_MAX_EVENTS` event lines
        # Rows held back after a refusal for good, by row id.
        self._held: dict[int, _Hold] = {}
        # A cover each direction sealed that a relay refused: sent again until stored.
        self._spare_cover: dict[_Direction, bytes] = {}
        # The large row each direction is sending in pieces.
        self._splits: dict[_Direction, _Split] = {}
        self.pieces_sent = 0
        # Each failed direction's next restart delay (`_RESTART_FIRST` doubling).
        self._restart_delay: dict[_Direction, float] = {}

    def __repr__(self) -> str:
        return f"SlotSender({len(self._tasks)} directions)"

    def directions(self) -> tuple[list[_Direction], set[str]]:
        """Every direction that sends in slots now, and the channels whose envelopes wait
        for slots. A channel not yet established (no message heard) is paired as before:
        its envelopes leave when queued."""
        state = self._state
        found, slotted = [], set()
        for channel in state.channels.all():
            if channel.last_heard_ms == 0:
                continue
            interval = slot_interval_or_default(state.settings.get, channel.channel_id)
            if interval is None:
                continue
            slotted.add(channel.channel_id)
            for link in channel.links:
                if link.outbound is not None and not state.relays.lost(
                    channel.channel_id, link.url
                )[1]:
                    found.append(_Direction(channel.channel_id, link.url, interval))
        return found, slotted

    def start(self, stop: asyncio.Event) -> asyncio.Task[None]:
        """Mark the slotted channels at once (so that no flush sends their rows before the
        first slot), then `run` in a task."""
        wanted, slotted = self.directions()
        self._sender.slotted.ids = frozenset(slotted)
        for direction in wanted:
            self._note_holds(direction)  # none held yet: an earlier watch's holds are over
        return asyncio.create_task(self.run(stop))

    def event(self, line: str) -> None:
        """Report one event: logged, kept in `events`, and in the watch's report."""
        log.warning("%s", line)
        for lines in (self.events, self._report.slot_events):
            lines.append(line)
            del lines[:-_MAX_EVENTS]

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one task per direction until `stop` is set (or cancelled); a direction
        that fails is restarted after its delay, and the slotted channels stay slotted
        meanwhile."""
        loop = asyncio.get_running_loop()
        restart_at: dict[_Direction, float] = {}
        try:
            while not stop.is_set():
                try:
                    self._supervise(restart_at, loop.time())
                except Exception as error:  # reported, then tried again
                    # The channels stay as slotted as they were: never fewer by a failure.
                    self.event(f"slots: could not look at the channels ({_why(error)}); "
                               f"the slots go on as they were")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _SUPERVISE_EVERY)
        finally:
            self._sender.slotted.ids = frozenset()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()

    def _supervise(self, restart_at: dict[_Direction, float], now: float) -> None:
        """One look: a task for each direction wanted now; failed ones restarted once
        their delay has passed, unwanted ones stopped."""
        wanted, slotted = self.directions()
        self._sender.slotted.ids = frozenset(slotted)
        for direction, task in list(self._tasks.items()):
            if task.done():
                del self._tasks[direction]
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    restart_at[direction] = now + self._failed(direction, failure)
            elif direction not in wanted:
                task.cancel()
        for direction in wanted:
            if direction not in self._tasks and restart_at.get(direction, 0.0) <= now:
                if restart_at.pop(direction, None) is not None:
                    self.restarts += 1
                self._tasks[direction] = asyncio.create_task(self._direction(direction))

    def _failed(self, direction: _Direction, error: BaseException) -> float:
        """Report a direction's failure; returns the delay before its restart."""
        delay = self._restart_delay.get(direction, _RESTART_FIRST)
        self._restart_delay[direction] = min(delay * 2, _RESTART_MAX)
        try:
            name = self._state.channels.get(direction.channel_id).name
        except Exception:  # the event is still told, by id
            name = direction.channel_id
        log.debug("slot loop failed", exc_info=error)
        self.event(f"slots: the slots of '{name}' to {direction.url} failed "
                   f"({_why(error)}); restarted in {delay:g} s, and its messages wait "
                   f"for them (none leaves outside a slot)")
        self._state.slot_status.note_failure(direction.channel_id, direction.url,
                                             self.events[-1], self._state.clock())
        return delay

    def _note_holds(self, direction: _Direction) -> None:
        """Keep the direction's held rows in the state, for `status` (`state.slotstatus`)."""
        now = asyncio.get_running_loop().time()
        ends = [hold.until for hold in self._held.values() if hold.direction == direction]
        until_ms = self._state.clock() + int(1000 * max(0.0, max(ends, default=now) - now))
        self._state.slot_status.note_holds(direction.channel_id, direction.url, len(ends),
                                           until_ms)

    async def _direction(self, direction: _Direction) -> None:
        """One direction's slots: at phase + k * interval, one envelope each. Ends by
        itself when its channel is gone; a failure ends it for `run` to restart."""
        loop = asyncio.get_running_loop()
        lag = min(SEND_LAG, direction.interval / 4)
        start = loop.time() + self._random.uniform(0.0, direction.interval)
        k = 0
        while True:
            slot = start + k * direction.interval
            # Before the slot begins (at most once in minutes, inside): a relay known by
            # its pin alone has its key fetched, so that its slots can be forwarded.
            await self._sender.fetch_pinned_key(direction.url)
            await asyncio.sleep(max(0.0, slot - loop.time()))
            try:
                await self._one_slot(direction, slot + lag)
            except ChannelNotFound:
                return  # removed while the watch runs: `run` forgets the direction
            self._restart_delay.pop(direction, None)  # a slot went through
            # A slot missed (the relay was down, the loop busy) is skipped, not made up
            # for by a burst: the next is the first still ahead.
            k = max(k + 1, math.ceil((loop.time() - start) / direction.interval))

    async def _one_slot(self, direction: _Direction, send_at: float) -> None:
        state, pool, url = self._state, self._pool, direction.url
        channel = state.channels.get(direction.channel_id)
        link = next((lk for lk in channel.links if lk.url == url), None)
        if link is None or link.outbound is None:
            return
        mailbox, token = link.outbound.mailbox_id, bytes.fromhex(link.outbound.send_token)
        route = self._routes.plan(url)
        if not route.send:
            return  # forwarding is required and impossible: nothing at all leaves
        client = None
        if route.forwarder is None:
            client = await pool.get(url, mailbox)  # the lane of the counterpart's mailbox
        if url in pool.failures or (route.forwarder is None and client is None):
            return  # down: the slot is skipped (the relay sees nothing either way)
        split = self._splits.get(direction)
        if split is not None and (split.row.mailbox_id.hex() != mailbox
                                  or not state.outbox.queued_row(split.row.row_id)):
            # Readdressed by a move, or gone (the relay lost the mailbox): given up.
            del self._splits[direction]
            split = None
        now = asyncio.get_running_loop().time()
        held = {row_id for row_id, hold in self._held.items() if hold.until > now}
        if split is not None:
            held.add(split.row.row_id)
        row = self._sender.claim_for_slot(url, direction.channel_id, token.hex(), held)
        try:
            if row is not None and row.mailbox_id.hex() != mailbox:
                # Queued before a move readdressed the link, and not readdressed yet: left
                # for a later slot (or the flush that follows the move).
                self._sender.release_slot(row)
                row = None
            if row is not None and split is not None and not (
                    self._sender.is_flash(row) and len(row.envelope) <= SLOT_BUCKET):
                # A split goes on, slot after slot; only a FLASH note that fits one slot
                # goes ahead of its remaining pieces.
                self._sender.release_slot(row)
                row = None
            if row is not None and len(row.envelope) > SLOT_BUCKET:
                # Too large for a slot: its pieces go in this slot and the next ones. The
                # split holds it back from other claims (it stays queued until the last
                # piece is stored).
                split = self._splits[direction] = _Split(row, fragments.split(row.envelope))
                self._sender.release_slot(row)
                row = None
            await self._fill(direction, channel.name, _Way(route, client, mailbox, token),
                             row, split, send_at)
        except BaseException:
            if row is not None:
                self._sender.release_slot(row)  # stopped or failed: the row is anyone's again
            raise

    async def _fill(self, direction: _Direction, name: str, way: _Way, row: OutboxRow | None,
                    split: _Split | None, send_at: float) -> None:
        """Send the slot's envelope (the claimed `row`, else the split's next piece, else
        cover) on the slot's route and settle it."""
        loop = asyncio.get_running_loop()
        pool, url, channel_id = self._pool, direction.url, direction.channel_id
        mailbox, token = way.mailbox, way.token
        if row is not None:
            raw: bytes | None = row.envelope
        elif split is not None:
            piece = split.pieces[split.sent]
            raw = split.spare or self._seal(channel_id, mailbox, KIND_FRAGMENT, piece.encode())
        else:
            spare = self._spare_cover.get(direction)
            if spare is not None and Envelope.decode(spare).mailbox_id.hex() != mailbox:
                spare = None  # sealed for a mailbox the channel no longer writes to
            raw = spare if spare is not None else self._seal(channel_id, mailbox, KIND_COVER)
        if raw is None:
            return
        await asyncio.sleep(max(0.0, send_at - loop.time()))
        # Every outcome is handled below (`SlotRoutes.send` says them in the direct terms).
        result = await self._routes.send(way.route, way.client, url, mailbox, token, raw)
        self.slots_sent += 1
        if isinstance(result, NotDelivered):
            self._not_delivered(direction, row, split, raw, result)
            return
        if row is None and split is not None:
            await self._settle_piece(direction, name, split, token, raw, result)
            return
        if row is None:
            self.cover_sent += 1
            if isinstance(result, RelayRequestError):
                # Surely not stored: the same bytes go again, so no message key is spent.
                self._spare_cover[direction] = raw
            else:
                # Stored, or lost with the connection (it may have been stored: never
                # sent twice, which the receiver could not open again).
                refused_before = self._spare_cover.pop(direction, None) is not None
                if isinstance(result, int):
                    pool.reached(url)
                    if refused_before:
                        self._wake(direction)
                else:
                    await pool.mark_down(url, str(result) or type(result).__name__)
            return  # a cover lost costs nothing: nobody waits for it
        await self._settle_row(direction, name, row, token, result)

    async def _settle_row(self, direction: _Direction, name: str, row: OutboxRow,
                          token: bytes, result: int | BaseException) -> None:
        url = direction.url
        await self._sender.settle_slot(self._pool, url, row, token.hex(), result)
        if isinstance(result, int):
            self._report.sent += 1
            hold = self._held.pop(row.row_id, None)
            if hold is not None:
                self._note_holds(direction)
                self.event(f"slots: {url} stored the message it had refused "
                           f"{hold.refusals} time(s) for '{name}'")
        elif isinstance(result, RelayRequestError) and result.code not in _RETRYABLE:
            self._hold(row.row_id, direction, name, result)

    async def _settle_piece(self, direction: _Direction, name: str, split: _Split,
                            token: bytes, raw: bytes, result: int | BaseException) -> None:
        """A piece stored moves the split on (the last settles its row as stored); one
        refused goes again, the same bytes, in the next slot, as cover does; one lost with
        the connection is sealed again (the receiver keeps each piece once)."""
        self.pieces_sent += 1
        if isinstance(result, RelayRequestError):
            split.spare = raw
            return
        split.spare = None
        if not isinstance(result, int):
            await self._pool.mark_down(direction.url, str(result) or type(result).__name__)
            return
        self._pool.reached(direction.url)
        split.sent += 1
        if split.sent == len(split.pieces):
            del self._splits[direction]
            await self._settle_row(direction, name, split.row, token, result)

    def _not_delivered(self, direction: _Direction, row: OutboxRow | None,
                       split: _Split | None, raw: bytes, outcome: NotDelivered) -> None:
        """A forward the destination did not answer: the row waits for a later slot;
        cover and a piece go again, the same bytes, if surely not stored, else are sealed
        afresh (as when a direct connection is lost)."""
        if row is not None:
            self._sender.release_slot(row)
        elif split is not None:
            self.pieces_sent += 1
            split.spare = None if outcome.maybe_stored else raw
        else:
            self.cover_sent += 1
            if outcome.maybe_stored:
                self._spare_cover.pop(direction, None)
            else:
                self._spare_cover[direction] = raw

    def _wake(self, direction: _Direction) -> None:
        """The relay took a cover it had refused: the mailbox has room again, so the rows
        held back there go in the next slots rather than after their holds. (Once per
        refusal of cover, so at most as often as the mailbox's owner makes room.)"""
        now = asyncio.get_running_loop().time()
        for hold in self._held.values():
            if hold.direction == direction:
                hold.until = min(hold.until, now)

    def _hold(self, row_id: int, direction: _Direction, name: str,
              error: RelayRequestError) -> None:
        """Hold a refused row back from the next slots (see the module docstring)."""
        if not self._state.outbox.queued_row(row_id):
            if self._held.pop(row_id, None) is not None:  # dropped (the mailbox is gone)
                self._note_holds(direction)
            return
        old = self._held.get(row_id)
        refusals = 1 if old is None else old.refusals + 1
        wait = min(direction.interval * 2**refusals, max(_MAX_HOLD, direction.interval))
        self._held[row_id] = _Hold(asyncio.get_running_loop().time() + wait, refusals,
                                   direction)
        self._note_holds(direction)
        self.event(f"slots: {direction.url} refused a message for '{name}' ({error}); it "
                   f"stays queued and is offered again in {wait:g} s (refused {refusals} "
                   f"time(s)); cover fills the slots meanwhile")

    def _seal(self, channel_id: str, mailbox: str, kind: int, body: bytes = b"") -> bytes | None:
        """Seal one message outside the history (cover, a piece) for the channel (one
        transaction), or None if the channel may not send now.

        Raises:
            LocalProtocolError: sealed larger than a slot's bucket (a bug: never sent).
        """
        state = self._state
        try:
            with state.store.transaction():
                channel = self._sender.sendable(channel_id)
                session = state.session(channel)
                if not session.can_send:
                    return None
                # Not part of our history: the next real message keeps this seq and chains
                # to the same hash (protocol.md §8).
                seq, last = session.next_seq, session.last_sent_hash
                sealed = session.seal(kind, body, state.clock(), state.rng)
                session.next_seq, session.last_sent_hash = seq, last
                state.keep_session(channel, session)
                state.channels.save(channel)
        except ChannelNotFound:
            raise  # removed: the direction ends
        except (IdentityChanged, LocalProtocolError):
            return None
        raw = Envelope(bytes.fromhex(mailbox), sealed.payload).encode()
        if len(raw) != SLOT_BUCKET:
            raise LocalProtocolError(f"a slot envelope of {len(raw)} bytes")
        return raw

def _why(error: BaseException) -> str:
    """An error in a few words: its type, and its text when it has one."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

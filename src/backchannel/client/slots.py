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

Size policy: every slot envelope that fits the smallest bucket (`SLOT_BUCKET`, 1,024
bytes: a note of up to about 900 bytes, every receipt, line test and move) is exactly
that size, as cover is. A longer note goes in its own larger bucket (protocol.md §6),
which the relay sees in that slot; it is not split across slots.

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
import math
import random
from dataclasses import dataclass
from typing import Final

from backchannel.client.errors import IdentityChanged
from backchannel.client.relays import RelayPool
from backchannel.client.reports import SyncReport
from backchannel.client.sending import Sender
from backchannel.client.slotpolicy import (
    KIND_COVER,
    SEND_LAG,
    slot_interval_or_default,
)
from backchannel.client.state.shared import ClientState
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import LocalProtocolError

__all__ = ["SlotSender"]

# Seconds between looks at which directions exist (a new channel, a move, a setting).
_SUPERVISE_EVERY: Final = 1.0


@dataclass(frozen=True, slots=True)
class _Direction:
    channel_id: str
    url: str
    interval: float


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
        self._tasks: dict[_Direction, asyncio.Task[None]] = {}
        self._random = random.SystemRandom()
        self.slots_sent = 0  # envelopes sent in slots (queued ones and cover)
        self.cover_sent = 0

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
        self._sender.slotted.ids = frozenset(self.directions()[1])
        return asyncio.create_task(self.run(stop))

    async def run(self, stop: asyncio.Event) -> None:
        """Keep one task per direction until `stop` is set (or cancelled)."""
        try:
            while not stop.is_set():
                wanted, slotted = self.directions()
                self._sender.slotted.ids = frozenset(slotted)
                for direction, task in list(self._tasks.items()):
                    if task.done():
                        if not task.cancelled():
                            task.result()  # a direction ends by itself only by a bug
                        del self._tasks[direction]
                    elif direction not in wanted:
                        task.cancel()
                for direction in wanted:
                    if direction not in self._tasks:
                        self._tasks[direction] = asyncio.create_task(self._direction(direction))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _SUPERVISE_EVERY)
        finally:
            self._sender.slotted.ids = frozenset()
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            self._tasks.clear()

    async def _direction(self, direction: _Direction) -> None:
        """One direction's slots: at phase + k * interval, one envelope each."""
        loop = asyncio.get_running_loop()
        lag = min(SEND_LAG, direction.interval / 4)
        start = loop.time() + self._random.uniform(0.0, direction.interval)
        k = 0
        while True:
            slot = start + k * direction.interval
            await asyncio.sleep(max(0.0, slot - loop.time()))
            await self._one_slot(direction, slot + lag)
            # A slot missed (the relay was down, the loop busy) is skipped, not made up
            # for by a burst: the next is the first still ahead.
            k = max(k + 1, math.ceil((loop.time() - start) / direction.interval))

    async def _one_slot(self, direction: _Direction, send_at: float) -> None:
        loop = asyncio.get_running_loop()
        state, pool, url = self._state, self._pool, direction.url
        channel = state.channels.get(direction.channel_id)
        link = next((lk for lk in channel.links if lk.url == url), None)
        if link is None or link.outbound is None:
            return
        mailbox, token = link.outbound.mailbox_id, bytes.fromhex(link.outbound.send_token)
        client = await pool.get(url, mailbox)  # the lane of the counterpart's mailbox
        if client is None:
            return  # down: the slot is skipped (the relay sees nothing either way)
        row = self._sender.claim_for_slot(url, direction.channel_id, token.hex())
        if row is not None and row.mailbox_id.hex() != mailbox:
            # Queued before a move readdressed the link, and not readdressed yet: left
            # for a later slot (or the flush that follows the move).
            self._sender.release_slot(row)
            row = None
        raw = row.envelope if row is not None else self._cover(direction.channel_id, mailbox)
        if raw is None:
            return
        try:
            await asyncio.sleep(max(0.0, send_at - loop.time()))
            result: int | BaseException = await client.send(bytes.fromhex(mailbox), token, raw)
        except asyncio.CancelledError:
            if row is not None:
                self._sender.release_slot(row)  # stopped: the row is anyone's again
            raise
        except Exception as error:
            result = error  # every outcome is handled below
        self.slots_sent += 1
        if row is None:
            self.cover_sent += 1
            if isinstance(result, int):
                pool.reached(url)
            return  # a cover lost costs nothing: nobody waits for it
        await self._sender.settle_slot(pool, url, row, token.hex(), result)
        if isinstance(result, int):
            self._report.sent += 1

    def _cover(self, channel_id: str, mailbox: str) -> bytes | None:
        """Seal one cover message for the channel (one transaction), or None if the
        channel may not send now."""
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
                sealed = session.seal(KIND_COVER, b"", state.clock(), state.rng)
                session.next_seq, session.last_sent_hash = seq, last
                state.keep_session(channel, session)
                state.channels.save(channel)
        except (IdentityChanged, LocalProtocolError):
            return None
        return Envelope(bytes.fromhex(mailbox), sealed.payload).encode()

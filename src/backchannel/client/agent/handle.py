"""The agent's handle on the principal: its requests send over the agent's connections.

Each request runs in a worker thread, on a handle of its own (`Principal.worker`) and
under an event loop of its own. Its `deliver` (what `send`, `ack` and every act do after
queueing) used to flush the outbox over new connections, one per relay and mailbox (a
TCP and WebSocket handshake, and a key fetch on a fresh handle), closed again at the end:
most of a `send`'s time inside the agent. The agent holds a connection to every relay
while it watches (`Principal.watch`'s pool, which its own flushes use), so a worker's
`deliver` runs on the agent's loop and handle instead, over those connections.

Nothing moves but the flush and its report: the worker has queued and committed the
message before (`queue`), so it is as durable as before `deliver` starts, and the answer
says where it is stored exactly as the worker's own flush would. Outside a watch (before
it starts, after it ends) a worker delivers on its own, as any handle does.

A flush leaves the rows another flush has claimed to it, and the watch starts one of its
own (its `send` chore) whenever the outbox holds rows: one that claimed the message first
stores it a moment later, while this `deliver` would already report it queued (exit 6).
So the agent's `deliver` looks again, briefly, while a relay it is queued for is still
connected (not found down): the report waits for the flush in flight, as it would have
waited for its own.

A relay the watch found down is left alone by its flushes until its readers' backoff has
passed (up to a minute): a `send` request tries it once more at once, as a `send` outside
the agent would (a fresh connection), instead of reporting "queued" without asking it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Self

from backchannel.client.engine import Principal
from backchannel.client.exchange import DUTY_INTERVAL, RECONNECT_DELAY
from backchannel.client.reports import InboxEntry, SendResult, SyncReport

__all__ = ["AgentPrincipal"]

# Seconds the agent's `deliver` waits for a flush in flight (another task's) to store the
# message: a relay on loopback or a LAN answers a window in milliseconds, and a second is
# a slow relay's round trip many times over; a relay found down ends the wait at once.
# Longer would only delay the report of rows that wait for another reason (a relay that
# refused them, a forwarding route required and unavailable).
_IN_FLIGHT_WAIT: Final = 1.0
# Seconds before the first look again (well under a relay's round trip), doubling up to
# the last: rows that wait for another reason cost a few flushes, not hundreds.
_IN_FLIGHT_POLL: Final = 0.002
_IN_FLIGHT_POLL_MAX: Final = 0.05


class AgentPrincipal(Principal):
    """A principal opened by an agent (`agent`, or `watch` and `tui` serving as one):
    while it watches, the `deliver` of its workers runs on its loop, over its relay
    connections."""

    # The agent's handle, on a worker (None on the agent's handle itself).
    _owner: AgentPrincipal | None = None
    # The loop of the running watch (None when not watching).
    _watching: asyncio.AbstractEventLoop | None = None

    def worker(self) -> Self:
        clone = super().worker()
        clone._owner = self
        return clone

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_message: Callable[[InboxEntry], None] | None = None,
        reconnect_after: float = RECONNECT_DELAY,
        duty_interval: float = DUTY_INTERVAL,
    ) -> SyncReport:
        self._watching = asyncio.get_running_loop()
        try:
            return await super().watch(stop, on_message=on_message,
                                       reconnect_after=reconnect_after,
                                       duty_interval=duty_interval)
        finally:
            self._watching = None

    async def deliver(self, channel_name: str, message_id: str) -> SendResult:
        """Flush the outbox and report where one queued message now is: on a worker of a
        watching agent, by the agent's handle on its loop (its connections)."""
        owner = self._owner
        loop = None if owner is None else owner._watching
        if owner is None or loop is None:
            if self._watching is asyncio.get_running_loop():
                return await self._deliver_watching(channel_name, message_id)
            return await super().deliver(channel_name, message_id)
        try:
            done = asyncio.run_coroutine_threadsafe(owner.deliver(channel_name, message_id),
                                                    loop)
        except RuntimeError:  # the agent's loop closed meanwhile: no watch to ask
            return await super().deliver(channel_name, message_id)
        try:
            return await asyncio.wrap_future(done)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                done.cancel()
                raise  # this request was stopped
            # The agent's loop stopped its tasks (it is ending): the flush released what
            # it had claimed, so this handle offers it again.
            return await super().deliver(channel_name, message_id)

    async def _deliver_watching(self, channel_name: str, message_id: str) -> SendResult:
        """`deliver` on the agent's loop: after the flush, while the message is not yet
        stored on a relay that is connected, look again (another flush has it)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + _IN_FLIGHT_WAIT
        pause = _IN_FLIGHT_POLL
        result = await super().deliver(channel_name, message_id)
        pool = self._sender.live
        if (not result.stored_on and result.next_slot_s is None and pool is not None
                and [url for url in result.queued_for if pool.retry_now(url)]):
            # A relay the watch counts down (its readers wait out a backoff, up to a
            # minute) is tried now, as a `send` outside the agent would: it may be back.
            result = await super().deliver(channel_name, message_id)
        while (not result.stored_on and result.next_slot_s is None
               and self._connected(result.queued_for) and loop.time() < until):
            await asyncio.sleep(pause)
            pause = min(pause * 2, _IN_FLIGHT_POLL_MAX)
            result = await super().deliver(channel_name, message_id)
        return result

    def _connected(self, urls: tuple[str, ...]) -> bool:
        """Whether the watch's pool holds a connection to one of `urls` now."""
        pool = self._sender.live
        return pool is not None and any(pool.connected(url) for url in urls)

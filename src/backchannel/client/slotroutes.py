"""How each slot's envelope reaches its relay: through a forwarding relay, as the flush
sends (`Sender.flush_relay`, docs/threat-model.md "Private routing"), or directly.

Every slot asks `Sender.route_for` again, so a forwarding relay found down or distrusted
drops out of the choice for the next slot, and one back up comes in again. What a forward
answered is put in the direct path's terms for the slot loop (`client.slots`) to settle:

- the destination's seq, or its sealed refusal (`ForwardRefused`, by the destination: a
  full mailbox holds the row as a direct refusal does), as they are;
- "cannot reach the destination" (`DestinationDown`): the destination is down, as if we
  had failed to reach it;
- our key refused as unknown or retired (`StaleKey`): the destination's signed statement
  settles it (`Sender.settle_stale_key`); a forwarding relay that refused a key the
  statement lists as current is distrusted for `DISTRUST_FOR` seconds, and never the
  reason for a direct send. The slot's envelope was surely not stored: `NotDelivered`;
- the forwarding relay says it carries nothing to the destination (`ForwarderUnfit`):
  it is out of that destination's choice for `sending.UNFIT_FOR_MS`, and the next slot
  goes another way, directly where forwarding is not required. Surely not stored;
- the forwarding relay failed (unreachable, no answer, a forged answer): it is counted
  down, and the envelope may or may not be stored: `NotDelivered(maybe_stored=True)`.
  The row is released for a later slot (receivers deduplicate), not lost.

With forwarding required and no forwarding relay fit, the slot sends nothing, not even
cover: the routing line (`Sender.note_route`) says why in `status`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from backchannel.client.relays import RelayPool
from backchannel.client.routing import (
    DestinationDown,
    ForwarderUnfit,
    ForwardRefused,
    Route,
    StaleKey,
    forward_deposit,
)
from backchannel.client.sending import Sender
from backchannel.client.transport import RelayClient, RelayClosed

__all__ = ["DISTRUST_FOR", "NotDelivered", "SlotRoutes"]

# Seconds a forwarding relay that refused a current key falsely stays out of a
# destination's choice: each false refusal costs a fetch of the destination's statement
# (which shows it our address), so at most one per forwarder in this time; the flush's
# "pass" is one flush, the slots' is this long.
DISTRUST_FOR: Final = 300.0
# Seconds the slots to a destination wait after its statement could not be fetched to
# settle a refusal of its key (nothing shows the refusal true or false meanwhile).
_KEY_WAIT: Final = 30.0
# Seconds before a relay the slots found down is tried again, doubling (`RelayPool`).
_RETRY_FIRST: Final = 1.0


@dataclass(frozen=True, slots=True)
class NotDelivered:
    """A forwarded slot envelope the destination did not answer: surely not stored (the
    same bytes may go again), or perhaps stored (`maybe_stored`: never sent twice)."""

    maybe_stored: bool


class SlotRoutes:
    """The slots' routes, for every direction of one watch."""

    def __init__(self, sender: Sender, pool: RelayPool) -> None:
        self._sender = sender
        self._pool = pool
        # Per destination: forwarding relays distrusted, until (loop time).
        self._distrusted: dict[str, dict[str, float]] = {}
        # Per destination: no slot sends before this (loop time), and why.
        self._waiting: dict[str, tuple[float, str]] = {}

    def __repr__(self) -> str:
        return f"SlotRoutes({len(self._distrusted)} destinations with distrust)"

    def plan(self, url: str) -> Route:
        """The route of this slot's envelope to `url`, noted for `status`. Relays down
        whose backoff has passed are tried again."""
        now = asyncio.get_running_loop().time()
        for down in list(self._pool.failures):
            self._pool.retry_due(down, now, _RETRY_FIRST)
        until, why = self._waiting.get(url, (0.0, ""))
        if until > now:
            route = Route(None, None, False, why)
        else:
            distrusted = {f for f, t in self._distrusted.get(url, {}).items() if t > now}
            route = self._sender.route_for(self._pool, url, distrusted)
        self._sender.note_route(url, route)
        return route

    async def send(self, route: Route, client: RelayClient | None, url: str,
                   mailbox: str, token: bytes, raw: bytes) -> int | BaseException | NotDelivered:
        """Send one slot envelope on `route` (`client`: the direct lane, when direct);
        returns what came of it in the direct path's terms (see the module docstring)."""
        try:
            if route.forwarder is None or route.key is None:
                if client is None:
                    raise RelayClosed(f"no connection to {url}")
                return await client.send(bytes.fromhex(mailbox), token, raw)
            seq = await forward_deposit(route.forwarder, url, route.key,
                                        bytes.fromhex(mailbox), token, raw)
        except StaleKey:
            await self._settle_stale_key(url, route)
            return NotDelivered(maybe_stored=False)
        except ForwarderUnfit:
            # It carried nothing: the next slot goes another way (`Sender.route_for`).
            if route.forwarder is not None:
                self._sender.note_unfit(route.forwarder, url)
            return NotDelivered(maybe_stored=False)
        except Exception as error:
            if route.forwarder is None or _destination_answered(error):
                return error  # every outcome of the direct path is the slot loop's
            await self._pool.mark_down(route.forwarder, str(error) or type(error).__name__)
            return NotDelivered(maybe_stored=True)
        self._pool.reached(route.forwarder)
        return seq

    async def _settle_stale_key(self, url: str, route: Route) -> None:
        distrusted: set[str] = set()
        loop = asyncio.get_running_loop()
        if not await self._sender.settle_stale_key(url, route, distrusted):
            why = self._sender.route_status.get(url, f"not sent to {url} now")
            self._waiting[url] = (loop.time() + _KEY_WAIT, why)
        for forwarder in distrusted:
            self._distrusted.setdefault(url, {})[forwarder] = loop.time() + DISTRUST_FOR


def _destination_answered(error: Exception) -> bool:
    """Whether a forward's failure is the destination's doing (a refusal it sealed, or
    it is unreachable from the forwarding relay), which the direct path settles alike."""
    return isinstance(error, DestinationDown | ForwardRefused)

"""A reader cancelled as a delivery arrives stops (client/transport.py `receive`).

On Python 3.11, `asyncio.wait_for` returns the inner result when a cancellation comes in
the same turn as it, and drops the cancellation: a watch's reader cancelled at its stop
then ran on, and the watch waited for it for ever (`bench/client.py` hung so, now and
then, at the end of a latency run). `receive` waits with `asyncio.timeout` instead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backchannel.client.transport import RelayClient
from backchannel.protocol.relayframes import Delivery

from .conftest import running_relay


async def test_a_receive_cancelled_as_a_delivery_arrives_is_cancelled_and_keeps_it(
    tmp_path: Path,
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay, \
            await RelayClient.connect(relay.url) as client:
        receiving = asyncio.create_task(client.receive(5.0))
        await asyncio.sleep(0)  # it waits for the next delivery
        item = (b"\x01" * 16, Delivery(7, b"envelope"))
        client._deliveries.put_nowait(item)  # what the read loop does
        receiving.cancel()  # in the same turn
        with pytest.raises(asyncio.CancelledError):
            await receiving
        # Not taken by the cancelled wait: the next receive has it.
        assert await client.receive(1.0) == item

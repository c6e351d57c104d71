"""A relay that cuts connections mid-send, for fault tests: a WebSocket proxy on
127.0.0.1 in front of a real relay, which aborts a client's connection (no close frame)
when a SEND or SEND_BATCH arrives while `drop_sends` is above zero, before passing it on;
it keeps a digest of each SEND's envelope it passes on (`sent`), with when it came."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.relayframes import Send, SendBatch, decode_request


@dataclass(slots=True)
class Cutter:
    url: str = ""
    drop_sends: int = 0  # sends still to cut
    dropped: int = 0  # sends cut so far
    sends: int = 0  # sends passed on
    # (monotonic time, mailbox id, SHA-256 of the envelope) of each SEND passed on.
    sent: list[tuple[float, bytes, bytes]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def dropping_relay(upstream: str) -> AsyncIterator[Cutter]:
    """A proxy to the relay at `upstream`; yields its state (its URL in ``url``)."""
    cutter = Cutter()

    async def handler(ws: ServerConnection) -> None:
        async with connect(upstream, compression=None, max_size=None) as up:

            async def back() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for message in up:
                        await ws.send(message)

            pump = asyncio.create_task(back())
            try:
                async for message in ws:
                    assert isinstance(message, bytes)
                    try:
                        request = decode_request(message)
                    except BackchannelError:
                        request = None
                    sending = isinstance(request, Send | SendBatch)
                    if sending and cutter.drop_sends > 0:
                        cutter.drop_sends -= 1
                        cutter.dropped += 1
                        ws.transport.abort()
                        return
                    cutter.sends += sending
                    if isinstance(request, Send):
                        cutter.sent.append((time.monotonic(), request.mailbox_id,
                                            hashlib.sha256(request.envelope).digest()))
                    await up.send(message)
            except ConnectionClosed:
                pass
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        cutter.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        yield cutter

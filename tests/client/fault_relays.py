"""Relays that misbehave, for fault tests: real WebSocket servers on 127.0.0.1.

- `silent_relay`: accepts connections (the WebSocket library still answers the handshake,
  pings and closes) and never answers a request, like a relay whose process hangs.
- `junk_relay`: speaks the relay protocol, stores nothing, and answers every FETCH with a
  full batch of undecryptable envelopes and "more" (review §2g), every SEND with STORED.
- `refusing_relay`: answers every request with an ERROR whose code it is given and whose
  free-text reason is crafted to drive a terminal (review §2d).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from backchannel.protocol.envelope import ENVELOPE_HEADER_SIZE, Envelope
from backchannel.protocol.relayframes import (
    Ack,
    Acked,
    BatchResult,
    BatchStored,
    Create,
    Created,
    Delete,
    Deleted,
    Delivery,
    Error,
    ErrorCode,
    Fetch,
    Fetched,
    Ping,
    Pong,
    Response,
    Send,
    SendBatch,
    Stored,
    StoredItem,
    Subscribe,
    Subscribed,
    decode_request,
    encode,
)

# The smallest envelope bucket: junk costs the test little to make and the client a decrypt.
_JUNK_ENVELOPE_SIZE = 1024


@contextlib.asynccontextmanager
async def silent_relay(port: int = 0) -> AsyncIterator[str]:
    """A server on `port` (0: any free one) that never answers; yields its ws:// URL."""

    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", port, compression=None) as server:
        bound = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{bound}/"


@contextlib.asynccontextmanager
async def junk_relay(port: int = 0) -> AsyncIterator[tuple[str, list[int]]]:
    """A relay that always has more junk; yields its URL and a one-item list counting the
    junk envelopes it has handed out."""
    handed = [0]
    seqs = itertools.count(1)

    def answer(data: bytes) -> Response:
        match decode_request(data):
            case Create(request_id=rid):
                return Created(rid)
            case Send(request_id=rid):
                return Stored((StoredItem(rid, next(seqs)),))
            case SendBatch(request_id=rid, envelopes=envelopes):
                return BatchStored(rid, tuple(BatchResult(0, next(seqs)) for _ in envelopes))
            case Subscribe(request_id=rid):
                return Subscribed(rid, 0)
            case Fetch(request_id=rid, mailbox_id=mailbox_id, limit=limit):
                junk = tuple(
                    Delivery(
                        next(seqs),
                        Envelope(
                            mailbox_id, os.urandom(_JUNK_ENVELOPE_SIZE - ENVELOPE_HEADER_SIZE)
                        ).encode(),
                    )
                    for _ in range(limit)
                )
                handed[0] += len(junk)
                return Fetched(rid, junk, True)
            case Ack(request_id=rid, seqs=seqs_acked):
                return Acked(rid, len(seqs_acked))
            case Delete(request_id=rid):
                return Deleted(rid)
            case Ping(request_id=rid):
                return Pong(rid)
        raise AssertionError("unreachable: every request kind is answered above")

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                assert isinstance(message, bytes)
                await ws.send(encode(answer(message)))

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None) as server:
        bound = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{bound}/", handed


@contextlib.asynccontextmanager
async def refusing_relay(reason: str, code: ErrorCode = ErrorCode.RATE_LIMITED,
                         port: int = 0) -> AsyncIterator[str]:
    """A relay that refuses every request with `code` and the free text `reason`."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                assert isinstance(message, bytes)
                request = decode_request(message)
                await ws.send(encode(Error(request.request_id, code, reason)))

    async with serve(handler, "127.0.0.1", port, compression=None) as server:
        bound = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{bound}/"

"""A relay that breaks the relay protocol closes the client's connection with
`RelayBrokeProtocol`, never an assert: wrong reply kinds, answers to no request, pushes for
a mailbox not subscribed. The relays are real WebSocket servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from backchannel.client.transport import RelayBrokeProtocol, RelayClient, RelayClosed
from backchannel.protocol.relayframes import (
    Acked,
    Deliver,
    Delivery,
    Ping,
    Pong,
    Request,
    Response,
    Send,
    Stored,
    StoredItem,
    decode_request,
    encode,
)

pytestmark = pytest.mark.timeout(30)

MID = b"\x04" * 16
TOK = b"\x05" * 32


@contextlib.asynccontextmanager
async def scripted_relay(answer: Callable[[Request], list[Response]]) -> AsyncIterator[str]:
    """A relay that answers each request with the frames `answer` gives."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                assert isinstance(message, bytes)
                for frame in answer(decode_request(message)):
                    await ws.send(encode(frame))

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def test_a_reply_of_the_wrong_kind_closes_the_connection() -> None:
    def answer(request: Request) -> list[Response]:
        return [Acked(request.request_id, 0)]  # to everything

    async with scripted_relay(answer) as url:
        client = await RelayClient.connect(url)
        with pytest.raises(RelayBrokeProtocol):
            await client.send(MID, TOK, b"envelope")
        assert client.closed
        with pytest.raises(RelayClosed):
            await client.ping()


async def test_an_answer_to_no_request_closes_the_connection() -> None:
    def answer(request: Request) -> list[Response]:
        if isinstance(request, Send):
            return [Stored((StoredItem(request.request_id + 1000, 1),))]
        return [Pong(request.request_id)]

    async with scripted_relay(answer) as url, await RelayClient.connect(url) as client:
        await client.ping()
        with pytest.raises(RelayBrokeProtocol):
            await client.send(MID, TOK, b"envelope")


async def test_a_push_for_a_mailbox_not_subscribed_closes_the_connection() -> None:
    def answer(request: Request) -> list[Response]:
        assert isinstance(request, Ping)
        return [Deliver(MID, (Delivery(1, b"x"),)), Pong(request.request_id)]

    async with scripted_relay(answer) as url, await RelayClient.connect(url) as client:
        with pytest.raises(RelayBrokeProtocol):
            await client.ping()
        with pytest.raises(RelayClosed):
            await client.receive(timeout=1)

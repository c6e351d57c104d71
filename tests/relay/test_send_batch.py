"""SEND_BATCH end to end: a real relay on both backends, a real client connection."""

from __future__ import annotations

import asyncio

import pytest

from backchannel.client.transport import RelayClient, RelayRequestError
from backchannel.protocol.relayframes import MAX_SEND_BATCH, ErrorCode
from backchannel.relay import RelayLimits
from backchannel.relay.server import ENVELOPES_PER_FRAME, frame_cost
from tests.relay.conftest import RelayFactory, envelope, number

pytestmark = pytest.mark.timeout(60)


async def test_a_batch_is_stored_in_order_and_delivered_like_sends(
        db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        await client.subscribe(caps.mailbox_id, caps.receive_token)
        first = await client.send(caps.mailbox_id, caps.send_token,
                                  envelope(caps.mailbox_id, 0))
        batch = tuple(envelope(caps.mailbox_id, n) for n in range(1, 61))
        results = await client.send_batch(caps.mailbox_id, caps.send_token, batch)
        assert [r.seq for r in results] == list(range(first + 1, first + 61))
        assert all(r.stored for r in results)
        got = [await client.receive(timeout=10) for _ in range(61)]
        assert [number(d.envelope) for _, d in got] == list(range(61))
        assert server.metrics.stored.value() == 61


async def test_each_envelope_of_a_batch_is_answered_alone(db_url: str,
                                                          relay: RelayFactory) -> None:
    limits = RelayLimits(mailbox_max_envelopes=3)
    async with relay(db_url, limits) as server, \
            await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        other = await client.create_mailbox()
        batch = (envelope(caps.mailbox_id, 1), envelope(other.mailbox_id, 2),  # wrong box
                 envelope(caps.mailbox_id, 3), b"not an envelope",
                 envelope(caps.mailbox_id, 4), envelope(caps.mailbox_id, 5))  # 5th: full
        results = await client.send_batch(caps.mailbox_id, caps.send_token, batch)
        assert [(r.code, r.seq) for r in results] == [
            (0, 1), (ErrorCode.BAD_ENVELOPE, 0), (0, 2), (ErrorCode.BAD_ENVELOPE, 0),
            (0, 3), (ErrorCode.QUOTA_EXCEEDED, 0)]
        # A wrong token refuses every envelope, and the connection goes on.
        wrong = await client.send_batch(caps.mailbox_id, other.send_token, batch[:1])
        assert [r.code for r in wrong] == [ErrorCode.UNAUTHORIZED]
        items, _more = await client.fetch(caps.mailbox_id, caps.receive_token)
        assert [number(d.envelope) for d in items] == [1, 3, 4]


async def test_concurrent_batches_and_sends_each_get_their_own_answer(
        db_url: str, relay: RelayFactory) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        batches = [tuple(envelope(caps.mailbox_id, 100 * b + i) for i in range(8))
                   for b in range(6)]
        answers = await asyncio.gather(
            *(client.send_batch(caps.mailbox_id, caps.send_token, b) for b in batches),
            *(client.send(caps.mailbox_id, caps.send_token, envelope(caps.mailbox_id, 999))
              for _ in range(4)))
        seqs = [r.seq for batch in answers[:6] for r in batch] + list(answers[6:])
        assert sorted(seqs) == list(range(1, 53))  # type: ignore[type-var]


def test_a_batch_counts_one_frame_per_eight_envelopes() -> None:
    from backchannel.protocol.relayframes import SendBatch, encode

    mid, tok = b"\x01" * 16, b"\x02" * 32
    assert frame_cost(encode(SendBatch(1, mid, tok, (b"",)))) == 1
    assert frame_cost(encode(SendBatch(1, mid, tok, (b"",) * ENVELOPES_PER_FRAME))) == 1
    assert frame_cost(encode(SendBatch(1, mid, tok, (b"",) * 9))) == 2
    assert frame_cost(encode(SendBatch(1, mid, tok, (b"",) * MAX_SEND_BATCH))) == 8
    # A count the decoder will refuse costs at most a full batch; other frames cost one.
    forged = bytearray(encode(SendBatch(1, mid, tok, (b"",))))
    forged[54:56] = (0xFFFF).to_bytes(2, "big")
    assert frame_cost(bytes(forged)) == 8
    assert frame_cost(b"\x01\x07\x00\x00\x00\x01") == 1


async def test_a_batch_over_the_frame_rate_is_refused_whole(tmp_path: object,
                                                             relay: RelayFactory) -> None:
    # A burst of 16 frames holds two full batches' worth (8 each) and no more.
    limits = RelayLimits(frames_per_second=0.001, frame_burst=16 + 2)
    url = f"sqlite:///{tmp_path}/relay.db"
    async with relay(url, limits) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()  # frame 1
        await client.subscribe(caps.mailbox_id, caps.receive_token)  # frame 2
        full = tuple(envelope(caps.mailbox_id, i) for i in range(MAX_SEND_BATCH))
        assert len(await client.send_batch(caps.mailbox_id, caps.send_token, full)) == 64
        await client.send_batch(caps.mailbox_id, caps.send_token, full)
        with pytest.raises(RelayRequestError) as refused:
            await client.send_batch(caps.mailbox_id, caps.send_token, full)
        assert refused.value.code == ErrorCode.RATE_LIMITED


async def test_send_many_batches_and_answers_each_envelope(db_url: str,
                                                            relay: RelayFactory) -> None:
    limits = RelayLimits(mailbox_max_envelopes=100)
    async with relay(db_url, limits) as server, \
            await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        # 130 envelopes: three frames (64, 64, 2); the last 30 over the mailbox's quota.
        envs = [envelope(caps.mailbox_id, n) for n in range(130)]
        envs[5] = b"junk"
        results = await client.send_many(caps.mailbox_id, caps.send_token, envs)
        assert [r for r in results if isinstance(r, int)] == list(range(1, 101))
        refused = [(i, r.code) for i, r in enumerate(results) if isinstance(r, RelayRequestError)]
        assert refused == [(5, ErrorCode.BAD_ENVELOPE)] + [
            (i, ErrorCode.QUOTA_EXCEEDED) for i in range(101, 130)]
        assert server.metrics.frames.value() == 1 + 3  # CREATE and three SEND_BATCH


async def test_send_many_falls_back_to_sends_on_a_relay_without_batches() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from backchannel.protocol import relayframes as rf

    kinds: list[str] = []
    seqs = iter(range(1, 100))

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, bytes)
            try:
                request = rf.decode_request(message)
            except rf.FrameError as exc:
                await ws.send(rf.encode(rf.Error(exc.request_id or 0, exc.code, "old")))
                continue
            kinds.append(type(request).__name__)
            if isinstance(request, rf.SendBatch):  # what a relay predating it answers
                await ws.send(rf.encode(rf.Error(request.request_id,
                                                 ErrorCode.UNKNOWN_COMMAND, "unknown")))
            elif isinstance(request, rf.Send):
                await ws.send(rf.encode(rf.Stored((rf.StoredItem(request.request_id,
                                                                 next(seqs)),))))

    async with serve(handler, "127.0.0.1", 0, compression=None) as old:
        port = old.sockets[0].getsockname()[1]
        async with await RelayClient.connect(f"ws://127.0.0.1:{port}/") as client:
            mid, tok = b"\x01" * 16, b"\x02" * 32
            assert await client.send_many(mid, tok, [b"a", b"b", b"c"]) == [1, 2, 3]
            assert await client.send_many(mid, tok, [b"d", b"e"]) == [4, 5]
    assert kinds == ["SendBatch", "Send", "Send", "Send", "Send", "Send"]

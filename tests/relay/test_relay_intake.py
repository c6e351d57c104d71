"""Paced intake (`relay/intake.py`): a connection's input is parsed a bounded portion per
turn of the loop, so that one read of a flooder (256 KiB of tiny frames, 50 ms of parsing)
does not stall every other connection; nothing is lost, reordered or slowed for honest
traffic, and a connection closed for abuse is read no further.

On a real relay on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backchannel.client.transport import RelayClient
from backchannel.protocol import relayframes as rf
from backchannel.protocol.envelope import MAX_ENVELOPE_SIZE
from backchannel.relay import RelayLimits
from backchannel.relay.intake import FEED_EVENTS, FEED_PIECE, PacedConnection
from backchannel.relay.server import MAX_QUEUE
from tests.relay.conftest import RelayFactory, envelope

pytestmark = pytest.mark.timeout(60)

# A rate no test here reaches: these tests are about parsing, not the flood rule.
UNLIMITED = RelayLimits(frames_per_second=1e9, frame_burst=1e9)
# The smallest masked frame is 6 bytes (2 of header, 4 of mask): a piece holds this many.
FRAMES_PER_PIECE = FEED_PIECE // 6


def _client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final client frame (masked, with a zero mask)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


async def _bare(url: str) -> ClientConnection:
    # An unbounded receive queue: a bounded one stops reading the socket once it is full of
    # answers, so the relay's close frame would wait behind them for the closing timeout.
    return await connect(url, compression=None, max_size=rf.MAX_RESPONSE_FRAME_SIZE,
                         max_queue=None)


def _write_raw(ws: ClientConnection, data: bytes) -> None:
    # All at once, below the client library, so that the relay finds it in one read.
    ws.transport.write(data)


class Portions:
    """Events parsed and frames queued per entry into a relay connection's intake from the
    loop (a read, or a feed scheduled for a later turn)."""

    def __init__(self) -> None:
        self.events: list[int] = []
        self.queued: list[int] = []
        self._depth = 0

    def wrap(self, method: Callable[..., None]) -> Callable[..., None]:
        def entry(conn: PacedConnection, *args: Any) -> None:
            self._depth += 1
            before = conn.events_fed
            try:
                method(conn, *args)
            finally:
                self._depth -= 1
            if self._depth == 0:  # a read that feeds at once is one entry, not two
                self.events.append(conn.events_fed - before)
                self.queued.append(len(conn.recv_messages.frames))
        return entry


@pytest.fixture
def portions(monkeypatch: pytest.MonkeyPatch) -> Iterator[Portions]:
    seen = Portions()
    monkeypatch.setattr(PacedConnection, "data_received",
                        seen.wrap(PacedConnection.data_received))
    monkeypatch.setattr(PacedConnection, "_feed", seen.wrap(PacedConnection._feed))
    yield seen


async def test_a_flood_of_tiny_frames_is_parsed_a_bounded_portion_per_turn(
        tmp_path: Path, relay: RelayFactory, portions: Portions) -> None:
    count = 20_000  # 240 KB of PINGs: what one read of a flooder holds
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=UNLIMITED) as server:
        ws = await _bare(server.url)
        _write_raw(ws, b"".join(_client_frame(rf.encode(rf.Ping(i)))
                                for i in range(1, count + 1)))
        answers = [rf.decode_response(await ws.recv()) for _ in range(count)]  # type: ignore[arg-type]
        # Every frame answered, once, in order: pacing loses and reorders nothing.
        assert answers == [rf.Pong(i) for i in range(1, count + 1)]
        await ws.close()
    assert sum(portions.events) >= count
    # No turn parsed more than its budget and one piece (websockets used to parse all
    # 20,000 at once), and websockets never held more than its high mark and one piece.
    assert max(portions.events) <= FEED_EVENTS + FRAMES_PER_PIECE
    assert max(portions.queued) <= MAX_QUEUE + FRAMES_PER_PIECE


async def test_control_frames_are_paced_too(tmp_path: Path, relay: RelayFactory,
                                            portions: Portions) -> None:
    # WebSocket pings never reach the frame queue (websockets answers them itself), so
    # only the event budget stops them: 20,000 of them still take many turns.
    count = 20_000
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=UNLIMITED) as server:
        ws = await _bare(server.url)
        _write_raw(ws, b"".join(_client_frame(b"", opcode=0x9) for _ in range(count)))
        _write_raw(ws, _client_frame(rf.encode(rf.Ping(7))))
        assert rf.decode_response(await ws.recv()) == rf.Pong(7)  # type: ignore[arg-type]
        await ws.close()
    assert max(portions.events) <= FEED_EVENTS + FRAMES_PER_PIECE


async def test_a_burst_of_the_largest_sends_is_stored_in_order(tmp_path: Path,
                                                               relay: RelayFactory) -> None:
    # Pieces of a frame that is not complete yield no event, so a large frame parses in
    # one go however many pieces it takes: honest bulk traffic is not slowed.
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=UNLIMITED) as server, \
            await RelayClient.connect(server.url) as owner:
        caps = await owner.create_mailbox()
        ws = await _bare(server.url)
        frames = [rf.encode(rf.Send(i, caps.mailbox_id, caps.send_token,
                                    envelope(caps.mailbox_id, i, size=MAX_ENVELOPE_SIZE)))
                  for i in range(1, 41)]
        assert max(map(len, frames)) > 60_000
        _write_raw(ws, b"".join(map(_client_frame, frames)))
        stored: list[int] = []
        while len(stored) < len(frames):
            answer = rf.decode_response(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(answer, rf.Stored), answer
            stored.extend(item.request_id for item in answer.items)
        assert stored == list(range(1, 41))
        await ws.close()


async def test_a_close_after_frames_in_one_write_is_parsed_after_them(
        tmp_path: Path, relay: RelayFactory) -> None:
    # websockets answers a close frame as soon as it parses it, after which nothing more
    # can be sent: answers to frames still queued then are lost (RFC 6455 §5.5.1: no data
    # after a close). Parsed in order and in portions, the close comes after nearly all of
    # them; parsed a whole read at once, as before, it came before nearly all.
    count = 5_000
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=UNLIMITED) as server:
        ws = await _bare(server.url)
        close = _client_frame((1000).to_bytes(2, "big"), opcode=0x8)
        _write_raw(ws, b"".join(_client_frame(rf.encode(rf.Ping(i)))
                                for i in range(1, count + 1)) + close)
        pongs = 0
        with pytest.raises(ConnectionClosed):
            while True:
                assert rf.decode_response(await ws.recv()) == rf.Pong(pongs + 1)  # type: ignore[arg-type]
                pongs += 1
        assert ws.close_code == 1000
        assert pongs >= count - (MAX_QUEUE + FEED_EVENTS + FRAMES_PER_PIECE)


async def test_a_flooder_closed_for_abuse_is_read_no_further(tmp_path: Path,
                                                             relay: RelayFactory) -> None:
    limits = RelayLimits(frames_per_second=10.0, frame_burst=10, abuse_cooldown=0.0)
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server:
        ws = await _bare(server.url)
        await asyncio.sleep(0.05)
        (conn,) = server._conns
        sock = conn.ws
        assert isinstance(sock, PacedConnection)
        _write_raw(ws, b"".join(_client_frame(rf.encode(rf.Ping(1))) for _ in range(20_000)))
        await ws.wait_closed()
        # 1008, or a reset: closing a socket with unread bytes in it resets it, and the
        # reset may overtake the close frame.
        assert ws.close_code in (1008, 1006)
        # What it had sent and the relay had not parsed yet was dropped, not parsed.
        assert not sock.kept
        assert sock.events_fed < 20_000
        assert server.metrics.connections_closed.value("flood") == 1


async def test_backlogged_connections_share_a_pace_and_a_light_one_goes_first(
        tmp_path: Path, relay: RelayFactory) -> None:
    # Two connections with thousands of frames waiting take turns at the shared pace (here
    # 500 frames/s together); a connection with nothing waiting is not held to it.
    limits = RelayLimits(frames_per_second=1e9, frame_burst=1e9,
                         backlogged_frames_per_second=500.0, backlogged_frame_burst=10)
    count = 2_000
    async with relay(f"sqlite:///{tmp_path / 'r.db'}", limits=limits) as server:
        floods = [await _bare(server.url) for _ in range(2)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for ws in floods:
            _write_raw(ws, b"".join(_client_frame(rf.encode(rf.Ping(i)))
                                    for i in range(1, count + 1)))
        await asyncio.sleep(0.5)
        handled = server.metrics.frames.value()
        # 0.5 s at 500/s (and the burst); unpaced, the loop takes thousands a second.
        assert handled <= 500 * (loop.time() - started) + 10 + 50
        async with await RelayClient.connect(server.url) as light:
            for _ in range(5):
                async with asyncio.timeout(0.2):  # the flooders' turns take 8 s
                    await light.ping()
        for ws in floods:
            ws.transport.abort()  # a close would wait behind their frames

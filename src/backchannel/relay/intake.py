"""Paced intake: a connection's bytes are handed to websockets a bounded portion at a time.

The event loop reads up to 256 KiB from a socket at once (uvloop's read size, and
asyncio's, cannot be lowered), and websockets parses all of a read in one
``data_received`` call: 256 KiB of tiny frames is about 21,000 frames and 50 ms of parsing
(bench/relay_abuse.py's flood, measured on the relay's machine), during which no other
connection is served. That was the honest client's p99 under a frame flood.

`PacedConnection` keeps what the loop read and feeds it to websockets in pieces of
`FEED_PIECE` bytes, stopping after `FEED_EVENTS` parsed events or as soon as websockets'
queue of unread frames is over its high mark; the rest waits for a later turn of the loop
(the queue drained, or `call_soon` if the pieces held only control frames). So one
callback parses at most `FEED_EVENTS` events plus one piece, whatever a peer sends, while
a large frame (a SEND of the largest envelope) still parses in one go: its pieces produce
no events until it is complete. Reading from the socket is paused while anything is
kept, so what is kept is at most one read, and TCP pushes back on the peer as before.
Unread frames are bounded too: websockets' queue never grows past its high mark by more
than one piece's frames, where it used to hold all 21,000 frames of a read.

This module owns reading: websockets' frame queue reports to it (`_frames_full`,
`_frames_drained`) instead of pausing the transport itself, and a connection closed for
abuse is read no further (`stop_reading`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from websockets.asyncio.messages import Assembler
from websockets.asyncio.server import Server, ServerConnection
from websockets.server import ServerProtocol

__all__ = ["FEED_EVENTS", "FEED_PIECE", "PacedConnection"]

# Bytes handed to websockets per call. 1 KiB holds at most 170 frames (6 bytes is the
# smallest masked frame), about 0.4 ms of parsing, and costs a large frame one call per
# KiB: the largest SEND parses in 65 pieces in 0.06 ms, against 0.03 ms in one.
FEED_PIECE: Final = 1024
# Events parsed per turn of the loop before the rest waits. A handful of turns of one
# frame each (the handler takes one frame per turn) is what a frame costs other
# connections; 64 at once keeps the bulk path cheap while one flooder's turn stays far
# below a millisecond.
FEED_EVENTS: Final = 64


class PacedConnection(ServerConnection):
    """A websockets server connection whose input is parsed in bounded portions."""

    def __init__(self, protocol: ServerProtocol, server: Server, **kwargs: Any) -> None:
        super().__init__(protocol, server, **kwargs)
        self.kept = bytearray()  # read from the socket, not yet handed to websockets
        self.events_fed = 0  # events websockets parsed from what it was handed
        self._frames_over = False  # websockets' frame queue is over its high mark
        self._deaf = False
        self._reading_paused = False
        self._feed_pending = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # The same queue and marks websockets would use, but reporting to us: reading must
        # stay paused while bytes are kept even when the queue drains.
        self.recv_messages = Assembler(self.max_queue_high, self.max_queue_low,
                                       pause=self._frames_full, resume=self._frames_drained)

    def process_event(self, event: Any) -> None:
        self.events_fed += 1
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        if self._deaf:
            return
        if not self.kept and not self._frames_over and len(data) <= FEED_PIECE:
            # The usual case: nothing to pace.
            super().data_received(data)
            return
        self.kept += data
        self._feed()

    def eof_received(self) -> None:
        # Reading is paused while bytes are kept, so the end of the stream normally comes
        # after them. Should a transport report it all the same (TLS may), hand everything
        # over first: order matters more than pacing there, and it happens once.
        if self.kept and not self._deaf:
            data, self.kept = bytes(self.kept), bytearray()
            super().data_received(data)
        super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.kept.clear()
        super().connection_lost(exc)

    @property
    def backlogged(self) -> bool:
        """Whether the peer sent more than the handler has taken: bytes kept, or
        websockets' frame queue over its high mark and not yet drained."""
        return bool(self.kept) or self._frames_over

    def stop_reading(self) -> None:
        """Read nothing more from the peer, and drop what was read and not yet parsed
        (for a connection closed for abuse)."""
        self._deaf = True
        self.kept.clear()
        self._update_reading()

    def _feed(self) -> None:
        self._feed_pending = False
        start = self.events_fed
        while (self.kept and not self._deaf and not self._frames_over
               and self.events_fed - start < FEED_EVENTS):
            piece = bytes(self.kept[:FEED_PIECE])
            del self.kept[:FEED_PIECE]
            super().data_received(piece)
        if self.kept and not self._frames_over and not self._deaf:
            self._schedule_feed()  # only control frames, or many: go on next turn
        self._update_reading()

    def _schedule_feed(self) -> None:
        if not self._feed_pending:
            self._feed_pending = True
            self.loop.call_soon(self._feed)

    def _frames_full(self) -> None:
        self._frames_over = True
        self._update_reading()

    def _frames_drained(self) -> None:
        # Called from the handler as it takes a frame: feed on the next turn, so that the
        # handler's turn does not also pay for parsing.
        self._frames_over = False
        if self.kept:
            self._schedule_feed()
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        pause = self._deaf or self._frames_over or bool(self.kept)
        if pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

"""What the sending machinery last reported, kept for `status` (sealed like every record).

A running watch or agent sends in slots (`client.slots`) and chooses routes
(`client.routing`); `status` runs as another command, often while that agent runs, so what
it shows of them has to be in the state:

- per *direction* (a channel's writes to one relay): the rows held back after a relay
  refused them for good (how many, and until when the last hold lasts), and the last time
  the direction's slot loop failed and was restarted (the event line and when);
- per *destination relay*: the last routing line (sent directly although forwarding was
  asked, or held under `forwarding require`), or none while sends go as asked.

Each write is one small record, put in the caller's transaction or one of its own. A
record that does not decode (written by a later version) reads as absent: it is advice
for a person, never a reason to stop.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from backchannel.client.keystore import Keystore
from backchannel.protocol.errors import BackchannelError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = ["MAX_LINE", "DirectionStatus", "SlotStatusRepository", "decode_direction"]

log = logging.getLogger("backchannel.client.state.slotstatus")

_DIRECTION: Final = "slot-direction"
_ROUTE: Final = "route-line"
_VERSION: Final = 1
# The longest event or routing line kept, in bytes of UTF-8: the slot sender's lines
# are one sentence with a URL and a channel name (each bounded far below this).
MAX_LINE: Final = 2048
# The longest relay URL and channel id accepted in a record (URLs are bounded at 512 by
# the invite codec; a channel id is 32 hex digits).
_MAX_URL: Final = 1024
_MAX_ID: Final = 64


@dataclass(frozen=True, slots=True)
class DirectionStatus:
    """One direction's slot status.

    Attributes:
        channel_id: the channel (hex).
        url: the relay the direction writes to.
        held: rows held back after a refusal for good (0: none).
        held_until_ms: when the last of those holds ends (ms since the epoch).
        failure: the last failure's event line ("" if none), and `failed_at_ms` when.
    """

    channel_id: str
    url: str
    held: int = 0
    held_until_ms: int = 0
    failure: str = ""
    failed_at_ms: int = 0

    def encode(self) -> bytes:
        return (Writer().u8(_VERSION).text16(self.channel_id).text16(self.url)
                .u32(self.held).u64(self.held_until_ms).text16(self.failure)
                .u64(self.failed_at_ms).getvalue())


def decode_direction(raw: bytes) -> DirectionStatus:
    """The inverse of `DirectionStatus.encode`.

    Raises:
        RemoteProtocolError: not such a record (truncated, trailing bytes, too long a
            field, another version).
    """
    reader = Reader(raw, "slot status record")
    if reader.u8() != _VERSION:
        raise RemoteProtocolError("slot status record of another version")
    status = DirectionStatus(reader.text16(_MAX_ID), reader.text16(_MAX_URL), reader.u32(),
                             reader.u64(), reader.text16(MAX_LINE), reader.u64())
    reader.finish()
    return status


def _key(channel_id: str, url: str) -> bytes:
    return Writer().text16(channel_id).text16(url).getvalue()


def _clip(line: str) -> str:
    raw = line.encode()
    return line if len(raw) <= MAX_LINE else raw[:MAX_LINE].decode(errors="ignore")


class SlotStatusRepository:
    """The slot and routing status records of one principal's store."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"SlotStatusRepository({self._store!r})"

    # -- reading ---------------------------------------------------------------------

    def get(self, channel_id: str, url: str) -> DirectionStatus | None:
        raw = self._store.get(_DIRECTION, _key(channel_id, url))
        if raw is None:
            return None
        try:
            return decode_direction(raw)
        except RemoteProtocolError:
            return None

    def of_channel(self, channel_id: str) -> list[DirectionStatus]:
        """The channel's directions with something to say, in the order first written."""
        found = []
        for _, raw in self._store.all(_DIRECTION):
            try:
                status = decode_direction(raw)
            except RemoteProtocolError:
                continue
            if status.channel_id == channel_id and (status.held or status.failure):
                found.append(status)
        return found

    def route(self, url: str) -> str:
        """The last routing line for sends to `url` ("" while they go as asked)."""
        raw = self._store.get(_ROUTE, url.encode())
        return "" if raw is None else raw.decode(errors="replace")

    # -- writing (never fails its caller: see the module docstring) ------------------

    def note_holds(self, channel_id: str, url: str, held: int, until_ms: int) -> None:
        """The direction now holds `held` rows back, the last until `until_ms`."""
        def change(old: DirectionStatus) -> DirectionStatus:
            return replace(old, held=held, held_until_ms=until_ms if held else 0)
        self._update(channel_id, url, change)

    def note_failure(self, channel_id: str, url: str, line: str, at_ms: int) -> None:
        """The direction's slot loop failed (`line` says how), at `at_ms`."""
        def change(old: DirectionStatus) -> DirectionStatus:
            return replace(old, failure=_clip(line), failed_at_ms=at_ms)
        self._update(channel_id, url, change)

    def note_route(self, url: str, line: str) -> None:
        """Sends to `url` last went as `line` says ("": as asked, and the line is gone)."""
        def write() -> None:
            if line:
                self._store.put(_ROUTE, url.encode(), _clip(line).encode())
            else:
                self._store.delete(_ROUTE, url.encode())
        if line != self.route(url):
            self._write(write)

    def _update(self, channel_id: str, url: str,
                change: Callable[[DirectionStatus], DirectionStatus]) -> None:
        def write() -> None:
            old = self.get(channel_id, url) or DirectionStatus(channel_id, url)
            new = change(old)
            if new != old:
                self._store.put(_DIRECTION, _key(channel_id, url), new.encode())
        self._write(write)

    def _write(self, write: Callable[[], None]) -> None:
        try:
            if self._store.db.in_transaction:
                write()
            else:
                with self._store.transaction():
                    write()
        except (BackchannelError, sqlite3.Error) as error:
            # Status is advice: a home that cannot take it (read-only, busy) keeps sending.
            log.warning("slot status not recorded: %s", type(error).__name__)


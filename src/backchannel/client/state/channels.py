"""Channel records, read and written back with compare-and-swap.

A channel record holds the session (the ratchet), so a stale write of it is exactly what
forks a channel. Every record read here carries the version it was stored at; `save`
writes only if the stored record is still at that version, and must run inside the
transaction that read it (`Keystore.put_versioned`). Reading outside and writing inside
therefore fails loudly (`StaleRecord`) instead of silently reusing keys.
"""

from __future__ import annotations

from typing import Final

from backchannel.client.errors import ChannelNotFound
from backchannel.client.keystore import Keystore
from backchannel.client.records import ChannelRecord, dump, load

__all__ = ["ChannelRepository"]

_KIND: Final = "channel"


class ChannelRepository:
    """All channel records of one principal's store."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"ChannelRepository({self._store!r})"

    def all(self) -> list[ChannelRecord]:
        """Every channel, oldest first (then by name)."""
        records = []
        for _, raw, version in self._store.all_versioned(_KIND):
            record: ChannelRecord = load(ChannelRecord, raw)
            record.version = version
            records.append(record)
        records.sort(key=lambda c: (c.created_at_ms, c.name))
        return records

    def get(self, channel_id: str) -> ChannelRecord:
        """Raises ChannelNotFound: no channel with this id."""
        found = self._store.get_versioned(_KIND, bytes.fromhex(channel_id))
        if found is None:
            raise ChannelNotFound(f"no channel {channel_id}")
        record: ChannelRecord = load(ChannelRecord, found[0])
        record.version = found[1]
        return record

    def save(self, record: ChannelRecord) -> None:
        """Write `record` back if nobody wrote it since it was read (a new record has
        version 0); its version moves on, so the same object can be saved again.

        Raises:
            StaleRecord: it changed since it was read; nothing was written.
        """
        record.version = self._store.put_versioned(
            _KIND, bytes.fromhex(record.channel_id), dump(record), record.version
        )

    def delete(self, channel_id: str) -> None:
        self._store.delete(_KIND, bytes.fromhex(channel_id))

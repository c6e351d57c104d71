"""Channel records, read and written back with compare-and-swap.

A channel record holds the session (the ratchet), so a stale write of it is exactly what
forks a channel. Every record read here carries the version it was stored at; `save`
writes only if the stored record is still at that version, and must run inside the
transaction that read it (`Keystore.put_versioned`). Reading outside and writing inside
therefore fails loudly (`StaleRecord`) instead of silently reusing keys.

Channels are read many times per note (to find a mailbox's owner, the relays, the send
tokens), so each record opened is kept, decoded, beside the sealed bytes it came from, and
a read that finds the same sealed bytes stored again hands out a copy of it instead of
opening and parsing them again. The sealed bytes are the check: every write seals with a
fresh nonce, so the same bytes are the same record, whoever wrote them and whatever was
rolled back since; the version is read from the store each time, never kept.
"""

from __future__ import annotations

from typing import Final

from backchannel.client.errors import ChannelNotFound
from backchannel.client.keystore import Keystore
from backchannel.client.records import ChannelRecord, copy_channel, dump, load

__all__ = ["ChannelRepository"]

_KIND: Final = "channel"


class ChannelRepository:
    """All channel records of one principal's store."""

    def __init__(self, store: Keystore) -> None:
        self._store = store
        # Decoded records by key, each with the sealed bytes it was opened from.
        self._opened: dict[bytes, tuple[bytes, ChannelRecord]] = {}

    def __repr__(self) -> str:
        return f"ChannelRepository({self._store!r})"

    def all(self) -> list[ChannelRecord]:
        """Every channel, oldest first (then by name)."""
        rows = self._store.all_sealed(_KIND)
        records = [self._decoded(key, sealed, version) for key, sealed, version in rows]
        if len(self._opened) > len(rows):  # some were deleted: forget them
            present = {key for key, _, _ in rows}
            self._opened = {k: v for k, v in self._opened.items() if k in present}
        records.sort(key=lambda c: (c.created_at_ms, c.name))
        return records

    def get(self, channel_id: str) -> ChannelRecord:
        """Raises ChannelNotFound: no channel with this id."""
        key = bytes.fromhex(channel_id)
        found = self._store.get_sealed(_KIND, key)
        if found is None:
            raise ChannelNotFound(f"no channel {channel_id}")
        return self._decoded(key, *found)

    def _decoded(self, key: bytes, sealed: bytes, version: int) -> ChannelRecord:
        """A fresh copy of the record stored as `sealed` at `version`, opened and parsed
        only if these bytes were not opened before.

        Raises:
            StateCorrupted: the record does not open or does not parse.
        """
        kept = self._opened.get(key)
        if kept is None or kept[0] != sealed:
            record: ChannelRecord = load(ChannelRecord, self._store.unseal(_KIND, key, sealed))
            self._opened[key] = kept = (sealed, record)
        copy = copy_channel(kept[1])
        copy.version = version
        return copy

    def save(self, record: ChannelRecord) -> None:
        """Write `record` back if nobody wrote it since it was read (a new record has
        version 0); its version moves on, so the same object can be saved again.

        Raises:
            StaleRecord: it changed since it was read; nothing was written.
        """
        key = bytes.fromhex(record.channel_id)
        sealed = self._store.seal(_KIND, key, dump(record))
        record.version = self._store.put_sealed_versioned(_KIND, key, sealed, record.version)
        # Kept as written: if the transaction rolls back, these bytes are never read again.
        self._opened[key] = (sealed, copy_channel(record))

    def delete(self, channel_id: str) -> None:
        self._store.delete(_KIND, bytes.fromhex(channel_id))

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

Most reads are a lookup by name (every command, every send), and a principal may hold many
channels: `find` picks from the listing the keystore keeps while nothing was written
(`Keystore.all_sealed`, checked against SQLite's `data_version` and this handle's own
commits, which it applies to the listing instead of reading it again), and copies only
the channel it hands out.

Receiving saves the channel once per message (its session moved on), and a record is 7 KB
of JSON to seal and write: inside one transaction that takes in a batch of messages,
`saved_once` keeps each save in memory and writes each channel once, as it was saved
last, when the block ends. Reads in the block see what was saved, and every save is
checked against the version the one before it left, exactly as if each were written:
a copy read before another save is still refused (`StaleRecord`), and the version
stored at the end is the one the saves one by one would have left.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from backchannel.client.errors import ChannelNotFound, StaleRecord
from backchannel.client.keystore import Keystore
from backchannel.client.records import ChannelRecord, copy_channel, dump, load

__all__ = ["ChannelRepository"]

_KIND: Final = "channel"


@dataclass(slots=True)
class _Saved:
    """A channel saved inside a `saved_once` block, not yet written."""

    record: ChannelRecord  # as saved last, at the version that save gave it
    stored_version: int  # the version in the store, which the one write swaps from


class ChannelRepository:
    """All channel records of one principal's store."""

    def __init__(self, store: Keystore,
                 before_write: Callable[[ChannelRecord], None] | None = None) -> None:
        """`before_write`: called on each channel saved in a `saved_once` block just
        before it is written (`ClientState` encodes there the session it kept in the
        block)."""
        self._store = store
        # Decoded records by key, each with the sealed bytes it was opened from.
        self._opened: dict[bytes, tuple[bytes, ChannelRecord]] = {}
        # Inside `saved_once`: what was saved there, by key; None outside.
        self._saved: dict[bytes, _Saved] | None = None
        self._before_write = before_write
        # The last listing read (`Keystore.all_sealed` hands out the same tuple while
        # nothing was written) and its records, decoded, oldest first.
        self._listed: tuple[tuple[bytes, bytes, int], ...] | None = None
        self._sorted: list[tuple[ChannelRecord, int]] = []
        self._places: dict[bytes, int] = {}  # each key's index in `_sorted`

    def __repr__(self) -> str:
        return f"ChannelRepository({self._store!r})"

    def all(self) -> list[ChannelRecord]:
        """Every channel, oldest first (then by name)."""
        return [_copied(record, version) for record, version in self._listing()]

    def find(self, name_or_id: str) -> ChannelRecord:
        """The channel of that name or id, or of (a prefix of at least 6 characters of)
        its id; only that one is copied (a principal may hold many channels).

        Raises:
            ChannelNotFound: none, or the name or the prefix is ambiguous.
        """
        channels = self._listing()
        exact = [(c, v) for c, v in channels if name_or_id in (c.name, c.channel_id)]
        prefix = [(c, v) for c, v in channels
                  if len(name_or_id) >= 6 and c.channel_id.startswith(name_or_id)]
        for found in (exact, prefix):
            if len(found) == 1:
                return _copied(*found[0])
        known = ", ".join(sorted(c.name for c, _ in channels)) or "none yet"
        if len(exact) > 1 or len(prefix) > 1:
            raise ChannelNotFound(f"'{name_or_id}' names several channels; use its id")
        raise ChannelNotFound(f"no channel '{name_or_id}' (channels: {known})")

    def shared(self) -> list[ChannelRecord]:
        """Every channel, oldest first, as kept: for a read that changes nothing and keeps
        nothing (the records are shared with every later read: never change one, and do
        not trust their `version`). `all` hands out copies."""
        return [record for record, _ in self._listing()]

    def owning(self, mailbox_id: str) -> ChannelRecord | None:
        """A copy of the channel one of whose links or retiring links has the inbound
        mailbox `mailbox_id`, at its stored version (None: no channel has it)."""
        for record, version in self._listing():
            if any(link.inbound is not None and link.inbound.mailbox_id == mailbox_id
                   for link in (*record.links, *record.retiring)):
                return _copied(record, version)
        return None

    def _listing(self) -> list[tuple[ChannelRecord, int]]:
        """Every channel, oldest first, each with its version: the records kept (and,
        inside `saved_once`, those saved there), not copies, for a read that copies only
        what it hands out. Inside a transaction they are read again after each write of
        a channel record (`Keystore.all_sealed`), and opened only if their bytes changed."""
        rows = self._store.all_sealed(_KIND)
        if rows is not self._listed:
            self._list(rows)
        saved = self._saved
        if not saved:
            return self._sorted
        # Inside `saved_once`: the listing with what was saved put in (one channel or a
        # few, per arrival), re-sorted only if a saved one moved or is new.
        listing = list(self._sorted)
        moved = False
        for key, last in saved.items():
            entry = (last.record, last.record.version)
            i = self._places.get(key)
            if i is None:
                listing.append(entry)
                moved = True
                continue
            moved = moved or _order(listing[i][0]) != _order(last.record)
            listing[i] = entry
        if moved:
            listing.sort(key=lambda item: _order(item[0]))
        return listing

    def _list(self, rows: tuple[tuple[bytes, bytes, int], ...]) -> None:
        """Decode `rows` (opening only what changed) into the kept sorted listing."""
        listing = []
        for key, sealed, version in rows:
            kept = self._opened.get(key)
            if kept is None or kept[0] != sealed:
                record: ChannelRecord = load(ChannelRecord, self._store.unseal(_KIND, key, sealed))
                self._opened[key] = kept = (sealed, record)
            listing.append((kept[1], version, key))
        if len(self._opened) > len(rows):  # some were deleted: forget them
            present = {key for key, _, _ in rows}
            self._opened = {k: v for k, v in self._opened.items() if k in present}
        listing.sort(key=lambda item: _order(item[0]))
        self._listed = rows
        self._sorted = [(record, version) for record, version, _ in listing]
        self._places = {key: i for i, (_, _, key) in enumerate(listing)}

    def get(self, channel_id: str) -> ChannelRecord:
        """Raises ChannelNotFound: no channel with this id."""
        key = bytes.fromhex(channel_id)
        if self._saved is not None and key in self._saved:
            return copy_channel(self._saved[key].record)  # its version included
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
        return _copied(kept[1], version)

    def save(self, record: ChannelRecord) -> None:
        """Write `record` back if nobody wrote it since it was read (a new record has
        version 0); its version moves on, so the same object can be saved again.

        Raises:
            StaleRecord: it changed since it was read; nothing was written.
        """
        key = bytes.fromhex(record.channel_id)
        if self._saved is not None:
            self._save_later(key, record)
            return
        sealed = self._store.seal(_KIND, key, dump(record))
        record.version = self._store.put_sealed_versioned(_KIND, key, sealed, record.version)
        # Kept as written: if the transaction rolls back, these bytes are never read again.
        self._opened[key] = (sealed, copy_channel(record))

    def _save_later(self, key: bytes, record: ChannelRecord) -> None:
        """`save` inside `saved_once`: checked now, as a write would be, written at the end."""
        assert self._saved is not None
        if not self._store.db.in_transaction:
            raise StaleRecord("a channel record may only be written inside a transaction")
        earlier = self._saved.get(key)
        current = (earlier.record.version if earlier is not None
                   else self._store.version_of(_KIND, key))
        if record.version != current:
            raise StaleRecord(
                f"a channel record changed since it was read (expected version "
                f"{record.version}): refused, so that no state is forked"
            )
        record.version += 1
        stored = earlier.stored_version if earlier is not None else current
        self._saved[key] = _Saved(copy_channel(record), stored)

    @property
    def deferring(self) -> bool:
        """Whether saves are kept until the end of a `saved_once` block."""
        return self._saved is not None

    @contextlib.contextmanager
    def saved_once(self) -> Iterator[None]:
        """Inside the caller's transaction: every channel saved in the block is written
        once, as it was saved last, when the block ends (see the module doc). If the block
        raises, nothing of it is written (and the caller's transaction rolls back). A
        block inside another is part of it."""
        if self._saved is not None:
            yield
            return
        self._saved = {}
        try:
            yield
            saved, self._saved = self._saved, None
            for key, last in saved.items():
                if self._before_write is not None:
                    self._before_write(last.record)
                sealed = self._store.seal(_KIND, key, dump(last.record))
                self._store.put_sealed_versioned(_KIND, key, sealed, last.stored_version,
                                                 to=last.record.version)
                self._opened[key] = (sealed, copy_channel(last.record))
        finally:
            self._saved = None

    def delete(self, channel_id: str) -> None:
        key = bytes.fromhex(channel_id)
        if self._saved is not None:
            self._saved.pop(key, None)
        self._store.delete(_KIND, key)


def _order(record: ChannelRecord) -> tuple[int, str]:
    """Where a channel stands in a listing: oldest first, then by name."""
    return record.created_at_ms, record.name


def _copied(record: ChannelRecord, version: int) -> ChannelRecord:
    """A copy of a kept record, at the version it is stored at."""
    copy = copy_channel(record)
    copy.version = version
    return copy

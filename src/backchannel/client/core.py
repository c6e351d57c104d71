"""The core of a principal's client: its identity, store, channels and messages."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from backchannel.client.agent.lock import DEFAULT_LOCK_TIMEOUT, HomeLock, LockHolder
from backchannel.client.errors import (
    ChannelNotFound,
    ClientError,
    NotInitialised,
)
from backchannel.client.keystore import STATE_FILE, KdfParameters, Keystore
from backchannel.client.records import (
    ChannelRecord,
    InviteRecord,
    Link,
    Mailbox,
    MessageRecord,
    dump,
    load,
)
from backchannel.client.relays import RelayPool
from backchannel.client.reports import (
    InboxEntry,
    RelayHealth,
)
from backchannel.client.state.channels import ChannelRepository
from backchannel.client.state.forks import ForkRepository
from backchannel.dialogue.bodies import Note, decode_body
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.e2e.primitives import Rng
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.errors import (
    RemoteProtocolError,
)
from backchannel.protocol.message import MessageKind
from backchannel.protocol.wire import Reader, Writer

__all__ = ["PrincipalCore"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class PrincipalCore:
    """State, storage and lookups shared by every part of a principal's client."""

    def __init__(
        self,
        store: Keystore,
        clock: Callable[[], int] = _wall_ms,
        rng: Rng = os.urandom,
    ) -> None:
        self._store = store
        self._channel_records = ChannelRepository(store)
        self._forks = ForkRepository(store)
        self._lock: HomeLock | None = None
        self._clock = clock
        self._rng = rng
        # Connections kept open while `watch` runs, so sends need no new handshake.
        self._live: RelayPool | None = None
        # Why a relay refused an outbox row for good, by row id (for this process's life).
        self.refused_codes: dict[int, int] = {}
        # Dialogue folds by channel id, advanced with what is new (see StrategicChannel).
        self.dialogue_cache: dict[str, object] = {}
        # Parsed sessions by channel id, valid while the stored state is the same bytes
        # (a rolled-back transaction leaves the store different, so the cache misses).
        self._sessions: dict[str, tuple[str, Session]] = {}
        # Escalation commands running beside the loop (see Inbox._perform_duties).
        self._command_tasks: set[asyncio.Task[None]] = set()
        raw = store.get("identity", b"self")
        if raw is None:
            raise NotInitialised("this home has no identity: run `backchannel init` first")
        reader = Reader(raw, "identity record")
        self.name = reader.text16(64)
        self._identity = IdentityKeyPair.from_private_bytes(reader.fixed(64))

    @classmethod
    def create(
        cls,
        home: Path,
        name: str,
        passphrase: str,
        *,
        kdf: KdfParameters | None = None,
        clock: Callable[[], int] = _wall_ms,
        rng: Rng = os.urandom,
    ) -> Self:
        """Create a principal with a fresh identity in `home`.

        Raises:
            ClientError: the name is empty or too long, or `home` already has a principal.
        """
        name = name.strip()
        if not 1 <= len(name.encode()) <= 64:
            raise ClientError("a name is 1 to 64 bytes of text")
        if not passphrase:
            raise ClientError("a passphrase is required to encrypt the local state")
        lock = HomeLock(home)
        lock.acquire(timeout=0)
        try:
            try:
                store = Keystore.create(home, passphrase, kdf)
            except FileExistsError:
                raise ClientError(
                    f"{home} already holds a principal; use another --home"
                ) from None
            identity = IdentityKeyPair.generate(rng)
            with store.transaction():
                record = Writer().text16(name).fixed(identity.private_bytes(), 64).getvalue()
                store.put("identity", b"self", record)
            principal = cls(store, clock, rng)
        except BaseException:
            lock.release()
            raise
        principal._lock = lock
        return principal

    @classmethod
    def open(
        cls,
        home: Path,
        passphrase: str,
        *,
        clock: Callable[[], int] = _wall_ms,
        rng: Rng = os.urandom,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_wait: Callable[[LockHolder | None], None] | None = None,
        lock_role: str = "command",
    ) -> Self:
        """Open the principal in `home`, holding its lock until `close`.

        Only one process (or open principal) has a home at a time: while another holds
        it, this waits up to `lock_timeout` seconds, calling `on_wait` once.

        Raises:
            NotInitialised: no principal there.
            HomeBusy: another process kept the home for longer than `lock_timeout`.
            WrongPassphrase: the passphrase does not unlock it.
            StateCorrupted: the state file is damaged (it is left untouched).
        """
        if not (home / STATE_FILE).exists():
            raise NotInitialised(f"no principal in {home}: run `backchannel init`")
        lock = HomeLock(home)
        lock.acquire(role=lock_role, timeout=lock_timeout, on_wait=on_wait)
        try:
            try:
                store = Keystore.open(home, passphrase)
            except FileNotFoundError:
                raise NotInitialised(
                    f"no principal in {home}: run `backchannel init`"
                ) from None
            try:
                principal = cls(store, clock, rng)
            except BaseException:
                store.close()
                raise
        except BaseException:
            lock.release()
            raise
        principal._lock = lock
        return principal

    def worker(self) -> Self:
        """Another handle on this open principal, with its own database connection and
        no lock of its own (the lock stays with this one): what the agent gives each
        local request, so a request never shares a connection with the agent's loop.
        Every read-modify-write is one transaction with compare-and-swap, so both
        handles may write. Close it when the request is done."""
        return type(self)(self._store.clone(), self._clock, self._rng)

    @property
    def home(self) -> Path:
        return self._store.path.parent

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._store.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    @property
    def identity(self) -> PublicIdentity:
        return self._identity.public

    @property
    def identity_keypair(self) -> IdentityKeyPair:
        """The secret identity: used only to sign prekeys and agreed records."""
        return self._identity

    def now_ms(self) -> int:
        return self._clock()

    def random(self, n: int) -> bytes:
        return self._rng(n)

    def save_channel(self, record: ChannelRecord) -> None:
        """Write back a channel read earlier (refused with StaleRecord if it changed)."""
        with self._store.transaction():
            self._save_channel(record)

    def update_channel(
        self, channel_id: str, change: Callable[[ChannelRecord], None]
    ) -> ChannelRecord:
        """Read a channel, apply `change` and write it back, all in one transaction."""
        with self._store.transaction():
            record = self._channel_by_id(channel_id)
            change(record)
            self._save_channel(record)
        return record

    def setting(self, key: str) -> str:
        raw = self._store.get("setting", key.encode())
        return "" if raw is None else raw.decode()

    def set_setting(self, key: str, value: str) -> None:
        with self._store.transaction():
            self._store.put("setting", key.encode(), value.encode())

    def _channels(self) -> list[ChannelRecord]:
        return self._channel_records.all()

    def channels(self) -> list[ChannelRecord]:
        """All channels, oldest first."""
        return self._channels()

    def channel(self, name_or_id: str) -> ChannelRecord:
        """Find a channel by name or by (a prefix of at least 6 characters of) its id.

        Raises:
            ChannelNotFound: none, or the prefix is ambiguous.
        """
        channels = self._channels()
        exact = [c for c in channels if name_or_id in (c.name, c.channel_id)]
        if len(exact) == 1:
            return exact[0]
        prefix = [
            c for c in channels if len(name_or_id) >= 6 and c.channel_id.startswith(name_or_id)
        ]
        if len(prefix) == 1:
            return prefix[0]
        known = ", ".join(sorted(c.name for c in channels)) or "none yet"
        if len(exact) > 1 or len(prefix) > 1:
            raise ChannelNotFound(f"'{name_or_id}' names several channels; use its id")
        raise ChannelNotFound(f"no channel '{name_or_id}' (channels: {known})")

    def _save_channel(self, record: ChannelRecord) -> None:
        """Write a channel back (compare-and-swap; inside the transaction that read it)."""
        self._channel_records.save(record)

    def _identity_changed(self, wanted_name: str, peer: PublicIdentity) -> bool:
        """True when a channel already under this name has another counterpart key: the
        counterpart re-paired with a new identity, or someone else is using its name. The
        same key pairing again is no alarm."""
        encoded = peer.encode().hex()
        return any(
            c.name.split("~")[0] == wanted_name and c.peer_identity != encoded
            for c in self._channels()
        )

    def _unique_name(self, wanted: str) -> str:
        taken = {c.name for c in self._channels()}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}~{n}", n + 1
        return name

    def pending_invites(self) -> list[InviteRecord]:
        return [load(InviteRecord, raw) for _, raw in self._store.all("invite")]

    def _put_message(self, channel: ChannelRecord, record: MessageRecord) -> None:
        cid = bytes.fromhex(channel.channel_id)
        ref = self._store.index(b"msg", bytes.fromhex(record.message_id))
        # `ord` is the order of first storage, kept when the record is updated (a receipt,
        # a read mark): the dialogue fold replays messages in the order they were learned.
        self._store.db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?,"
            " (SELECT COALESCE(MAX(ord), 0) + 1 FROM messages WHERE channel = ?))"
            " ON CONFLICT (channel, ref) DO UPDATE SET record = excluded.record",
            (
                cid,
                ref,
                1 if record.direction == "in" else 0,
                record.seq,
                self._store.seal("messages", cid + ref, dump(record)),
                cid,
            ),
        )

    def messages_after(self, channel_name: str, after_ord: int) -> list[tuple[int, MessageRecord]]:
        """Messages first stored after position `after_ord`, with their positions, in the
        order they were stored (for folding only what is new)."""
        channel = self.channel(channel_name)
        cid = bytes.fromhex(channel.channel_id)
        rows = self._store.db.execute(
            "SELECT ord, ref, record FROM messages WHERE channel = ? AND ord > ? ORDER BY ord",
            (cid, after_ord),
        ).fetchall()
        return [
            (
                int(ord_),
                load(MessageRecord, self._store.unseal("messages", cid + bytes(ref), bytes(raw))),
            )
            for ord_, ref, raw in rows
        ]

    def _get_message(self, channel_id: str, message_id: str) -> MessageRecord | None:
        cid = bytes.fromhex(channel_id)
        ref = self._store.index(b"msg", bytes.fromhex(message_id))
        row = self._store.db.execute(
            "SELECT record FROM messages WHERE channel = ? AND ref = ?", (cid, ref)
        ).fetchone()
        if row is None:
            return None
        record: MessageRecord = load(
            MessageRecord, self._store.unseal("messages", cid + ref, bytes(row[0]))
        )
        return record

    def _session(self, channel: ChannelRecord) -> Session:
        # Taken out of the cache: the caller may change it, and only `_keep_session` (after
        # the change is in the record) puts it back. A failure in between costs a decode.
        cached = self._sessions.pop(channel.channel_id, None)
        if cached is not None and cached[0] == channel.session:
            return cached[1]
        return Session.decode(bytes.fromhex(channel.session))

    def _keep_session(self, channel: ChannelRecord, session: Session) -> None:
        channel.session = session.encode().hex()
        self._sessions[channel.channel_id] = (channel.session, session)

    def _channel_by_id(self, channel_id: str) -> ChannelRecord:
        return self._channel_records.get(channel_id)

    def _messages(
        self, channel: ChannelRecord, order: str = "direction, seq"
    ) -> list[MessageRecord]:
        cid = bytes.fromhex(channel.channel_id)
        rows = self._store.db.execute(
            f"SELECT ref, record FROM messages WHERE channel = ? ORDER BY {order}", (cid,)
        ).fetchall()
        return [
            load(MessageRecord, self._store.unseal("messages", cid + bytes(ref), bytes(raw)))
            for ref, raw in rows
        ]

    def _entry(self, channel: ChannelRecord, record: MessageRecord) -> InboxEntry:
        raw = bytes.fromhex(record.body)
        precedence, ack_within, text = Precedence.ROUTINE, 0, ""
        if record.kind == MessageKind.NOTE:
            try:
                note = decode_body(record.kind, raw)
            except RemoteProtocolError:
                note = None
            if isinstance(note, Note):
                precedence, ack_within, text = note.precedence, note.ack_within_ms, note.text
            else:
                text = "(malformed note)"
        return InboxEntry(
            channel.name,
            record.message_id,
            record.seq,
            record.direction,
            record.kind,
            text,
            record.sent_at_ms,
            record.received_at_ms,
            record.delivered_at_ms,
            record.read_at_ms,
            tuple(record.stored_on),
            precedence,
            ack_within,
        )

    def messages(self, channel_name: str) -> list[MessageRecord]:
        """Every stored message of a channel, both ways and of every kind, in the order
        they were stored (each side's in sequence order)."""
        records = self._messages(self.channel(channel_name), order="ord")
        # Theirs may have been stored out of their order (two relays race): keep the slots
        # where theirs were learned, but fill them in their sequence order.
        slots = [i for i, m in enumerate(records) if m.direction == "in"]
        theirs = sorted((records[i] for i in slots), key=lambda m: m.seq)
        for slot, record in zip(slots, theirs, strict=True):
            records[slot] = record
        return records

    def _all_relays(self) -> list[str]:
        urls = [link.url for c in self._channels() for link in c.links]
        urls += [link.url for i in self.pending_invites() for link in i.links]
        return list(dict.fromkeys(urls))

    def _inbound_mailboxes(self, url: str) -> list[Mailbox]:
        boxes = [
            link.inbound
            for c in self._channels()
            for link in (*c.links, *c.retiring)
            if link.url == url
        ]
        boxes += [
            link.inbound for i in self.pending_invites() for link in i.links if link.url == url
        ]
        return boxes

    def _link_for(self, channel_id: str, url: str) -> Link | None:
        channel = self._channel_by_id(channel_id)
        return next((link for link in channel.links if link.url == url), None)

    def relay_health(self, url: str) -> RelayHealth:
        """What the last sync or watch saw of the relay at `url`."""
        raw = self._store.get("relay-health", url.encode())
        if raw is None:
            return RelayHealth(url, 0, "", 0)
        last_ok, error, error_ms = json.loads(raw)
        return RelayHealth(url, int(last_ok), str(error), int(error_ms))

    def _record_health(self, up: list[str], down: dict[str, str]) -> None:
        now = self._clock()
        with self._store.transaction():
            for url in up:
                old = self.relay_health(url)
                self._store.put(
                    "relay-health",
                    url.encode(),
                    json.dumps([now, old.last_error, old.last_error_ms]).encode(),
                )
            for url, reason in down.items():
                old = self.relay_health(url)
                self._store.put(
                    "relay-health",
                    url.encode(),
                    json.dumps([old.last_ok_ms, reason, now]).encode(),
                )

"""The client engine: one principal, its channels, the outbox and the inbox.

Rules that make it dependable (design §5):

1. A message is written to the outbox, with the session state that produced it, in one
   transaction *before* anything is sent; it leaves the outbox only when a relay answered
   `stored`. A crash at any point leaves it there to send again.
2. An envelope received is decrypted, its message stored, the ratchet state advanced and
   its payload digest recorded, in one transaction; only then is the relay acked. A crash
   before the commit means the relay delivers it again, and the old ratchet state still
   decrypts it; a crash after means the digest recognises the copy.
3. Copies (the same payload via two relays, or redelivered) are recognised by payload
   digest and by message id; order is by sequence number; a gap is shown until it fills.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from backchannel.client.errors import (
    ChannelNotFound,
    ClientError,
    IdentityChanged,
    InviteRefused,
    NotInitialised,
)
from backchannel.client.invite import Hello, Invite, RelayAddress
from backchannel.client.keystore import KdfParameters, Keystore
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
from backchannel.client.transport import (
    MailboxCaps,
    RelayClient,
    RelayClosed,
    RelayRequestError,
)
from backchannel.dialogue.bodies import Note, decode_body
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity, safety_number
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.primitives import Rng
from backchannel.protocol.e2e.ratchet import DuplicateMessage
from backchannel.protocol.e2e.session import PAYLOAD_INITIATION, Session
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import (
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)
from backchannel.protocol.message import MESSAGE_ID_SIZE, Message, MessageKind
from backchannel.protocol.relayframes import Delivery, ErrorCode
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "DEFAULT_INVITE_TTL_MS",
    "ChannelStatus",
    "InboxEntry",
    "Principal",
    "RelayHealth",
    "SendResult",
    "SyncReport",
]

# Long enough to pass a code through a courier or a diplomatic bag, short enough that a
# forgotten code is not a standing way in.
DEFAULT_INVITE_TTL_MS: Final = 7 * 24 * 3600 * 1000
# Message kind of the joiner's first message (see `invite.Hello`).
KIND_HELLO: Final = 0x0004
_RECEIPT_KINDS: Final = (MessageKind.RECEIPT_DELIVERED, MessageKind.RECEIPT_READ)
# Receipts for at most this many messages travel in one receipt message (16 bytes each:
# 4,000 fit a 64 KiB envelope with room to spare).
MAX_RECEIPT_IDS: Final = 4000
_FETCH_BATCH: Final = 100
# Envelopes in flight to one relay at once: enough to fill the relay's group commit, few
# enough that a relay going down mid-flush leaves little to resend.
_SEND_WINDOW: Final = 64
# A relay that says "rate limited" or "unavailable" is asked again after 0.1 s, doubling
# to 2 s; after 30 such rounds in one flush the rest waits for the next sync.
_RETRYABLE: Final = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})
_RETRY_FIRST_DELAY: Final = 0.1
_RETRY_MAX_DELAY: Final = 2.0
_MAX_RETRY_ROUNDS: Final = 30
# How long `watch` waits for arrivals before it looks at the outbox and the relays again.
_WATCH_TICK: Final = 0.2
# Seconds between `watch`'s rounds of duties: line tests and escalations need no finer
# grain than a second.
_DUTY_INTERVAL: Final = 1.0
# Seconds before `watch` tries a relay that went down again.
_RECONNECT_DELAY: Final = 2.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    seq: int
    stored_on: tuple[str, ...]
    queued_for: tuple[str, ...]


@dataclass(slots=True)
class SyncReport:
    received: int = 0
    new_notes: list[str] = field(default_factory=list)  # message ids of notes that arrived
    duplicates: int = 0
    rejected: int = 0
    sent: int = 0
    new_channels: list[str] = field(default_factory=list)
    relays_up: list[str] = field(default_factory=list)
    relays_down: dict[str, str] = field(default_factory=dict)
    line_tests_sent: int = 0
    line_tests_answered: int = 0
    escalated: int = 0


@dataclass(frozen=True, slots=True)
class InboxEntry:
    channel: str
    message_id: str
    seq: int
    direction: str
    kind: int
    text: str
    sent_at_ms: int
    received_at_ms: int
    delivered_at_ms: int
    read_at_ms: int
    stored_on: tuple[str, ...]
    precedence: int = Precedence.ROUTINE
    ack_within_ms: int = 0


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    name: str
    channel_id: str
    verified: bool
    relays: tuple[str, ...]
    last_heard_ms: int
    sent: int
    delivered: int
    read: int
    received: int
    unread: int
    queued: int
    gaps: tuple[tuple[int, int], ...]
    rejected: int
    relay_health: tuple[RelayHealth, ...] = ()
    identity_changed: bool = False
    # True until the counterpart has been heard from at all: for a joiner, the inviter has
    # not yet taken up the invite (a code someone else already used never completes).
    awaiting_counterpart: bool = False


@dataclass(frozen=True, slots=True)
class RelayHealth:
    """What this principal last saw of one relay."""

    url: str
    last_ok_ms: int
    last_error: str
    last_error_ms: int

    @property
    def up(self) -> bool:
        """Reachable at the last attempt (never tried counts as down)."""
        return self.last_ok_ms > 0 and self.last_ok_ms >= self.last_error_ms


def _receipt_body(ids: list[str]) -> bytes:
    w = Writer().u16(len(ids))
    for message_id in ids:
        w.fixed(bytes.fromhex(message_id), MESSAGE_ID_SIZE)
    return w.getvalue()


def _receipt_ids(body: bytes) -> list[str]:
    r = Reader(body, "receipt")
    count = r.u16()
    if count > MAX_RECEIPT_IDS:
        raise RemoteProtocolError("receipt names too many messages")
    ids = [r.fixed(MESSAGE_ID_SIZE).hex() for _ in range(count)]
    r.finish()
    return ids


def _gaps(seqs: list[int]) -> tuple[tuple[int, int], ...]:
    """Missing ranges in 1..max(seqs)."""
    gaps, expected = [], 1
    for seq in sorted(set(seqs)):
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = seq + 1
    return tuple(gaps)


class Principal:
    """One principal's client: identity, channels and their messages.

    Create with `Principal.create` or `Principal.open`; every network operation is async.
    `clock` (milliseconds) and `rng` are injectable for tests.
    """

    def __init__(
        self,
        store: Keystore,
        clock: Callable[[], int] = _wall_ms,
        rng: Rng = os.urandom,
    ) -> None:
        self._store = store
        self._clock = clock
        self._rng = rng
        # Connections kept open while `watch` runs, so sends need no new handshake.
        self._live: RelayPool | None = None
        # Parsed sessions by channel id, valid while the stored state is the same bytes
        # (a rolled-back transaction leaves the store different, so the cache misses).
        self._sessions: dict[str, tuple[str, Session]] = {}
        raw = store.get("identity", b"self")
        if raw is None:
            raise NotInitialised("this home has no identity: run `backchannel init` first")
        reader = Reader(raw, "identity record")
        self.name = reader.text16(64)
        self._identity = IdentityKeyPair.from_private_bytes(reader.fixed(64))

    # -- lifecycle --------------------------------------------------------------------

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
    ) -> Principal:
        """Create a principal with a fresh identity in `home`.

        Raises:
            ClientError: the name is empty or too long, or `home` already has a principal.
        """
        name = name.strip()
        if not 1 <= len(name.encode()) <= 64:
            raise ClientError("a name is 1 to 64 bytes of text")
        if not passphrase:
            raise ClientError("a passphrase is required to encrypt the local state")
        try:
            store = Keystore.create(home, passphrase, kdf)
        except FileExistsError:
            raise ClientError(f"{home} already holds a principal; use another --home") from None
        identity = IdentityKeyPair.generate(rng)
        with store.transaction():
            record = Writer().text16(name).fixed(identity.private_bytes(), 64).getvalue()
            store.put("identity", b"self", record)
        return cls(store, clock, rng)

    @classmethod
    def open(
        cls,
        home: Path,
        passphrase: str,
        *,
        clock: Callable[[], int] = _wall_ms,
        rng: Rng = os.urandom,
    ) -> Principal:
        """Open the principal in `home`.

        Raises:
            NotInitialised: no principal there.
            WrongPassphrase: the passphrase does not unlock it.
            StateCorrupted: the state file is damaged (it is left untouched).
        """
        try:
            store = Keystore.open(home, passphrase)
        except FileNotFoundError:
            raise NotInitialised(f"no principal in {home}: run `backchannel init`") from None
        try:
            return cls(store, clock, rng)
        except BaseException:
            store.close()
            raise

    def __enter__(self) -> Principal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

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
        with self._store.transaction():
            self._save_channel(record)

    def setting(self, key: str) -> str:
        raw = self._store.get("setting", key.encode())
        return "" if raw is None else raw.decode()

    def set_setting(self, key: str, value: str) -> None:
        with self._store.transaction():
            self._store.put("setting", key.encode(), value.encode())

    def escalated_ids(self, channel_id: str) -> set[bytes]:
        """Notes of this channel already escalated (each is escalated once)."""
        prefix = bytes.fromhex(channel_id)
        return {key[16:] for key, _ in self._store.all("escalated") if key[:16] == prefix}

    def escalate(self, channel_id: str, message_id: bytes) -> None:
        """Mark a note escalated and send its sealed payload again on every relay."""
        cid = bytes.fromhex(channel_id)
        channel = self._channel_by_id(channel_id)
        row = self._store.db.execute(
            "SELECT payload FROM retained WHERE channel = ? AND message_id = ?",
            (cid, message_id),
        ).fetchone()
        ref = self._store.index(b"msg", message_id)
        with self._store.transaction():
            self._store.put("escalated", cid + message_id, b"1")
            if row is None:
                return
            for link in channel.links:
                if link.outbound is not None:
                    envelope = Envelope(bytes.fromhex(link.outbound.mailbox_id), bytes(row[0]))
                    self._store.db.execute(
                        "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
                        (cid, link.url, ref, envelope.encode()),
                    )

    # -- channels ---------------------------------------------------------------------

    def _channels(self) -> list[ChannelRecord]:
        records: list[ChannelRecord] = [
            load(ChannelRecord, raw) for _, raw in self._store.all("channel")
        ]
        records.sort(key=lambda c: (c.created_at_ms, c.name))
        return records

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
        self._store.put("channel", bytes.fromhex(record.channel_id), dump(record))

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

    # -- pairing ----------------------------------------------------------------------

    async def invite(self, relays: list[str], *, ttl_ms: int = DEFAULT_INVITE_TTL_MS) -> str:
        """Create a one-time invite code for a new channel over `relays`.

        Raises:
            ClientError: no relay given, or one of them cannot create the mailbox.
        """
        urls = list(dict.fromkeys(relays))
        if not urls:
            raise ClientError("an invite needs at least one relay (--relay URL)")
        pool = RelayPool()
        links: list[Link] = []
        try:
            for url in urls:
                client = await pool.get(url)
                if client is None:
                    raise ClientError(f"relay {url} cannot be reached: {pool.failures[url]}")
                caps = await client.create_mailbox(self._fresh_caps())
                links.append(
                    Link(
                        url,
                        Mailbox(
                            caps.mailbox_id.hex(), caps.send_token.hex(), caps.receive_token.hex()
                        ),
                    )
                )
        except (RelayRequestError, RelayClosed) as error:
            raise ClientError(f"a relay refused to create the mailbox: {error}") from None
        finally:
            await pool.close()
        now = self._clock()
        prekeys = PrekeySecrets.generate(
            self._rng, one_time_count=1, first_id=int.from_bytes(self._rng(3), "big") + 1
        )
        opk_id = next(iter(prekeys.one_time_prekeys))
        invite_id = self._rng(16)
        addresses = tuple(
            RelayAddress(
                link.url,
                bytes.fromhex(link.inbound.mailbox_id),
                bytes.fromhex(link.inbound.send_token),
            )
            for link in links
        )
        invite = Invite(
            invite_id, now + ttl_ms, self.name, addresses, prekeys.bundle(self._identity, opk_id)
        ).signed(self._identity)
        record = InviteRecord(
            invite_id.hex(), self.name, prekeys.encode().hex(), links, now, now + ttl_ms
        )
        with self._store.transaction():
            self._store.put("invite", invite_id, dump(record))
        return invite.to_code()

    def _fresh_caps(self) -> MailboxCaps:
        return MailboxCaps(self._rng(16), self._rng(32), self._rng(32))

    def pending_invites(self) -> list[InviteRecord]:
        return [load(InviteRecord, raw) for _, raw in self._store.all("invite")]

    async def accept(self, code: str, *, name: str | None = None) -> ChannelRecord:
        """Join the channel an invite code offers and send the first message.

        Raises:
            InviteRefused: damaged, tampered, expired, ours, or already accepted.
            ClientError: none of the invite's relays can host our mailbox.
        """
        invite = Invite.from_code(code, self._clock())
        if invite.bundle.identity == self.identity:
            raise InviteRefused("this is your own invite: give it to your counterpart")
        if self._store.get("accepted", invite.invite_id) is not None:
            raise InviteRefused("this invite was already used")
        pool = RelayPool()
        links: list[Link] = []
        try:
            for relay in invite.relays:
                outbound = Mailbox(relay.mailbox_id.hex(), relay.send_token.hex())
                client = await pool.get(relay.url)
                if client is None:
                    continue
                caps = await client.create_mailbox(self._fresh_caps())
                inbound = Mailbox(
                    caps.mailbox_id.hex(), caps.send_token.hex(), caps.receive_token.hex()
                )
                links.append(Link(relay.url, inbound, outbound))
        except (RelayRequestError, RelayClosed) as error:
            raise ClientError(f"a relay refused to create our mailbox: {error}") from None
        finally:
            await pool.close()
        if not links:
            down = ", ".join(f"{u} ({r})" for u, r in pool.failures.items())
            raise ClientError(f"none of the invite's relays can be reached: {down}")
        session = Session.initiate(self._identity, invite.bundle, self._rng)
        changed = self._identity_changed(name or invite.name, invite.bundle.identity)
        channel = ChannelRecord(
            channel_id=self._rng(16).hex(),
            identity_changed=changed,
            name=self._unique_name(name or invite.name),
            peer_identity=invite.bundle.identity.encode().hex(),
            session="",
            links=links,
            created_at_ms=self._clock(),
            role="joiner",
        )
        hello = Hello(
            self.name,
            tuple(
                RelayAddress(
                    link.url,
                    bytes.fromhex(link.inbound.mailbox_id),
                    bytes.fromhex(link.inbound.send_token),
                )
                for link in links
            ),
        )
        with self._store.transaction():
            self._store.put("accepted", invite.invite_id, b"1")
            self._queue(channel, session, KIND_HELLO, hello.encode())
        await self.flush()
        return channel

    # -- sending ----------------------------------------------------------------------

    def _queue(
        self,
        channel: ChannelRecord,
        session: Session,
        kind: int,
        body: bytes,
        *,
        retain: bool = False,
    ) -> Message:
        """Seal a message and put it in the outbox (inside the caller's transaction)."""
        sealed = session.seal(kind, body, self._clock(), self._rng)
        if retain:
            self._store.db.execute(
                "INSERT OR REPLACE INTO retained VALUES (?, ?, ?)",
                (bytes.fromhex(channel.channel_id), sealed.message.message_id, sealed.payload),
            )
        self._keep_session(channel, session)
        self._save_channel(channel)
        message = sealed.message
        record = MessageRecord(
            message.message_id.hex(),
            "out",
            message.seq,
            message.kind,
            message.sent_at_ms,
            message.body.hex(),
            message_hash=message.hash.hex(),
        )
        self._put_message(channel, record)
        ref = self._store.index(b"msg", message.message_id)
        for link in channel.links:
            if link.outbound is None:
                continue
            envelope = Envelope(bytes.fromhex(link.outbound.mailbox_id), sealed.payload)
            self._store.db.execute(
                "INSERT INTO outbox (channel, relay, ref, envelope) VALUES (?, ?, ?, ?)",
                (bytes.fromhex(channel.channel_id), link.url, ref, envelope.encode()),
            )
        return message

    def _put_message(self, channel: ChannelRecord, record: MessageRecord) -> None:
        cid = bytes.fromhex(channel.channel_id)
        ref = self._store.index(b"msg", bytes.fromhex(record.message_id))
        # `ord` is the order of first storage, kept when the record is updated (a receipt,
        # a read mark): the dialogue fold replays messages in the order they were learned.
        self._store.db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?,"
            " (SELECT COALESCE(MAX(ord), 0) + 1 FROM messages))"
            " ON CONFLICT (channel, ref) DO UPDATE SET record = excluded.record",
            (
                cid,
                ref,
                1 if record.direction == "in" else 0,
                record.seq,
                self._store.seal("messages", cid + ref, dump(record)),
            ),
        )

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
        raw = self._store.get("channel", bytes.fromhex(channel_id))
        if raw is None:
            raise ChannelNotFound(f"no channel {channel_id}")
        record: ChannelRecord = load(ChannelRecord, raw)
        return record

    def queue(
        self,
        channel_name: str,
        text: str,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
    ) -> str:
        """Put a note in the outbox without touching the network; returns its message id.

        The next `flush`, `sync` or running `watch` sends it.

        Args:
            precedence: FLASH, PRIORITY or ROUTINE (the hotline's terms).
            ack_within_ms: a deadline for the counterpart's explicit acknowledgement (0:
                none); missed, the note is escalated.

        Raises:
            ChannelNotFound: no such channel.
            IdentityChanged: the counterpart's key changed and was not yet confirmed.
            ClientError: the channel cannot send yet, or the note is invalid.
        """
        try:
            note = Note(precedence, ack_within_ms, text)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return self.queue_body(
            channel_name, MessageKind.NOTE, note.encode(), retain=ack_within_ms > 0
        )

    def queue_body(self, channel_name: str, kind: int, body: bytes, *, retain: bool = False) -> str:
        """Put a message of any kind in the outbox; returns its message id.

        Args:
            retain: keep the sealed payload so that an escalation can send it again.

        Raises:
            ChannelNotFound, IdentityChanged, ClientError: as for `queue`.
        """
        channel = self.channel(channel_name)
        if channel.identity_changed and not channel.verified:
            raise IdentityChanged(
                f"'{channel.name}' has a different identity key than the earlier channel of "
                f"that name; compare the safety number (backchannel verify {channel.name}) "
                f"and confirm it before sending"
            )
        session = self._session(channel)
        try:
            with self._store.transaction():
                message = self._queue(channel, session, kind, body, retain=retain)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return message.message_id.hex()

    async def send(
        self,
        channel_name: str,
        text: str,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
    ) -> SendResult:
        """Send a note: stored in the outbox first, then offered to every relay.

        Returns:
            Where it was stored now and where it is still queued (sent by a later sync).

        Raises:
            ChannelNotFound: no such channel.
            ClientError: the channel cannot send yet (its first message has not arrived).
        """
        message_id = self.queue(
            channel_name, text, precedence=precedence, ack_within_ms=ack_within_ms
        )
        return await self.deliver(channel_name, message_id)

    async def deliver(self, channel_name: str, message_id: str) -> SendResult:
        """Flush the outbox and report where one queued message now is."""
        channel = self.channel(channel_name)
        await self.flush()
        record = self._get_message(channel.channel_id, message_id)
        stored = tuple(record.stored_on) if record else ()
        queued = tuple(
            link.url
            for link in channel.links
            if link.url not in stored and link.outbound is not None
        )
        seq = record.seq if record else 0
        return SendResult(message_id, seq, stored, queued)

    async def flush(self, pool: RelayPool | None = None) -> int:
        """Offer every queued envelope to its relay; returns how many were stored."""
        own_pool = pool is None and self._live is None
        pool = pool or self._live or RelayPool()
        sent = 0
        try:
            relays = [
                r
                for (r,) in self._store.db.execute(
                    "SELECT DISTINCT relay FROM outbox ORDER BY relay"
                ).fetchall()
            ]
            for url in relays:
                sent += await self._flush_relay(pool, url)
        finally:
            if own_pool:
                await pool.close()
        return sent

    async def _flush_relay(self, pool: RelayPool, url: str) -> int:
        client = await pool.get(url)
        if client is None:
            return 0
        rows = self._store.db.execute(
            "SELECT id, channel, ref, envelope FROM outbox WHERE relay = ? ORDER BY id", (url,)
        ).fetchall()
        tokens = {
            channel.channel_id: link.outbound.send_token
            for channel in self._channels()
            for link in channel.links
            if link.url == url and link.outbound is not None
        }
        pending = [r for r in rows if bytes(r[1]).hex() in tokens]
        sent, backoff, rounds = 0, _RETRY_FIRST_DELAY, 0
        while pending:
            window, pending = pending[:_SEND_WINDOW], pending[_SEND_WINDOW:]
            # Pipelined: the relay batches these into one commit; we wait for all receipts.
            results = await asyncio.gather(
                *(
                    client.send(
                        bytes(raw)[1:17], bytes.fromhex(tokens[bytes(cid).hex()]), bytes(raw)
                    )
                    for _, cid, _, raw in window
                ),
                return_exceptions=True,
            )
            stored = [
                row for row, result in zip(window, results, strict=True) if isinstance(result, int)
            ]
            retry = [
                row
                for row, result in zip(window, results, strict=True)
                if isinstance(result, RelayRequestError) and result.code in _RETRYABLE
            ]
            with self._store.transaction():
                for row_id, cid, ref, _ in stored:
                    self._store.db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                    self._mark_stored(bytes(cid).hex(), bytes(ref), url)
                for (row_id, *_), result in zip(window, results, strict=True):
                    if isinstance(result, RelayRequestError) and result.code not in _RETRYABLE:
                        # Refused for good (quota, unknown mailbox): the message stays
                        # queued and `status` shows the reason.
                        self._store.db.execute(
                            "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?"
                            " WHERE id = ?",
                            (self._clock(), row_id),
                        )
                        self._store.put("relay-error", url.encode(), str(result).encode())
            sent += len(stored)
            failure = next(
                (
                    r
                    for r in results
                    if isinstance(r, BaseException) and not isinstance(r, RelayRequestError)
                ),
                None,
            )
            if failure is not None:
                await pool.mark_down(url, str(failure) or type(failure).__name__)
                break
            if retry:
                # The relay asked us to slow down: back off, then resend those first.
                rounds += 1
                if rounds > _MAX_RETRY_ROUNDS:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_DELAY)
                pending = retry + pending
            else:
                backoff = _RETRY_FIRST_DELAY
        return sent

    def _mark_stored(self, channel_id: str, ref: bytes, url: str) -> None:
        cid = bytes.fromhex(channel_id)
        row = self._store.db.execute(
            "SELECT record FROM messages WHERE channel = ? AND ref = ?", (cid, ref)
        ).fetchone()
        if row is None:
            return
        record: MessageRecord = load(
            MessageRecord, self._store.unseal("messages", cid + ref, bytes(row[0]))
        )
        if url not in record.stored_on:
            record.stored_on.append(url)
            self._put_message(self._channel_by_id(channel_id), record)

    def _link_for(self, channel_id: str, url: str) -> Link | None:
        channel = self._channel_by_id(channel_id)
        return next((link for link in channel.links if link.url == url), None)

    # -- receiving --------------------------------------------------------------------

    async def sync(self) -> SyncReport:
        """Send everything queued, fetch and process everything waiting, send receipts."""
        report = SyncReport()
        pool = RelayPool()
        try:
            report.sent += await self.flush(pool)
            for url in self._all_relays():
                client = await pool.get(url)
                if client is None:
                    continue
                for mailbox in self._inbound_mailboxes(url):
                    try:
                        await self._drain(client, mailbox, report)
                    except RelayClosed as error:
                        await pool.mark_down(url, str(error))
                        break
            with self._store.transaction():
                self._queue_receipts()
            self._perform_duties(report)
            report.sent += await self.flush(pool)
            report.relays_down = dict(pool.failures)
            report.relays_up = sorted(set(self._all_relays()) - set(pool.failures))
            self._record_health(report.relays_up, report.relays_down)
        finally:
            await pool.close()
        return report

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_message: Callable[[InboxEntry], None] | None = None,
        reconnect_after: float = _RECONNECT_DELAY,
        duty_interval: float = _DUTY_INTERVAL,
    ) -> SyncReport:
        """Stay connected: receive as envelopes arrive, send receipts and the outbox,
        reconnect to relays that drop, until `stop` is set.

        Args:
            stop: set it to end the watch (after the work in hand is committed).
            on_message: called with each new note as soon as it is stored.
            reconnect_after: seconds before a relay that is down is tried again.
            duty_interval: seconds between rounds of duties (line tests, escalations).
        """
        report = SyncReport()
        pool = self._live = RelayPool()
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]] = asyncio.Queue()
        readers: dict[str, asyncio.Task[None]] = {}
        subscribed: set[tuple[str, str]] = set()
        retry_at: dict[str, float] = {}
        loop = asyncio.get_running_loop()
        next_duties = 0.0

        async def read(url: str, client: RelayClient) -> None:
            try:
                while True:
                    mailbox_id, delivery = await client.receive()
                    arrivals.put_nowait((url, mailbox_id, delivery))
            except RelayClosed as error:
                await pool.mark_down(url, str(error))

        try:
            while not stop.is_set():
                for url in self._all_relays():
                    task = readers.get(url)
                    if task is not None and task.done():
                        del readers[url]
                        subscribed = {s for s in subscribed if s[0] != url}
                        retry_at[url] = loop.time() + reconnect_after
                    if url in pool.failures and loop.time() >= retry_at.setdefault(
                        url, loop.time() + reconnect_after
                    ):
                        del pool.failures[url]
                        retry_at.pop(url, None)
                    client = await pool.get(url)
                    if client is None:
                        continue
                    for mailbox in self._inbound_mailboxes(url):
                        if (url, mailbox.mailbox_id) in subscribed:
                            continue
                        try:
                            await client.subscribe(
                                bytes.fromhex(mailbox.mailbox_id),
                                bytes.fromhex(mailbox.receive_token),
                            )
                        except (RelayClosed, RelayRequestError):
                            break
                        subscribed.add((url, mailbox.mailbox_id))
                    if url not in readers:
                        readers[url] = asyncio.create_task(read(url, client))
                await self._take_arrivals(arrivals, pool, report, on_message)
                if self._store.db.execute("SELECT 1 FROM pending_receipts LIMIT 1").fetchone():
                    with self._store.transaction():
                        self._queue_receipts()
                if loop.time() >= next_duties:
                    self._perform_duties(report)
                    next_duties = loop.time() + duty_interval
                report.sent += await self.flush(pool)
        finally:
            for task in readers.values():
                task.cancel()
            await asyncio.gather(*readers.values(), return_exceptions=True)
            self._live = None
            report.relays_down = dict(pool.failures)
            await pool.close()
        return report

    async def _take_arrivals(
        self,
        arrivals: asyncio.Queue[tuple[str, bytes, Delivery]],
        pool: RelayPool,
        report: SyncReport,
        on_message: Callable[[InboxEntry], None] | None,
    ) -> None:
        """Process what arrived (waiting briefly if nothing has), then ack it in batches."""
        try:
            first = await asyncio.wait_for(arrivals.get(), _WATCH_TICK)
        except TimeoutError:
            return
        batch = [first]
        while not arrivals.empty() and len(batch) < _FETCH_BATCH:
            batch.append(arrivals.get_nowait())
        acks: dict[tuple[str, bytes], list[int]] = {}
        arrived = []
        with self._store.transaction():
            for url, mailbox_id, delivery in batch:
                entry = self._process(mailbox_id, delivery.envelope, report)
                acks.setdefault((url, mailbox_id), []).append(delivery.seq)
                if entry is not None:
                    arrived.append(entry)
        if on_message is not None:
            for entry in arrived:
                on_message(entry)
        for (url, mailbox_id), seqs in acks.items():
            client = await pool.get(url)
            mailbox = next(
                (m for m in self._inbound_mailboxes(url) if m.mailbox_id == mailbox_id.hex()),
                None,
            )
            if client is None or mailbox is None:
                continue
            try:
                await client.ack(mailbox_id, bytes.fromhex(mailbox.receive_token), tuple(seqs))
            except (RelayClosed, RelayRequestError):
                continue  # unacked envelopes come again and are recognised as copies

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

    def relay_health(self, url: str) -> RelayHealth:
        """What the last sync or watch saw of the relay at `url`."""
        raw = self._store.get("relay-health", url.encode())
        if raw is None:
            return RelayHealth(url, 0, "", 0)
        last_ok, error, error_ms = json.loads(raw)
        return RelayHealth(url, int(last_ok), str(error), int(error_ms))

    def _perform_duties(self, report: SyncReport) -> None:
        from backchannel.client.strategic import perform_duties  # it builds on this module

        duties = perform_duties(self)
        report.line_tests_sent += duties.line_tests_sent
        report.line_tests_answered += duties.line_tests_answered
        report.escalated += duties.escalated

    def _all_relays(self) -> list[str]:
        urls = [link.url for c in self._channels() for link in c.links]
        urls += [link.url for i in self.pending_invites() for link in i.links]
        return list(dict.fromkeys(urls))

    def _inbound_mailboxes(self, url: str) -> list[Mailbox]:
        boxes = [link.inbound for c in self._channels() for link in c.links if link.url == url]
        boxes += [
            link.inbound for i in self.pending_invites() for link in i.links if link.url == url
        ]
        return boxes

    async def _drain(self, client: RelayClient, mailbox: Mailbox, report: SyncReport) -> None:
        mailbox_id = bytes.fromhex(mailbox.mailbox_id)
        token = bytes.fromhex(mailbox.receive_token)
        after = 0
        while True:
            deliveries, more = await client.fetch(mailbox_id, token, after, _FETCH_BATCH)
            done = []
            with self._store.transaction():
                for delivery in deliveries:
                    self._process(mailbox_id, delivery.envelope, report)
                    done.append(delivery.seq)
                    after = max(after, delivery.seq)
            if done:
                await client.ack(mailbox_id, token, tuple(done))
            if not more or not deliveries:
                return

    def _owner(self, mailbox_id: bytes) -> ChannelRecord | InviteRecord | None:
        hex_id = mailbox_id.hex()
        for channel in self._channels():
            if any(link.inbound.mailbox_id == hex_id for link in channel.links):
                return channel
        for invite in self.pending_invites():
            if any(link.inbound.mailbox_id == hex_id for link in invite.links):
                return invite
        return None

    def _process(self, mailbox_id: bytes, raw: bytes, report: SyncReport) -> InboxEntry | None:
        """Decrypt, store and advance. Runs inside the caller's transaction, which covers a
        whole batch: one commit (one fsync) per batch, and a crash loses the batch's work
        but never its envelopes, which were not yet acked.

        Returns:
            The note that arrived, if the envelope carried a new one.
        """
        try:
            envelope = Envelope.decode(raw)
        except RemoteProtocolError:
            report.rejected += 1
            return None
        digest = self._store.index(b"payload", envelope.payload)
        seen = self._store.db.execute(
            "SELECT 1 FROM processed WHERE digest = ?", (digest,)
        ).fetchone()
        if seen:
            report.duplicates += 1
            return None
        owner = self._owner(mailbox_id)
        self._store.db.execute("INSERT INTO processed VALUES (?)", (digest,))
        if isinstance(owner, InviteRecord):
            self._accept_joiner(owner, envelope.payload, report)
        elif isinstance(owner, ChannelRecord):
            return self._receive(owner, envelope.payload, report)
        else:
            report.rejected += 1
        return None

    def _accept_joiner(self, invite: InviteRecord, payload: bytes, report: SyncReport) -> None:
        if payload[:1] != bytes((PAYLOAD_INITIATION,)) or self._clock() >= invite.expires_at_ms:
            report.rejected += 1
            return
        prekeys = PrekeySecrets.decode(bytes.fromhex(invite.prekeys))
        try:
            session, message, _remaining = Session.respond(
                self._identity, prekeys, payload, self._rng
            )
            hello = Hello.decode(message.body) if message.kind == KIND_HELLO else None
        except (DecryptionFailed, RemoteProtocolError):
            report.rejected += 1
            return
        if hello is None:
            report.rejected += 1
            return
        by_url = {address.url: address for address in hello.relays}
        links = []
        for link in invite.links:
            address = by_url.get(link.url)
            if address is not None:
                link.outbound = Mailbox(address.mailbox_id.hex(), address.send_token.hex())
            links.append(link)
        channel = ChannelRecord(
            channel_id=self._rng(16).hex(),
            identity_changed=self._identity_changed(hello.name, session.peer_identity),
            name=self._unique_name(hello.name),
            peer_identity=session.peer_identity.encode().hex(),
            session=session.encode().hex(),
            links=links,
            created_at_ms=self._clock(),
            role="inviter",
            last_heard_ms=self._clock(),
        )
        # The invite is spent: its one-time prekey goes with it, so a second use fails.
        self._store.delete("invite", bytes.fromhex(invite.invite_id))
        self._store_incoming(channel, message)
        self._save_channel(channel)
        report.new_channels.append(channel.name)
        report.received += 1

    def _receive(
        self, channel: ChannelRecord, payload: bytes, report: SyncReport
    ) -> InboxEntry | None:
        session = self._session(channel)
        try:
            message = session.open(payload, self._rng)
        except DuplicateMessage:
            report.duplicates += 1
            return None
        except (DecryptionFailed, RemoteProtocolError):
            # Tampered, forged or foreign: counted and reported, never shown.
            channel.rejected += 1
            self._save_channel(channel)
            report.rejected += 1
            return None
        self._keep_session(channel, session)
        channel.last_heard_ms = self._clock()
        entry = None
        if self._get_message(channel.channel_id, message.message_id.hex()) is not None:
            report.duplicates += 1
        else:
            record = self._store_incoming(channel, message)
            report.received += 1
            if message.kind == MessageKind.NOTE:
                entry = self._entry(channel, record)
                report.new_notes.append(record.message_id)
        self._save_channel(channel)
        return entry

    def _store_incoming(self, channel: ChannelRecord, message: Message) -> MessageRecord:
        now = self._clock()
        record = MessageRecord(
            message.message_id.hex(),
            "in",
            message.seq,
            message.kind,
            message.sent_at_ms,
            message.body.hex(),
            received_at_ms=now,
            message_hash=message.hash.hex(),
        )
        self._put_message(channel, record)
        if message.kind in _RECEIPT_KINDS:
            try:
                ids = _receipt_ids(message.body)
            except RemoteProtocolError:
                return record
            for message_id in ids:
                ours = self._get_message(channel.channel_id, message_id)
                if ours is None or ours.direction != "out":
                    continue
                if message.kind == MessageKind.RECEIPT_DELIVERED:
                    ours.delivered_at_ms = ours.delivered_at_ms or message.sent_at_ms
                else:
                    ours.read_at_ms = ours.read_at_ms or message.sent_at_ms
                    ours.delivered_at_ms = ours.delivered_at_ms or message.sent_at_ms
                self._put_message(channel, ours)
        else:
            self._pending_receipt(channel, MessageKind.RECEIPT_DELIVERED, message.message_id)
        return record

    def _pending_receipt(self, channel: ChannelRecord, kind: int, message_id: bytes) -> None:
        self._store.db.execute(
            "INSERT OR IGNORE INTO pending_receipts VALUES (?, ?, ?)",
            (bytes.fromhex(channel.channel_id), kind, message_id),
        )

    def _queue_receipts(self) -> None:
        """Seal one receipt message per channel and kind for everything stored since the
        last one (inside the caller's transaction, with the receipts' removal)."""
        rows = self._store.db.execute(
            "SELECT channel, kind, message_id FROM pending_receipts ORDER BY rowid"
        ).fetchall()
        grouped: dict[tuple[str, int], list[str]] = {}
        for cid, kind, message_id in rows:
            grouped.setdefault((bytes(cid).hex(), kind), []).append(bytes(message_id).hex())
        for (channel_id, kind), ids in grouped.items():
            channel = self._channel_by_id(channel_id)
            if channel.identity_changed and not channel.verified:
                continue  # receipts wait too, until the changed key has been looked at
            session = self._session(channel)
            if not session.can_send or not any(link.outbound for link in channel.links):
                continue
            for start in range(0, len(ids), MAX_RECEIPT_IDS):
                self._queue(
                    channel, session, kind, _receipt_body(ids[start : start + MAX_RECEIPT_IDS])
                )
            self._store.db.execute(
                "DELETE FROM pending_receipts WHERE channel = ? AND kind = ?",
                (bytes.fromhex(channel_id), kind),
            )

    # -- reading ----------------------------------------------------------------------

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

    def transcript(self, channel_name: str) -> list[InboxEntry]:
        """Notes both ways, in the order they were sent (by sender time, then seq)."""
        channel = self.channel(channel_name)
        notes = [m for m in self._messages(channel) if m.kind == MessageKind.NOTE]
        notes.sort(key=lambda m: (m.sent_at_ms, m.direction, m.seq))
        return [self._entry(channel, m) for m in notes]

    def inbox(self, channel_name: str | None = None) -> list[InboxEntry]:
        """Received notes, per channel in sequence order."""
        channels = [self.channel(channel_name)] if channel_name else self._channels()
        entries = []
        for channel in channels:
            for record in self._messages(channel):
                if record.direction == "in" and record.kind == MessageKind.NOTE:
                    entries.append(self._entry(channel, record))
        return entries

    async def read(self, channel_name: str, message_id: str | None = None) -> list[InboxEntry]:
        """Open received notes (one, or all unread), mark them read and send read receipts."""
        channel = self.channel(channel_name)
        chosen = [
            m
            for m in self._messages(channel)
            if m.direction == "in"
            and m.kind == MessageKind.NOTE
            and (m.message_id.startswith(message_id) if message_id else not m.read_at_ms)
        ]
        if message_id and not chosen:
            raise ClientError(f"no received message {message_id} in '{channel.name}'")
        now = self._clock()
        with self._store.transaction():
            for record in chosen:
                if not record.read_at_ms:
                    record.read_at_ms = now
                    self._pending_receipt(
                        channel, MessageKind.RECEIPT_READ, bytes.fromhex(record.message_id)
                    )
                    self._put_message(channel, record)
            self._queue_receipts()
        await self.flush()
        return [self._entry(channel, m) for m in chosen]

    # -- verification and status ------------------------------------------------------

    def safety_number(self, channel_name: str) -> tuple[str, tuple[str, ...], bool]:
        """(digits, words, verified) for a channel."""
        channel = self.channel(channel_name)
        peer = PublicIdentity.decode(bytes.fromhex(channel.peer_identity))
        number = safety_number(self.identity, peer)
        return str(number), number.words, channel.verified

    def confirm_verified(self, channel_name: str) -> None:
        """Record that the safety number was compared out of band and matched."""
        channel = self.channel(channel_name)
        channel.verified = True
        with self._store.transaction():
            self._save_channel(channel)

    def status(self, channel_name: str | None = None) -> list[ChannelStatus]:
        channels = [self.channel(channel_name)] if channel_name else self._channels()
        result = []
        for channel in channels:
            messages = self._messages(channel)
            out = [m for m in messages if m.direction == "out" and m.kind == MessageKind.NOTE]
            inbound = [m for m in messages if m.direction == "in"]
            notes_in = [m for m in inbound if m.kind == MessageKind.NOTE]
            (queued,) = self._store.db.execute(
                "SELECT COUNT(DISTINCT ref) FROM outbox WHERE channel = ?",
                (bytes.fromhex(channel.channel_id),),
            ).fetchone()
            result.append(
                ChannelStatus(
                    channel.name,
                    channel.channel_id,
                    channel.verified,
                    tuple(link.url for link in channel.links),
                    channel.last_heard_ms,
                    len(out),
                    sum(1 for m in out if m.delivered_at_ms),
                    sum(1 for m in out if m.read_at_ms),
                    len(notes_in),
                    sum(1 for m in notes_in if not m.read_at_ms),
                    int(queued),
                    _gaps([m.seq for m in inbound]),
                    channel.rejected,
                    tuple(self.relay_health(link.url) for link in channel.links),
                    channel.identity_changed,
                    channel.last_heard_ms == 0,
                )
            )
        return result

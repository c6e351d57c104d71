"""The client engine: one principal, its channels, the outbox and the inbox.

Rules that make it dependable (design §5):

1. A message is written to the outbox, with the session state that produced it, in one
   transaction *before* anything is sent; it leaves the outbox only when a relay answered
   `stored`. A crash at any point leaves it there to send again (`sending`).
2. An envelope received is decrypted, its message stored, the ratchet state advanced and
   its payload digest recorded, in one transaction; only then is the relay acked. A crash
   before the commit means the relay delivers it again, and the old ratchet state still
   decrypts it; a crash after means the digest recognises the copy (`receiving`).
3. Copies (the same payload via two relays, or redelivered) are recognised by payload
   digest and by message id; order is by sequence number; a gap is shown until it fills.
4. Every read-modify-write is one `store.transaction()` that reads what it writes, and a
   channel record is written back with compare-and-swap (`state.channels`), so two
   handles or processes of one principal never fork its ratchet.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from backchannel.client.agent.lock import DEFAULT_LOCK_TIMEOUT, HomeLock, LockHolder
from backchannel.client.duties import Duties
from backchannel.client.errors import ClientError, HomeReadOnly, NotInitialised
from backchannel.client.exchange import (
    DUTY_INTERVAL,
    RECONNECT_DELAY,
    SYNC_DEADLINE,
    Exchange,
)
from backchannel.client.forks import ForkRecord
from backchannel.client.history import HistoryPage, build_history
from backchannel.client.keystore import STATE_FILE, KdfParameters, Keystore, read_only_reason
from backchannel.client.pairing import DEFAULT_INVITE_TTL_MS, Pairing, delete_mailboxes
from backchannel.client.receipts import sequence_gaps
from backchannel.client.receiving import Receiver, inbox_entry
from backchannel.client.records import (
    ChannelRecord,
    InviteClaimRecord,
    InviteRecord,
    MessageRecord,
)
from backchannel.client.relays import RelayPool
from backchannel.client.reports import (
    ChannelStatus,
    InboxEntry,
    RelayHealth,
    SendResult,
    SyncReport,
)
from backchannel.client.sending import Sender
from backchannel.client.state.messages import in_seq_slots
from backchannel.client.state.shared import ClientState, store_identity
from backchannel.client.state.slotstatus import DirectionStatus
from backchannel.client.transport import DEFAULT_REQUEST_TIMEOUT
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity, safety_number
from backchannel.protocol.e2e.primitives import Rng
from backchannel.protocol.errors import UnsafeText
from backchannel.protocol.message import MessageKind
from backchannel.protocol.text import check_safe_text

__all__ = [
    "DEFAULT_INVITE_TTL_MS",
    "ChannelStatus",
    "InboxEntry",
    "Principal",
    "RelayHealth",
    "SendResult",
    "SyncReport",
]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Principal:
    """One principal's client: identity, channels and their messages.

    Composed, not inherited: one `state.shared.ClientState` (the store and its typed
    repositories, the identity, clock, random source and session cache) is passed
    explicitly to parts with one job each, and `Principal` delegates to them:

    - `sending.Sender`: queue (seal into the outbox), flush, escalate, lost relays;
    - `pairing.Pairing`: invite, accept, take up a joiner;
    - `receiving.Receiver`: process an envelope, receipts, forks, moves, read;
    - `duties.Duties`: line tests and escalations (and their commands);
    - `exchange.Exchange`: `sync` and `watch` over the relays, using the other parts.

    Dependencies point one way (exchange -> duties, receiving -> pairing -> sending ->
    state); `strategic.StrategicChannel` builds on `Principal`, and nothing here imports
    it. Create with `Principal.create` or `Principal.open`; every network operation is
    async. `clock` (milliseconds) and `rng` are injectable for tests.
    """

    def __init__(
        self,
        store: Keystore,
        clock: Callable[[], int] = _wall_ms,
        rng: Rng = os.urandom,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        # request_timeout: seconds each relay has to answer each request (tests of
        # silent relays shorten it).
        self._state = state = ClientState(store, clock, rng, request_timeout)
        self._store = store
        self._lock: HomeLock | None = None
        self._sender = Sender(state)
        self._pairing = Pairing(state, self._sender)
        self._receiver = Receiver(state, self._sender, self._pairing)
        self.duties = Duties(state, self._sender)
        self._exchange = Exchange(state, self._sender, self._receiver, self.duties)
        self.name = state.name

    def __repr__(self) -> str:
        return f"Principal({self.name!r}, {self._store!r})"

    # --- opening and closing --------------------------------------------------------------

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
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> Self:
        """Create a principal with a fresh identity in `home`.

        Raises:
            ClientError: the name is empty, too long or has a character the text policy
                refuses (`protocol.text`), or `home` already has a principal.
        """
        name = name.strip()
        if not 1 <= len(name.encode(errors="surrogatepass")) <= 64:
            raise ClientError("a name is 1 to 64 bytes of text")
        try:
            # The counterpart's client refuses such a name in our invite or hello; say so
            # now rather than after the first invite.
            check_safe_text(name, "the name")
        except UnsafeText as error:
            raise ClientError(str(error)) from None
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
            with store.transaction():
                store_identity(store, name, IdentityKeyPair.generate(rng))
            principal = cls(store, clock, rng, request_timeout=request_timeout)
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
        give_up: Callable[[LockHolder | None], bool] | None = None,
        read_only: bool | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> Self:
        """Open the principal in `home`, holding its lock until `close`.

        Only one process (or open principal) has a home at a time: while another holds
        it, this waits up to `lock_timeout` seconds, calling `on_wait` once.

        A home this process cannot write (`keystore.read_only_reason`: a mounted backup,
        a locked-down copy) is opened read-only and without the lock, whose file could
        not be made or written there: the lock keeps writers apart, and this handle is
        none. Everything that reads works; every write raises `HomeReadOnly` before
        anything changes (`read_only_reason` says why).

        Args:
            read_only: True opens a writable home read-only too (under its lock); False
                insists on writing (a read-only home raises `HomeReadOnly`); None decides
                by the home.
            request_timeout: seconds each relay has to answer each request.

        Raises:
            NotInitialised: no principal there.
            HomeBusy: another process kept the home for longer than `lock_timeout`.
            WrongPassphrase: the passphrase does not unlock it.
            StateCorrupted: the state file is damaged (it is left untouched).
            HomeReadOnly: `read_only` is False and the home cannot be written.
        """
        if not (home / STATE_FILE).exists():
            raise NotInitialised(f"no principal in {home}: run `backchannel init`")
        unwritable = read_only_reason(home)
        if unwritable and read_only is False:
            raise HomeReadOnly(home, unwritable, "opening it to write")
        lock = None if unwritable else HomeLock(home)
        if lock is not None:
            lock.acquire(role=lock_role, timeout=lock_timeout, on_wait=on_wait, give_up=give_up)
        try:
            try:
                # Unwritable: the keystore finds the same reason again and says it.
                mode = None if unwritable else bool(read_only)
                store = Keystore.open(home, passphrase, read_only=mode)
            except FileNotFoundError:
                raise NotInitialised(
                    f"no principal in {home}: run `backchannel init`"
                ) from None
            try:
                principal = cls(store, clock, rng, request_timeout=request_timeout)
                if not store.read_only:
                    with store.transaction():
                        # Whoever held the home before us is gone: so are its send claims.
                        principal._state.outbox.release_all()
            except BaseException:
                store.close()
                raise
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        principal._lock = lock
        return principal

    def worker(self) -> Self:
        """Another handle on this open principal, with its own database connection and
        no lock of its own (the lock stays with this one): what the agent gives each
        local request, so a request never shares a connection with the agent's loop.
        Every read-modify-write is one transaction with compare-and-swap, and flushes
        claim the rows they send, so both handles may write and send. Close it when the
        request is done. It shares which channels a running watch sends in slots."""
        clone = type(self)(self._store.clone(), self._state.clock, self._state.rng,
                           request_timeout=self._state.request_timeout)
        clone._sender.slotted = self._sender.slotted
        return clone

    def next_request(self) -> None:
        """Ready a worker handle for another request (`AgentServer`): what it reports of
        its own life (rows refused, how the last flush routed) starts empty, as on a new
        handle. Its caches stay: each read checks them against the stored bytes."""
        self._sender.refused_codes.clear()
        self._sender.route_status.clear()

    @property
    def home(self) -> Path:
        return self._store.path.parent

    @property
    def read_only_reason(self) -> str:
        """Why this principal was opened read-only ("" when it may write)."""
        return self._store.read_only

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

    # --- identity, clock, settings --------------------------------------------------------

    @property
    def identity(self) -> PublicIdentity:
        return self._state.identity.public

    @property
    def identity_keypair(self) -> IdentityKeyPair:
        """The secret identity: used only to sign prekeys and agreed records."""
        return self._state.identity

    def now_ms(self) -> int:
        return self._state.clock()

    def random(self, n: int) -> bytes:
        return self._state.rng(n)

    def setting(self, key: str) -> str:
        return self._state.settings.get(key)

    def slot_status(self, channel_id: str) -> tuple[list[DirectionStatus], dict[str, str]]:
        """What the slots and routing last reported for a channel, as kept in the state
        (`state.slotstatus`): its directions with rows held back or a failure, and the
        routing line of each of its relays that has one."""
        state = self._state
        urls = [link.url for link in state.channels.get(channel_id).links]
        routes = {url: line for url in urls if (line := state.slot_status.route(url))}
        return state.slot_status.of_channel(channel_id), routes

    def slot_frames(self, channel_id: str) -> list[int]:
        """See `Sender.slot_frames`: what each direction's slot costs on the wire."""
        return self._sender.slot_frames(channel_id)

    def set_setting(self, key: str, value: str) -> None:
        with self._store.transaction():
            self._state.settings.put(key, value)

    # --- channels and messages ------------------------------------------------------------

    def channels(self) -> list[ChannelRecord]:
        """All channels, oldest first."""
        return self._state.channels.all()

    def channel(self, name_or_id: str) -> ChannelRecord:
        """Find a channel by name or by (a prefix of at least 6 characters of) its id.

        Raises:
            ChannelNotFound: none, or the prefix is ambiguous.
        """
        return self._state.channel(name_or_id)

    def save_channel(self, record: ChannelRecord) -> None:
        """Write back a channel read earlier (refused with StaleRecord if it changed)."""
        with self._store.transaction():
            self._state.channels.save(record)

    def update_channel(
        self, channel_id: str, change: Callable[[ChannelRecord], None]
    ) -> ChannelRecord:
        """Read a channel, apply `change` and write it back, all in one transaction."""
        with self._store.transaction():
            record = self._state.channels.get(channel_id)
            change(record)
            self._state.channels.save(record)
        return record

    def pending_invites(self) -> list[InviteRecord]:
        """Invites nobody has taken up yet, expired ones included (they are still ours to
        revoke; `InviteRecord.expires_at_ms` tells them apart)."""
        return self._state.invites.pending()

    async def revoke_invite(self, invite_ref: str) -> tuple[InviteRecord, list[str]]:
        """Withdraw a pending invite by (a prefix of) its id: its mailboxes are deleted on
        the relays, so a joiner using the code is refused, and its one-time prekey here.

        Returns:
            The invite withdrawn, and "URL (reason)" for each relay that may still hold
            one of its mailboxes.

        Raises:
            ClientError: no such invite, or it was taken up meanwhile.
        """
        return await self._pairing.revoke(invite_ref)

    def invite_claims(self) -> list[InviteClaimRecord]:
        """Uses of our invites by someone after their first joiner, oldest first."""
        return self._state.invites.claims()

    def rename_channel(self, old: str, new: str) -> ChannelRecord:
        """Give a channel another local name (the counterpart is not told; its name for
        us is its own). Read, checked and written in one transaction.

        Raises:
            ChannelNotFound: no channel `old`.
            ClientError: `new` is empty, too long, or another channel's name.
        """
        new = new.strip()
        if not 1 <= len(new.encode()) <= 64:
            raise ClientError("a channel name is 1 to 64 bytes of text")
        try:
            # The same policy as a name given at `accept`: it is printed and pasted.
            check_safe_text(new, "the channel's name")
        except UnsafeText as error:
            raise ClientError(str(error)) from None
        with self._store.transaction():
            record = self._state.channel(old)
            if any(c.name == new and c.channel_id != record.channel_id for c in self.channels()):
                raise ClientError(f"another channel is already named '{new}'")
            record.name = new
            self._state.channels.save(record)
        return record

    async def remove_channel(self, name_or_id: str) -> tuple[ChannelRecord, list[str]]:
        """Remove a channel: its inbound mailboxes are deleted on the relays, then its
        keys, transcript, outbox, receipts, forks, escalations and invite claims here, in
        one transaction.
        The counterpart is not told; what it sends next is refused by the relays.

        Returns:
            The channel removed, and "URL (reason)" for each relay that may still hold one
            of its mailboxes (the relay expires it in time; nothing here can read it).

        Raises:
            ChannelNotFound: no such channel.
        """
        channel = self.channel(name_or_id)
        left = await delete_mailboxes(channel.links + channel.retiring)
        state = self._state
        cid = channel.channel_id
        with self._store.transaction():
            self._state.channels.get(cid)  # still there (raises ChannelNotFound if not)
            state.outbox.delete_channel(cid)
            state.messages.delete_channel(cid)
            state.receipts.delete_channel(cid)
            state.forks.delete_channel(cid)
            state.escalations.delete_channel(cid)
            state.fragments.delete_channel(cid)
            state.invites.delete_claims(cid)
            state.channels.delete(cid)
        state.forget_session(cid)
        state.tallies.forget(cid)
        return channel, left

    def change_passphrase(self, new_passphrase: str) -> None:
        """Re-encrypt this principal's state under `new_passphrase`, in one transaction
        (`Keystore.change_passphrase`); the old one opens nothing afterwards. The caller
        checks its strength (`passphrase.check_passphrase`) and that no other handle of
        this home is open (an agent's workers would keep the old key).

        Raises:
            ClientError: the new passphrase is empty.
        """
        if not new_passphrase:
            raise ClientError("a passphrase is required to encrypt the local state")
        self._store.change_passphrase(new_passphrase)

    def messages(self, channel_name: str) -> list[MessageRecord]:
        """Every stored message of a channel, both ways and of every kind, in the order
        they were stored (each side's in sequence order)."""
        return self._state.messages.in_stored_order(self.channel(channel_name).channel_id)

    def messages_after(self, channel_id: str, after: tuple[int, bytes] | None
                       ) -> tuple[list[MessageRecord], tuple[int, bytes] | None, bool]:
        """The messages of a channel stored after the position `after` (an earlier
        answer's), each side's in sequence order, read in one statement: for a caller
        that looks again and again (the watch's observer), so each look reads what is
        new, not every message since the channel began.

        Returns:
            (the messages, the position to pass next time, whether they are all of the
            channel's: `after` was None, or its row is gone or another took its
            place (the messages were removed), and so everything was read).
        """
        messages = self._state.messages
        since = messages.stored_since(channel_id, 0 if after is None else after[0])
        everything = after is None or since.first_ref != after[1]
        if everything and after is not None:
            since = messages.stored_since(channel_id, 0)
        rows = since.records
        position = (rows[-1][0], rows[-1][1]) if rows else None if everything else after
        return in_seq_slots([record for _ord, _ref, record in rows]), position, everything

    def transcript(self, channel_name: str) -> list[InboxEntry]:
        """Notes both ways, in the order they were sent (by sender time, then seq)."""
        channel = self.channel(channel_name)
        notes = [
            m
            for m in self._state.messages.of_channel(channel.channel_id)
            if m.kind == MessageKind.NOTE
        ]
        notes.sort(key=lambda m: (m.sent_at_ms, m.direction, m.seq))
        return [inbox_entry(channel, m) for m in notes]

    def history(
        self,
        channel_name: str,
        *,
        since_ms: int = 0,
        limit: int | None = None,
        before: str | None = None,
        line_tests: bool = True,
    ) -> HistoryPage:
        """A channel's history, both ways, each dialogue act in place (`client.history`).

        Args:
            since_ms: only messages stored from this moment on (this side's clock).
            limit: the latest `limit` messages of those selected (None: all).
            before: only messages stored before this one (a message id or its prefix).
            line_tests: include line tests and their answers.

        Raises:
            ChannelNotFound: no such channel.
            ClientError: `limit` below 1, or `before` names no message or several.
        """
        channel = self.channel(channel_name)
        cid = channel.channel_id
        return build_history(
            self.identity,
            channel,
            self._state.messages.in_stored_order(cid),
            self.forks(cid),
            since_ms=since_ms,
            limit=limit,
            before=before,
            line_tests=line_tests,
            # The kept fold, extended by what was stored since (`client.folds`), instead
            # of folding every message again: half of a `history` served by the agent.
            dialogue=self.duties.dialogue(channel),
        )

    def inbox(self, channel_name: str | None = None) -> list[InboxEntry]:
        """Received notes, per channel in sequence order."""
        channels = [self.channel(channel_name)] if channel_name else self.channels()
        return [
            inbox_entry(channel, record)
            for channel in channels
            for record in self._state.messages.of_channel(channel.channel_id)
            if record.direction == "in" and record.kind == MessageKind.NOTE
        ]

    async def read(self, channel_name: str, message_id: str | None = None) -> list[InboxEntry]:
        """Open received notes (one, or all unread), mark them read and send read receipts."""
        return await self._receiver.read(channel_name, message_id)

    # --- sending ----------------------------------------------------------------------------

    @property
    def refused_codes(self) -> dict[int, int]:
        """Why a relay refused an outbox row for good, by row id (for this handle's life)."""
        return self._sender.refused_codes

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
        return self._sender.queue(
            channel_name, text, precedence=precedence, ack_within_ms=ack_within_ms
        )

    def queue_many(
        self,
        channel_name: str,
        texts: list[str],
        *,
        precedence: Precedence = Precedence.ROUTINE,
    ) -> list[str]:
        """Put several notes in the outbox in one transaction; returns their message ids.

        One commit (one fsync) for all of them instead of one each: for a principal sending
        a prepared series, or a script. All are queued, or none.

        Raises:
            ChannelNotFound, IdentityChanged, ClientError: as for `queue`.
        """
        return self._sender.queue_many(channel_name, texts, precedence=precedence)

    def queue_body(self, channel_name: str, kind: int, body: bytes, *, retain: bool = False) -> str:
        """Put a message of any kind in the outbox; returns its message id.

        Args:
            retain: keep the sealed payload so that an escalation can send it again.

        Raises:
            ChannelNotFound, IdentityChanged, ClientError: as for `queue`.
        """
        return self._sender.queue_body(channel_name, kind, body, retain=retain)

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
        return await self._sender.deliver(channel_name, message_id)

    def placement(self, channel_name: str, message_id: str) -> SendResult:
        """Where one queued message is now, without sending anything: the relays that
        stored it and those it still waits for (after `queue`, for a caller that leaves
        the sending to a running `watch` or the next sync)."""
        return self._sender.placement(channel_name, message_id)

    async def flush(self, pool: RelayPool | None = None) -> int:
        """Offer every queued envelope to its relay; returns how many were stored.

        The relays are served concurrently and each on its own (design §5): one that does
        not answer costs at most its request timeout and delays no other. Rows another
        handle of this principal is offering are left to it.

        Args:
            pool: connections to reuse (default: those of a running `watch`, or new ones).

        Returns:
            How many envelopes the relays stored.
        """
        return await self._sender.flush(pool)

    def escalated_ids(self, channel_id: str) -> set[bytes]:
        """Notes of this channel already escalated (each is escalated once)."""
        return self._sender.escalated_ids(channel_id)

    def escalate(self, channel_id: str, message_id: bytes) -> None:
        """Mark a note escalated and send its sealed payload again on every relay."""
        self._sender.escalate(channel_id, message_id)

    def relays_lost(self, channel_id: str) -> tuple[str, ...]:
        """The relays that no longer know one of this channel's mailboxes (they lost their
        disk, or expired the mailbox) and are not yet re-provisioned; the channel goes on
        over its other relays meanwhile.

        Args:
            channel_id: the channel's id (hex).

        Returns:
            Their URLs, in the channel's order.
        """
        return self._sender.relays_lost(channel_id)

    # --- pairing ----------------------------------------------------------------------------

    async def invite(self, relays: list[str], *, ttl_ms: int = DEFAULT_INVITE_TTL_MS) -> str:
        """Create a one-time invite code for a new channel over `relays`.

        Raises:
            ClientError: no relay given, or one of them cannot create the mailbox.
        """
        return await self._pairing.invite(relays, ttl_ms=ttl_ms)

    async def accept(self, code: str, *, name: str | None = None) -> ChannelRecord:
        """Join the channel an invite code offers and send the first message.

        Raises:
            InviteRefused: damaged, tampered, expired, ours, or already accepted.
            ClientError: none of the invite's relays can host our mailbox.
        """
        return await self._pairing.accept(code, name=name)

    # --- the relays -------------------------------------------------------------------------

    async def sync(self, *, deadline: float = SYNC_DEADLINE) -> SyncReport:
        """Send everything queued, fetch and process everything waiting, send receipts.

        Each relay is served on its own and concurrently: a relay that is down, silent or
        slow delays no other, and the whole sync returns within about `deadline` seconds
        whatever one relay does (what is left waits, safely, for the next sync). A relay
        that no longer knows one of a channel's mailboxes is marked lost for that channel,
        re-provisioned when it answers again, and reported in `status`.

        Args:
            deadline: seconds the sync may take in all.

        Returns:
            What was sent, received and refused, and which relays were up or down.
        """
        return await self._exchange.sync(deadline=deadline)

    async def watch(
        self,
        stop: asyncio.Event,
        *,
        on_message: Callable[[InboxEntry], None] | None = None,
        reconnect_after: float = RECONNECT_DELAY,
        duty_interval: float = DUTY_INTERVAL,
    ) -> SyncReport:
        """Stay connected: receive as envelopes arrive, send receipts and the outbox,
        reconnect to relays that drop, until `stop` is set.

        Each relay has its own task (connect, subscribe, receive) and its own sends and
        acks in the background, so a relay that is down or silent never holds up another;
        a relay that drops is tried again after `reconnect_after` seconds, doubling up to a
        minute while it stays down.

        Args:
            stop: set it to end the watch (after the work in hand is committed).
            on_message: called with each new note as soon as it is stored.
            reconnect_after: seconds before a relay that is down is tried again (first).
            duty_interval: seconds between rounds of duties (line tests, escalations).

        Returns:
            What was sent, received and refused while it ran.
        """
        return await self._exchange.watch(
            stop,
            on_message=on_message,
            reconnect_after=reconnect_after,
            duty_interval=duty_interval,
        )

    def relay_health(self, url: str) -> RelayHealth:
        """What the last sync or watch saw of the relay at `url`."""
        return self._state.relays.health(url)

    # --- verification and status ------------------------------------------------------------

    def safety_number(self, channel_name: str) -> tuple[str, tuple[str, ...], bool]:
        """(digits, words, verified) for a channel."""
        channel = self.channel(channel_name)
        peer = PublicIdentity.decode(bytes.fromhex(channel.peer_identity))
        number = safety_number(self.identity, peer)
        return str(number), number.words, channel.verified

    def confirm_verified(self, channel_name: str) -> None:
        """Record that the safety number was compared out of band and matched."""
        channel_id = self.channel(channel_name).channel_id

        def verified(record: ChannelRecord) -> None:
            record.verified = True

        self.update_channel(channel_id, verified)

    def forks(self, channel_id: str) -> list[ForkRecord]:
        """Every fork seen on a channel, oldest first (see `client.forks`)."""
        return [fork for _, fork in self._state.forks.of_channel(channel_id)]

    def status(self, channel_name: str | None = None) -> list[ChannelStatus]:
        channels = [self.channel(channel_name)] if channel_name else self.channels()
        claims = self._state.invites.claims()
        result = []
        for channel in channels:
            cid = channel.channel_id
            # Counted from what changed since this handle last counted (`state.tallies`).
            tally = self._state.tallies.of_channel(cid)
            result.append(
                ChannelStatus(
                    channel.name,
                    channel.channel_id,
                    channel.verified,
                    tuple(link.url for link in channel.links),
                    channel.last_heard_ms,
                    tally.sent,
                    tally.delivered,
                    tally.read,
                    tally.received,
                    tally.unread,
                    self._state.outbox.queued_messages(cid),
                    sequence_gaps(list(tally.inbound_seqs)),
                    channel.rejected,
                    tuple(self.relay_health(link.url) for link in channel.links),
                    channel.identity_changed,
                    channel.last_heard_ms == 0,
                    relays_lost=self.relays_lost(cid),
                    forks=tuple(fork.describe() for fork in self.forks(cid)),
                    invite_claims=tuple(c.describe() for c in claims if c.channel_id == cid),
                )
            )
        return result

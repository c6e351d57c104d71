"""What every part of a principal's client shares: the store and its repositories, the
identity, the clock, the random source, the session cache, and the lookups over channels.

`Principal` builds one `ClientState` and passes it explicitly to each part (`Sender`,
`Receiver`, `Pairing`, `Duties`, `Exchange`); no part reaches another through it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Final

from backchannel.client.errors import NotInitialised, StaleRecord
from backchannel.client.keystore import Keystore
from backchannel.client.records import ChannelRecord, InviteRecord, Mailbox
from backchannel.client.relays import RelayPool
from backchannel.client.state.channels import ChannelRepository
from backchannel.client.state.digests import DigestRepository
from backchannel.client.state.escalations import EscalationRepository
from backchannel.client.state.forks import ForkRepository
from backchannel.client.state.fragments import FragmentRepository
from backchannel.client.state.invites import InviteRepository
from backchannel.client.state.messages import MessageRepository
from backchannel.client.state.outbox import OutboxRepository
from backchannel.client.state.receipts import PendingReceiptRepository
from backchannel.client.state.relays import RelayRepository
from backchannel.client.state.settings import SettingsRepository
from backchannel.client.state.slotstatus import SlotStatusRepository
from backchannel.client.state.tallies import MessageTallies
from backchannel.client.transport import DEFAULT_REQUEST_TIMEOUT
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.e2e.primitives import Rng
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.wire import Reader, Writer

__all__ = ["ClientState", "store_identity"]

_IDENTITY: Final = "identity"
_SELF: Final = b"self"
# What a channel record holds in place of its session while a `saved_once` block has not
# written it yet (`ClientState.keep_session`); never hex, so never a stored session.
_UNENCODED: Final = "unencoded session "


def store_identity(store: Keystore, name: str, identity: IdentityKeyPair) -> None:
    """Write a new principal's name and identity (inside the caller's transaction)."""
    record = Writer().text16(name).fixed(identity.private_bytes(), 64).getvalue()
    store.put(_IDENTITY, _SELF, record)


class ClientState:
    """One handle's view of a principal's state (one database connection).

    Attributes:
        store: the open keystore; `store.transaction()` is the unit of every
            read-modify-write, and every repository below writes inside it.
        name, identity: the principal's name and secret identity.
        clock: milliseconds since the epoch; rng: the random source.
        request_timeout: seconds each relay has to answer each request, in every pool
            made by `pool` (`transport.DEFAULT_REQUEST_TIMEOUT` unless the principal was
            opened with another).
    """

    def __init__(self, store: Keystore, clock: Callable[[], int], rng: Rng,
                 request_timeout: float = DEFAULT_REQUEST_TIMEOUT) -> None:
        self.store = store
        self.clock = clock
        self.rng = rng
        self.request_timeout = request_timeout
        self.channels = ChannelRepository(store, before_write=self._encode_kept)
        self.forks = ForkRepository(store)
        self.messages = MessageRepository(store)
        self.outbox = OutboxRepository(store)
        self.invites = InviteRepository(store)
        self.receipts = PendingReceiptRepository(store)
        self.digests = DigestRepository(store)
        self.escalations = EscalationRepository(store)
        self.settings = SettingsRepository(store)
        self.slot_status = SlotStatusRepository(store)  # for `status` (`state.slotstatus`)
        self.relays = RelayRepository(store)
        self.fragments = FragmentRepository(store)
        self.tallies = MessageTallies(self.messages)  # for `status` (`state.tallies`)
        # Parsed sessions by channel id, valid while the stored state is the same bytes
        # (a rolled-back transaction leaves the store different, so the cache misses).
        self._sessions: dict[str, tuple[str, Session]] = {}
        self._marks = itertools.count(1)
        raw = store.get(_IDENTITY, _SELF)
        if raw is None:
            raise NotInitialised("this home has no identity: run `backchannel init` first")
        reader = Reader(raw, "identity record")
        self.name = reader.text16(64)
        self.identity = IdentityKeyPair.from_private_bytes(reader.fixed(64))

    def __repr__(self) -> str:
        return f"ClientState({self.store!r})"

    def pool(self) -> RelayPool:
        """A fresh connection pool with this principal's request timeout."""
        return RelayPool(request_timeout=self.request_timeout)

    # -- sessions ---------------------------------------------------------------------

    def session(self, channel: ChannelRecord) -> Session:
        """The channel's session, parsed (taken out of the cache: the caller may change
        it, and only `keep_session`, once the change is in the record, puts it back; a
        failure in between costs a decode).

        A session kept inside a `saved_once` block stays in the cache (`keep_session`):
        it is the only copy until the block writes it, and whatever a caller did with it
        and did not keep changed nothing (a failed `open` changes no state).

        Raises:
            StaleRecord: `channel` is a copy from a `saved_once` block that has ended.
        """
        if channel.session.startswith(_UNENCODED):
            return self._marked(channel, "a channel read in a batch that has ended: read it again")
        cached = self._sessions.pop(channel.channel_id, None)
        if cached is not None and cached[0] == channel.session:
            return cached[1]
        return Session.decode(bytes.fromhex(channel.session))

    def forget_session(self, channel_id: str) -> None:
        """Drop a removed channel's parsed session from the cache."""
        self._sessions.pop(channel_id, None)

    def keep_session(self, channel: ChannelRecord, session: Session) -> None:
        """Put `session` in `channel` (to be saved) and in the cache.

        Inside a `saved_once` block (a batch of arrivals) the record is written once, at
        the end: the session is encoded then (`_encode_kept`), not once per envelope. The
        record holds a mark meanwhile, which names this one session object.
        """
        if self.channels.deferring:
            channel.session = f"{_UNENCODED}{next(self._marks)}"
        else:
            channel.session = session.encode().hex()
        self._sessions[channel.channel_id] = (channel.session, session)

    def _encode_kept(self, channel: ChannelRecord) -> None:
        """Just before a channel saved in a `saved_once` block is written: the session its
        mark names, encoded.

        Raises:
            StaleRecord: the mark names no session kept (a bug: the block rolls back).
        """
        if not channel.session.startswith(_UNENCODED):
            return
        session = self._marked(channel, "a channel saved without the session kept for it")
        channel.session = session.encode().hex()
        self._sessions[channel.channel_id] = (channel.session, session)

    def _marked(self, channel: ChannelRecord, stale: str) -> Session:
        """The session kept for the mark `channel` holds.

        Raises:
            StaleRecord: (with `stale`) no session is kept for that mark.
        """
        cached = self._sessions.get(channel.channel_id)
        if cached is None or cached[0] != channel.session:
            raise StaleRecord(stale)
        return cached[1]

    # -- channels ---------------------------------------------------------------------

    def channel(self, name_or_id: str) -> ChannelRecord:
        """Find a channel by name or by (a prefix of at least 6 characters of) its id.

        Raises:
            ChannelNotFound: none, or the prefix is ambiguous.
        """
        return self.channels.find(name_or_id)

    def identity_changed(self, wanted_name: str, peer: PublicIdentity) -> bool:
        """True when a channel already under this name has another counterpart key: the
        counterpart re-paired with a new identity, or someone else is using its name. The
        same key pairing again is no alarm."""
        encoded = peer.encode().hex()
        return any(
            c.name.split("~")[0] == wanted_name and c.peer_identity != encoded
            for c in self.channels.shared()
        )

    def unique_name(self, wanted: str) -> str:
        taken = {c.name for c in self.channels.shared()}
        name, n = wanted, 2
        while name in taken:
            name, n = f"{wanted}~{n}", n + 1
        return name

    # -- relays and mailboxes ---------------------------------------------------------

    def all_relays(self) -> list[str]:
        """Every relay of a channel or a pending invite, each once."""
        urls = [link.url for c in self.channels.shared() for link in c.links]
        urls += [link.url for i in self.invites.pending() for link in i.links]
        return list(dict.fromkeys(urls))

    def inbound_owners(self, url: str) -> list[tuple[str | None, Mailbox]]:
        """The inbound mailboxes on `url`, each with the id of the channel whose current
        link it is (None for invite and retiring mailboxes, which are never re-provisioned:
        they are one-time by design)."""
        boxes: list[tuple[str | None, Mailbox]] = []
        for channel in self.channels.shared():  # the mailboxes are only read
            boxes += [
                (channel.channel_id, lk.inbound)
                for lk in channel.links
                if lk.url == url and lk.inbound is not None
            ]
            boxes += [(None, lk.inbound) for lk in channel.retiring
                      if lk.url == url and lk.inbound is not None]
        for invite in self.invites.pending():
            boxes += [(None, lk.inbound) for lk in invite.links
                      if lk.url == url and lk.inbound is not None]
        return boxes

    def owner(self, mailbox_id: bytes) -> ChannelRecord | InviteRecord | None:
        """The channel or pending invite an inbound mailbox belongs to. A channel heard
        on its own mailboxes while it still has invite mailboxes is marked `peer_moved`
        (in the copy returned, saved by the caller)."""
        hex_id = mailbox_id.hex()
        channel = self.channels.owning(hex_id)
        if channel is not None:
            current = any(link.inbound and link.inbound.mailbox_id == hex_id
                          for link in channel.links)
            if current and channel.retiring and not channel.peer_moved:
                channel.peer_moved = True  # the joiner writes to the new mailboxes now
            return channel
        for invite in self.invites.pending():
            if any(link.inbound and link.inbound.mailbox_id == hex_id for link in invite.links):
                return invite
        return None

"""Pairing: one-time invites, joining a channel with PQXDH, and taking up a joiner."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from backchannel.client.errors import (
    ClientError,
    InviteRefused,
    RelayUnreachable,
    UnknownReference,
)
from backchannel.client.invite import (
    CAPABILITY_PQ_RATCHET,
    KIND_CAPABILITIES,
    KIND_HELLO,
    KIND_MOVE,
    Hello,
    Invite,
    Move,
    RelayAddress,
)
from backchannel.client.placement import PLACEMENT_SETTING, inviter_share, joiner_share
from backchannel.client.records import ChannelRecord, InviteRecord, Link, Mailbox, MessageRecord
from backchannel.client.relays import RelayPool
from backchannel.client.reports import SyncReport
from backchannel.client.routing import fetch_key_statement
from backchannel.client.sending import Sender
from backchannel.client.state.shared import ClientState
from backchannel.client.transport import MailboxCaps, RelayClosed, RelayRequestError
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.session import Session, starts_session
from backchannel.protocol.errors import DecryptionFailed, LocalProtocolError, RemoteProtocolError
from backchannel.protocol.keystatement import KeyStatement
from backchannel.protocol.message import Message
from backchannel.protocol.relayframes import ErrorCode
from backchannel.protocol.text import check_relay_url, check_safe_text

__all__ = ["DEFAULT_INVITE_TTL_MS", "Pairing", "delete_mailboxes"]

# Long enough to pass a code through a courier or a diplomatic bag, short enough that a
# forgotten code is not a standing way in.
DEFAULT_INVITE_TTL_MS: Final = 7 * 24 * 3600 * 1000
# The shortest invite id prefix accepted by `invite revoke`, as for channel ids.
_MIN_REF: Final = 6
# Seconds to fetch the relays' key statements for an invite: a relay slow to answer is
# named without its pin (the joiner then sends to it directly).
_KEY_TIMEOUT: Final = 3.0


def _addresses(links: list[Link]) -> tuple[RelayAddress, ...]:
    """Where the counterpart reaches us: our inbound mailbox of each link that has one."""
    return tuple(
        RelayAddress(
            link.url,
            bytes.fromhex(link.inbound.mailbox_id),
            bytes.fromhex(link.inbound.send_token),
        )
        for link in links
        if link.inbound is not None
    )


async def delete_mailboxes(links: list[Link]) -> list[str]:
    """Delete our inbound mailbox of each link on its relay (needs its receive token).

    A relay that answers UNAUTHORIZED no longer has the mailbox (already deleted, or the
    relay lost it): that counts as deleted.

    Returns:
        "URL (reason)" for each mailbox that may still be on its relay.
    """
    pool = RelayPool()
    left: list[str] = []
    try:
        for link in links:
            mailbox = link.inbound
            if mailbox is None or not mailbox.receive_token:
                continue
            client = await pool.get(link.url, mailbox.mailbox_id)  # its own lane
            if client is None:
                left.append(f"{link.url} ({pool.failures.get(link.url, 'unreachable')})")
                continue
            try:
                await client.delete(
                    bytes.fromhex(mailbox.mailbox_id), bytes.fromhex(mailbox.receive_token)
                )
            except RelayRequestError as error:
                if error.code != ErrorCode.UNAUTHORIZED:
                    left.append(f"{link.url} ({error})")
            except RelayClosed as error:
                left.append(f"{link.url} ({error})")
    finally:
        await pool.close()
    return left


async def _relay_statements(urls: list[str]) -> tuple[KeyStatement | None, ...]:
    """Each relay's signed key statement, for the invite's pins (None where a relay
    publishes none, cannot be reached now, or sends one that does not verify). We reach
    these relays anyway, to make the invite's mailboxes; the identity a statement is
    signed by is what the invite pins, first seen here over the relay's TLS."""
    got = await asyncio.gather(
        *(fetch_key_statement(url, None, timeout=_KEY_TIMEOUT) for url in urls),
        return_exceptions=True,
    )
    for result in got:
        if isinstance(result, BaseException) and not isinstance(
            result, RelayClosed | RemoteProtocolError | LocalProtocolError
        ):
            raise result
    return tuple(s if isinstance(s, KeyStatement) else None for s in got)


def _keep_keys(state: ClientState, invite: Invite) -> None:
    """Remember the forwarding keys (version 3) or the pins (version 4) an invite
    carries (inside the caller's transaction); a pinned relay's key is fetched and
    verified against its pin before the first send to it (`Sender.flush_relay`)."""
    for relay, key in zip(invite.relays, invite.relay_keys, strict=False):
        if key is not None:
            state.relays.put_key(relay.url, key)
    for relay, pin in zip(invite.relays, invite.relay_pins, strict=False):
        if pin is not None:
            state.relays.put_pin(relay.url, pin)


def _channel_links(invite: InviteRecord, hello: Hello) -> tuple[list[Link], list[Link]]:
    """The inviter's links of a new channel, and the invite links it retires.

    Our own channel mailboxes are on our share of the relays (on all of them for an
    invite stored before the split); the joiner's are where its hello says (on its share,
    or on all relays if it is from before the split). A relay with neither is no link.
    """
    by_url = {address.url: address for address in hello.relays}
    own = {link.url: link.inbound for link in invite.channel_links}
    if not own:
        # An invite without channel mailboxes of its own: the invite's stay the channel's.
        links = []
        for link in invite.links:
            address = by_url.get(link.url)
            if address is not None:
                link.outbound = Mailbox(address.mailbox_id.hex(), address.send_token.hex())
            links.append(link)
        return links, []
    links = []
    for link in invite.links:
        address = by_url.get(link.url)
        outbound = (
            Mailbox(address.mailbox_id.hex(), address.send_token.hex()) if address else None
        )
        if own.get(link.url) is not None or outbound is not None:
            links.append(Link(link.url, own.get(link.url), outbound))
    # Every invite mailbox retires: the joiner moves to the channel's own.
    return links, list(invite.links)


class Pairing:
    """Invites (ours), joining (theirs), and the channel an invite becomes."""

    def __init__(self, state: ClientState, sender: Sender) -> None:
        self._state = state
        self._sender = sender

    def __repr__(self) -> str:
        return f"Pairing({self._state!r})"

    def fresh_caps(self) -> MailboxCaps:
        rng = self._state.rng
        return MailboxCaps(rng(16), rng(32), rng(32))

    async def _create(self, pool: RelayPool, url: str) -> Link:
        """Create one of our mailboxes on `url`, over a connection of its own.

        Raises:
            RelayUnreachable: the relay cannot be reached.
            RelayRequestError: the relay refused.
            RelayClosed: the connection failed.
        """
        caps = self.fresh_caps()
        client = await pool.get(url, caps.mailbox_id.hex())
        if client is None:
            raise RelayUnreachable(f"relay {url} cannot be reached: {pool.failures[url]}")
        await client.create_mailbox(caps)
        return Link(
            url, Mailbox(caps.mailbox_id.hex(), caps.send_token.hex(), caps.receive_token.hex())
        )

    async def invite(self, relays: list[str], *, ttl_ms: int = DEFAULT_INVITE_TTL_MS) -> str:
        """See `Principal.invite`."""
        state = self._state
        urls = list(dict.fromkeys(relays))
        if not urls:
            raise ClientError("an invite needs at least one relay (--relay URL)")
        for url in urls:
            try:
                # Before any connection: the joiner's client would refuse the code anyway.
                check_relay_url(url)
            except LocalProtocolError as error:
                raise ClientError(str(error)) from None
        own_share = inviter_share(urls, state.settings.get(PLACEMENT_SETTING))
        pool = RelayPool()
        try:
            # The one-time mailbox the code names on every relay, and the channel's own,
            # which only the joiner will learn (in our first message), on our share of
            # the relays only (`placement`: the joiner's go on the others). Each is
            # created over its own connection, all at once (each opened after its own
            # random delay), so neither a connection nor the order links them.
            made, statements = await asyncio.gather(
                asyncio.gather(
                    *(self._create(pool, url) for url in [*urls, *own_share]),
                    return_exceptions=True,
                ),
                _relay_statements(urls),
            )
        finally:
            await pool.close()
        for result in made:
            if isinstance(result, RelayRequestError | RelayClosed):
                raise ClientError(f"a relay refused to create the mailbox: {result}") from None
            if isinstance(result, BaseException):
                raise result
        created = [m for m in made if isinstance(m, Link)]
        links, channel_links = created[: len(urls)], created[len(urls) :]
        now = state.clock()
        prekeys = PrekeySecrets.generate(
            state.rng, one_time_count=1, first_id=int.from_bytes(state.rng(3), "big") + 1
        )
        opk_id = next(iter(prekeys.one_time_prekeys))
        invite_id = state.rng(16)
        invite = Invite(
            invite_id,
            now + ttl_ms,
            state.name,
            _addresses(links),
            prekeys.bundle(state.identity, opk_id),
            capabilities=CAPABILITY_PQ_RATCHET,  # new channels run the PQ ratchet (§13.8)
            relay_pins=tuple(s.identity if s is not None else None for s in statements),
        ).signed(state.identity)
        record = InviteRecord(
            invite_id.hex(),
            state.name,
            prekeys.encode().hex(),
            links,
            now,
            now + ttl_ms,
            channel_links,
        )
        with state.store.transaction():
            state.invites.add(record)
            for url, statement in zip(urls, statements, strict=True):
                if statement is not None:
                    state.relays.put_pin(url, statement.identity)
                    state.relays.keep_statement(url, statement)
        return invite.to_code()

    def find_invite(self, ref: str) -> InviteRecord:
        """A pending invite by (a prefix of at least 6 characters of) its id.

        Raises:
            UnknownReference: no waiting invite has such an id.
            ClientError: the prefix is ambiguous.
        """
        ref = ref.strip().lower()
        found = [i for i in self._state.invites.pending() if i.invite_id.startswith(ref)]
        if len(ref) < _MIN_REF or not found:
            raise UnknownReference(
                f"no waiting invite {ref!r}: `backchannel channels` lists them with their ids"
            )
        if len(found) > 1:
            raise ClientError(f"{ref!r} names more than one invite: give more of its id")
        return found[0]

    async def revoke(self, ref: str) -> tuple[InviteRecord, list[str]]:
        """Withdraw a pending invite: its mailboxes are deleted on the relays (so a joiner
        who uses the code is refused there), then its record and one-time prekey here.

        The record goes even if a relay cannot be reached: without its prekey nobody can
        start a channel with it. A joiner whose hello that relay still stores is never
        answered; the relay expires the mailbox in time.

        Returns:
            The invite withdrawn, and "URL (reason)" for each mailbox left on a relay.
        """
        state = self._state
        invite = self.find_invite(ref)
        left = await delete_mailboxes(invite.links + invite.channel_links)
        with state.store.transaction():
            # Read again inside the write: a sync meanwhile may have taken it up.
            if all(i.invite_id != invite.invite_id for i in state.invites.pending()):
                raise ClientError(
                    "the invite was taken up meanwhile: its channel is in `backchannel channels`"
                )
            state.invites.spend(invite.invite_id)
        return invite, left

    async def accept(self, code: str, *, name: str | None = None) -> ChannelRecord:
        """See `Principal.accept`."""
        state = self._state
        if name is not None:
            try:
                check_safe_text(name, "the channel's name")
            except LocalProtocolError as error:
                raise ClientError(str(error)) from None
        invite = Invite.from_code(code, state.clock())
        if invite.bundle.identity == state.identity.public:
            raise InviteRefused("this is your own invite: give it to your counterpart")
        if state.invites.was_accepted(invite.invite_id.hex()):
            raise InviteRefused("this invite was already used")
        urls = [relay.url for relay in invite.relays]
        # Our mailboxes on our share of the relays (`placement`), each over a connection
        # of its own; the hello to the invite's mailboxes leaves over others (the flush's
        # lanes). If none of our share can be reached, on the inviter's share instead: a
        # relay there then holds both directions, but the channel works.
        pool = RelayPool()
        try:
            inbound = await self._create_some(
                pool, joiner_share(urls, state.settings.get(PLACEMENT_SETTING))
            )
            if not inbound:
                inbound = await self._create_some(pool, inviter_share(urls))
        finally:
            await pool.close()
        if not inbound:
            down = ", ".join(f"{u} ({r})" for u, r in pool.failures.items())
            raise RelayUnreachable(f"none of the invite's relays can be reached: {down}")
        links = [
            Link(
                relay.url,
                inbound.get(relay.url),
                Mailbox(relay.mailbox_id.hex(), relay.send_token.hex()),
            )
            for relay in invite.relays
        ]
        # With the PQ ratchet if the (signed) invite offers it; else classical, upgraded in
        # place once the inviter announces it (protocol.md §13.8).
        session = Session.initiate(state.identity, invite.bundle, state.rng, invite.post_quantum)
        changed = state.identity_changed(name or invite.name, invite.bundle.identity)
        channel = ChannelRecord(
            channel_id=state.rng(16).hex(),
            identity_changed=changed,
            name=state.unique_name(name or invite.name),
            peer_identity=invite.bundle.identity.encode().hex(),
            session="",
            links=links,
            created_at_ms=state.clock(),
            role="joiner",
        )
        # A version 2 invite is answered with our capabilities (a version 1 one, from an
        # inviter that may be 0.1, with the hello 0.1 reads).
        capabilities = CAPABILITY_PQ_RATCHET if invite.capabilities else None
        hello = Hello(state.name, _addresses(links), capabilities)
        with state.store.transaction():
            # Checked again where it is marked: the check above was before the network.
            if state.invites.was_accepted(invite.invite_id.hex()):
                raise InviteRefused("this invite was already used")
            state.invites.mark_accepted(invite.invite_id.hex())
            _keep_keys(state, invite)
            self._sender.enqueue(channel, session, KIND_HELLO, hello.encode())
        await self._sender.flush()
        if self._hello_refused_everywhere(channel):
            self._forget_channel(channel)
            raise InviteRefused(
                "this invite was already used (its relays no longer know its mailboxes): "
                "ask your counterpart for a new one"
            )
        return channel

    async def _create_some(self, pool: RelayPool, urls: list[str]) -> dict[str, Mailbox]:
        """Our mailbox on each of `urls` that can be reached, all at once, by URL.

        Raises:
            ClientError: a relay refused to create it.
        """
        made = await asyncio.gather(
            *(self._create(pool, url) for url in urls), return_exceptions=True
        )
        created: dict[str, Mailbox] = {}
        for result in made:
            if isinstance(result, RelayUnreachable):
                continue
            if isinstance(result, RelayRequestError | RelayClosed):
                raise ClientError(f"a relay refused to create our mailbox: {result}") from None
            if isinstance(result, BaseException):
                raise result
            if isinstance(result, Link) and result.inbound is not None:
                created[result.url] = result.inbound
        return created

    def _hello_refused_everywhere(self, channel: ChannelRecord) -> bool:
        """True when every relay refused the hello as unauthorised: the invite's mailboxes
        are gone, so the invite was spent by someone else (or withdrawn)."""
        rows = self._state.outbox.row_ids(channel.channel_id)
        if len(rows) != len([link for link in channel.links if link.outbound is not None]):
            return False  # some relay stored it
        refused = self._sender.refused_codes
        return bool(rows) and all(refused.get(row) == ErrorCode.UNAUTHORIZED for row in rows)

    def _forget_channel(self, channel: ChannelRecord) -> None:
        state = self._state
        with state.store.transaction():
            state.outbox.delete_channel(channel.channel_id)
            state.messages.delete_channel(channel.channel_id)
            state.channels.delete(channel.channel_id)

    def take_up(
        self,
        invite: InviteRecord,
        payload: bytes,
        report: SyncReport,
        store_incoming: Callable[[ChannelRecord, Message], MessageRecord],
    ) -> None:
        """A joiner's first message on one of our invites: start the channel, spend the
        invite, and (if the channel has mailboxes of its own) queue the move to them.
        Inside the caller's transaction, which reads what it writes.

        Args:
            store_incoming: stores the hello as the channel's first message (`Receiver`).
        """
        state = self._state
        if not starts_session(payload) or state.clock() >= invite.expires_at_ms:
            report.rejected += 1
            return
        prekeys = PrekeySecrets.decode(bytes.fromhex(invite.prekeys))
        try:
            session, first, _remaining = Session.respond_with_position(
                state.identity, prekeys, payload, state.rng
            )
            message = first.message
            hello = Hello.decode(message.body) if message.kind == KIND_HELLO else None
        except (DecryptionFailed, RemoteProtocolError):
            report.rejected += 1
            return
        if hello is None or (
            hello.capabilities is not None and hello.post_quantum != bool(session.post_quantum)
        ):
            # A hello claiming the PQ ratchet in a session without it (or the reverse)
            # was not made by a client that pairs this way: refused like damage.
            report.rejected += 1
            return
        links, retiring = _channel_links(invite, hello)
        channel = ChannelRecord(
            channel_id=state.rng(16).hex(),
            identity_changed=state.identity_changed(hello.name, session.peer_identity),
            name=state.unique_name(hello.name),
            peer_identity=session.peer_identity.encode().hex(),
            session=session.encode().hex(),
            links=links,
            created_at_ms=state.clock(),
            role="inviter",
            last_heard_ms=state.clock(),
            retiring=retiring,
        )
        # The invite is spent: its one-time prekey goes with it, so a second use fails.
        state.invites.spend(invite.invite_id)
        state.forks.remember_position(channel.channel_id, first.position)
        store_incoming(channel, message)
        if retiring:
            move = Move(_addresses(links))
            self._sender.enqueue(channel, session, KIND_MOVE, move.encode())
        if session.post_quantum is None:
            # A classical start (a version 1 invite): offer the upgrade (§13.8).
            session.offer_post_quantum()
            body = bytes([CAPABILITY_PQ_RATCHET])
            self._sender.enqueue(channel, session, KIND_CAPABILITIES, body)
        state.channels.save(channel)
        report.new_channels.append(channel.name)
        report.received += 1

"""Pairing: one-time invites and joining a channel with PQXDH."""

from __future__ import annotations

from typing import Final

from backchannel.client.errors import (
    ClientError,
    InviteRefused,
)
from backchannel.client.inbox import Inbox
from backchannel.client.invite import KIND_HELLO, Hello, Invite, RelayAddress
from backchannel.client.records import (
    ChannelRecord,
    InviteRecord,
    Link,
    Mailbox,
    dump,
)
from backchannel.client.relays import RelayPool
from backchannel.client.transport import (
    MailboxCaps,
    RelayClosed,
    RelayRequestError,
)
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.relayframes import ErrorCode

__all__ = ["DEFAULT_INVITE_TTL_MS", "Pairing"]

# Long enough to pass a code through a courier or a diplomatic bag, short enough that a
# forgotten code is not a standing way in.
DEFAULT_INVITE_TTL_MS: Final = 7 * 24 * 3600 * 1000


class Pairing(Inbox):
    """Pairing: one-time invites and joining a channel with PQXDH."""

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
        channel_links: list[Link] = []
        try:
            for url in urls:
                client = await pool.get(url)
                if client is None:
                    raise ClientError(f"relay {url} cannot be reached: {pool.failures[url]}")
                # Two unlinkable mailboxes: the one-time mailbox the code names, and the
                # channel's own, which only the joiner will learn (in our first message).
                for target in (links, channel_links):
                    caps = await client.create_mailbox(self._fresh_caps())
                    target.append(
                        Link(
                            url,
                            Mailbox(
                                caps.mailbox_id.hex(),
                                caps.send_token.hex(),
                                caps.receive_token.hex(),
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
            invite_id.hex(),
            self.name,
            prekeys.encode().hex(),
            links,
            now,
            now + ttl_ms,
            channel_links,
        )
        with self._store.transaction():
            self._store.put("invite", invite_id, dump(record))
        return invite.to_code()

    def _fresh_caps(self) -> MailboxCaps:
        return MailboxCaps(self._rng(16), self._rng(32), self._rng(32))

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
        if self._hello_refused_everywhere(channel):
            self._forget_channel(channel)
            raise InviteRefused(
                "this invite was already used (its relays no longer know its mailboxes): "
                "ask your counterpart for a new one"
            )
        return channel

    def _hello_refused_everywhere(self, channel: ChannelRecord) -> bool:
        """True when every relay refused the hello as unauthorised: the invite's mailboxes
        are gone, so the invite was spent by someone else (or withdrawn)."""
        cid = bytes.fromhex(channel.channel_id)
        rows = self._store.db.execute("SELECT id FROM outbox WHERE channel = ?", (cid,)).fetchall()
        if len(rows) != len([link for link in channel.links if link.outbound is not None]):
            return False  # some relay stored it
        return bool(rows) and all(
            self.refused_codes.get(int(row_id)) == ErrorCode.UNAUTHORIZED for (row_id,) in rows
        )

    def _forget_channel(self, channel: ChannelRecord) -> None:
        cid = bytes.fromhex(channel.channel_id)
        with self._store.transaction():
            self._store.db.execute("DELETE FROM outbox WHERE channel = ?", (cid,))
            self._store.db.execute("DELETE FROM messages WHERE channel = ?", (cid,))
            self._store.delete("channel", cid)

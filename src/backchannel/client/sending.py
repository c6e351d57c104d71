"""Sending: the outbox first, then every relay of the channel, with backoff.

A message is written to the outbox, with the session state that produced it, in one
transaction *before* anything is sent; it leaves the outbox only when a relay answered
`stored`, and a crash at any point leaves it there to send again (design §5). A flush
claims the rows it offers (`state.outbox`), so two handles of one principal never offer
the same row at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import replace
from typing import Final

from backchannel.client.errors import ChannelNotFound, ClientError, IdentityChanged
from backchannel.client.keypins import KeyCheck, refresh_key
from backchannel.client.receipts import NO_RECEIPT_KINDS
from backchannel.client.records import ChannelRecord, message_record
from backchannel.client.relays import RelayPool
from backchannel.client.reports import SendResult
from backchannel.client.routing import (
    FORWARDING_SETTING,
    NO_FORWARDER,
    DestinationDown,
    ForwarderUnfit,
    Route,
    StaleKey,
    forward_deposit,
    forward_frame_size,
    plan_route,
)
from backchannel.client.slotpolicy import (
    DIRECT_SLOT_FRAME,
    SEND_LAG,
    SLOT_BUCKET,
    slot_interval_or_default,
)
from backchannel.client.state.escalations import (
    KEEP_FOR_ESCALATION,
    KEEP_UNTIL_RECEIPTED,
    KEEP_UNTIL_SEEN,
)
from backchannel.client.state.outbox import OutboxRow
from backchannel.client.state.shared import ClientState
from backchannel.client.transport import RelayClient, RelayRequestError
from backchannel.dialogue.bodies import Note, decode_body
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.forwarding import RelayPublicKey
from backchannel.protocol.message import Message, MessageKind
from backchannel.protocol.relayframes import ErrorCode

__all__ = ["UNFIT_FOR_MS", "Sender", "SlottedChannels"]

# Envelopes in flight to one relay at once: enough to fill the relay's group commit, few
# enough that a relay going down mid-flush leaves little to resend.
_SEND_WINDOW: Final = 64
# A relay that says "rate limited" or "unavailable" is asked again after 0.1 s, doubling
# to 2 s; after 30 such rounds in one flush the rest waits for the next sync.
_RETRYABLE: Final = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})
_RETRY_FIRST_DELAY: Final = 0.1
_RETRY_MAX_DELAY: Final = 2.0
_MAX_RETRY_ROUNDS: Final = 30
# How long a forwarding relay that said it carries nothing to a destination stays out of
# that destination's choice (ms); then it is asked again.
UNFIT_FOR_MS: Final = 3_600_000
# How long a flusher's claim on the rows of one window lasts. Each send of a window is
# answered or times out within a request timeout (5 s, `transport`), and the claim is
# ended as soon as the window is answered; a minute is that many times over, and is all
# the rows of a process that died mid-send wait before another handle offers them.
_CLAIM_MS: Final = 60_000
# Queued rows of one direction a slot looks through for a FLASH note, which takes the
# next slot ahead of older rows: more than a backlog a watch usually has.
_FLASH_LOOKAHEAD: Final = 32
# Key statements fetched in one flush of one relay after a refusal of its key: a rotation
# needs one; more means forwarding relays keep refusing a key the destination lists.
_MAX_KEY_REFRESHES: Final = 3
# Seconds to fetch a relay's key statement (`client.keypins`), and the least time between
# two fetches for a relay that has a pin but no key (one per flush would show the relay
# our address at every send).
_KEY_FETCH_TIMEOUT: Final = 3.0
_KEY_FETCH_EVERY_MS: Final = 300_000


class SlottedChannels:
    """The channels a running watch sends in slots (`client.slots`), by id: one object
    shared by every handle of the principal in the process (`Principal.worker`), so that a
    request the agent serves leaves those channels' envelopes to the slots too. Replaced
    whole, never changed in place, so a handle on another thread reads one set or the
    other."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"SlottedChannels({len(self.ids)})"


class Sender:
    """Queues messages (sealing them with the channel's session) and flushes the outbox;
    tracks the relays a channel lost for sending, and escalations' resends.

    Attributes:
        live: the connections of a running `watch`, reused by every flush meanwhile.
        refused_codes: why a relay refused an outbox row for good, by row id (for this
            handle's life).
    """

    def __init__(self, state: ClientState) -> None:
        self._state = state
        self.live: RelayPool | None = None
        self.refused_codes: dict[int, int] = {}
        # Channels whose envelopes a running watch sends in slots (`client.slots`): its
        # flushes, and those of the other handles it shares this with, leave their rows
        # to the slots.
        self.slotted = SlottedChannels()
        # How the last flush reached each destination relay, when not forwarded as asked
        # (`routing.plan_route`): a line per relay for `status` and `sync`.
        self.route_status: dict[str, str] = {}
        # When this handle last fetched each relay's key statement (ms, `state.clock`).
        self._key_fetched: dict[str, int] = {}
        # Per destination: forwarding relays that said they carry nothing to it
        # (`routing.ForwarderUnfit`), out of its choice until (ms, `state.clock`).
        self._unfit: dict[str, dict[str, int]] = {}

    def __repr__(self) -> str:
        return f"Sender({self._state!r})"

    # --- queueing (inside the caller's transaction) -----------------------------------

    def enqueue(
        self,
        channel: ChannelRecord,
        session: Session,
        kind: int,
        body: bytes,
        *,
        retain: bool = False,
        save: bool = True,
    ) -> Message:
        """Seal a message, save the advanced session in `channel` and put the message in
        the outbox for every relay of the channel (inside the caller's transaction, which
        read `channel`).

        Args:
            save: False when the caller seals several in a row and keeps and saves the
                session once after the last, in the same transaction (`queue_many`).
        """
        state = self._state
        sealed = session.seal(kind, body, state.clock(), state.rng)
        # An escalation resends it, and so does a move from a mailbox its relay lost
        # before the counterpart read it (`Receiver._follow_move`), while it is kept. A
        # move of ours goes again only while it names the mailboxes we read: an older one
        # would point the counterpart at a replaced mailbox (`Receiver._still_current`).
        keep = (KEEP_FOR_ESCALATION if retain else KEEP_UNTIL_SEEN
                if kind in NO_RECEIPT_KINDS else KEEP_UNTIL_RECEIPTED)
        state.escalations.retain(channel.channel_id, sealed.message.message_id,
                                 sealed.payload, keep=keep, seq=sealed.message.seq,
                                 now_ms=state.clock())
        if save:
            state.keep_session(channel, session)
            state.channels.save(channel)
        message = sealed.message
        record = message_record(message, "out")
        state.messages.put(channel.channel_id, record)
        ref = state.messages.ref(record.message_id)
        for link in channel.links:
            if link.outbound is None:
                continue
            envelope = Envelope(bytes.fromhex(link.outbound.mailbox_id), sealed.payload)
            state.outbox.add(channel.channel_id, link.url, ref, envelope)
        return message

    def sendable(self, channel_id: str) -> ChannelRecord:
        """The channel as stored now (call inside the sending transaction), if it may send.

        Raises:
            IdentityChanged: the counterpart's key changed and was not yet confirmed.
        """
        channel = self._state.channels.get(channel_id)
        if channel.identity_changed and not channel.verified:
            raise IdentityChanged(
                f"'{channel.name}' has a different identity key than the earlier channel of "
                f"that name; compare the safety number (backchannel verify {channel.name}) "
                f"and confirm it before sending"
            )
        return channel

    def queue(
        self,
        channel_name: str,
        text: str,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
    ) -> str:
        """See `Principal.queue`."""
        try:
            note = Note(precedence, ack_within_ms, text)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return self.queue_body(
            channel_name, MessageKind.NOTE, note.encode(), retain=ack_within_ms > 0
        )

    def queue_many(
        self,
        channel_name: str,
        texts: list[str],
        *,
        precedence: Precedence = Precedence.ROUTINE,
    ) -> list[str]:
        """See `Principal.queue_many`."""
        try:
            bodies = [Note(precedence, 0, text).encode() for text in texts]
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        channel_id = self._state.channel(channel_name).channel_id
        try:
            with self._state.store.transaction():
                # Read inside the transaction that writes it back: the session advances
                # from the state as stored now, never from a copy read earlier.
                channel = self.sendable(channel_id)
                session = self._state.session(channel)
                messages = [
                    self.enqueue(channel, session, MessageKind.NOTE, body, save=False)
                    for body in bodies
                ]
                # Once for the whole batch, in its transaction: the session as it is after
                # the last note is the only one ever committed.
                self._state.keep_session(channel, session)
                self._state.channels.save(channel)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return [message.message_id.hex() for message in messages]

    def queue_body(self, channel_name: str, kind: int, body: bytes, *, retain: bool = False) -> str:
        """See `Principal.queue_body`."""
        channel_id = self._state.channel(channel_name).channel_id
        try:
            with self._state.store.transaction():
                channel = self.sendable(channel_id)
                session = self._state.session(channel)
                message = self.enqueue(channel, session, kind, body, retain=retain)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return message.message_id.hex()

    # --- flushing ----------------------------------------------------------------------

    async def deliver(self, channel_name: str, message_id: str) -> SendResult:
        """Flush the outbox and report where one queued message now is."""
        channel = self._state.channel(channel_name)
        await self.flush()
        return self._placed(channel, message_id)

    def placement(self, channel_name: str, message_id: str) -> SendResult:
        """Where one queued message is now: the relays that stored it, those it still
        waits for, and when the slots send it (a slotted channel in a running watch)."""
        return self._placed(self._state.channel(channel_name), message_id)

    def _placed(self, channel: ChannelRecord, message_id: str) -> SendResult:
        record = self._state.messages.get(channel.channel_id, message_id)
        stored = tuple(record.stored_on) if record else ()
        queued = tuple(
            link.url
            for link in channel.links
            if link.url not in stored and link.outbound is not None
        )
        seq = record.seq if record else 0
        within = None
        if channel.channel_id in self.slotted.ids and queued:
            interval = slot_interval_or_default(self._state.settings.get, channel.channel_id)
            within = None if interval is None else interval + SEND_LAG
        return SendResult(message_id, seq, stored, queued, within)

    async def flush(self, pool: RelayPool | None = None) -> int:
        """See `Principal.flush`."""
        own_pool = pool is None and self.live is None
        pool = pool or self.live or self._state.pool()
        try:
            results = await asyncio.gather(
                *(self.flush_relay(pool, url) for url in self._state.outbox.relays()),
                return_exceptions=True,
            )
        finally:
            if own_pool:
                await pool.close()
        for result in results:
            if isinstance(result, BaseException):
                raise result  # a bug or a damaged state, not a relay's doing
        return sum(r for r in results if isinstance(r, int))

    async def flush_relay(self, pool: RelayPool, url: str) -> int:
        """Offer the rows queued for one relay, a claimed window at a time; returns how
        many it stored. Rows another handle has claimed are left to it.

        Each mailbox is written over its own connection (its lane in `pool`), so the relay
        sees no connection that writes to two mailboxes. The rows of channels sent in
        slots (`slotted`) are left to their slots."""
        if url in pool.failures:
            return 0
        state = self._state
        await self.fetch_pinned_key(url)
        if not state.outbox.any_waiting(url, state.clock()):
            # The watch and every `deliver` flush often, mostly with nothing for this
            # relay (another flush took it): reading every channel would be most of it.
            return 0
        channels = state.channels.shared()  # only read here
        lost = {c.channel_id for c in channels if state.relays.lost(c.channel_id, url)[1]}
        self._drop_for_lost_relay(url, [c for c in channels if c.channel_id in lost])
        # Rows for a mailbox the relay lost wait for the counterpart's move (it would
        # refuse them again).
        tokens = {
            channel.channel_id: link.outbound.send_token
            for channel in channels
            for link in channel.links
            if link.url == url and link.outbound is not None
            and channel.channel_id not in self.slotted.ids
            and channel.channel_id not in lost
        }
        # Rows answered in this flush other than "stored" or "try again": not offered
        # again before the next flush.
        done: set[int] = set()
        sent, backoff, rounds = 0, _RETRY_FIRST_DELAY, 0
        # Forwarding relays whose refusal of the destination's key its signed statement
        # contradicts: out of the choice for this pass (`client.keypins`).
        distrusted: set[str] = set()
        refreshes = 0
        while True:
            now = state.clock()
            with state.store.transaction(durable=False):  # a claim: `Keystore.transaction`
                window = state.outbox.claim(url, tokens, now, now + _CLAIM_MS, _SEND_WINDOW, done)
            if not window:
                break
            # Chosen again for each window: a forwarding relay found down drops out.
            route = self.route_for(pool, url, distrusted)
            self.note_route(url, route)
            if not route.send:
                with state.store.transaction(durable=False):
                    state.outbox.release(window)  # forwarding is required: the rows wait
                break
            try:
                if route.forwarder is not None and route.key is not None:
                    results = await _forward_window(route.forwarder, url, route.key, tokens,
                                                    window)
                    lanes, clients = [], {}
                else:
                    lanes = list(dict.fromkeys(row.mailbox_id for row in window))
                    opened = await asyncio.gather(*(pool.get(url, m.hex()) for m in lanes))
                    clients = {m: c for m, c in zip(lanes, opened, strict=True) if c is not None}
                if len(clients) < len(lanes):
                    with state.store.transaction(durable=False):
                        state.outbox.release(window)  # the relay is down: rows wait
                    break
                if route.forwarder is None:
                    # Per mailbox in SEND_BATCH frames (`RelayClient.send_many`), pipelined:
                    # the relay commits them together; we wait for all.
                    results = await _send_window(clients, tokens, window)
            except BaseException:
                with state.store.transaction(durable=False):
                    state.outbox.release(window)  # stopped: the rows are anyone's again
                raise
            answered = list(zip(window, results, strict=True))
            stored = [row for row, result in answered if isinstance(result, int)]
            retry = [
                row
                for row, result in answered
                if isinstance(result, RelayRequestError) and result.code in _RETRYABLE
            ]
            with state.store.transaction():
                state.outbox.remove_many(stored)
                state.messages.mark_stored_many(((r.channel_id, r.ref) for r in stored), url)
                for row, result in answered:
                    if isinstance(result, RelayRequestError) and result.code not in _RETRYABLE:
                        self._refused(row, url, tokens[row.channel_id], result)
                state.outbox.release(window)
            done |= {row.row_id for row, _ in answered} - {row.row_id for row in retry}
            sent += len(stored)
            if stored:
                pool.reached(url)
            failure = next(
                (
                    r
                    for r in results
                    if isinstance(r, BaseException) and not isinstance(r, RelayRequestError)
                ),
                None,
            )
            if isinstance(failure, StaleKey):
                # Our key was refused: the destination's signed statement says whether it
                # changed (use the new one) or the refusal was false (another forwarder).
                refreshes += 1
                if refreshes > _MAX_KEY_REFRESHES:
                    self.route_status[url] = (f"not sent to {url} now: its forwarding key "
                                              f"was refused {_MAX_KEY_REFRESHES} times")
                    break  # the rows wait for the next flush
                if not await self.settle_stale_key(url, route, distrusted):
                    break
                done -= {row.row_id for row, result in answered if isinstance(result, StaleKey)}
                continue
            if isinstance(failure, DestinationDown):
                await pool.mark_down(url, str(failure))
                break
            if isinstance(failure, ForwarderUnfit) and route.forwarder is not None:
                # Nothing was carried: another forwarder, or the direct way where allowed,
                # takes these rows at once. Bounded: each round rules one relay out.
                self.note_unfit(route.forwarder, url)
                done -= {row.row_id for row, result in answered
                         if isinstance(result, ForwarderUnfit)}
                continue
            if failure is not None and route.forwarder is not None:
                # The forwarding relay failed, not the destination: another one (or the
                # direct way, if allowed) takes these rows again at once. Bounded: each
                # such round takes one relay out of the choice.
                await pool.mark_down(route.forwarder, str(failure) or type(failure).__name__)
                done -= {row.row_id for row, result in answered
                         if isinstance(result, BaseException)
                         and not isinstance(result, RelayRequestError)}
                continue
            if failure is not None:
                await pool.mark_down(url, str(failure) or type(failure).__name__)
                break
            if retry:
                # The relay asked us to slow down: back off, then offer those again.
                rounds += 1
                if rounds > _MAX_RETRY_ROUNDS:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _RETRY_MAX_DELAY)
            else:
                backoff = _RETRY_FIRST_DELAY
        return sent

    def route_for(self, pool: RelayPool, url: str, distrusted: Collection[str]) -> Route:
        """How sends to `url` go now (`routing.plan_route`): forwarding relays down in
        `pool` or `distrusted` (they refused a key the destination's signed statement
        lists as current) are out of the choice, and never direct on the word of one of
        those: then nothing is sent. The flush and the slots (`client.slotroutes`) both
        choose here."""
        state = self._state
        unfit = self.unfit_for(url)
        route = plan_route(url, state.all_relays(), state.relays.key(url), state.settings.get,
                           down={*pool.failures, *distrusted, *unfit})
        if distrusted and route.forwarder is None and route.status:
            route = Route(None, None, False, (
                f"not sent to {url}: {', '.join(sorted(distrusted))} refused its "
                "forwarding key, which its signed statement lists as current, and no "
                "other relay can forward to it"))
        elif unfit and route.forwarder is None and route.status.endswith(NO_FORWARDER):
            said = (f"{', '.join(sorted(unfit))} said it carries nothing to it, and no "
                    "other relay can forward to it")
            route = replace(route, status=route.status[: -len(NO_FORWARDER)] + said)
        return route

    def note_unfit(self, forwarder: str, destination: str) -> None:
        """`forwarder` said it carries nothing to `destination`: out of its choice for
        `UNFIT_FOR_MS` (a relay's forwarding is its operator's setting, seldom changed)."""
        until = self._state.clock() + UNFIT_FOR_MS
        self._unfit.setdefault(destination, {})[forwarder] = until

    def unfit_for(self, destination: str) -> set[str]:
        """The forwarding relays that said lately they carry nothing to `destination`."""
        now = self._state.clock()
        return {f for f, until in self._unfit.get(destination, {}).items() if until > now}

    async def fetch_pinned_key(self, url: str) -> None:
        """Fetch the key of a relay that has a pin but no key yet (a version 4 invite's),
        at most once in `_KEY_FETCH_EVERY_MS` per relay."""
        state = self._state
        if state.relays.key(url) is not None or state.relays.pin(url) is None:
            return
        if state.settings.get(FORWARDING_SETTING).strip().lower() == "off":
            return  # never forwarded: asking the relay for its key would only show it us
        last = self._key_fetched.get(url)
        if last is not None and state.clock() - last < _KEY_FETCH_EVERY_MS:
            return
        self._key_fetched[url] = state.clock()
        await refresh_key(state, url, None, timeout=_KEY_FETCH_TIMEOUT)

    async def settle_stale_key(self, url: str, route: Route, distrusted: set[str]) -> bool:
        """After our key for `url` was refused (UNKNOWN_KEY or KEY_RETIRED): fetch its
        signed statement and act on it. Returns False when the rows must wait."""
        state = self._state
        self._key_fetched[url] = state.clock()
        refreshed = await refresh_key(state, url, route.key, timeout=_KEY_FETCH_TIMEOUT)
        match refreshed.check:
            case KeyCheck.CHANGED:
                return True  # the new key is kept: the rows go again with it
            case KeyCheck.SAME if route.forwarder is not None:
                distrusted.add(route.forwarder)
                return True
            case KeyCheck.UNREACHABLE if state.relays.pin(url) is not None:
                # Nothing shows the refusal true: no direct send on its word alone.
                self.route_status[url] = f"not sent to {url} now: {refreshed.reason}"
                return False
        # No key verifies (another identity, a rollback; or no pin and no statement, a
        # relay from before statements, where the refusal is all we have to go on):
        # ours is forgotten, and the rest goes as `plan_route` chooses without it.
        with state.store.transaction():
            state.relays.forget_key(url)
        return True

    def note_route(self, url: str, route: Route) -> None:
        """Keep the line for rows sent (or held) to `url` other than forwarded as asked."""
        if route.status:
            self.route_status[url] = route.status
        else:
            self.route_status.pop(url, None)
        self._state.slot_status.note_route(url, route.status)  # for `status`, kept

    # --- slots (`client.slots`) ------------------------------------------------------------

    def slot_frames(self, channel_id: str) -> list[int]:
        """Each direction's request frame per slot, in bytes, on the route the settings
        choose now (no relay counted down): a forward's, the direct send's, or 0 while
        forwarding is required and impossible (`slotpolicy.describe_cost`)."""
        state = self._state
        frames = []
        for link in state.channels.get(channel_id).links:
            if link.outbound is None:
                continue
            route = plan_route(link.url, state.all_relays(), state.relays.key(link.url),
                               state.settings.get)
            frames.append(0 if not route.send else DIRECT_SLOT_FRAME if route.forwarder is None
                          else forward_frame_size(link.url, SLOT_BUCKET))
        return frames

    def claim_for_slot(self, url: str, channel_id: str, token: str,
                       skip: Collection[int] = ()) -> OutboxRow | None:
        """Claim the row one slot of a channel's direction to `url` sends: a FLASH note if
        one is among the oldest queued, else the oldest row (one transaction); rows in
        `skip` (held back after a refusal) are left queued."""
        state = self._state
        now = state.clock()
        with state.store.transaction(durable=False):  # a claim: see `Keystore.transaction`
            rows = state.outbox.claim(url, {channel_id}, now, now + _CLAIM_MS, _FLASH_LOOKAHEAD,
                                      skip)
            if not rows:
                return None
            chosen = next((row for row in rows if self.is_flash(row)), rows[0])
            state.outbox.release(row for row in rows if row is not chosen)
        return chosen

    def is_flash(self, row: OutboxRow) -> bool:
        record = self._state.messages.by_ref(row.channel_id, row.ref)
        if record is None or record.direction != "out" or record.kind != MessageKind.NOTE:
            return False
        try:
            note = decode_body(MessageKind.NOTE, bytes.fromhex(record.body))
        except RemoteProtocolError:
            return False
        return isinstance(note, Note) and note.precedence is Precedence.FLASH

    def release_slot(self, row: OutboxRow) -> None:
        """End a slot's claim on a row it did not send (stopped before the answer)."""
        with self._state.store.transaction(durable=False):
            self._state.outbox.release([row])

    async def settle_slot(
        self, pool: RelayPool, url: str, row: OutboxRow, token: str, result: int | BaseException
    ) -> None:
        """What a relay answered to a row sent in a slot: stored (it leaves the outbox),
        refused for good (kept and reported, as by a flush), or to try again (it waits
        for a later slot); a failed connection marks the relay down."""
        state = self._state
        with state.store.transaction():
            if isinstance(result, int):
                state.outbox.remove(row)
                state.messages.mark_stored(row.channel_id, row.ref, url)
            elif isinstance(result, RelayRequestError) and result.code not in _RETRYABLE:
                self._refused(row, url, token, result)
            state.outbox.release([row])
        if isinstance(result, int):
            pool.reached(url)
        elif not isinstance(result, RelayRequestError):
            await pool.mark_down(url, str(result) or type(result).__name__)

    def _refused(self, row: OutboxRow, url: str, token: str, error: RelayRequestError) -> None:
        """A relay refused a row for good (inside the caller's transaction)."""
        if error.code == ErrorCode.UNAUTHORIZED and self._outbound_refused(
            row.channel_id, url, token
        ):
            return
        self.refused_codes[row.row_id] = error.code
        # Refused for good (quota, not an envelope): the message stays queued and
        # `status` shows the reason.
        self._state.outbox.refused(row, self._state.clock())
        self._state.relays.note_refusal(url, str(error))

    # --- relays lost for a channel (they forgot its mailboxes) ------------------------

    def relays_lost(self, channel_id: str) -> tuple[str, ...]:
        """See `Principal.relays_lost`."""
        channel = self._state.channels.get(channel_id)
        return tuple(
            link.url
            for link in channel.links
            if any(self._state.relays.lost(channel_id, link.url))
        )

    def _outbound_refused(self, channel_id: str, url: str, token: str) -> bool:
        """The relay refused a send as unauthorised (inside the caller's transaction).

        Once the channel is established, that means the relay no longer knows the
        counterpart's mailbox there (it lost its disk, or expired the mailbox): the relay
        is lost for sending on this channel until the counterpart's *move* names a fresh
        mailbox, and nothing is offered there meanwhile. Its outbox rows for that relay are
        dropped where another relay carries the channel's messages; where none does (the
        channel's one direction, `placement`), they are kept for the move to readdress:
        dropping them would lose the messages.

        Returns:
            True when the refusal was handled here; False when it is the caller's (the
            channel has not yet heard its counterpart: an invite mailbox that is gone
            means the invite was spent, which pairing reports).
        """
        channel = self._state.channels.get(channel_id)
        if channel.last_heard_ms == 0:
            return False
        link = next((lk for lk in channel.links if lk.url == url), None)
        if link is None or link.outbound is None or link.outbound.send_token != token:
            return True  # readdressed by a move since this send left: the row goes again
        self._state.relays.set_lost(channel_id, url, self._state.clock(), outbound=True)
        if self._carried_elsewhere(channel, url):
            self._state.outbox.drop(channel_id, url)
        return True

    def _carried_elsewhere(self, channel: ChannelRecord, url: str) -> bool:
        """Whether a relay of the channel other than `url` takes its messages (a mailbox
        of the counterpart there, not lost): every message is queued for each of them."""
        return any(link.url != url and link.outbound is not None
                   and not self._state.relays.lost(channel.channel_id, link.url)[1]
                   for link in channel.links)

    def _drop_for_lost_relay(self, url: str, lost: list[ChannelRecord]) -> None:
        """Drop outbox rows queued since for the channels in `lost` (their mailbox on
        `url` is lost) whose messages another relay carries (the others wait for the
        counterpart's move, `_outbound_refused`)."""
        if not any(self._carried_elsewhere(c, url) for c in lost):
            return
        state = self._state
        with state.store.transaction():
            # Read again inside: a move another handle followed meanwhile may have
            # readdressed these rows and ended the loss.
            for channel_id in (c.channel_id for c in lost):
                try:
                    channel = state.channels.get(channel_id)
                except ChannelNotFound:
                    continue  # removed meanwhile, its rows with it
                if state.relays.lost(channel_id, url)[1] and self._carried_elsewhere(
                        channel, url):
                    state.outbox.drop(channel_id, url)

    # --- escalations ---------------------------------------------------------------------

    def escalated_ids(self, channel_id: str) -> set[bytes]:
        """Notes of this channel already escalated (each is escalated once)."""
        return self._state.escalations.escalated(channel_id)

    def escalate(self, channel_id: str, message_id: bytes) -> None:
        """Mark a note escalated and send its sealed payload again on every relay, in one
        transaction (so it happens once)."""
        state = self._state
        ref = state.messages.ref(message_id.hex())
        with state.store.transaction():
            channel = state.channels.get(channel_id)
            payload = state.escalations.retained(channel_id, message_id)
            state.escalations.mark_escalated(channel_id, message_id)
            if payload is None:
                return
            for link in channel.links:
                if link.outbound is not None:
                    envelope = Envelope(bytes.fromhex(link.outbound.mailbox_id), payload)
                    state.outbox.add(channel_id, link.url, ref, envelope)


# Forwards of one window in flight at once: each is a connection of its own to the
# forwarding relay (`routing.forward_send`), which bounds its clients' connections.
_FORWARD_WINDOW: Final = 8


async def _forward_window(forwarder: str, destination: str, key: RelayPublicKey,
                          tokens: dict[str, str], window: list[OutboxRow]) -> list[object]:
    """Send a claimed window through `forwarder`, one forward per row; per row, in order,
    its seq on the destination, the `RelayRequestError` (`ForwardRefused`) that refused it,
    or the error that stopped it (`routing.forward_deposit`)."""
    gate = asyncio.Semaphore(_FORWARD_WINDOW)

    async def one(row: OutboxRow) -> int:
        async with gate:
            return await forward_deposit(forwarder, destination, key, row.mailbox_id,
                                         bytes.fromhex(tokens[row.channel_id]), row.envelope)

    return list(await asyncio.gather(*(one(row) for row in window), return_exceptions=True))


async def _send_window(clients: dict[bytes, RelayClient], tokens: dict[str, str],
                       window: list[OutboxRow]) -> list[object]:
    """Send a claimed window, each mailbox's rows over its lane with `send_many`; returns
    per row, in order, its seq, the `RelayRequestError` that refused it, or the error that
    stopped its mailbox's lane (every row of that mailbox)."""
    lanes: dict[bytes, list[int]] = {}
    for index, row in enumerate(window):
        lanes.setdefault(row.mailbox_id, []).append(index)
    answers = await asyncio.gather(
        *(
            clients[mid].send_many(
                mid, bytes.fromhex(tokens[window[rows[0]].channel_id]),
                [window[i].envelope for i in rows],
            )
            for mid, rows in lanes.items()
        ),
        return_exceptions=True,
    )
    results: list[object] = [None] * len(window)
    for rows, answer in zip(lanes.values(), answers, strict=True):
        for position, index in enumerate(rows):
            results[index] = answer[position] if isinstance(answer, list) else answer
    return results


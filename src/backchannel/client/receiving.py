"""Receiving: what happens to an envelope once it arrived, and to what it asks of us.

An envelope received is decrypted, its message stored, the ratchet state advanced and its
payload digest recorded, in one transaction (the caller's, for a whole batch); only then
is the relay acked (`exchange`). A crash before the commit means the relay delivers it
again, and the old ratchet state still decrypts it; a crash after means the digest
recognises the copy. Copies (the same payload via two relays, or redelivered) are
recognised by payload digest and by message id; a second, different message where the
sender's history allows one is a fork (`client.forks`), never a silent duplicate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from backchannel.client.errors import ClientError
from backchannel.client.forks import KIND_FORK_NOTICE, ForkNotice, ForkReason, ForkRecord
from backchannel.client.fragments import KIND_FRAGMENT, Piece
from backchannel.client.invite import (
    CAPABILITY_PQ_RATCHET,
    KIND_CAPABILITIES,
    KIND_MOVE,
    MAX_RELAYS,
    Move,
    decode_capabilities,
)
from backchannel.client.pairing import Pairing
from backchannel.client.receipts import (
    MAX_RECEIPT_IDS,
    RECEIPT_KINDS,
    receipt_body,
    receipt_ids,
)
from backchannel.client.records import (
    ChannelRecord,
    InviteClaimRecord,
    InviteRecord,
    Link,
    Mailbox,
    MessageRecord,
    message_record,
)
from backchannel.client.reports import InboxEntry, SyncReport
from backchannel.client.sending import Sender
from backchannel.client.slotpolicy import KIND_COVER
from backchannel.client.state.fragments import KEEP_MS as FRAGMENT_KEEP_MS
from backchannel.client.state.shared import ClientState
from backchannel.dialogue.bodies import Note, decode_body
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.e2e.ratchet import DuplicateMessage, ForkedChain, TooFarAhead
from backchannel.protocol.e2e.session import Session, starts_session
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.errors import (
    DecryptionFailed,
    RemoteProtocolError,
    UnsafeRemoteText,
    describe_char,
)
from backchannel.protocol.message import GENESIS_HASH, Message, MessageKind

__all__ = ["DIGEST_KEEP_MS", "Deferred", "Receiver", "inbox_entry"]

# Payload digests are kept 37 days: a relay delivers nothing older than its envelope TTL
# (30 days by default, docs/relay.md), and a week more covers a sweep not yet run and a
# clock that is off. See `Receiver.expire_digests` for why forgetting one is safe.
DIGEST_KEEP_MS: Final = (30 + 7) * 24 * 3600 * 1000


class Deferred(Exception):
    """An envelope to leave on its relay unacknowledged and process on a later pass."""


def inbox_entry(channel: ChannelRecord, record: MessageRecord) -> InboxEntry:
    """How a stored message is shown (a note's text, precedence and deadline)."""
    raw = bytes.fromhex(record.body)
    precedence, ack_within, text = Precedence.ROUTINE, 0, ""
    if record.kind == MessageKind.NOTE:
        try:
            note = decode_body(record.kind, raw)
        except UnsafeRemoteText as error:
            # Say which character, by its code point: the principal learns why the note
            # was refused, and its text is never shown.
            note = None
            text = f"(note refused: its text contains {describe_char(chr(error.code_point))})"
        except RemoteProtocolError:
            note = None
            text = "(malformed note)"
        if isinstance(note, Note):
            precedence, ack_within, text = note.precedence, note.ack_within_ms, note.text
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


class Receiver:
    """Processes envelopes (decrypt, check the chain, store, advance), follows moves,
    records forks, and owes and queues receipts and fork notices."""

    def __init__(self, state: ClientState, sender: Sender, pairing: Pairing) -> None:
        self._state = state
        self._sender = sender
        self._pairing = pairing

    def __repr__(self) -> str:
        return f"Receiver({self._state!r})"

    # --- envelopes (inside the caller's transaction) -----------------------------------

    def process(self, mailbox_id: bytes, raw: bytes, report: SyncReport) -> InboxEntry | None:
        """Decrypt, store and advance. Runs inside the caller's transaction, which covers a
        whole batch: one commit (one fsync) per batch, and a crash loses the batch's work
        but never its envelopes, which were not yet acked.

        Returns:
            The note that arrived, if the envelope carried a new one.

        Raises:
            Deferred: authentic but too far ahead; leave it unacknowledged.
        """
        state = self._state
        try:
            envelope = Envelope.decode(raw)
        except RemoteProtocolError:
            report.rejected += 1
            return None
        if state.digests.seen(envelope.payload):
            report.duplicates += 1
            return None
        rejected, cover = report.rejected, report.cover
        owner = state.owner(mailbox_id)
        entry = None
        if isinstance(owner, InviteRecord):
            self._pairing.take_up(owner, envelope.payload, report, self.store_incoming)
        elif isinstance(owner, ChannelRecord):
            entry = self._receive(owner, envelope.payload, report)  # may raise Deferred
            if report.rejected > rejected and starts_session(envelope.payload):
                self._note_invite_claim(owner, mailbox_id, envelope.payload, report)
        else:
            report.rejected += 1
        if report.rejected == rejected and report.cover == cover:
            # Only what authenticated is remembered: junk a relay sends (review §2g) is
            # counted and acked away, and leaves nothing in the state to grow. Nor cover,
            # which comes every slot: a copy of one is refused by the ratchet instead.
            state.digests.remember(envelope.payload, state.clock())
        return entry

    def _note_invite_claim(
        self, channel: ChannelRecord, mailbox_id: bytes, payload: bytes, report: SyncReport
    ) -> None:
        """A session start that this channel's session refused, on one of the invite
        mailboxes the channel still reads: a second joiner used the spent invite (review
        §4 row 4). Its sender was told "stored" and will never be answered; say so loudly
        and keep it (`InviteRepository.claims`). Inside the caller's transaction."""
        state = self._state
        hex_id = mailbox_id.hex()
        link = next(
            (lk for lk in channel.retiring if lk.inbound and lk.inbound.mailbox_id == hex_id), None
        )
        if link is None:
            return  # on the channel's own mailboxes: not an invite claim, only rejected
        claim = InviteClaimRecord(channel.channel_id, channel.name, link.url, state.clock())
        if state.invites.record_claim(payload, claim):
            report.invite_claims.append(claim)

    def expire_digests(self) -> None:
        """Forget payload digests older than `DIGEST_KEEP_MS`.

        Safe: the digest only spares a decrypt. An authentic copy that comes back after
        its digest expired is still never a second message: the ratchet refuses a key it
        already used (`DuplicateMessage`, counted as a duplicate), a copy from a chain it
        has long left no longer opens (`DecryptionFailed`, counted as rejected, nothing
        stored), and `_receive` also finds the message id already stored.
        """
        with self._state.store.transaction():
            self._state.digests.forget_before(self._state.clock() - DIGEST_KEEP_MS)
            self._state.escalations.expire_unseen(self._state.clock() - DIGEST_KEEP_MS)
            self._state.fragments.forget_before(self._state.clock() - FRAGMENT_KEEP_MS)

    def _receive(
        self, channel: ChannelRecord, payload: bytes, report: SyncReport
    ) -> InboxEntry | None:
        state = self._state
        session = state.session(channel)
        try:
            opened = session.open_with_position(payload, state.rng)
            message = opened.message
        except TooFarAhead:
            # Authentic but more than MAX_SKIP ahead: the messages in between may still
            # come by another relay. Keep it on the relay (no ack) and try again later.
            report.deferred += 1
            raise Deferred() from None
        except DuplicateMessage as duplicate:
            if state.forks.same_header(channel.channel_id, duplicate.position) is False:
                # Authentic, at a position already used, but sealed a second time: the
                # sender's state was copied and both copies sent.
                self._record_fork(channel, ForkReason.REPLAY, 0, "", report)
            else:
                report.duplicates += 1  # a copy (or from before positions were kept)
            return None
        except ForkedChain:
            # Their state was copied and the copy stepped its ratchet apart from the
            # original (a backup restored after the original went on): loud, never a
            # duplicate or a forgery. Its body cannot be opened here.
            self._record_fork(channel, ForkReason.REPLAY, 0, "", report)
            return None
        except (DecryptionFailed, RemoteProtocolError):
            # Tampered, forged or foreign: counted and reported, never shown.
            channel.rejected += 1
            state.channels.save(channel)
            report.rejected += 1
            return None
        self._negotiate_post_quantum(channel, session, message)
        state.keep_session(channel, session)
        channel.last_heard_ms = state.clock()
        if message.kind == KIND_COVER:
            # Cover (`client.slots`): it advanced the ratchet and says the line is alive;
            # nothing else of it is kept (no history, no receipt, no position).
            report.cover += 1
            state.channels.save(channel)
            return None
        if message.kind == KIND_FRAGMENT:
            # A piece of a large envelope sent across slots (`client.fragments`): kept,
            # like cover outside the history, until the envelope is whole.
            report.fragments += 1
            whole = self._piece(channel, message.body)
            state.channels.save(channel)
            return None if whole is None else self._receive(channel, whole, report)
        state.forks.remember_position(channel.channel_id, opened.position)
        entry = None
        if state.messages.get(channel.channel_id, message.message_id.hex()) is not None:
            report.duplicates += 1
        elif (reason := self._chain_fork(channel, message)) is ForkReason.POSITION:
            # Two different messages claim one place in their history: keep the first,
            # raise the alarm, show neither as if nothing happened.
            self._record_fork(channel, reason, message.seq, message.message_id.hex(), report)
        else:
            if reason is not None:
                self._record_fork(channel, reason, message.seq, message.message_id.hex(), report)
            record = self.store_incoming(channel, message)
            report.received += 1
            if message.kind == MessageKind.NOTE:
                entry = inbox_entry(channel, record)
                report.new_notes.append(record.message_id)
        state.channels.save(channel)
        return entry

    def _piece(self, channel: ChannelRecord, body: bytes) -> bytes | None:
        """Keep a piece; the payload of the whole envelope once it is complete."""
        state = self._state
        try:
            whole = state.fragments.add(channel.channel_id, Piece.decode(body), state.clock())
            return None if whole is None else Envelope.decode(whole).payload
        except RemoteProtocolError:
            channel.rejected += 1  # authentic but malformed: the sender's bug
            return None

    def _negotiate_post_quantum(
        self, channel: ChannelRecord, session: Session, message: Message
    ) -> None:
        """Upgrade a classical channel in place (protocol.md §13.8): start the PQ ratchet
        when the counterpart announces it, and announce it ourselves once per channel."""
        if message.kind == KIND_CAPABILITIES:
            try:
                capabilities = decode_capabilities(message.body)
            except RemoteProtocolError:
                capabilities = 0
            if capabilities & CAPABILITY_PQ_RATCHET:
                session.start_post_quantum(self._state.rng)
        if (
            not session.post_quantum_offered
            and session.can_send
            and any(link.outbound for link in channel.links)
            # Like receipts, nothing goes to a changed key nobody has looked at yet.
            and not (channel.identity_changed and not channel.verified)
        ):
            session.offer_post_quantum()
            body = bytes([CAPABILITY_PQ_RATCHET])
            self._sender.enqueue(channel, session, KIND_CAPABILITIES, body)

    def _chain_fork(self, channel: ChannelRecord, message: Message) -> ForkReason | None:
        """Check a new message against the sender's history we hold (protocol.md §8):
        POSITION if another message has its sequence number, CHAIN if its prev_hash is not
        the hash of the message before it, or the message after it does not chain to it."""
        held = self._state.messages.theirs_around(channel.channel_id, message.seq)
        if message.seq in held:
            return ForkReason.POSITION
        before, after = held.get(message.seq - 1), held.get(message.seq + 1)
        if message.seq == 1 and message.prev_hash != GENESIS_HASH:
            return ForkReason.CHAIN
        if before is not None and before.message_hash != message.prev_hash.hex():
            return ForkReason.CHAIN
        if after is not None and after.prev_hash and after.prev_hash != message.hash.hex():
            return ForkReason.CHAIN
        return None

    def _record_fork(
        self,
        channel: ChannelRecord,
        reason: ForkReason,
        seq: int,
        message_id: str,
        report: SyncReport,
    ) -> None:
        record = ForkRecord("theirs", reason, seq, self._state.clock(), message_id)
        self._state.forks.add(channel.channel_id, record)
        report.forks += 1

    def store_incoming(self, channel: ChannelRecord, message: Message) -> MessageRecord:
        """Store a message of theirs and do what its kind asks: follow a move, note a fork
        they saw, apply a receipt, or owe a delivery receipt (inside the transaction)."""
        state = self._state
        record = message_record(message, "in", state.clock())
        state.messages.put(channel.channel_id, record)
        if message.kind == KIND_FORK_NOTICE:
            self._note_reported_fork(channel, message.body)
        elif message.kind == KIND_MOVE:
            # The inviter's first message is its move from the invite's mailboxes.
            initial = channel.role == "joiner" and message.seq == 1
            self._follow_move(channel, message.body, initial=initial)
        elif message.kind in RECEIPT_KINDS:
            self._apply_receipt(channel, message)
        elif message.kind == KIND_CAPABILITIES:
            pass  # taken in `_negotiate_post_quantum`; owes no receipt
        else:
            state.receipts.add(
                channel.channel_id, MessageKind.RECEIPT_DELIVERED, message.message_id.hex()
            )
        return record

    def _apply_receipt(self, channel: ChannelRecord, message: Message) -> None:
        try:
            ids = receipt_ids(message.body)
        except RemoteProtocolError:
            return
        # Either receipt says the counterpart has them: their payloads need not be kept,
        # nor those of what owes no receipt and came before them.
        self._state.escalations.release(channel.channel_id, [bytes.fromhex(i) for i in ids])
        messages = self._state.messages
        refs = list(dict.fromkeys(messages.ref(message_id) for message_id in ids))
        # One read and one write for the receipt's messages, not two statements each.
        receipted: list[MessageRecord] = []
        changed: list[tuple[bytes, MessageRecord]] = []
        for ref, ours in messages.by_refs(channel.channel_id, refs):
            if ours.direction != "out":
                continue
            receipted.append(ours)
            marks = (ours.delivered_at_ms, ours.read_at_ms)
            if message.kind == MessageKind.RECEIPT_DELIVERED:
                ours.delivered_at_ms = ours.delivered_at_ms or message.sent_at_ms
            else:
                ours.read_at_ms = ours.read_at_ms or message.sent_at_ms
                ours.delivered_at_ms = ours.delivered_at_ms or message.sent_at_ms
            if (ours.delivered_at_ms, ours.read_at_ms) != marks:
                changed.append((ref, ours))
        messages.update(channel.channel_id, changed)
        self._forget_seen(channel, receipted)

    def _forget_seen(self, channel: ChannelRecord, receipted: list[MessageRecord]) -> None:
        """Forget the kept payloads of what owes no receipt and the counterpart has read.

        A mailbox is read in order, so a receipted message of ours says every earlier one
        in its mailbox was read. Which relay it was read from, the receipt does not say:
        an earlier one counts as read only if it went to every relay the receipted one
        went to. Else it may wait unread elsewhere (the counterpart moved, and its old
        relay may yet lose its disk), and stays kept: until a later receipt that shows it
        read, or for the keep's 37 days. A message still queued (stored nowhere) is
        never read.
        """
        if not receipted:
            return
        state = self._state
        latest = max(r.seq for r in receipted)
        read_where = [(r.seq, set(r.stored_on)) for r in receipted if r.stored_on]
        seen = []
        for message_id, seq in state.escalations.unseen_below(channel.channel_id, latest):
            earlier = state.messages.get(channel.channel_id, message_id.hex())
            where = set() if earlier is None else set(earlier.stored_on)
            if any(later > seq and relays <= where for later, relays in read_where):
                seen.append(message_id)
        state.escalations.seen(channel.channel_id, seen)

    def _note_reported_fork(self, channel: ChannelRecord, body: bytes) -> None:
        """The counterpart saw our messages fork: a copy of our state sent too."""
        try:
            notice = ForkNotice.decode(body)
        except RemoteProtocolError:
            return
        self._state.forks.add(
            channel.channel_id,
            ForkRecord("ours", notice.reason, notice.seq, self._state.clock()),
        )

    def _follow_move(self, channel: ChannelRecord, body: bytes, *, initial: bool) -> None:
        """Send to the counterpart's new mailboxes from now on, queued envelopes included.

        Either side may move: the inviter once, from the invite's mailboxes to the
        channel's; either, later, to a fresh mailbox on a relay that lost the old one, or on
        another relay when every relay of its own share is down (`Exchange._reprovision`).
        Only the links the move names change (a relay new to the channel becomes a link of
        ours to send to), and a relay lost for sending is back. The inviter's `initial` move
        names every relay it keeps a mailbox on: the invite's mailboxes on the others (the
        joiner's share, `placement`) are given up, since they are about to be deleted.
        """
        try:
            move = Move.decode(body)
        except RemoteProtocolError:
            return
        state = self._state
        for address in move.relays:
            link = next((lk for lk in channel.links if lk.url == address.url), None)
            if link is None:
                if len(channel.links) >= MAX_RELAYS:
                    continue  # a channel has at most as many relays as an invite names
                link = Link(address.url, None)
                channel.links.append(link)
            new_direction = link.outbound is None
            replaced = (not initial and link.outbound is not None
                        and link.outbound.mailbox_id != address.mailbox_id.hex())
            link.outbound = Mailbox(address.mailbox_id.hex(), address.send_token.hex())
            state.relays.set_lost(channel.channel_id, address.url, state.clock(), outbound=False)
            state.outbox.readdress(channel.channel_id, address.url, address.mailbox_id)
            if replaced:
                self._resend_unreceipted(channel, address.url, address.mailbox_id)
            if new_direction:
                # What waits for their other relays goes this way too: those are down.
                state.outbox.copy_to(channel.channel_id, address.url, address.mailbox_id)
                for other in channel.links:
                    # Rows kept for a relay that lost their mailbox (the channel had no
                    # other way, `Sender._outbound_refused`) go this way now instead.
                    if other.url != address.url and state.relays.lost(
                            channel.channel_id, other.url)[1]:
                        state.outbox.drop(channel.channel_id, other.url)
        if initial:
            named = {address.url for address in move.relays}
            for link in channel.links:
                if link.url not in named and link.outbound is not None:
                    link.outbound = None
                    state.outbox.drop(channel.channel_id, link.url)
            channel.links = [lk for lk in channel.links if lk.inbound or lk.outbound]

    def _resend_unreceipted(self, channel: ChannelRecord, url: str, mailbox_id: bytes) -> None:
        """Queue again, to the counterpart's new mailbox on `url`, each message of ours
        that relay stored in the old one and the counterpart has not receipted.

        A fresh mailbox where one was means the relay lost the old one (its disk, an
        expiry) or the counterpart retired it. Lost, what it held unread is gone, and with
        a channel's direction on one relay (`placement`) no other relay has a copy: the
        retained payload (`Sender.enqueue`) goes again, as is. Retired, the counterpart
        drains the old mailbox first, and a copy is a duplicate it drops by its digest.
        """
        state = self._state
        queued = state.outbox.refs_for(channel.channel_id, url)
        for message_id, payload in state.escalations.all_retained(channel.channel_id):
            ours = state.messages.get(channel.channel_id, message_id.hex())
            if (ours is None or ours.direction != "out" or ours.delivered_at_ms
                    or url not in ours.stored_on):
                continue
            if ours.kind == KIND_MOVE and not _still_current(channel, ours):
                continue
            ref = state.messages.ref(ours.message_id)
            if ref in queued:
                continue  # still queued for it: readdressed above
            state.outbox.add(channel.channel_id, url, ref, Envelope(mailbox_id, payload))

    # --- receipts and fork notices owed -------------------------------------------------

    def owes_receipts(self) -> bool:
        return self._state.receipts.any()

    def queue_receipts(self) -> None:
        """Seal one receipt message per channel and kind for everything stored since the
        last one (inside the caller's transaction, with the receipts' removal), and the
        fork notices owed."""
        state = self._state
        self._queue_fork_notices()
        for (channel_id, kind), ids in state.receipts.grouped().items():
            channel = state.channels.get(channel_id)
            if channel.identity_changed and not channel.verified:
                continue  # receipts wait too, until the changed key has been looked at
            session = state.session(channel)
            if not session.can_send or not any(link.outbound for link in channel.links):
                continue
            for start in range(0, len(ids), MAX_RECEIPT_IDS):
                self._sender.enqueue(
                    channel, session, kind, receipt_body(ids[start : start + MAX_RECEIPT_IDS])
                )
            state.receipts.done(channel_id, kind)

    def _queue_fork_notices(self) -> None:
        """Tell each counterpart about forks of theirs we saw and have not yet reported
        (inside the caller's transaction)."""
        state = self._state
        for channel in state.channels.all():
            unsent = [
                (row_id, fork)
                for row_id, fork in state.forks.of_channel(channel.channel_id)
                if fork.side == "theirs" and not fork.notified
            ]
            if not unsent:
                continue
            session = state.session(channel)
            if not session.can_send or not any(link.outbound for link in channel.links):
                continue
            for row_id, fork in unsent:
                notice = ForkNotice(fork.seq, fork.reason)
                self._sender.enqueue(channel, session, KIND_FORK_NOTICE, notice.encode())
                state.forks.replace(channel.channel_id, row_id, replace(fork, notified=True))

    # --- reading --------------------------------------------------------------------------

    async def read(self, channel_name: str, message_id: str | None = None) -> list[InboxEntry]:
        """See `Principal.read`."""
        state = self._state
        channel = state.channel(channel_name)
        now = state.clock()
        with state.store.transaction():
            # Chosen inside the transaction that marks them: a receipt stored meanwhile by
            # another handle is kept, not overwritten with a copy read before it.
            chosen = [
                m
                for m in state.messages.of_channel(channel.channel_id)
                if m.direction == "in"
                and m.kind == MessageKind.NOTE
                and (m.message_id.startswith(message_id) if message_id else not m.read_at_ms)
            ]
            if message_id and not chosen:
                raise ClientError(f"no received message {message_id} in '{channel.name}'")
            for record in chosen:
                if not record.read_at_ms:
                    record.read_at_ms = now
                    state.receipts.add(
                        channel.channel_id, MessageKind.RECEIPT_READ, record.message_id
                    )
                    state.messages.put(channel.channel_id, record)
            self.queue_receipts()
        await self._sender.flush()
        return [inbox_entry(channel, m) for m in chosen]


def _still_current(channel: ChannelRecord, move: MessageRecord) -> bool:
    """Whether a move of ours names only the mailboxes we read now, so that following it
    again changes nothing but what the counterpart missed. The inviter's first move gives
    up the links it does not name (`_follow_move`'s `initial`), so it must name every
    relay we read on, and no other."""
    try:
        named = {a.url: a.mailbox_id.hex() for a in Move.decode(bytes.fromhex(move.body)).relays}
    except (RemoteProtocolError, ValueError):
        return False
    reading = {lk.url: lk.inbound.mailbox_id for lk in channel.links if lk.inbound}
    if channel.role == "inviter" and move.seq == 1:
        return named == reading
    return named.items() <= reading.items()

"""`Dialogue`: the state of a channel's dialogue, a deterministic fold over its messages.

The client stores every message of a channel in both directions and feeds each, in the
order it stored them (one side's messages in their sequence order), to `Dialogue.apply`.
The same messages in the same order always give the same state.

Two kinds of rule-breaking, two answers (as in h11):

- this side's intent: `check_*` and `check` raise `IllegalTransition` (a
  `LocalProtocolError`) before anything is sent;
- a stored message that breaks a rule (normally the other side's): `apply` records an
  `Anomaly` and leaves the state as it was. Bad input from the peer never raises.

The fold holds only public identities: it verifies record signatures but cannot make
any. Only `propose_record` and `cosign_record`, given the identity key pair, sign.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from backchannel.dialogue.agenda import AgendaBook, AgendaItem, AgendaRound
from backchannel.dialogue.agreed import AgreedRecord
from backchannel.dialogue.board import StatusBoard
from backchannel.dialogue.bodies import (
    NOTE_KIND,
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Body,
    Clarify,
    Hold,
    LineTest,
    LineTestReply,
    Note,
    RecordPropose,
    RecordSign,
    RedLine,
    RedLineAck,
    Translate,
    decode_body,
)
from backchannel.dialogue.clarify import Clarification, ClarificationLedger
from backchannel.dialogue.codebook import Codebook, CodeEntryView, CodeMessage
from backchannel.dialogue.codes import (
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
)
from backchannel.dialogue.events import (
    Anomaly,
    DialogueEvent,
    IllegalTransition,
    KnownMessage,
    Side,
    short_id,
)
from backchannel.dialogue.kinds import DialogueKind, Precedence
from backchannel.dialogue.linetest import (
    DEFAULT_LINETEST_EVERY_MS,
    DEFAULT_LINETEST_GRACE_MS,
    LineStatus,
    LineTestLog,
)
from backchannel.dialogue.notify import (
    ESCALATION_PRECEDENCE,
    DutyAccept,
    DutyPropose,
    DutyView,
    Notification,
    NotificationBook,
    Notify,
    NotifyRequest,
)
from backchannel.dialogue.records import RecordBook, RecordView
from backchannel.dialogue.redlines import RedLineBook, RedLineView
from backchannel.dialogue.statement import Statement
from backchannel.dialogue.translations import AddedTranslation, TranslationLedger
from backchannel.dialogue.urgent import (
    Escalation,
    NoteLedger,
    NoteSummary,
    PendingAck,
    escalations_due,
)
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Dialogue"]


class Dialogue:
    """The dialogue state of one channel between `ours` and `theirs`."""

    __slots__ = (
        "_agenda",
        "_anomalies",
        "_clarifications",
        "_codebook",
        "_known",
        "_last_heard",
        "_lines",
        "_notes",
        "_notifications",
        "_records",
        "_redlines",
        "_translations",
        "ours",
        "theirs",
    )

    def __init__(self, ours: PublicIdentity, theirs: PublicIdentity) -> None:
        """Start an empty dialogue.

        Args:
            ours: this principal's public identity.
            theirs: the other principal's public identity.

        Raises:
            LocalProtocolError: both identities are the same.
        """
        if ours == theirs:
            raise LocalProtocolError("a dialogue is between two different identities")
        self.ours = ours
        self.theirs = theirs
        self._known: dict[bytes, KnownMessage] = {}
        self._anomalies: list[Anomaly] = []
        self._last_heard: int | None = None
        self._notes = NoteLedger()
        self._clarifications = ClarificationLedger()
        self._redlines = RedLineBook()
        self._agenda = AgendaBook()
        self._records = RecordBook(ours, theirs)
        self._lines = LineTestLog()
        self._codebook = Codebook()
        self._translations = TranslationLedger()
        self._notifications = NotificationBook()

    @classmethod
    def fold(
        cls, ours: PublicIdentity, theirs: PublicIdentity, events: Iterable[DialogueEvent]
    ) -> Dialogue:
        """Build the state from a channel's stored messages, in stored order."""
        dialogue = cls(ours, theirs)
        for event in events:
            dialogue.apply(event)
        return dialogue

    # -- the fold ---------------------------------------------------------------------

    def apply(self, event: DialogueEvent) -> Anomaly | None:
        """Fold one stored message into the state. Never raises on bad content.

        Args:
            event: the message. A second copy of a message id already applied is ignored.

        Returns:
            The anomaly recorded if the message was malformed or broke a rule (the state
            is then as it was, but for `last_heard_from_ms`), else None. Receipts and
            kinds this layer does not know are kept as known messages and otherwise ignored.
        """
        if event.message_id in self._known:
            return None
        self._known[event.message_id] = KnownMessage(
            event.message_id,
            event.side,
            event.kind,
            event.message_hash,
            event.sent_at_ms,
            event.received_at_ms,
        )
        if event.side is Side.THEIRS:
            self._last_heard = max(self._last_heard or 0, event.received_at_ms)
        try:
            body = decode_body(event.kind, event.body)
            if body is not None:
                self._dispatch(event, body)
        except RemoteProtocolError as error:
            return self._anomaly(event, f"malformed body ({error})")
        except IllegalTransition as error:
            return self._anomaly(event, str(error))
        return None

    def _anomaly(self, event: DialogueEvent, reason: str) -> Anomaly:
        anomaly = Anomaly(event.message_id, event.side, event.kind, event.received_at_ms, reason)
        self._anomalies.append(anomaly)
        return anomaly

    def _dispatch(self, event: DialogueEvent, body: Body) -> None:
        match body:
            case Note():
                self._notes.add_note(event, body)
            case Ack(message_id=target):
                self._notes.apply_ack(event, body, self._known.get(target))
            case Hold(message_id=target):
                self._hold_target(event.side, target)
                if self._clarifications.knows(target):
                    self._clarifications.apply_hold(event, body)
                else:
                    self._notes.apply_hold(event, body, self._known.get(target))
            case Clarify(target_id=target):
                self._clarifications.apply_clarify(event, body, self._known.get(target))
            case Answer():
                self._clarifications.apply_answer(event, body)
            case RedLine():
                self._redlines.apply_declare(event, body)
            case RedLineAck():
                self._redlines.apply_ack(event, body)
            case AgendaPropose():
                self._agenda.apply_propose(event, body)
            case AgendaAccept() | AgendaDecline():
                self._agenda.apply_decide(event, body)
            case RecordPropose():
                self._records.apply_propose(event, body)
            case RecordSign():
                self._records.apply_sign(event, body)
            case LineTest():
                self._lines.apply_test(event)
            case LineTestReply():
                self._lines.apply_reply(event, body)
            case CodebookPropose():
                self._codebook.apply_propose(event, body)
            case CodebookAccept():
                self._codebook.apply_accept(event, body)
            case CodebookWithdraw():
                self._codebook.apply_withdraw(event, body)
            case CodebookSend():
                self._codebook.apply_send(event, body)
                entry = self._codebook.message(event.message_id)
                if entry is not None:
                    proposal = entry.entry
                    self._notes.add_code_message(
                        event, proposal.precedence or Precedence.ROUTINE, proposal.ack_within_ms
                    )
            case Translate(target_id=target):
                self._translations.apply(event, body, self._known.get(target))
            case DutyPropose():
                self._notifications.apply_propose(event, body)
            case DutyAccept():
                self._notifications.apply_accept(event, body)
            case Notify():
                self._notifications.apply_notify(event, body)
            case NotifyRequest():
                self._notifications.apply_request(event, body)

    def _hold_target(self, side: Side, target: bytes) -> None:
        known = self._known.get(target)
        holdable = (NOTE_KIND, DialogueKind.CLARIFY, DialogueKind.CODEBOOK_SEND)
        if known is not None and known.kind not in holdable:
            raise IllegalTransition(
                f"cannot hold message {short_id(target)}: a holding reply answers a note or a "
                "clarification request"
            )
        if self._clarifications.knows(target):
            self._clarifications.check_hold(side, target)
        else:
            self._notes.check_hold(side, target, known)

    @property
    def anomalies(self) -> tuple[Anomaly, ...]:
        """Messages the fold ignored, in the order they came."""
        return tuple(self._anomalies)

    @property
    def last_heard_from_ms(self) -> int | None:
        """When we last stored any message from the other side (our clock)."""
        return self._last_heard

    def known_messages(self) -> tuple[KnownMessage, ...]:
        """Every message the fold has seen, in stored order (receipts are not fed)."""
        return tuple(self._known.values())

    def note_summaries(self) -> tuple[NoteSummary, ...]:
        """Every note with its deadline and acknowledgement (for a periodic review)."""
        return self._notes.summaries()

    def known(self, message_id: bytes) -> KnownMessage | None:
        """What the fold knows of a message (its side, kind, hash and times)."""
        return self._known.get(message_id)

    # -- this side's intents ----------------------------------------------------------

    def check(self, body: Body, now_ms: int) -> None:
        """Check that this side may send `body` now: the one gate before any send.

        Args:
            body: the body to send (its message id does not exist yet).
            now_ms: the current time.

        Raises:
            IllegalTransition: the dialogue's rules forbid it (see the `check_*` methods),
                or a record body's signature does not verify.
        """
        match body:
            case Note() | AgendaPropose() | LineTest():
                pass
            case Ack(message_id=target):
                self.check_ack(target)
            case Hold(message_id=target, expected_by_ms=expected_by):
                self.check_hold(target, expected_by, now_ms)
            case Clarify(target_id=target, target_hash=digest):
                self.check_clarify(target, digest)
            case Answer(request_id=request):
                self.check_answer(request)
            case RedLine(redline_id=redline, version=version):
                self.check_redline(redline, version)
            case RedLineAck(redline_id=redline, version=version):
                self.check_redline_ack(redline, version)
            case (
                AgendaAccept(round=number, item_id=item) | AgendaDecline(round=number, item_id=item)
            ):
                self.check_agenda_decision(number, item)
            case RecordPropose() | RecordSign():
                self._records.check_body(Side.OURS, body)
            case LineTestReply(test_id=test):
                self.check_linetest_reply(test)
            case CodebookPropose():
                self._codebook.check_own_propose(body)
            case CodebookAccept(entry_id=entry, version=version):
                self._codebook.check_accept(Side.OURS, entry, version, own=True)
            case CodebookWithdraw(entry_id=entry):
                self._codebook.check_withdraw(entry, own=True)
            case CodebookSend():
                self._codebook.check_send(body, own=True)
            case Translate(target_id=target):
                self._translations.check(Side.OURS, body, self._known.get(target))
            case DutyPropose():
                self._notifications.check_propose(Side.OURS, body)
            case DutyAccept():
                self._notifications.check_accept(Side.OURS, body, own=True)
            case Notify():
                self._notifications.check_notify(Side.OURS, body, own=True)
            case NotifyRequest():
                self._notifications.check_request(body, own=True)

    def check_ack(self, message_id: bytes) -> None:
        """Check that this side may acknowledge `message_id`.

        Raises:
            IllegalTransition: unknown message, not a note, our own note, or already
                acknowledged.
        """
        self._notes.check_ack(Side.OURS, message_id, self._known.get(message_id))

    def check_hold(self, message_id: bytes, expected_by_ms: int, now_ms: int) -> None:
        """Check that this side may send a holding reply to `message_id`.

        Raises:
            IllegalTransition: not a note or clarification request of theirs, already
                acknowledged or answered, or `expected_by_ms` not in the future.
        """
        self._hold_target(Side.OURS, message_id)
        if expected_by_ms <= now_ms:
            raise IllegalTransition("a holding reply promises an answer by a time to come")

    def check_clarify(self, target_id: bytes, target_hash: bytes) -> None:
        """Check that this side may ask about `target_id`.

        Raises:
            IllegalTransition: unknown message, our own message, a hash that differs, or a
                kind with nothing to clarify.
        """
        known = self._known.get(target_id)
        self._clarifications.check_clarify(Side.OURS, target_id, target_hash, known)

    def check_answer(self, request_id: bytes) -> None:
        """Check that this side may answer `request_id`.

        Raises:
            IllegalTransition: unknown request, our own request, or already answered.
        """
        self._clarifications.check_answer(Side.OURS, request_id)

    def check_redline(self, redline_id: bytes, version: int) -> None:
        """Check that this side may declare `version` of `redline_id`.

        Raises:
            IllegalTransition: their red line, or a version that does not follow the latest.
        """
        self._redlines.check_declare(Side.OURS, redline_id, version)

    def next_redline_version(self, redline_id: bytes) -> int:
        """The version a new declaration of `redline_id` must carry (1 for a new one)."""
        return self._redlines.latest_version(redline_id) + 1

    def check_redline_ack(self, redline_id: bytes, version: int) -> None:
        """Check that this side may acknowledge `version` of `redline_id` as understood.

        Raises:
            IllegalTransition: unknown red line or version, our own red line, an old
                version, or already acknowledged.
        """
        self._redlines.check_ack(Side.OURS, redline_id, version, latest_only=True)

    def check_agenda_decision(self, round_number: int, item_id: bytes) -> None:
        """Check that this side may accept or decline `item_id` of round `round_number`.

        Raises:
            IllegalTransition: unknown item, another round, our own item, or decided.
        """
        self._agenda.check_decide(Side.OURS, round_number, item_id)

    def check_record_propose(self, record_id: bytes, version: int) -> None:
        """Check that this side may propose `version` of `record_id`.

        Raises:
            IllegalTransition: their record, or a version that does not follow the latest.
        """
        self._records.check_propose(Side.OURS, record_id, version)

    def next_record_version(self, record_id: bytes) -> int:
        """The version a new proposal of `record_id` must carry (1 for a new record)."""
        return self._records.latest_version(record_id) + 1

    def check_record_sign(
        self, record_id: bytes, version: int, statement_hash: bytes | None = None
    ) -> None:
        """Check that this side may co-sign `version` of `record_id`.

        Args:
            record_id: the record.
            version: the version the principal read.
            statement_hash: the statement hash the principal read (None: not compared).

        Raises:
            IllegalTransition: unknown record or version, our own proposal, already
                co-signed, changed after it was proposed (a newer version exists), or a
                statement hash that differs.
        """
        self._records.check_sign(Side.OURS, record_id, version, statement_hash, latest_only=True)

    def check_linetest_reply(self, test_id: bytes) -> None:
        """Check that this side may answer line test `test_id`.

        Raises:
            IllegalTransition: unknown test, our own test, or already answered.
        """
        self._lines.check_reply(Side.OURS, test_id)

    def next_codebook_version(self, entry_id: bytes) -> int:
        """The version a new proposal of codebook entry `entry_id` must carry (1: new)."""
        entry = self._codebook.get(entry_id)
        return 1 if entry is None else entry.latest.version + 1

    def propose_record(
        self, identity: IdentityKeyPair, record_id: bytes, statement: Statement, now_ms: int
    ) -> RecordPropose:
        """Sign a proposal of the next version of record `record_id` (see `RecordBook.propose`).

        Raises:
            LocalProtocolError: `identity` is not `ours`.
            IllegalTransition: the record is theirs.
        """
        return self._records.propose(identity, record_id, statement, now_ms)

    def cosign_record(
        self,
        identity: IdentityKeyPair,
        record_id: bytes,
        version: int,
        statement_hash: bytes,
        now_ms: int,
    ) -> RecordSign:
        """Co-sign their proposal (see `RecordBook.cosign`).

        Raises:
            LocalProtocolError: `identity` is not `ours`.
            IllegalTransition: see `check_record_sign`.
        """
        return self._records.cosign(identity, record_id, version, statement_hash, now_ms)

    # -- queries ----------------------------------------------------------------------

    def pending_acks(self, now_ms: int, side: Side | None = None) -> tuple[PendingAck, ...]:
        """Notes with a deadline awaiting acknowledgement (`side`: sent by that side only)."""
        return self._notes.pending(now_ms, side)

    def overdue(self, now_ms: int, side: Side | None = None) -> tuple[PendingAck, ...]:
        """Notes past their deadline (or their holding reply's time) without acknowledgement."""
        return tuple(p for p in self._notes.pending(now_ms, side) if p.overdue)

    def escalations(self, now_ms: int, already_escalated: Set[bytes]) -> list[Escalation]:
        """Our overdue notes to escalate now, each once (see `escalations_due`)."""
        return escalations_due(self._notes.pending(now_ms, Side.OURS), now_ms, already_escalated)

    def acknowledged_at(self, message_id: bytes) -> int | None:
        """When a note was acknowledged (our clock), or None."""
        return self._notes.acknowledged_at(message_id)

    def clarifications(
        self, *, open_only: bool = True, asked_by: Side | None = None
    ) -> tuple[Clarification, ...]:
        """Clarification requests (by default the open ones, in both directions)."""
        if open_only:
            return self._clarifications.open(asked_by)
        every = self._clarifications.all()
        return tuple(c for c in every if asked_by is None or c.asked_by is asked_by)

    def clarification(self, request_id: bytes) -> Clarification | None:
        return self._clarifications.get(request_id)

    def red_lines(self, owner: Side | None = None) -> tuple[RedLineView, ...]:
        """Both sides' red lines (or one side's), with acknowledgement state per version."""
        return self._redlines.all(owner)

    def red_line(self, redline_id: bytes) -> RedLineView | None:
        return self._redlines.get(redline_id)

    def agenda(self, round_number: int) -> AgendaRound:
        """The agenda of one meeting round; `.agreed` is what both sides accepted."""
        return self._agenda.round(round_number)

    def agenda_rounds(self) -> tuple[AgendaRound, ...]:
        """Every round with items, in increasing order."""
        return self._agenda.rounds()

    def agenda_item(self, item_id: bytes) -> AgendaItem | None:
        return self._agenda.get(item_id)

    def records(self) -> tuple[RecordView, ...]:
        """Every record with all its versions and their signature state."""
        return self._records.all()

    def record(self, record_id: bytes) -> RecordView | None:
        return self._records.get(record_id)

    def agreed_record(self, record_id: bytes, version: int | None = None) -> AgreedRecord:
        """An agreed version of a record, for `export_record`.

        Raises:
            LocalProtocolError: unknown record, or no such agreed version.
        """
        return self._records.agreed_record(record_id, version)

    def codebook(self) -> tuple[CodeEntryView, ...]:
        """Every codebook entry, by number (the same order on both sides)."""
        return self._codebook.all()

    def codebook_entry(self, entry_id: bytes) -> CodeEntryView | None:
        return self._codebook.get(entry_id)

    def codebook_lookup(self, code: str) -> CodeEntryView | None:
        """The live entry with this number or code word, or None."""
        return self._codebook.by_code(code)

    def code_message(self, message_id: bytes) -> CodeMessage | None:
        """A codebook message the fold accepted, to render in a language."""
        return self._codebook.message(message_id)

    def translations(self, message_id: bytes) -> tuple[AddedTranslation, ...]:
        """The translations of one message shared after it with TRANSLATION messages (by
        its receiver), in stored order; the author's own are in the message's body."""
        return self._translations.of(message_id)

    def all_translations(self) -> tuple[AddedTranslation, ...]:
        """Every translation shared with a TRANSLATION message, by target id."""
        return self._translations.all()

    def duties(self) -> tuple[DutyView, ...]:
        """Every notification duty (category) of the channel, by id."""
        return self._notifications.duties()

    def duty(self, duty_id: bytes) -> DutyView | None:
        return self._notifications.duty(duty_id)

    def next_duty_version(self, duty_id: bytes) -> int:
        duty = self._notifications.duty(duty_id)
        return 1 if duty is None else duty.latest.version + 1

    def notifications(self) -> tuple[Notification, ...]:
        """Every notification and request, by event time (status: `.status(now_ms)`)."""
        return self._notifications.notifications()

    def duty_escalations(self, now_ms: int, already_escalated: Set[bytes]) -> list[Escalation]:
        """Requested notifications missed (owed by either side), to escalate once each."""
        return [
            Escalation(
                n.message_id, ESCALATION_PRECEDENCE, n.event_at_ms, n.deadline_ms, n.deadline_ms
            )
            for n in self._notifications.missed(now_ms)
            if n.message_id not in already_escalated
        ]

    def line_status(
        self,
        now_ms: int,
        every_ms: int = DEFAULT_LINETEST_EVERY_MS,
        grace_ms: int = DEFAULT_LINETEST_GRACE_MS,
    ) -> LineStatus:
        """The line-test state, and their tests this side must still answer."""
        return self._lines.status(now_ms, every_ms, grace_ms)

    def board(
        self,
        now_ms: int,
        every_ms: int = DEFAULT_LINETEST_EVERY_MS,
        grace_ms: int = DEFAULT_LINETEST_GRACE_MS,
    ) -> StatusBoard:
        """The status board at `now_ms`.

        Args:
            now_ms: the current time (our clock).
            every_ms: the line-test period.
            grace_ms: the line-test grace period.

        Returns:
            A frozen `StatusBoard` (`to_dict()` for JSON).
        """
        return StatusBoard(
            now_ms=now_ms,
            last_heard_from_ms=self._last_heard,
            awaiting_their_ack=self._notes.pending(now_ms, Side.OURS),
            awaiting_our_ack=self._notes.pending(now_ms, Side.THEIRS),
            open_clarifications=self._clarifications.open(),
            red_lines=self._redlines.all(),
            next_round=self._agenda.latest_round(),
            records=self._records.all(),
            line=self._lines.status(now_ms, every_ms, grace_ms),
            codebook=self._codebook.all(),
            translations=self._translations.all(),
            duties=self._notifications.duties(),
            notifications=self._notifications.notifications(),
            anomalies=self.anomalies,
        )

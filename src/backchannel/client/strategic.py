"""The strategic channel over a principal's client: dialogue intents in, duties out.

Every intent (acknowledge, hold, clarify, declare a red line, ...) is checked against the
channel's dialogue state (a pure fold over its stored messages, `backchannel.dialogue`)
*before* anything is queued, so an illegal act fails with a precise error and sends
nothing. Duties (answering line tests, sending ours, escalating notes whose deadline
passed) live in `client.duties`, which `Principal` composes; `perform_duties` here runs
them for one principal from outside.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Final

from backchannel.client.duties import (
    TRANSLATION_COMMAND_SETTING,
    DutyReport,
    EscalationCommand,
    line_grace_ms,
    line_period_ms,
    run_escalation_command,
    run_translation_command,
)
from backchannel.client.engine import Principal, SendResult
from backchannel.client.errors import ClientError, UnknownReference
from backchannel.client.records import ChannelRecord
from backchannel.dialogue import (
    DEFAULT_LINETEST_EVERY_MS,
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Attribution,
    Body,
    Clarify,
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeEntryView,
    CodeText,
    Dialogue,
    Hold,
    KnownMessage,
    Languages,
    LanguageVersion,
    LineTest,
    Note,
    Precedence,
    RedLine,
    RedLineAck,
    Side,
    Statement,
    StatusBoard,
    Translate,
    Translation,
    check_bcp47,
    decode_body,
    export_proposal,
    export_record,
)
from backchannel.dialogue.bodies import versions_of
from backchannel.dialogue.notify import (
    NO_REQUEST,
    DutyAccept,
    DutyPropose,
    DutyRule,
    DutyView,
    Notify,
    NotifyRequest,
)
from backchannel.dialogue.translations import TRANSLATABLE_KINDS, TextVersion
from backchannel.meet import (
    HostPolicy,
    MeetError,
    MeetingRequest,
    Suggestion,
    load_gazetteer,
    suggest_venues,
)
from backchannel.protocol.e2e.keys import PublicIdentity
from backchannel.protocol.errors import LocalProtocolError

__all__ = [
    "DutyReport",
    "EscalationCommand",
    "StrategicChannel",
    "board_as_json",
    "line_grace_ms",
    "line_period_ms",
    "perform_duties",
    "run_escalation_command",
]

# A message is named on the command line by a prefix of its id; 4 hex digits is 65,536
# possibilities, ample within one channel, and short enough to read aloud.
MIN_REF_LENGTH: Final = 4
# An agenda item's detail is for the reasons in a sentence or three, not an essay.
_MAX_DETAIL: Final = 1000


class StrategicChannel:
    """One channel's strategic features. Cheap to create; holds no state of its own."""

    def __init__(self, principal: Principal, channel_name: str) -> None:
        self.principal = principal
        self.record: ChannelRecord = principal.channel(channel_name)
        self.name = self.record.name

    # -- state ------------------------------------------------------------------------

    def dialogue(self) -> Dialogue:
        """The dialogue state, folded from every stored message of the channel (the
        principal's kept fold, extended by what was stored since: `Duties.dialogue`)."""
        return self.principal.duties.dialogue(self.record)

    def board(self, now_ms: int | None = None) -> StatusBoard:
        now = self.principal.now_ms() if now_ms is None else now_ms
        every = line_period_ms(self.record) or DEFAULT_LINETEST_EVERY_MS
        return self.dialogue().board(now, every, line_grace_ms(self.record))

    def resolve(self, ref: str) -> bytes:
        """The full id of the message (or red line, or record) named by an id prefix.

        Raises:
            ClientError: too short, unknown, or ambiguous.
        """
        ref = ref.strip().lower()
        if len(ref) < MIN_REF_LENGTH or any(c not in "0123456789abcdef" for c in ref):
            raise ClientError(f"'{ref}' is not a message id (at least {MIN_REF_LENGTH} hex digits)")
        ids = {m.message_id for m in self.principal.messages(self.name)}
        dialogue = self.dialogue()
        ids |= {r.redline_id.hex() for r in dialogue.red_lines()}
        ids |= {r.record_id.hex() for r in dialogue.records()}
        found = sorted(i for i in ids if i.startswith(ref))
        if not found:
            raise UnknownReference(f"no message, red line or record '{ref}' in '{self.name}'")
        if len(found) > 1:
            raise ClientError(
                f"'{ref}' matches {len(found)} ids in '{self.name}'; give more digits"
            )
        return bytes.fromhex(found[0])

    # -- intents ----------------------------------------------------------------------

    def _send_checked(self, body: Body, *, retain: bool = False) -> str:
        try:
            self.dialogue().check(body, self.principal.now_ms())
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return self.principal.queue_body(self.name, body.KIND, body.encode(), retain=retain)

    async def _deliver(self, message_id: str) -> SendResult:
        return await self.principal.deliver(self.name, message_id)

    async def note(
        self,
        text: str,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
        languages: Languages | None = None,
    ) -> SendResult:
        """A note with a precedence and, optionally, an acknowledgement deadline and its
        language block (the text's language, translations, which text prevails)."""
        return await self._deliver(self.queue_note(text, precedence, ack_within_ms, languages))

    def queue_note(
        self,
        text: str,
        precedence: Precedence = Precedence.ROUTINE,
        ack_within_ms: int = 0,
        languages: Languages | None = None,
    ) -> str:
        """`note`, only put in the outbox (nothing touches the network); its message id."""
        if languages is None:
            return self.principal.queue(
                self.name, text, precedence=precedence, ack_within_ms=ack_within_ms
            )
        try:
            body = Note(precedence, ack_within_ms, text, languages)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return self._send_checked(body, retain=ack_within_ms > 0)

    def translatable(self, ref: str) -> tuple[bytes, KnownMessage, Body]:
        """The message named by `ref`, if it has a text to translate.

        Raises:
            ClientError: unknown, or not a note, question, answer, red line or agenda item.
        """
        target = self.resolve(ref)
        known = self.dialogue().known(target)
        stored = {m.message_id: m for m in self.principal.messages(self.name)}.get(target.hex())
        if known is None or stored is None or known.kind not in TRANSLATABLE_KINDS:
            raise ClientError(
                f"'{ref}' is not a note, question, answer, red line or agenda item of "
                f"'{self.name}'"
            )
        try:
            body = decode_body(stored.kind, bytes.fromhex(stored.body))
        except LocalProtocolError as error:
            raise ClientError(f"'{ref}' does not decode: {error}") from None
        if body is None:
            raise ClientError(f"'{ref}' has no text to translate")
        return target, known, body

    def versions(self, ref: str) -> tuple[TextVersion, ...]:
        """A message's texts side by side (see `dialogue.versions_of`)."""
        target, _, body = self.translatable(ref)
        return versions_of(body, self.dialogue().translations(target))

    async def share_translation(
        self, ref: str, language: str, text: str, by: Attribution, title: str = ""
    ) -> SendResult:
        """Share this side's translation of their message, attributed to this side."""
        target, known, _ = self.translatable(ref)
        try:
            body = Translate(target, known.message_hash, Translation(language, by, text, title))
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body))

    def propose_translation(self, text: str, source: str, target: str) -> str:
        """The principal's translation command's proposal for `text` (nothing is sent).

        Raises:
            TranslationCommandFailed: see `run_translation_command`.
            InvalidLanguageTag: `target` (or a non-empty `source`) is not a BCP 47 tag.
        """
        check_bcp47(target, "target language")
        if source:
            check_bcp47(source, "source language")
        command = self.principal.setting(TRANSLATION_COMMAND_SETTING)
        return run_translation_command(command or "", text, source, target)

    async def ack(self, ref: str) -> SendResult:
        """Acknowledge their note: the principal's explicit act, not a receipt."""
        return await self._deliver(self._send_checked(Ack(self.resolve(ref))))

    async def hold(self, ref: str, expected_by_ms: int, text: str = "") -> SendResult:
        """ "Received, cannot answer yet; expect an answer by `expected_by_ms`"."""
        return await self._deliver(
            self._send_checked(Hold(self.resolve(ref), expected_by_ms, text))
        )

    async def clarify(
        self, ref: str, question: str, languages: Languages | None = None
    ) -> SendResult:
        """Ask about one exact message (bound by its id and hash)."""
        target = self.resolve(ref)
        known = self.dialogue().known(target)
        if known is None:
            raise ClientError(f"cannot ask about '{ref}': it is not a message of this channel")
        return await self._deliver(
            self._send_checked(Clarify(target, known.message_hash, question, languages))
        )

    async def answer(self, ref: str, text: str, languages: Languages | None = None) -> SendResult:
        """Answer a clarification request, which closes it."""
        return await self._deliver(
            self._send_checked(Answer(self.resolve(ref), text, languages))
        )

    async def declare_red_line(
        self, title: str, text: str, ref: str | None = None, languages: Languages | None = None
    ) -> SendResult:
        """Declare a red line, or (with `ref`) a new version of one of ours."""
        redline_id = self.resolve(ref) if ref else self.principal.random(16)
        version = self.dialogue().next_redline_version(redline_id)
        return await self._deliver(
            self._send_checked(RedLine(redline_id, version, title, text, languages))
        )

    async def acknowledge_red_line(self, ref: str, version: int | None = None) -> SendResult:
        """Say that we understand (not agree to) their red line.

        Args:
            version: the version the principal read; refused if a newer one exists, since
                understanding an old wording is not understanding the red line.
        """
        redline_id = self.resolve(ref)
        view = self.dialogue().red_line(redline_id)
        if view is None:
            raise UnknownReference(f"'{ref}' is not a red line of '{self.name}'")
        chosen = view.latest.version if version is None else version
        return await self._deliver(self._send_checked(RedLineAck(redline_id, chosen)))

    async def propose_agenda_item(
        self, round_number: int, title: str, detail: str = "", languages: Languages | None = None
    ) -> SendResult:
        return await self._deliver(
            self._send_checked(AgendaPropose(round_number, title, detail, languages))
        )

    async def propose_meeting(
        self,
        round_number: int,
        between: list[str],
        after: dt.date,
        *,
        duration_days: int = 2,
        avoid: tuple[str, ...] = (),
    ) -> tuple[SendResult, Suggestion]:
        """Propose, as an agenda item of `round_number`, the best discreet venue and dates
        for the delegations of `between` (design §7), with the reasons in its detail.

        Raises:
            ClientError: a place is unknown or ambiguous, or the request is contradictory.
        """
        try:
            gazetteer = load_gazetteer()
            request = MeetingRequest(
                tuple(gazetteer.resolve(name) for name in between),
                HostPolicy(),
                tuple(gazetteer.resolve(name) for name in avoid),
                after,
                duration_days,
            )
            best = suggest_venues(request, gazetteer)[0]
        except MeetError as error:
            raise ClientError(str(error)) from None
        plan = best.plan
        title = (
            f"Round {round_number}: meet in {best.venue.name}, {best.venue.country_name}, "
            f"{plan.first_day.isoformat()} to {plan.last_day.isoformat()}"
        )
        windows = "; ".join(
            f"{day.date.isoformat()} {day.start:%H:%M}-{day.end:%H:%M}"
            for day in plan.days
            if day.start is not None and day.end is not None
        )
        detail = " ".join(best.reasons) + (
            f" Daily window (local time): {windows}." if windows else ""
        )
        sent = await self.propose_agenda_item(round_number, title, detail[:_MAX_DETAIL])
        return sent, best

    async def decide_agenda_item(self, ref: str, accept: bool, reason: str = "") -> SendResult:
        item_id = self.resolve(ref)
        item = self.dialogue().agenda_item(item_id)
        if item is None:
            raise UnknownReference(f"no agenda item '{ref}' in '{self.name}'")
        body: Body = (
            AgendaAccept(item.round, item_id)
            if accept
            else AgendaDecline(item.round, item_id, reason)
        )
        return await self._deliver(self._send_checked(body))

    # -- the codebook -----------------------------------------------------------------

    def code_entry(self, ref: str) -> CodeEntryView:
        """The codebook entry named by its number, its code word or an id prefix.

        Raises:
            UnknownReference: no such entry.
            ClientError: an id prefix that is too short or ambiguous.
        """
        dialogue = self.dialogue()
        found = dialogue.codebook_lookup(ref.strip())
        if found is not None:
            return found
        prefix = ref.strip().lower()
        for entry in dialogue.codebook():
            # A withdrawn entry, named by number or word: found, so that the act says so.
            proposal = entry.latest.proposal
            if prefix in (str(proposal.number), proposal.code_word.casefold()):
                return entry
        matches = [e for e in dialogue.codebook() if e.entry_id.hex().startswith(prefix)]
        if len(prefix) < MIN_REF_LENGTH or not matches:
            raise UnknownReference(f"no codebook entry '{ref}' in '{self.name}'")
        if len(matches) > 1:
            raise ClientError(f"'{ref}' matches {len(matches)} codebook entries; give more digits")
        return matches[0]

    async def propose_code(
        self,
        number: int,
        code_word: str,
        texts: list[CodeText],
        parameters: tuple[str, ...] = (),
        precedence: Precedence | None = None,
        ack_within_ms: int = 0,
        replaces: str | None = None,
    ) -> SendResult:
        """Propose a codebook entry, or (with `replaces`) a new version of one of ours."""
        entry_id = self.code_entry(replaces).entry_id if replaces else self.principal.random(16)
        version = self.dialogue().next_codebook_version(entry_id)
        try:
            body = CodebookPropose(
                entry_id, version, number, code_word, tuple(texts), parameters,
                precedence, ack_within_ms,
            )  # fmt: skip
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body))

    async def accept_code(self, ref: str) -> SendResult:
        """Accept the latest version of their codebook entry."""
        entry = self.code_entry(ref)
        body = CodebookAccept(entry.entry_id, entry.latest.version)
        return await self._deliver(self._send_checked(body))

    async def withdraw_code(self, ref: str) -> SendResult:
        """Withdraw a codebook entry (either side may): nobody sends it any more."""
        body = CodebookWithdraw(self.code_entry(ref).entry_id)
        return await self._deliver(self._send_checked(body))

    async def send_code(self, ref: str, values: dict[str, str]) -> SendResult:
        """Send the current version of an agreed codebook entry with its parameter values.

        Raises:
            ClientError: not accepted by both sides, withdrawn, or values that do not name
                exactly the entry's parameters.
        """
        entry = self.code_entry(ref)
        current = entry.current
        if current is None:
            raise ClientError(
                f"codebook entry {entry.latest.proposal.number} is not accepted by both sides; "
                "it cannot be sent"
            )
        parameters = current.proposal.parameters
        if set(values) != set(parameters):
            wanted = ", ".join(parameters) or "none"
            raise ClientError(f"give exactly the entry's parameters ({wanted})")
        try:
            ordered = tuple(values[p] for p in parameters)
            body = CodebookSend(entry.entry_id, current.version, ordered)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        # With the entry's default deadline it is escalated like a note: keep the sealed
        # payload to send it again.
        retain = current.proposal.ack_within_ms > 0
        return await self._deliver(self._send_checked(body, retain=retain))

    async def propose_record(
        self, title: str, versions: list[LanguageVersion], ref: str | None = None
    ) -> SendResult:
        """Propose (and sign) a statement for the record, or a new version of one of ours."""
        record_id = self.resolve(ref) if ref else self.principal.random(16)
        dialogue = self.dialogue()
        try:
            body = dialogue.propose_record(
                self.principal.identity_keypair,
                record_id,
                Statement(title, tuple(versions)),
                self.principal.now_ms(),
            )
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body))

    async def sign_record(self, ref: str, version: int | None = None) -> SendResult:
        """Co-sign their proposed record: this goes on the record.

        Args:
            version: the version the principal read; refused unless it is the latest, so
                nobody co-signs a text that changed after they read it.
        """
        record_id = self.resolve(ref)
        view = self.dialogue().record(record_id)
        if view is None:
            raise UnknownReference(f"no record '{ref}' in '{self.name}'")
        latest = view.latest
        if version is not None and version != latest.version:
            raise ClientError(
                f"record '{ref}' changed after version {version} was read: version "
                f"{latest.version} is the one to review and sign"
            )
        try:
            body = self.dialogue().cosign_record(
                self.principal.identity_keypair,
                record_id,
                latest.version,
                latest.statement_hash,
                self.principal.now_ms(),
            )
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body))

    def export_record(self, ref: str) -> bytes:
        """The co-signed record as a file anyone can verify offline (`record verify`).

        Raises:
            ClientError: unknown record, or not yet co-signed.
        """
        record_id = self.resolve(ref)
        try:
            return export_record(self.dialogue().agreed_record(record_id))
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None

    def draft_record(self, ref: str) -> bytes:
        """The latest proposed version as a file for review away from the channel; it is
        not an agreed record until co-signed (`record verify` says so)."""
        record_id = self.resolve(ref)
        view = self.dialogue().record(record_id)
        if view is None:
            raise UnknownReference(f"no record '{ref}' in '{self.name}'")
        latest = view.latest
        cosigner = (
            PublicIdentity.decode(bytes.fromhex(self.record.peer_identity))
            if latest.proposed_by is Side.OURS
            else self.principal.identity
        )
        try:
            return export_proposal(
                record_id, latest.version, latest.statement, latest.proposal, cosigner
            )
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None

    # -- notification duties ------------------------------------------------------------

    def duty_view(self, ref: str) -> DutyView:
        """The duty named by its title (ignoring case) or a prefix of its id.

        Raises:
            UnknownReference: none; ClientError: several.
        """
        duties = self.dialogue().duties()
        wanted = ref.strip().casefold()
        found = [d for d in duties if (d.current or d.latest).title.casefold() == wanted]
        if not found and len(wanted) >= MIN_REF_LENGTH:
            found = [d for d in duties if d.duty_id.hex().startswith(wanted)]
        if not found:
            raise UnknownReference(f"no notification duty '{ref}' in '{self.name}'")
        if len(found) > 1:
            raise ClientError(f"'{ref}' names {len(found)} duties in '{self.name}'; give its id")
        return found[0]

    async def propose_duty(
        self, title: str, rule: DutyRule, window_ms: int, text: str = "",
        replaces: str | None = None,
    ) -> SendResult:  # fmt: skip
        """Propose a notification duty, or (with `replaces`) a new version of ours."""
        duty_id = self.duty_view(replaces).duty_id if replaces else self.principal.random(16)
        version = self.dialogue().next_duty_version(duty_id)
        try:
            body = DutyPropose(duty_id, version, rule, window_ms, title, text)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body))

    async def accept_duty(self, ref: str) -> SendResult:
        """Accept the latest version of their duty: it then binds both sides."""
        duty = self.duty_view(ref)
        return await self._deliver(self._send_checked(DutyAccept(duty.duty_id,
                                                                 duty.latest.version)))  # fmt: skip

    async def notify(
        self, ref: str, event_at_ms: int, text: str, answers: str | None = None,
        languages: Languages | None = None,
    ) -> SendResult:  # fmt: skip
        """Notify an event under an agreed duty (answering their request, if named)."""
        duty = self.duty_view(ref)
        current = duty.current
        if current is None:
            raise ClientError(f"duty '{ref}' is not accepted by both sides yet")
        request = self.resolve(answers) if answers else NO_REQUEST
        try:
            body = Notify(duty.duty_id, current.version, event_at_ms, text, request, languages)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body))

    async def request_notification(self, ref: str, event_at_ms: int, text: str = "") -> SendResult:
        """Say that they owe a notification of an event; missed, it is escalated (and,
        being retained, resent)."""
        duty = self.duty_view(ref)
        current = duty.current
        if current is None:
            raise ClientError(f"duty '{ref}' is not accepted by both sides yet")
        try:
            body = NotifyRequest(duty.duty_id, current.version, event_at_ms, text)
        except LocalProtocolError as error:
            raise ClientError(str(error)) from None
        return await self._deliver(self._send_checked(body, retain=True))

    def configure_line_test(self, every_ms: int, grace_ms: int | None = None) -> None:
        """How often this side tests the line (0: never) and how long an answer may take."""
        if every_ms < 0 or (grace_ms is not None and grace_ms <= 0):
            raise ClientError("line-test period must be >= 0 and grace > 0")

        def configure(record: ChannelRecord) -> None:
            record.linetest_every_ms = every_ms or -1
            if grace_ms is not None:
                record.linetest_grace_ms = grace_ms

        self.record = self.principal.update_channel(self.record.channel_id, configure)

    async def test_line(self) -> SendResult:
        """Send a line test now (answered automatically by the counterpart's client)."""
        return await self._deliver(self._send_checked(LineTest()))


def perform_duties(principal: Principal) -> DutyReport:
    """Answer line tests, send due ones, escalate missed deadlines; for every channel of
    `principal` (its `Duties.perform`: queues messages only)."""
    return principal.duties.perform()


def board_as_json(board: StatusBoard) -> str:
    return json.dumps(board.to_dict(), sort_keys=True)

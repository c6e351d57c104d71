"""The demonstration's strategic round: every dialogue kind once, as the article tells it.

Beijing declares its red line and Washington acknowledges it as understood; a FLASH note
gets a holding reply, then its acknowledgement before the deadline; a PRIORITY note
misses its (short) deadline and is escalated, and the escalation command runs; a question
about one exact message is asked and answered; the next round's agenda is agreed, in the
venue `backchannel.meet` suggests; a joint statement is proposed, co-signed, exported and
verified offline; a line test is answered.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rich.console import Console
from rich.text import Text

from backchannel.cli.demo_script import (
    AGENDA,
    ANSWER,
    CODE_EN,
    CODE_NUMBER,
    CODE_VALUES,
    CODE_WORD,
    CODE_ZH,
    FLASH_ACK_WITHIN_MS,
    FLASH_NOTE,
    HOLD_FOR_MS,
    HOLDING_REPLY,
    INVITER,
    JOINER,
    NEXT_ROUND,
    PRIORITY_ACK_WITHIN_MS,
    PRIORITY_NOTE,
    QUESTION,
    RECORD_EN,
    RECORD_TITLE,
    RECORD_ZH,
    RED_LINE_TEXT,
    RED_LINE_TITLE,
    WHILE_OFFLINE,
)
from backchannel.cli.output import local_time, short_id, shown
from backchannel.client.engine import Principal
from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import (
    Attribution,
    AttributionKind,
    CodeText,
    DutyRule,
    Languages,
    LanguageVersion,
    Precedence,
    Side,
    VerifiedRecord,
    verify_record_file,
)

__all__ = ["Narrator", "RoundOutcome", "play_round"]

ESCALATION_LOG: Final = "escalation.log"
# Quoted messages are indented this many columns under the line that introduces them.
_INDENT: Final = 4
RECORD_FILE: Final = "agreed-record.txt"
# The bilingual exchange: Beijing writes in Chinese; Washington's interpreter renders it in
# English and shares the translation back, attributed, beside the original.
BILINGUAL_ZH: Final = "我方船只将在公海与贵方船只保持二十海里距离。"
BILINGUAL_EN: Final = "Our vessels will keep twenty nautical miles from yours on the high seas."
INTERPRETER: Final = "Washington interpreter"
# The notification duty: agreed in the round, then kept.
DUTY_TITLE: Final = "Incident at sea"
DUTY_WINDOW_MS: Final = 3_600_000
INCIDENT: Final = "Minor contact between a patrol boat and a fishing vessel; no injuries."
# The paging script the demo configures as its escalation command: it appends what the
# client tells it (channel, note, precedence) to a file, which the demo then shows.
_PAGER: Final = """\
import os, pathlib, sys
with pathlib.Path(sys.argv[1]).open("a") as log:
    log.write(" ".join(os.environ[k] for k in (
        "BACKCHANNEL_CHANNEL", "BACKCHANNEL_MESSAGE_ID", "BACKCHANNEL_PRECEDENCE",
        "BACKCHANNEL_DEADLINE_MS")) + "\\n")
"""


class Narrator:
    """Prints the story as it happens, or nothing when the output is JSON.

    Args:
        console: where to print, or None for silence.
        verbose: also print the technical details (`detail`), kept out of the story by
            default so that it reads without jargon.
    """

    def __init__(self, console: Console | None, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose

    def say(self, text: str = "", style: str | None = None) -> None:
        if self.console is not None:
            self.console.print(text, style=style)

    def detail(self, text: str) -> None:
        """A technical aside (protocol names, key fingerprints, ids), shown with --verbose."""
        if self.verbose:
            self.quote(text, style="dim")

    def quote(self, text: str, style: str | None = None) -> None:
        """Indented, and still indented where it wraps (no padding after the words)."""
        if self.console is None:
            return
        width = max(self.console.width - _INDENT, 20)
        # A hand-built Text skips the console's escaping: escape it here.
        quoted = Text(shown(text, multiline=True), style=style or "")
        for line in quoted.wrap(self.console, width):
            line.rstrip()
            self.console.print(Text(" " * _INDENT) + line, soft_wrap=True)


@dataclass(slots=True)
class RoundOutcome:
    """What each step of the round achieved; `ok` when every one did."""

    red_line_understood: bool = False
    flash_held: bool = False
    flash_acknowledged_in_time: bool = False
    escalated: bool = False
    escalation_command_ran: bool = False
    acknowledged_late: bool = False
    clarification_answered: bool = False
    codebook_flash_read: dict[str, str] = field(default_factory=dict)
    # Beijing's note in Chinese, as Washington shared its English translation of it (and
    # Beijing sees it, attributed): {"original": ..., "translation": ..., "by": ...}.
    bilingual: dict[str, str] = field(default_factory=dict)
    duty_notified: str = ""  # the notification's status on the receiving board
    venue: str = ""
    agreed_agenda: list[str] = field(default_factory=list)
    record: VerifiedRecord | None = None
    line_state: str = "unknown"
    line_round_trip_ms: int | None = None

    @property
    def ok(self) -> bool:
        return (self.red_line_understood and self.flash_held and self.flash_acknowledged_in_time
                and self.escalated and self.escalation_command_ran and self.acknowledged_late
                and self.clarification_answered and len(self.codebook_flash_read) == 2
                and self.bilingual.get("seen_by_author") == "yes"
                and self.duty_notified == "notified_in_time"
                and len(self.agreed_agenda) == len(AGENDA)
                and self.record is not None and self.line_state == "up")

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "red_line_understood": self.red_line_understood,
            "flash_held": self.flash_held,
            "flash_acknowledged_in_time": self.flash_acknowledged_in_time,
            "escalated": self.escalated,
            "escalation_command_ran": self.escalation_command_ran,
            "acknowledged_late": self.acknowledged_late,
            "clarification_answered": self.clarification_answered,
            "codebook_flash_read": dict(self.codebook_flash_read),
            "bilingual": dict(self.bilingual),
            "duty_notified": self.duty_notified,
            "venue": self.venue,
            "agreed_agenda": list(self.agreed_agenda),
            "record": None if self.record is None else self.record.to_dict(),
            "line": {"state": self.line_state, "round_trip_ms": self.line_round_trip_ms},
        }


class _Round:
    def __init__(self, p: dict[str, Principal], root: Path, tell: Narrator) -> None:
        self.p, self.root, self.tell = p, root, tell
        self.w = StrategicChannel(p[INVITER], JOINER)  # washington's side of the channel
        self.b = StrategicChannel(p[JOINER], INVITER)
        self.outcome = RoundOutcome()

    def step(self, title: str) -> None:
        self.tell.say()
        self.tell.say(title, style="bold underline")

    async def red_line(self) -> None:
        self.step("A red line, declared and understood")
        await self.b.declare_red_line(RED_LINE_TITLE, RED_LINE_TEXT)
        self.tell.say(f"{JOINER} declares red line '{RED_LINE_TITLE}', version 1:", style="bold")
        self.tell.quote(RED_LINE_TEXT)
        await self.p[INVITER].sync()
        (line,) = self.w.dialogue().red_lines(Side.THEIRS)
        await self.w.acknowledge_red_line(line.redline_id.hex())
        await self.p[JOINER].sync()
        view = self.b.dialogue().red_line(line.redline_id)
        self.outcome.red_line_understood = view is not None and not view.awaiting_acknowledgement
        self.tell.say(f"{INVITER} acknowledges it as understood (which is not agreement); "
                      f"{JOINER} sees version 1 acknowledged.")

    async def flash(self) -> None:
        self.step("A FLASH note: a holding reply, then the acknowledgement")
        sent = await self.w.note(FLASH_NOTE.text, Precedence.FLASH, FLASH_ACK_WITHIN_MS)
        self.tell.say(f"{INVITER} → {JOINER}: FLASH, acknowledgement wanted within 10 minutes",
                      style="bold")
        self.tell.quote(FLASH_NOTE.text)
        await self.p[JOINER].sync()
        await self.p[JOINER].read(INVITER)
        expected = self.p[JOINER].now_ms() + HOLD_FOR_MS
        await self.b.hold(sent.message_id, expected, HOLDING_REPLY)
        self.tell.say(f"{JOINER} cannot answer yet and sends a holding reply "
                      f"(answer expected by {local_time(expected)}):", style="bold")
        self.tell.quote(HOLDING_REPLY)
        await self.p[INVITER].sync()
        (pending,) = self.w.board().awaiting_their_ack
        self.outcome.flash_held = pending.hold is not None
        await self.b.ack(sent.message_id)
        await self.p[INVITER].sync()
        acked = self.w.dialogue().acknowledged_at(bytes.fromhex(sent.message_id))
        self.outcome.flash_acknowledged_in_time = (
            acked is not None and acked <= pending.deadline_ms)
        self.tell.say(f"{JOINER} acknowledges it; {INVITER} has the acknowledgement at "
                      f"{local_time(acked or 0)}, before the deadline of "
                      f"{local_time(pending.deadline_ms)}.")

    async def codebook(self) -> None:
        self.step("A codebook FLASH: agreed in two languages, sent by number")
        texts = [CodeText("zh-Hans", CODE_ZH), CodeText("en", CODE_EN)]
        await self.b.propose_code(CODE_NUMBER, CODE_WORD, texts, ("time", "place"),
                                  Precedence.FLASH)
        self.tell.say(f"{JOINER} proposes codebook entry {CODE_NUMBER} '{CODE_WORD}' "
                      "in Chinese and English; it cannot be sent until accepted.")
        await self.p[INVITER].sync()
        await self.w.accept_code(str(CODE_NUMBER))
        await self.p[JOINER].sync()
        sent = await self.b.send_code(str(CODE_NUMBER), dict(CODE_VALUES))
        await self.p[INVITER].sync()
        message_id = bytes.fromhex(sent.message_id)
        for side, name, language in ((self.b, JOINER, "zh-Hans"), (self.w, INVITER, "en")):
            code = side.dialogue().code_message(message_id)
            if code is None:
                continue
            text, rendered = code.render(language)
            if text.language == language:
                self.outcome.codebook_flash_read[name] = rendered
                self.tell.say(f"{name} reads {code.code_word} ({language}):", style="bold")
                self.tell.quote(rendered)

    async def bilingual(self) -> None:
        self.step("In two languages: a note in Chinese, its English translation shared back")
        sent = await self.b.note(BILINGUAL_ZH, Precedence.ROUTINE, 0, Languages("zh-Hans"))
        self.tell.say(f"{JOINER} writes in Chinese (zh-Hans):", style="bold")
        self.tell.quote(BILINGUAL_ZH)
        await self.p[INVITER].sync()
        await self.p[INVITER].read(JOINER)
        by = Attribution(AttributionKind.STAFF, INTERPRETER)
        await self.w.share_translation(sent.message_id, "en", BILINGUAL_EN, by)
        self.tell.say(f"{INVITER}'s interpreter shares an English translation, attributed "
                      f"to {INVITER}'s staff; the Chinese text stays authoritative:", style="bold")
        self.tell.quote(BILINGUAL_EN)
        await self.p[JOINER].sync()
        versions = self.b.versions(sent.message_id)
        if len(versions) == 2 and versions[0].authoritative:
            self.outcome.bilingual = {
                "original": versions[0].text, "original_language": versions[0].language,
                "translation": versions[1].text, "translation_language": versions[1].language,
                "by": versions[1].by, "seen_by_author": "yes",
            }  # fmt: skip

    async def duty(self) -> None:
        self.step("A notification duty, agreed and kept")
        await self.w.propose_duty(DUTY_TITLE, DutyRule.WITHIN, DUTY_WINDOW_MS)
        await self.p[JOINER].sync()
        await self.b.accept_duty(DUTY_TITLE)
        await self.p[INVITER].sync()
        self.tell.say(f"{INVITER} proposes '{DUTY_TITLE}: notify within 1 h'; {JOINER} "
                      "accepts: it binds both sides.")
        event = self.p[JOINER].now_ms() - 20 * 60_000
        await self.b.notify(DUTY_TITLE, event, INCIDENT)
        await self.p[INVITER].sync()
        items = self.w.dialogue().notifications()
        now = self.p[INVITER].now_ms()
        self.outcome.duty_notified = items[-1].status(now).value if items else "none"
        self.tell.say(f"{JOINER} notifies an incident of 20 minutes ago; {INVITER}'s board: "
                      f"{self.outcome.duty_notified.replace('_', ' ')}.", style="bold")
        self.tell.quote(INCIDENT)

    async def escalation(self) -> None:
        self.step("A PRIORITY note misses its deadline and is escalated")
        log = self.root / ESCALATION_LOG
        pager = self.root / "page-deputy.py"
        pager.write_text(_PAGER)
        self.p[INVITER].set_setting(
            "escalation_command", shlex.join([sys.executable, "-I", str(pager), str(log)]))
        self.tell.say(f"{INVITER} sets its escalation command: a script that pages a deputy "
                      f"(here it writes to {ESCALATION_LOG} in the temporary folder).")
        sent = await self.w.note(PRIORITY_NOTE.text, Precedence.PRIORITY, PRIORITY_ACK_WITHIN_MS)
        self.tell.say(f"{INVITER} → {JOINER}: PRIORITY, acknowledgement wanted within "
                      f"{PRIORITY_ACK_WITHIN_MS} ms", style="bold")
        self.tell.quote(PRIORITY_NOTE.text)
        await self.p[JOINER].sync()
        await self.p[JOINER].read(INVITER)
        self.tell.say(f"{JOINER} receives and reads it, but does not acknowledge it: a read "
                      "receipt is not an acknowledgement.")
        (pending,) = self.w.board().awaiting_their_ack
        wait_ms = pending.deadline_ms - self.p[INVITER].now_ms() + 50
        await asyncio.sleep(max(wait_ms, 0) / 1000)
        report = await self.p[INVITER].sync()
        self.outcome.escalated = report.escalated == 1
        ran = log.read_text().split() if log.exists() else []
        self.outcome.escalation_command_ran = ran[1:3] == [sent.message_id, "PRIORITY"]
        self.tell.say(f"The deadline passes. {INVITER}'s next sync escalates the note: "
                      f"{'escalated' if self.outcome.escalated else 'NOT escalated'}, resent "
                      "on every relay, marked overdue on the board.", style="bold")
        self.tell.quote(_escalation_line(ran), style="dim")
        if ran:
            self.tell.detail(f"it was given: {' '.join(ran)} (channel, note, precedence, "
                             "deadline in ms)")
        duplicates = (await self.p[JOINER].sync()).duplicates
        self.tell.detail(f"{JOINER}'s client recognises the resent copy ({duplicates} "
                         "duplicate dropped): shown once.")
        await self.b.ack(sent.message_id)
        await self.p[INVITER].sync()
        late = self.w.dialogue().acknowledged_at(bytes.fromhex(sent.message_id))
        self.outcome.acknowledged_late = (
            late is not None and late > pending.deadline_ms
            and not any(n.message_id.hex() == sent.message_id
                        for n in self.w.board().awaiting_their_ack))
        self.tell.say(f"{JOINER} acknowledges it, late: {INVITER}'s board records the late "
                      "acknowledgement and the note leaves the overdue list.")

    async def clarification(self) -> None:
        self.step("A clarification, bound to one exact message")
        target = next(e for e in self.p[JOINER].inbox(INVITER)
                      if e.text == WHILE_OFFLINE[0].text)
        request = await self.b.clarify(target.message_id, QUESTION)
        self.tell.say(f"{JOINER} asks about {INVITER}'s note on export controls "
                      "(bound to that exact message):", style="bold")
        self.tell.quote(QUESTION)
        self.tell.detail(f"bound to note {short_id(target.message_id)} by its id and hash")
        await self.p[INVITER].sync()
        await self.w.answer(request.message_id, ANSWER)
        self.tell.say(f"{INVITER} answers, which closes the request:", style="bold")
        self.tell.quote(ANSWER)
        await self.p[JOINER].sync()
        asked = self.b.dialogue().clarification(bytes.fromhex(request.message_id))
        self.outcome.clarification_answered = asked is not None and not asked.is_open

    async def agenda(self) -> None:
        self.step(f"The agenda of round {NEXT_ROUND}")
        venue, why = _suggested_venue()
        self.outcome.venue = venue
        self.tell.say(f"backchannel meet suggests {venue} for the round ({why}).")
        sides = {INVITER: self.w, JOINER: self.b}
        for line in AGENDA:
            detail = f"Venue: {venue}; dates to be confirmed." if line is AGENDA[0] else ""
            await sides[line.speaker].propose_agenda_item(NEXT_ROUND, line.text, detail)
            self.tell.quote(f"{line.speaker} proposes: {line.text}")
        for name in (INVITER, JOINER, INVITER):
            await self.p[name].sync()
        for name, side in sides.items():
            for item in side.dialogue().agenda(NEXT_ROUND).undecided:
                if item.proposed_by is Side.THEIRS:
                    await side.decide_agenda_item(item.item_id.hex(), accept=True)
                    self.tell.quote(f"{name} accepts: {item.title}")
        for name in (INVITER, JOINER):
            await self.p[name].sync()
        agreed = self.w.dialogue().agenda(NEXT_ROUND).agreed
        self.outcome.agreed_agenda = [i.title for i in agreed]
        self.tell.say(f"Agreed agenda of round {NEXT_ROUND}: " + "; ".join(
            self.outcome.agreed_agenda))

    async def record(self) -> None:
        self.step("An agreed record: proposed, co-signed, verified offline")
        # Both texts equally authentic (the authentic-text clause is signed with them).
        versions = [LanguageVersion("en", RECORD_EN, authentic=True),
                    LanguageVersion("zh", RECORD_ZH, authentic=True)]
        sent = await self.w.propose_record(RECORD_TITLE, versions)
        (view,) = (r for r in self.w.dialogue().records()
                   if r.latest.message_id.hex() == sent.message_id)
        record_id = view.record_id.hex()
        self.tell.say(f"{INVITER} proposes and signs '{RECORD_TITLE}', its English and "
                      "Chinese texts equally authentic:", style="bold")
        self.tell.quote(RECORD_EN)
        self.tell.quote(RECORD_ZH)
        await self.p[JOINER].sync()
        await self.b.sign_record(record_id)
        await self.p[INVITER].sync()
        path = self.root / RECORD_FILE
        path.write_bytes(self.w.export_record(record_id))
        # Offline: from the file's bytes alone, with the two public identities a third
        # party would have been given.
        verified = verify_record_file(
            path.read_bytes(), parties=(self.p[INVITER].identity, self.p[JOINER].identity))
        self.outcome.record = verified
        names = {self.p[INVITER].identity.fingerprint: INVITER,
                 self.p[JOINER].identity.fingerprint: JOINER}
        self.tell.say(f"{JOINER} co-signs; {INVITER} exports {RECORD_FILE} "
                      f"({path.stat().st_size} bytes) and it verifies offline:")
        for signer, role in ((verified.proposer, "proposed"), (verified.cosigner, "co-signed")):
            self.tell.quote(f"{role} by {names[signer.fingerprint]} "
                            f"at {local_time(signer.signed_at_ms)}")
            self.tell.detail(f"{names[signer.fingerprint]}'s signing key {signer.fingerprint}")
        self.tell.quote("Everything else in this channel stays deniable: only this record "
                        "is signed.", style="dim")

    async def line_test(self) -> None:
        self.step("A line test")
        await self.w.test_line()
        await self.p[JOINER].sync()
        await self.p[INVITER].sync()
        line = self.w.board().line
        self.outcome.line_state = line.state.value
        self.outcome.line_round_trip_ms = line.round_trip_ms
        self.tell.say(f"{INVITER} tests the line; {JOINER}'s client answers on its own: "
                      f"the line is {line.state.value.upper()}"
                      + (f" (round trip {line.round_trip_ms} ms)." if line.round_trip_ms
                         is not None else "."))


def _escalation_line(ran: list[str]) -> str:
    """What the paging script was told, in words (its last field is a deadline in ms)."""
    if len(ran) != 4 or not ran[3].isdigit():
        return "the escalation command did NOT run"
    channel, note, precedence, deadline_ms = ran
    del note  # an id means nothing to the reader; --verbose shows it
    return (f"the escalation command paged the deputy about the overdue {precedence} note "
            f"on '{channel}' (due {local_time(int(deadline_ms))})")


def _suggested_venue() -> tuple[str, str]:
    """The first venue `backchannel.meet` ranks for Washington and Beijing, and why."""
    # Imported here: the gazetteer's datasets take a moment to load, and only the demo
    # needs them among the principal commands.
    import datetime as dt

    from backchannel.meet import (
        HostPolicy,
        MeetError,
        MeetingRequest,
        load_gazetteer,
        suggest_venues,
    )

    try:
        places = load_gazetteer()
        request = MeetingRequest((places.resolve("Washington"), places.resolve("Beijing")),
                                 HostPolicy(), (), dt.date.today() + dt.timedelta(days=30))
        best = suggest_venues(request, places)[0]
    except (MeetError, OSError, IndexError):
        return "Vienna", "midway between the capitals"
    return best.venue.name, best.reasons[0] if best.reasons else "ranked first"


async def play_round(p: dict[str, Principal], root: Path, tell: Narrator) -> RoundOutcome:
    """Play the strategic round between two paired principals that have talked already.

    Raises:
        BackchannelError: a step was refused (the message says which).
    """
    steps = _Round(p, root, tell)
    for step in (steps.red_line, steps.flash, steps.codebook, steps.bilingual, steps.duty,
                 steps.escalation, steps.clarification, steps.agenda, steps.record,
                 steps.line_test):
        await step()
    for name in (INVITER, JOINER, INVITER):
        await p[name].sync()  # everyone takes in the last receipts and replies
    return steps.outcome

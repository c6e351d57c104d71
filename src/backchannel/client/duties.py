"""Duties: what a client does on its own on every sync and watch, for every channel.

Answer the counterpart's line tests, send ours when due, and escalate notes whose
acknowledgement deadline passed (once each: recorded in the transaction that queues the
resend), running the principal's escalation command beside the event loop, never in it.
The dialogue state comes straight from the dialogue layer, folded incrementally across
rounds (`folds.DialogueCache`: a round costs the messages stored since the last, not the
whole transcript), so duties need nothing from `strategic`, which builds on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from typing import Final

from backchannel.client.errors import ClientError
from backchannel.client.folds import DialogueCache, dialogue_event, is_dialogue
from backchannel.client.records import ChannelRecord, MessageRecord
from backchannel.client.reports import SyncReport
from backchannel.client.sending import Sender
from backchannel.client.state.shared import ClientState
from backchannel.dialogue import (
    DEFAULT_LINETEST_EVERY_MS,
    DEFAULT_LINETEST_GRACE_MS,
    Dialogue,
    Escalation,
    LineTest,
    LineTestReply,
)
from backchannel.dialogue.text import check_text
from backchannel.protocol.e2e.keys import PublicIdentity
from backchannel.protocol.errors import LocalProtocolError

__all__ = [
    "ESCALATION_COMMAND_TIMEOUT",
    "LANGUAGE_SETTING",
    "TRANSLATION_COMMAND_SETTING",
    "TRANSLATION_COMMAND_TIMEOUT",
    "Duties",
    "DutyReport",
    "EscalationCommand",
    "TranslationCommandFailed",
    "dialogue_of",
    "line_grace_ms",
    "line_period_ms",
    "run_escalation_command",
    "run_translation_command",
]

# How long an escalation command may run before it is stopped (it pages a deputy; it
# must not hold up the channel).
ESCALATION_COMMAND_TIMEOUT: Final = 30.0
# The principal's setting naming the escalation command.
_COMMAND_SETTING: Final = "escalation_command"
# The principal's setting naming the translation command (`translate command set`): run
# only when the principal asks for a proposed translation, with the text on its stdin.
TRANSLATION_COMMAND_SETTING: Final = "translation_command"
# The principal's language (a BCP 47 tag), in which codebook messages and texts with
# several versions are shown first.
LANGUAGE_SETTING: Final = "language"
# A local translation model may take a while on a long note, but not forever.
TRANSLATION_COMMAND_TIMEOUT: Final = 120.0
# What a translation command may print: one note's worth of text.
_MAX_TRANSLATION_OUTPUT: Final = 48 * 1024


class TranslationCommandFailed(ClientError):
    """The translation command is not set, could not start, failed, timed out, or printed
    something that is not a text the text policy accepts. Nothing was sent."""


def run_translation_command(
    command: str,
    text: str,
    source: str,
    target: str,
    timeout: float = TRANSLATION_COMMAND_TIMEOUT,
) -> str:
    """Run the principal's translation command once and return its proposal.

    The command reads the text on stdin (UTF-8) and prints the translation on stdout; it
    gets BACKCHANNEL_SOURCE_LANGUAGE and BACKCHANNEL_TARGET_LANGUAGE (BCP 47 tags; the
    source may be empty when unknown). It is run only here, when the principal asks: the
    project neither ships nor downloads a model, and nothing leaves the machine unless the
    configured command sends it.

    Raises:
        TranslationCommandFailed: no command, it failed or timed out, or its output is
            empty, too long, not UTF-8, or refused by the text policy.
    """
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise TranslationCommandFailed(f"cannot read the translation command: {error}") from None
    if not argv:
        raise TranslationCommandFailed(
            "no translation command is set: backchannel translate command set COMMAND"
        )
    env = dict(os.environ, BACKCHANNEL_SOURCE_LANGUAGE=source, BACKCHANNEL_TARGET_LANGUAGE=target)
    try:
        done = subprocess.run(
            argv, input=text.encode("utf-8"), capture_output=True, env=env, timeout=timeout,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise TranslationCommandFailed(f"the translation command ran over {timeout:g} s") from None
    except OSError as error:
        raise TranslationCommandFailed(f"cannot run {argv[0]!r}: {error.strerror}") from None
    if done.returncode != 0:
        raise TranslationCommandFailed(f"the translation command exited {done.returncode}")
    if len(done.stdout) > _MAX_TRANSLATION_OUTPUT:
        raise TranslationCommandFailed("the translation command printed more than 48 KiB")
    try:
        proposal = done.stdout.decode("utf-8").strip("\n")
    except UnicodeDecodeError:
        raise TranslationCommandFailed("the translation command printed invalid UTF-8") from None
    try:
        check_text(proposal, _MAX_TRANSLATION_OUTPUT, "the translation command's output")
    except LocalProtocolError as error:
        raise TranslationCommandFailed(str(error)) from None
    return proposal


@dataclass(slots=True)
class DutyReport:
    line_tests_sent: int = 0
    line_tests_answered: int = 0
    escalated: int = 0
    commands_failed: int = 0
    # Escalation commands to run, one per escalation (when a command is configured).
    commands: list[EscalationCommand] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EscalationCommand:
    """The principal's escalation command, ready to run for one missed deadline."""

    argv: tuple[str, ...]
    env: dict[str, str]


def line_period_ms(record: ChannelRecord) -> int:
    """This side's line-test period: 0 when it sends none."""
    if record.linetest_every_ms < 0:
        return 0
    return record.linetest_every_ms or DEFAULT_LINETEST_EVERY_MS


def line_grace_ms(record: ChannelRecord) -> int:
    return record.linetest_grace_ms or DEFAULT_LINETEST_GRACE_MS


def dialogue_of(
    ours: PublicIdentity, channel: ChannelRecord, messages: list[MessageRecord]
) -> Dialogue:
    """The dialogue state of a channel, folded from its messages in stored order
    (`MessageRepository.in_stored_order`); receipts are not part of the dialogue. A
    caller that folds the same channel again and again wants `Duties.dialogue` instead."""
    theirs = PublicIdentity.decode(bytes.fromhex(channel.peer_identity))
    events = [dialogue_event(m) for m in messages if is_dialogue(m)]
    return Dialogue.fold(ours, theirs, events)


def _escalation_run(command: str, channel: str, escalation: Escalation) -> EscalationCommand:
    env = dict(os.environ)
    env.update(
        BACKCHANNEL_CHANNEL=channel,
        BACKCHANNEL_MESSAGE_ID=escalation.message_id.hex(),
        BACKCHANNEL_PRECEDENCE=escalation.precedence.name,
        BACKCHANNEL_DEADLINE_MS=str(escalation.deadline_ms),
    )
    try:
        argv = tuple(shlex.split(command))
    except ValueError:
        argv = ()
    return EscalationCommand(argv, env)


async def run_escalation_command(
    run: EscalationCommand, timeout: float = ESCALATION_COMMAND_TIMEOUT
) -> bool:
    """Run one escalation command without blocking the event loop; stopped (killed) after
    `timeout` seconds. Returns True if it exited 0."""
    if not run.argv:
        return False
    try:
        process = await asyncio.create_subprocess_exec(
            *run.argv,
            env=run.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return False
    try:
        async with asyncio.timeout(timeout):  # not wait_for: see `transport`
            code = await process.wait()
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return False
    return code == 0


class Duties:
    """Line tests and escalations for every channel, and the escalation commands running."""

    def __init__(self, state: ClientState, sender: Sender) -> None:
        self._state = state
        self._sender = sender
        # Each channel's fold, extended by what was stored since the last round.
        self._dialogues = DialogueCache(state.messages, state.identity.public)
        # Escalation commands running beside the loop (see `perform_into`).
        self._command_tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"Duties({self._state!r})"

    @property
    def folds(self) -> DialogueCache:
        """The per-channel folds (their `stats` say how each round was answered)."""
        return self._dialogues

    def dialogue(self, channel: ChannelRecord) -> Dialogue:
        """The channel's dialogue state now (the fold of every stored message), from
        the kept fold plus what was stored since. The object is the cache's: read it
        before the next call for this channel, and never apply events to it."""
        return self._dialogues.dialogue(channel)

    def perform(self) -> DutyReport:
        """Answer line tests, send due ones, escalate missed deadlines; for every channel.

        Queues messages only (the caller flushes and runs `report.commands` with
        `run_escalation_command`, off the loop's critical path). Each escalation happens
        once: it is recorded in the same transaction that queues its resend.
        """
        state = self._state
        report = DutyReport()
        now = state.clock()
        command = state.settings.get(_COMMAND_SETTING)
        for record in state.channels.all():
            if record.last_heard_ms == 0:
                continue  # the counterpart has not taken up the channel yet
            if record.identity_changed and not record.verified:
                continue  # nothing leaves for a changed key until the principal has looked
            dialogue = self._dialogues.dialogue(record)
            every = line_period_ms(record)
            line = dialogue.line_status(
                now, every or DEFAULT_LINETEST_EVERY_MS, line_grace_ms(record)
            )
            for test_id in line.unanswered_theirs:
                reply = LineTestReply(test_id).encode()
                self._sender.queue_body(record.name, LineTestReply.KIND, reply)
                report.line_tests_answered += 1
            if every > 0 and line.test_due:
                self._sender.queue_body(record.name, LineTest.KIND, LineTest().encode())
                report.line_tests_sent += 1
            done = self._sender.escalated_ids(record.channel_id)
            for escalation in dialogue.escalations(now, done):
                self._sender.escalate(record.channel_id, escalation.message_id)
                report.escalated += 1
                if command:
                    report.commands.append(_escalation_run(command, record.name, escalation))
            # Requested notifications missed (owed by either side): the same machinery,
            # once each; ours are resent (their payload is retained), theirs only marked.
            for escalation in dialogue.duty_escalations(now, done):
                self._sender.escalate(record.channel_id, escalation.message_id)
                report.escalated += 1
                if command:
                    report.commands.append(_escalation_run(command, record.name, escalation))
        return report

    def perform_into(self, report: SyncReport) -> None:
        """`perform`, counted into a sync's or watch's report; the escalation commands
        start beside the running loop (a slow pager must not hold up a FLASH note)."""
        duties = self.perform()
        report.line_tests_sent += duties.line_tests_sent
        report.line_tests_answered += duties.line_tests_answered
        report.escalated += duties.escalated
        report.escalation_commands_failed += duties.commands_failed
        for command in duties.commands:
            task = asyncio.get_running_loop().create_task(self._escalation(command, report))
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)

    async def _escalation(self, command: EscalationCommand, report: SyncReport) -> None:
        if not await run_escalation_command(command):
            report.escalation_commands_failed += 1

    async def settle(self) -> None:
        """Wait for the escalation commands still running (each is bounded by its
        timeout), so a one-shot sync reports them and leaves none behind."""
        while self._command_tasks:
            await asyncio.gather(*list(self._command_tasks), return_exceptions=True)

"""Clarification requests bound to one message, and their answers (`docs/dialogue.md`,
"Clarifications").

State machine of a request (named by the CLARIFY message's id)::

    open --ANSWER by the other side--> closed          (final)
    open --HOLD by the other side--> open (held: an answer is expected by a time)

Illegal: asking about an unknown message, one's own message, a message whose hash differs
from the one stored, or a kind that says nothing to clarify (receipts, acknowledgements,
line tests); answering an unknown request, one's own request, or a closed one; holding a
closed request.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from backchannel.dialogue.bodies import NOTE_KIND, Answer, Clarify, Hold
from backchannel.dialogue.events import (
    DialogueEvent,
    IllegalTransition,
    KnownMessage,
    Side,
    short_id,
)
from backchannel.dialogue.kinds import DialogueKind
from backchannel.dialogue.urgent import HoldingReply
from backchannel.protocol.e2e.primitives import constant_time_equal

__all__ = ["CLARIFIABLE_KINDS", "Clarification", "ClarificationLedger"]

# The kinds that say something a principal may need explained.
CLARIFIABLE_KINDS: Final = frozenset(
    {
        NOTE_KIND,
        DialogueKind.HOLD,
        DialogueKind.CLARIFY,
        DialogueKind.ANSWER,
        DialogueKind.REDLINE,
        DialogueKind.AGENDA_PROPOSE,
        DialogueKind.AGENDA_DECLINE,
        DialogueKind.RECORD_PROPOSE,
    }
)


@dataclass(frozen=True, slots=True)
class Clarification:
    """A clarification request and, once closed, its answer.

    Attributes:
        request_id: the CLARIFY message's id.
        asked_by: the side that asked.
        target_id: the message asked about (sent by the other side).
        target_hash: that message's hash, as the asker saw it.
        question: the question.
        asked_at_ms: when we stored the request (our clock).
        hold: the latest holding reply to it, if any.
        answer_id: the ANSWER message's id, once answered.
        answer: the answer's text, once answered.
        answered_at_ms: when we stored the answer (our clock).
    """

    request_id: bytes
    asked_by: Side
    target_id: bytes
    target_hash: bytes
    question: str = field(repr=False)
    asked_at_ms: int = 0
    hold: HoldingReply | None = None
    answer_id: bytes | None = None
    answer: str | None = field(default=None, repr=False)
    answered_at_ms: int | None = None

    @property
    def is_open(self) -> bool:
        return self.answer_id is None


class ClarificationLedger:
    """The clarification requests of a channel."""

    __slots__ = ("_requests",)

    def __init__(self) -> None:
        self._requests: dict[bytes, Clarification] = {}

    def check_clarify(
        self, side: Side, target_id: bytes, target_hash: bytes, known: KnownMessage | None
    ) -> None:
        """Check that `side` may ask about `target_id`.

        Raises:
            IllegalTransition: unknown message, `side`'s own message, a different hash, or
                a kind with nothing to clarify.
        """
        target = short_id(target_id)
        if known is None:
            raise IllegalTransition(f"cannot ask about message {target}: unknown message")
        if known.side is side:
            raise IllegalTransition(
                f"cannot ask about message {target}: a side asks about the other side's messages"
            )
        if not constant_time_equal(known.message_hash, target_hash):
            raise IllegalTransition(
                f"cannot ask about message {target}: its hash differs from the stored message"
            )
        if known.kind not in CLARIFIABLE_KINDS:
            raise IllegalTransition(
                f"cannot ask about message {target}: a message of kind {known.kind} "
                "has nothing to clarify"
            )

    def apply_clarify(
        self, event: DialogueEvent, body: Clarify, known: KnownMessage | None
    ) -> None:
        """Open a request, or raise `IllegalTransition` leaving the state as it was."""
        self.check_clarify(event.side, body.target_id, body.target_hash, known)
        self._requests[event.message_id] = Clarification(
            event.message_id,
            event.side,
            body.target_id,
            body.target_hash,
            body.question,
            event.received_at_ms,
        )

    def knows(self, request_id: bytes) -> bool:
        return request_id in self._requests

    def _open_request(self, side: Side, request_id: bytes, act: str) -> Clarification:
        request = self._requests.get(request_id)
        name = short_id(request_id)
        if request is None:
            raise IllegalTransition(f"cannot {act} request {name}: unknown clarification request")
        if request.asked_by is side:
            raise IllegalTransition(f"cannot {act} request {name}: a side cannot {act} its own")
        if not request.is_open:
            raise IllegalTransition(f"cannot {act} request {name}: it is already answered")
        return request

    def check_answer(self, side: Side, request_id: bytes) -> None:
        """Check that `side` may answer `request_id`.

        Raises:
            IllegalTransition: unknown request, `side`'s own request, or already answered.
        """
        self._open_request(side, request_id, "answer")

    def apply_answer(self, event: DialogueEvent, body: Answer) -> None:
        """Close a request, or raise `IllegalTransition` leaving the state as it was."""
        request = self._open_request(event.side, body.request_id, "answer")
        self._requests[body.request_id] = replace(
            request,
            answer_id=event.message_id,
            answer=body.text,
            answered_at_ms=event.received_at_ms,
        )

    def check_hold(self, side: Side, request_id: bytes) -> None:
        """Check that `side` may send a holding reply to `request_id`.

        Raises:
            IllegalTransition: unknown request, `side`'s own request, or already answered.
        """
        self._open_request(side, request_id, "hold")

    def apply_hold(self, event: DialogueEvent, body: Hold) -> None:
        """Record a holding reply to a request, or raise `IllegalTransition`."""
        request = self._open_request(event.side, body.message_id, "hold")
        hold = HoldingReply(
            event.message_id, event.side, body.expected_by_ms, event.received_at_ms, body.text
        )
        self._requests[body.message_id] = replace(request, hold=hold)

    def get(self, request_id: bytes) -> Clarification | None:
        return self._requests.get(request_id)

    def all(self) -> tuple[Clarification, ...]:
        """Every request, open or closed, in the order they were made."""
        return tuple(self._requests.values())

    def open(self, asked_by: Side | None = None) -> tuple[Clarification, ...]:
        """The requests still open, oldest first.

        Args:
            asked_by: only those asked by this side (None: both directions).
        """
        return tuple(
            r
            for r in self._requests.values()
            if r.is_open and (asked_by is None or r.asked_by is asked_by)
        )

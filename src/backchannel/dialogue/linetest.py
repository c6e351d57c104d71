"""Line tests: periodic authenticated liveness messages in both directions, answered
automatically (`docs/dialogue.md`, "Line tests").

State machine of a test (named by the LINETEST message's id)::

    sent --LINETEST_REPLY by the other side--> answered      (final)

Illegal: answering an unknown test, one's own test, or a test already answered.

The line's state is judged from *our* tests, by our clock only (the test's `sent_at` and
the reply's arrival):

- UNKNOWN: we have sent no test, or the last answer is older than `every + grace` (nobody
  has tested the line lately, so nothing is known of it now);
- UP: our latest test was answered (`round_trip_ms` says how fast);
- DOWN: a test of ours went unanswered for longer than `grace`, and no later test has
  been answered since.

A test that is still within its grace period leaves the state as the previous test left it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

from backchannel.dialogue.bodies import LineTestReply
from backchannel.dialogue.events import DialogueEvent, IllegalTransition, Side, short_id
from backchannel.protocol.errors import LocalProtocolError

__all__ = [
    "DEFAULT_LINETEST_EVERY_MS",
    "DEFAULT_LINETEST_GRACE_MS",
    "LineState",
    "LineStatus",
    "LineTestLog",
]

# The Washington-Moscow hotline has been tested every hour since 1963.
DEFAULT_LINETEST_EVERY_MS: Final = 3600 * 1000
# An answer comes from the other side's client, not its principal; a client that syncs
# every few minutes answers well within ten.
DEFAULT_LINETEST_GRACE_MS: Final = 10 * 60 * 1000


class LineState(Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class LineStatus:
    """The line-test state at one moment.

    Attributes:
        state: UP, DOWN or UNKNOWN (see the module docstring).
        last_test_sent_at_ms: when we sent our latest test (None: never).
        last_answered_at_ms: when the latest answer to one of our tests arrived.
        round_trip_ms: how long that answer took.
        next_test_due_at_ms: when our next test is due (`every` after the latest; None:
            now, as we have sent none).
        test_due: whether a test should be sent now.
        unanswered_theirs: the other side's tests we have not answered yet, oldest first
            (the client answers them automatically).
    """

    state: LineState
    last_test_sent_at_ms: int | None
    last_answered_at_ms: int | None
    round_trip_ms: int | None
    next_test_due_at_ms: int | None
    test_due: bool
    unanswered_theirs: tuple[bytes, ...]


@dataclass(slots=True)
class _Test:
    test_id: bytes
    side: Side
    sent_at_ms: int
    answered_at_ms: int | None = None


class LineTestLog:
    """Both sides' line tests and their answers."""

    __slots__ = ("_tests",)

    def __init__(self) -> None:
        self._tests: dict[bytes, _Test] = {}

    def apply_test(self, event: DialogueEvent) -> None:
        """Record a test (always legal). Our tests are timed by our sending clock."""
        sent_at = event.received_at_ms if event.side is Side.OURS else event.sent_at_ms
        self._tests[event.message_id] = _Test(event.message_id, event.side, sent_at)

    def check_reply(self, side: Side, test_id: bytes) -> None:
        """Check that `side` may answer `test_id`.

        Raises:
            IllegalTransition: unknown test, `side`'s own test, or already answered.
        """
        name = short_id(test_id)
        test = self._tests.get(test_id)
        if test is None:
            raise IllegalTransition(f"cannot answer line test {name}: unknown test")
        if test.side is side:
            raise IllegalTransition(f"cannot answer line test {name}: it is this side's own test")
        if test.answered_at_ms is not None:
            raise IllegalTransition(f"cannot answer line test {name}: it is already answered")

    def apply_reply(self, event: DialogueEvent, body: LineTestReply) -> None:
        """Mark a test answered, or raise `IllegalTransition` leaving the state as it was."""
        self.check_reply(event.side, body.test_id)
        self._tests[body.test_id].answered_at_ms = event.received_at_ms

    def status(self, now_ms: int, every_ms: int, grace_ms: int) -> LineStatus:
        """The line's state at `now_ms`.

        Args:
            now_ms: the current time (our clock).
            every_ms: how often this side sends a test (the hotline's: an hour).
            grace_ms: how long an answer may take before the line counts as down.

        Returns:
            The `LineStatus`.

        Raises:
            LocalProtocolError: `every_ms` or `grace_ms` is not positive.
        """
        if every_ms <= 0 or grace_ms <= 0:
            raise LocalProtocolError("line-test period and grace must be positive")
        ours = sorted(
            (t for t in self._tests.values() if t.side is Side.OURS),
            key=lambda t: t.sent_at_ms,
        )
        answered = [t for t in ours if t.answered_at_ms is not None]
        last_answer = max(answered, key=lambda t: t.answered_at_ms or 0, default=None)
        state = LineState.UNKNOWN
        for test in reversed(ours):
            if test.answered_at_ms is not None:
                if now_ms - test.answered_at_ms <= every_ms + grace_ms:
                    state = LineState.UP
                break
            if now_ms - test.sent_at_ms > grace_ms:
                state = LineState.DOWN
                break
        last_sent = ours[-1].sent_at_ms if ours else None
        next_due = None if last_sent is None else last_sent + every_ms
        return LineStatus(
            state=state,
            last_test_sent_at_ms=last_sent,
            last_answered_at_ms=None if last_answer is None else last_answer.answered_at_ms,
            round_trip_ms=(
                None
                if last_answer is None or last_answer.answered_at_ms is None
                else last_answer.answered_at_ms - last_answer.sent_at_ms
            ),
            next_test_due_at_ms=next_due,
            test_due=next_due is None or now_ms >= next_due,
            unanswered_theirs=self.unanswered_theirs(),
        )

    def unanswered_theirs(self) -> tuple[bytes, ...]:
        """The other side's tests this side has not answered, in the order they arrived."""
        return tuple(
            t.test_id
            for t in self._tests.values()
            if t.side is Side.THEIRS and t.answered_at_ms is None
        )

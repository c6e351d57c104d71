"""Red lines: declared by one side, versioned, acknowledged as *understood* (not agreed) by
the other (`docs/dialogue.md`, "Red lines").

State machine of a red line (per red-line id; its owner is the side that declared v1)::

    (none) --REDLINE v1 by S--> v1 declared, owner S
    vN     --REDLINE vN+1 by the owner--> vN+1 declared (each version is acknowledged apart)
    vK     --REDLINE_ACK vK by the other side--> vK understood           (final for vK)

Illegal: a first version other than 1; a version that does not follow the latest; a new
version by the side that does not own the red line; acknowledging an unknown red line or
version, one's own red line, or a version twice. This side may acknowledge only the latest
version. An acknowledgement of an older version *from the other side* is recorded against
that version: it was sent before the newer version arrived, and both folds must agree that
the older version was understood while the newer one still awaits acknowledgement.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from backchannel.dialogue.bodies import RedLine, RedLineAck
from backchannel.dialogue.events import DialogueEvent, IllegalTransition, Side, short_id

__all__ = ["RedLineBook", "RedLineVersion", "RedLineView"]


@dataclass(frozen=True, slots=True)
class RedLineVersion:
    """One version of a red line and whether the other side has understood it."""

    version: int
    title: str = field(repr=False)
    text: str = field(repr=False)
    message_id: bytes = b""
    declared_at_ms: int = 0
    acknowledged_at_ms: int | None = None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at_ms is not None


@dataclass(frozen=True, slots=True)
class RedLineView:
    """A red line as the board shows it: its latest version and its history.

    Attributes:
        redline_id: its stable id.
        owner: the side that declared it.
        latest: its latest version.
        versions: every version, oldest first.
    """

    redline_id: bytes
    owner: Side
    latest: RedLineVersion
    versions: tuple[RedLineVersion, ...]

    @property
    def awaiting_acknowledgement(self) -> bool:
        """Whether the other side has yet to acknowledge the latest version."""
        return not self.latest.acknowledged


@dataclass(slots=True)
class _Thread:
    owner: Side
    versions: list[RedLineVersion]


class RedLineBook:
    """Both sides' red lines."""

    __slots__ = ("_lines",)

    def __init__(self) -> None:
        self._lines: dict[bytes, _Thread] = {}

    def latest_version(self, redline_id: bytes) -> int:
        """The latest version of a red line, 0 if there is none."""
        thread = self._lines.get(redline_id)
        return 0 if thread is None else len(thread.versions)

    def check_declare(self, side: Side, redline_id: bytes, version: int) -> None:
        """Check that `side` may declare `version` of `redline_id`.

        Raises:
            IllegalTransition: the version does not follow the latest, or the red line
                belongs to the other side.
        """
        name = short_id(redline_id)
        thread = self._lines.get(redline_id)
        if thread is not None and thread.owner is not side:
            raise IllegalTransition(f"cannot declare red line {name}: it belongs to the other side")
        expected = self.latest_version(redline_id) + 1
        if version != expected:
            raise IllegalTransition(
                f"cannot declare version {version} of red line {name}: the next version is "
                f"{expected}"
            )

    def apply_declare(self, event: DialogueEvent, body: RedLine) -> None:
        """Add a red line or a version, or raise `IllegalTransition` leaving the state."""
        self.check_declare(event.side, body.redline_id, body.version)
        version = RedLineVersion(
            body.version, body.title, body.text, event.message_id, event.received_at_ms
        )
        thread = self._lines.setdefault(body.redline_id, _Thread(event.side, []))
        thread.versions.append(version)

    def check_ack(self, side: Side, redline_id: bytes, version: int, *, latest_only: bool) -> None:
        """Check that `side` may acknowledge `version` of `redline_id`.

        Args:
            side: the acknowledging side.
            redline_id: the red line.
            version: the version understood.
            latest_only: refuse a version older than the latest (this side's own intents).

        Raises:
            IllegalTransition: unknown red line or version, `side`'s own red line, an old
                version (when `latest_only`), or a version already acknowledged.
        """
        name = short_id(redline_id)
        thread = self._lines.get(redline_id)
        if thread is None:
            raise IllegalTransition(f"cannot acknowledge red line {name}: unknown red line")
        if thread.owner is side:
            raise IllegalTransition(
                f"cannot acknowledge red line {name}: a side cannot acknowledge its own red line"
            )
        latest = len(thread.versions)
        if not 1 <= version <= latest:
            raise IllegalTransition(
                f"cannot acknowledge version {version} of red line {name}: "
                f"the latest version is {latest}"
            )
        if latest_only and version != latest:
            raise IllegalTransition(
                f"cannot acknowledge version {version} of red line {name}: it was superseded "
                f"by version {latest}; acknowledge the latest version"
            )
        if thread.versions[version - 1].acknowledged:
            raise IllegalTransition(
                f"cannot acknowledge version {version} of red line {name}: already acknowledged"
            )

    def apply_ack(self, event: DialogueEvent, body: RedLineAck) -> None:
        """Mark a version understood, or raise `IllegalTransition` leaving the state."""
        self.check_ack(event.side, body.redline_id, body.version, latest_only=False)
        thread = self._lines[body.redline_id]
        old = thread.versions[body.version - 1]
        thread.versions[body.version - 1] = replace(old, acknowledged_at_ms=event.received_at_ms)

    def get(self, redline_id: bytes) -> RedLineView | None:
        thread = self._lines.get(redline_id)
        if thread is None:
            return None
        return RedLineView(redline_id, thread.owner, thread.versions[-1], tuple(thread.versions))

    def all(self, owner: Side | None = None) -> tuple[RedLineView, ...]:
        """Red lines in the order they were first declared.

        Args:
            owner: only this side's red lines (None: both sides').
        """
        views = (self.get(redline_id) for redline_id in self._lines)
        return tuple(v for v in views if v is not None and (owner is None or v.owner is owner))

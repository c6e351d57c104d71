"""The shared codebook of a channel (`docs/dialogue.md`, "Codebook").

State of an entry (per entry id; its owner is the side that proposed version 1)::

    version n proposed --CODEBOOK_ACCEPT n by the other side--> n accepted
    any state --CODEBOOK_WITHDRAW by either side--> withdrawn   (final)

The entry's current version is its highest accepted version; a proposed version above it
awaits acceptance and replaces it once accepted.

The fold's rules are those no message crossing another in flight can break, so an intent
that passed its check never becomes an anomaly on the other side:

- a proposal is the owner's, with the version after the latest;
- an acceptance is the other side's, of a proposed version not yet accepted (an older
  version, or one of a withdrawn entry, may be accepted: the acceptance may have crossed the
  newer proposal or the withdrawal);
- a withdrawal names a known entry; a second one (both sides withdrawing at once) is kept;
- a codebook message names an accepted version and carries one value per parameter.

This side's checks are stricter: accept only the latest version of a live entry, withdraw
a live entry, send only the current version of a live entry, and propose no number that
another live entry already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from backchannel.dialogue.codes import (
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeText,
    render_code_text,
)
from backchannel.dialogue.events import DialogueEvent, IllegalTransition, Side, short_id

__all__ = ["CodeEntryStatus", "CodeEntryVersion", "CodeEntryView", "CodeMessage", "Codebook"]


class CodeEntryStatus(Enum):
    PROPOSED = "proposed"
    """No version is accepted yet."""
    AGREED = "agreed"
    """A version is accepted (a newer one may await acceptance)."""
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class CodeEntryVersion:
    """One version of an entry: what was proposed, and when it was accepted (our clock)."""

    proposal: CodebookPropose = field(repr=False)
    proposed_at_ms: int
    accepted_at_ms: int | None = None

    @property
    def version(self) -> int:
        return self.proposal.version


@dataclass(frozen=True, slots=True)
class CodeEntryView:
    """An entry with all its versions (oldest first).

    Attributes:
        entry_id: the entry's id.
        owner: the side that proposed it.
        versions: every version.
        withdrawn_by: the sides that withdrew it (both if the withdrawals crossed).
        withdrawn_at_ms: when we stored the first withdrawal.
    """

    entry_id: bytes
    owner: Side
    versions: tuple[CodeEntryVersion, ...]
    withdrawn_by: frozenset[Side] = frozenset()
    withdrawn_at_ms: int | None = None

    @property
    def current(self) -> CodeEntryVersion | None:
        """The highest accepted version, the one codebook messages use."""
        accepted = [v for v in self.versions if v.accepted_at_ms is not None]
        return accepted[-1] if accepted else None

    @property
    def latest(self) -> CodeEntryVersion:
        return self.versions[-1]

    @property
    def awaiting_acceptance(self) -> CodeEntryVersion | None:
        """The latest version, if it is above the current one and the entry is live."""
        current = self.current
        if self.withdrawn_by or (current is not None and current.version == self.latest.version):
            return None
        return self.latest

    @property
    def status(self) -> CodeEntryStatus:
        if self.withdrawn_by:
            return CodeEntryStatus.WITHDRAWN
        return CodeEntryStatus.PROPOSED if self.current is None else CodeEntryStatus.AGREED


@dataclass(frozen=True, slots=True)
class CodeMessage:
    """A codebook message as a principal reads it.

    Attributes:
        message_id: the CODEBOOK_SEND message's id.
        sent_by: who sent it.
        entry: the entry version it names.
        values: its parameter values, in the entry's order.
    """

    message_id: bytes
    sent_by: Side
    entry: CodebookPropose = field(repr=False)
    values: tuple[str, ...] = field(repr=False)

    @property
    def code_word(self) -> str:
        return self.entry.code_word

    def render(self, language: str) -> tuple[CodeText, str]:
        """The agreed text in `language`, filled in: the exact tag (ignoring case), else
        the first text of the same primary language ("ru-RU" reads "ru"), else the entry's
        first text.

        Returns:
            The text used (its `language` says which one) and the rendered string.
        """
        primary = language.split("-", 1)[0].lower()
        same = (t for t in self.entry.texts if t.language.split("-", 1)[0].lower() == primary)
        text = self.entry.text_in(language) or next(same, None) or self.entry.texts[0]
        return text, render_code_text(text, self.entry.parameters, self.values)


class Codebook:
    """Every codebook entry of a channel, and the codebook messages sent with them."""

    __slots__ = ("_entries", "_messages")

    def __init__(self) -> None:
        self._entries: dict[bytes, CodeEntryView] = {}
        self._messages: dict[bytes, CodeMessage] = {}

    # -- checks -----------------------------------------------------------------------

    def check_propose(self, side: Side, body: CodebookPropose) -> None:
        """Check the rules every proposal obeys (the fold's).

        Raises:
            IllegalTransition: the entry is the other side's, or the version does not
                follow the latest.
        """
        name = short_id(body.entry_id)
        entry = self._entries.get(body.entry_id)
        if entry is not None and entry.owner is not side:
            raise IllegalTransition(f"cannot propose codebook entry {name}: it is not theirs")
        latest = 0 if entry is None else entry.latest.version
        if body.version != latest + 1:
            raise IllegalTransition(
                f"cannot propose version {body.version} of codebook entry {name}: "
                f"the next version is {latest + 1}"
            )

    def check_own_propose(self, body: CodebookPropose) -> None:
        """This side's proposal: the fold's rules, a live entry, and a number no other live
        entry has.

        Raises:
            IllegalTransition: as `check_propose`, a withdrawn entry, or a number in use.
        """
        self.check_propose(Side.OURS, body)
        entry = self._entries.get(body.entry_id)
        if entry is not None and entry.withdrawn_by:
            raise IllegalTransition(
                f"cannot propose codebook entry {short_id(body.entry_id)}: it was withdrawn"
            )
        for other in self._entries.values():
            live = other.entry_id != body.entry_id and not other.withdrawn_by
            if live and body.number in {v.proposal.number for v in other.versions}:
                raise IllegalTransition(
                    f"codebook number {body.number} is already used by entry "
                    f"{short_id(other.entry_id)}"
                )

    def check_accept(self, side: Side, entry_id: bytes, version: int, *, own: bool) -> None:
        """Check that `side` may accept `version` of `entry_id`.

        Args:
            own: this side's intent (only the latest version of a live entry).

        Raises:
            IllegalTransition: unknown entry or version, the side's own entry, already
                accepted, or (own) withdrawn or not the latest.
        """
        name = short_id(entry_id)
        entry = self._entries.get(entry_id)
        if entry is None or not 1 <= version <= len(entry.versions):
            raise IllegalTransition(
                f"cannot accept version {version} of codebook entry {name}: unknown"
            )
        if entry.owner is side:
            raise IllegalTransition(
                f"cannot accept codebook entry {name}: its owner accepts it by proposing it"
            )
        if entry.versions[version - 1].accepted_at_ms is not None:
            raise IllegalTransition(
                f"cannot accept version {version} of codebook entry {name}: already accepted"
            )
        if own and entry.withdrawn_by:
            raise IllegalTransition(f"cannot accept codebook entry {name}: it was withdrawn")
        if own and version != entry.latest.version:
            raise IllegalTransition(
                f"cannot accept version {version} of codebook entry {name}: "
                f"version {entry.latest.version} replaces it"
            )

    def check_withdraw(self, entry_id: bytes, *, own: bool) -> None:
        """Check that an entry may be withdrawn (by this side: a live one).

        Raises:
            IllegalTransition: unknown entry, or (own) already withdrawn.
        """
        name = short_id(entry_id)
        entry = self._entries.get(entry_id)
        if entry is None:
            raise IllegalTransition(f"cannot withdraw codebook entry {name}: unknown entry")
        if own and entry.withdrawn_by:
            raise IllegalTransition(f"cannot withdraw codebook entry {name}: already withdrawn")

    def check_send(self, body: CodebookSend, *, own: bool) -> CodebookPropose:
        """Check a codebook message and return the entry version it names.

        Raises:
            IllegalTransition: unknown entry or version, a version the other side has not
                accepted, not one value per parameter, or (own) a withdrawn entry or a
                version that is not the current one.
        """
        name = short_id(body.entry_id)
        entry = self._entries.get(body.entry_id)
        if entry is None or not 1 <= body.version <= len(entry.versions):
            raise IllegalTransition(
                f"cannot send version {body.version} of codebook entry {name}: unknown"
            )
        chosen = entry.versions[body.version - 1]
        if chosen.accepted_at_ms is None:
            raise IllegalTransition(
                f"cannot send version {body.version} of codebook entry {name}: "
                "it is not accepted by both sides"
            )
        if own and entry.withdrawn_by:
            raise IllegalTransition(f"cannot send codebook entry {name}: it was withdrawn")
        current = entry.current
        if own and current is not None and current.version != body.version:
            raise IllegalTransition(
                f"cannot send version {body.version} of codebook entry {name}: "
                f"the current version is {current.version}"
            )
        parameters = chosen.proposal.parameters
        if len(body.values) != len(parameters):
            raise IllegalTransition(
                f"codebook entry {name} has {len(parameters)} parameters, "
                f"the message gives {len(body.values)} values"
            )
        return chosen.proposal

    # -- the fold ---------------------------------------------------------------------

    def apply_propose(self, event: DialogueEvent, body: CodebookPropose) -> None:
        self.check_propose(event.side, body)
        version = CodeEntryVersion(body, event.received_at_ms)
        entry = self._entries.get(body.entry_id)
        if entry is None:
            self._entries[body.entry_id] = CodeEntryView(body.entry_id, event.side, (version,))
        else:
            self._entries[body.entry_id] = _with_versions(entry, (*entry.versions, version))

    def apply_accept(self, event: DialogueEvent, body: CodebookAccept) -> None:
        self.check_accept(event.side, body.entry_id, body.version, own=False)
        entry = self._entries[body.entry_id]
        versions = list(entry.versions)
        chosen = versions[body.version - 1]
        versions[body.version - 1] = CodeEntryVersion(
            chosen.proposal, chosen.proposed_at_ms, event.received_at_ms
        )
        self._entries[body.entry_id] = _with_versions(entry, tuple(versions))

    def apply_withdraw(self, event: DialogueEvent, body: CodebookWithdraw) -> None:
        self.check_withdraw(body.entry_id, own=False)
        entry = self._entries[body.entry_id]
        first = entry.withdrawn_at_ms if entry.withdrawn_by else event.received_at_ms
        self._entries[body.entry_id] = CodeEntryView(
            entry.entry_id, entry.owner, entry.versions, entry.withdrawn_by | {event.side}, first
        )

    def apply_send(self, event: DialogueEvent, body: CodebookSend) -> None:
        proposal = self.check_send(body, own=False)
        self._messages[event.message_id] = CodeMessage(
            event.message_id, event.side, proposal, body.values
        )

    # -- queries ----------------------------------------------------------------------

    def all(self) -> tuple[CodeEntryView, ...]:
        """Every entry, by number then id (the same order on both sides)."""
        return tuple(
            sorted(self._entries.values(), key=lambda e: (e.latest.proposal.number, e.entry_id))
        )

    def get(self, entry_id: bytes) -> CodeEntryView | None:
        return self._entries.get(entry_id)

    def by_code(self, code: str) -> CodeEntryView | None:
        """The live entry whose current (else latest) version has this number or code word
        (ignoring case)."""
        for entry in self.all():
            if entry.withdrawn_by:
                continue
            proposal = (entry.current or entry.latest).proposal
            if code.isdigit() and int(code) == proposal.number:
                return entry
            if code.casefold() == proposal.code_word.casefold():
                return entry
        return None

    def message(self, message_id: bytes) -> CodeMessage | None:
        return self._messages.get(message_id)


def _with_versions(entry: CodeEntryView, versions: tuple[CodeEntryVersion, ...]) -> CodeEntryView:
    return CodeEntryView(
        entry.entry_id, entry.owner, versions, entry.withdrawn_by, entry.withdrawn_at_ms
    )

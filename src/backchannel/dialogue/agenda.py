"""Agendas of numbered meeting rounds (`docs/dialogue.md`, "Agendas").

State machine of an agenda item (named by the AGENDA_PROPOSE message's id)::

    proposed --AGENDA_ACCEPT by the other side--> accepted      (final)
    proposed --AGENDA_DECLINE by the other side--> declined     (final)

Illegal: deciding an unknown item, an item of another round than the one named, an item
one proposed oneself (the proposer accepts implicitly), or an item already decided.

The agreed agenda of a round is its accepted items in the round's canonical order: by the
proposal's `sent_at_ms` (the proposer's clock, carried in the message), then by its message
id. Both sides see both values identically, whatever order the messages arrived in, so both
list the same agenda in the same order; the local arrival order (which differs between the
sides when both propose before hearing from the other) is never used. A proposer's wrong
clock moves its items, on both sides alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from backchannel.dialogue.bodies import AgendaAccept, AgendaDecline, AgendaPropose
from backchannel.dialogue.events import DialogueEvent, IllegalTransition, Side, short_id

__all__ = ["AgendaBook", "AgendaItem", "AgendaRound", "AgendaStatus", "canonical_order"]


class AgendaStatus(Enum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class AgendaItem:
    """One proposed agenda item and its fate.

    Attributes:
        item_id: the AGENDA_PROPOSE message's id.
        round: the meeting round.
        proposed_by: the side that proposed it.
        title: what is to be discussed.
        detail: optional venue, dates or other detail.
        proposed_at_ms: when we stored the proposal (our clock).
        sent_at_ms: the proposer's clock when it sent the proposal (the same on both
            sides: with `item_id` it gives the canonical order).
        status: proposed, accepted or declined.
        decided_at_ms: when we stored the decision.
        reason: the reason given for a decline (may be empty).
    """

    item_id: bytes
    round: int
    proposed_by: Side
    title: str = field(repr=False)
    detail: str = field(repr=False)
    proposed_at_ms: int
    sent_at_ms: int
    status: AgendaStatus = AgendaStatus.PROPOSED
    decided_at_ms: int | None = None
    reason: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class AgendaRound:
    """The agenda of one meeting round.

    Attributes:
        round: its number.
        items: every item proposed for it, in canonical order (`canonical_order`).
        agreed: the items both sides accepted (the proposer implicitly), in that order.
        undecided: the items still awaiting the other side's decision.
    """

    round: int
    items: tuple[AgendaItem, ...]

    @property
    def agreed(self) -> tuple[AgendaItem, ...]:
        return tuple(i for i in self.items if i.status is AgendaStatus.ACCEPTED)

    @property
    def undecided(self) -> tuple[AgendaItem, ...]:
        return tuple(i for i in self.items if i.status is AgendaStatus.PROPOSED)


def canonical_order(item: AgendaItem) -> tuple[int, bytes]:
    """The sort key both sides compute identically for an item: the proposer's send time,
    then the proposal's message id (random, so ties are broken the same way on both sides)."""
    return (item.sent_at_ms, item.item_id)


class AgendaBook:
    """Every meeting round's agenda items."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[bytes, AgendaItem] = {}

    def apply_propose(self, event: DialogueEvent, body: AgendaPropose) -> None:
        """Add an item (always legal: its id is its message's, so it is new)."""
        self._items[event.message_id] = AgendaItem(
            event.message_id,
            body.round,
            event.side,
            body.title,
            body.detail,
            event.received_at_ms,
            event.sent_at_ms,
        )

    def check_decide(self, side: Side, round_number: int, item_id: bytes) -> None:
        """Check that `side` may accept or decline `item_id` of round `round_number`.

        Raises:
            IllegalTransition: unknown item, another round, `side`'s own item, or an item
                already accepted or declined.
        """
        name = short_id(item_id)
        item = self._items.get(item_id)
        if item is None:
            raise IllegalTransition(f"cannot decide agenda item {name}: unknown item")
        if item.round != round_number:
            raise IllegalTransition(
                f"cannot decide agenda item {name} for round {round_number}: "
                f"it belongs to round {item.round}"
            )
        if item.proposed_by is side:
            raise IllegalTransition(
                f"cannot decide agenda item {name}: its proposer accepts it by proposing it"
            )
        if item.status is not AgendaStatus.PROPOSED:
            raise IllegalTransition(
                f"cannot decide agenda item {name}: it is already {item.status.value}"
            )

    def apply_decide(self, event: DialogueEvent, body: AgendaAccept | AgendaDecline) -> None:
        """Accept or decline an item, or raise `IllegalTransition` leaving the state."""
        self.check_decide(event.side, body.round, body.item_id)
        item = self._items[body.item_id]
        match body:
            case AgendaAccept():
                decided = replace(
                    item, status=AgendaStatus.ACCEPTED, decided_at_ms=event.received_at_ms
                )
            case AgendaDecline(reason=reason):
                decided = replace(
                    item,
                    status=AgendaStatus.DECLINED,
                    decided_at_ms=event.received_at_ms,
                    reason=reason,
                )
        self._items[body.item_id] = decided

    def get(self, item_id: bytes) -> AgendaItem | None:
        return self._items.get(item_id)

    def round(self, number: int) -> AgendaRound:
        """The agenda of round `number` (empty if nothing was proposed for it)."""
        items = sorted((i for i in self._items.values() if i.round == number), key=canonical_order)
        return AgendaRound(number, tuple(items))

    def rounds(self) -> tuple[AgendaRound, ...]:
        """Every round that has items, in increasing order."""
        return tuple(self.round(n) for n in sorted({i.round for i in self._items.values()}))

    def latest_round(self) -> AgendaRound | None:
        """The highest-numbered round with items: the next meeting being prepared."""
        numbers = {i.round for i in self._items.values()}
        return self.round(max(numbers)) if numbers else None

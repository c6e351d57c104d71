"""The console's data source over an open principal: reads a `Snapshot`, runs the acts.

The principal is opened in this process under the home's lock (as a CLI command without
an agent opens it) and kept open for the console's lifetime; `refresh` syncs with the
relays and reads everything again. Every counterpart string passes `escaped` here, before
any widget sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from backchannel.protocol.text import escaped
from backchannel.tui.views import (
    BoardView,
    ChannelRow,
    ConversationLine,
    Pending,
    Snapshot,
)

if TYPE_CHECKING:
    from backchannel.client.engine import Principal
    from backchannel.client.history import HistoryEntry
    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue.board import StatusBoard
    from backchannel.dialogue.urgent import PendingAck

# The conversation shows the latest entries only, so a channel of any length opens at
# the cost of one page; older ones are a later page (`earlier` says how many).
PAGE_SIZE: Final = 200
# How long a sync on refresh may take: the console refreshes every second, and a relay
# that does not answer must not stall it for longer than this.
SYNC_DEADLINE_S: Final = 2.0
# Enough of an id to name a message back to the engine (the CLI's `short_id`).
SHORT_ID: Final = 8


def _short(identifier: bytes | str) -> str:
    text = identifier.hex() if isinstance(identifier, bytes) else identifier
    return text[:SHORT_ID]


def _line(entry: HistoryEntry) -> ConversationLine:
    from backchannel.dialogue.kinds import Precedence

    receipt = ""
    if entry.acknowledged_at_ms:
        receipt = "acknowledged"
    elif entry.read_at_ms:
        receipt = "read"
    elif entry.delivered_at_ms:
        receipt = "delivered"
    title = f"{entry.title}: " if entry.title else ""
    return ConversationLine(
        ref=_short(entry.message_id),
        direction=entry.direction,
        act=entry.act,
        text=escaped(title + entry.text),
        precedence=Precedence(entry.precedence).name if entry.act == "note" else "ROUTINE",
        receipt=receipt,
    )


def _pending(p: PendingAck, now_ms: int) -> Pending:
    from backchannel.dialogue.events import Side

    return Pending(
        ref=_short(p.message_id),
        ours=p.side is Side.OURS,
        precedence=p.precedence.name,
        remaining_ms=p.worry_at_ms - now_ms,
        overdue=p.overdue,
        held=p.hold is not None,
    )


def _board(board: StatusBoard) -> BoardView:
    now = board.now_ms
    agenda: tuple[str, ...] = ()
    if board.next_round is not None:
        agenda = tuple(
            f"round {item.round}: {escaped(item.title)} ({item.status.name.lower()})"
            for item in board.next_round.items
        )
    return BoardView(
        pending=tuple(_pending(p, now) for p in board.awaiting_their_ack + board.awaiting_our_ack),
        clarifications=tuple(
            f"{_short(c.request_id)} {c.asked_by.name.lower()}: {escaped(c.question)}"
            for c in board.open_clarifications
        ),
        red_lines=tuple(
            f"{r.owner.name.lower()}: {escaped(r.latest.title)} v{r.latest.version}"
            + (" (awaiting ack)" if r.awaiting_acknowledgement else "")
            for r in board.red_lines
        ),
        agenda=agenda,
        records=tuple(
            f"{_short(r.record_id)} v{r.latest.version} {r.latest.status.name.lower()}"
            for r in board.records
        ),
    )


class ConsoleData:
    """The live data source: one open principal, read and acted on by the console."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    def _strategic(self, channel: str) -> StrategicChannel:
        from backchannel.client.strategic import StrategicChannel

        return StrategicChannel(self.principal, channel)

    async def refresh(self, selected: str | None, *, sync: bool = True) -> Snapshot:
        """Sync with the relays (unless `sync` is False), then read everything shown."""
        if sync and self.principal.channels():
            await self.principal.sync(deadline=SYNC_DEADLINE_S)
        return self.read(selected)

    def read(self, selected: str | None) -> Snapshot:
        """Everything shown, for `selected` (None: the first channel)."""
        now = self.principal.now_ms()
        channels = self.principal.channels()
        statuses = {s.name: s for s in self.principal.status()}
        rows = []
        boards = {}
        for channel in channels:
            board = self._strategic(channel.name).board(now)
            boards[channel.name] = board
            urgent = any(
                p.overdue or p.precedence.name == "FLASH" for p in board.awaiting_our_ack
            )
            status = statuses.get(channel.name)
            rows.append(ChannelRow(
                key=channel.name,
                name=escaped(channel.name),
                line=board.line.state.name,
                unread=status.unread if status is not None else 0,
                urgent=urgent,
            ))
        names = [c.name for c in channels]
        if selected not in names:
            selected = names[0] if names else None
        if selected is None:
            return Snapshot(channels=tuple(rows))
        page = self.principal.history(selected, limit=PAGE_SIZE)
        view = _board(boards[selected])
        flash = next(
            (p for p in view.pending if not p.ours and p.precedence == "FLASH" and not p.held),
            None,
        )
        return Snapshot(
            channels=tuple(rows),
            selected=selected,
            conversation=tuple(_line(e) for e in page.entries),
            earlier=page.earlier,
            board=view,
            flash=flash,
        )

    async def send(self, channel: str, text: str, precedence: str, ack_within_ms: int) -> None:
        """A note; `precedence` by name."""
        from backchannel.dialogue.kinds import Precedence

        await self._strategic(channel).note(text, Precedence[precedence], ack_within_ms)

    async def ack(self, channel: str, ref: str) -> None:
        """Acknowledge their note `ref`."""
        await self._strategic(channel).ack(ref)

    async def hold(self, channel: str, ref: str, expected_in_ms: int, text: str = "") -> None:
        """A holding reply to `ref`: an answer is expected within `expected_in_ms`."""
        await self._strategic(channel).hold(ref, self.principal.now_ms() + expected_in_ms, text)

    async def clarify(self, channel: str, ref: str, question: str) -> None:
        """Ask about their message `ref`."""
        await self._strategic(channel).clarify(ref, question)

    async def linetest_now(self, channel: str) -> None:
        """Send a line test now."""
        await self._strategic(channel).test_line()

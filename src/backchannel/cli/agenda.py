"""`agenda propose|accept|decline|show`: what the next in-person round will discuss
(docs/dialogue.md §4.4).

Either side proposes items for a numbered round; the other accepts or declines each; the
agreed agenda is what both accepted (a proposer accepts its item by proposing it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.context import JSON_OPTION, cli_context, reports_errors
from backchannel.cli.dialogue import report_act
from backchannel.cli.hints import command_hint
from backchannel.cli.languageoptions import (
    AUTHORITATIVE_OPTION,
    LANG_OPTION,
    TITLED_TRANSLATION_OPTION,
    TRANSLATED_BY_OPTION,
)
from backchannel.cli.output import emit_json, local_time, short_id

if TYPE_CHECKING:
    # Only for annotations: `agenda --help` builds the group without Rich or the dialogue
    # package (cryptography under it); the functions that use them at run time import
    # them there, asyncio too.
    from rich.table import Table

    from backchannel.dialogue import AgendaItem, AgendaRound

__all__ = ["agenda_app", "agenda_round_json"]

agenda_app = typer.Typer(
    no_args_is_help=True,
    help="Meeting agendas: propose items for a round, accept or decline theirs, show them."
         "\n\nExample: backchannel agenda show beijing",
)


def _item_json(item: AgendaItem) -> dict[str, Any]:
    # The same keys as an item of the board's `next_round` (`StatusBoard.to_dict`), so a
    # script reads one shape wherever an agenda appears; a test holds them together.
    return {
        "item_id": item.item_id.hex(),
        "round": item.round,
        "proposed_by": item.proposed_by.value,
        "title": item.title,
        "detail": item.detail,
        "proposed_at_ms": item.proposed_at_ms,
        "sent_at_ms": item.sent_at_ms,
        "status": item.status.value,
        "decided_at_ms": item.decided_at_ms,
        "reason": item.reason,
    }


def agenda_round_json(meeting: AgendaRound) -> dict[str, Any]:
    """One round in the shape of the board's `next_round`."""
    return {
        "round": meeting.round,
        "items": [_item_json(i) for i in meeting.items],
        "agreed": [i.item_id.hex() for i in meeting.agreed],
    }


def propose(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    title: str = typer.Argument(..., help="What is to be discussed (one line)."),
    round_number: int = typer.Option(..., "--round", min=1, help="The meeting round."),
    detail: str = typer.Option("", "--detail", help="Venue, dates or other detail."),
    language: str | None = LANG_OPTION,
    translations: list[str] = TITLED_TRANSLATION_OPTION,
    translated_by: str | None = TRANSLATED_BY_OPTION,
    authoritative: str | None = AUTHORITATIVE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Propose an item for a meeting round; the other side accepts or declines it.

    With `--lang` the item says its language and may carry attributed translations of its
    title and detail (`--translation TAG=TITLE|DETAIL`).

    Example: backchannel agenda propose beijing --round 2 "Export controls" --detail "Vienna"
    """
    import asyncio

    from backchannel.cli.translations import parse_languages_block

    block = parse_languages_block(language, translations, translated_by, authoritative, titled=True)
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the proposal…"):
        result = asyncio.run(strategic.propose_agenda_item(round_number, title, detail, block))
    report_act(state, strategic.name, result, act="agenda_propose",
               headline=f"Proposed item {short_id(result.message_id)} for round "
                        f"{round_number} to '{strategic.name}'",
               extra={"item_id": result.message_id, "round": round_number})


def _decide(state_ctx: typer.Context, channel: str, item: str, *, accept: bool, reason: str,
            as_json: bool) -> None:
    import asyncio

    state = cli_context(state_ctx, as_json)
    with state.channel(channel) as strategic:
        item_id = strategic.resolve(item).hex()
        with state.progress("Sending the decision…"):
            result = asyncio.run(strategic.decide_agenda_item(item_id, accept, reason))
    word = "Accepted" if accept else "Declined"
    report_act(state, strategic.name, result,
               act="agenda_accept" if accept else "agenda_decline",
               headline=f"{word} item {short_id(item_id)} of '{strategic.name}'",
               extra={"item_id": item_id})


def accept(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    item: str = typer.Argument(..., help="Their item's id (or its first characters)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Accept an item they proposed: it joins the agreed agenda of its round.

    Example: backchannel agenda accept beijing 9b0e44d1
    """
    _decide(ctx, channel, item, accept=True, reason="", as_json=as_json)


def decline(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    item: str = typer.Argument(..., help="Their item's id (or its first characters)."),
    reason: str = typer.Option("", "--reason", help="Why, in a sentence."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Decline an item they proposed, optionally saying why.

    Example: backchannel agenda decline beijing 9b0e44d1 --reason "Not at this round."
    """
    _decide(ctx, channel, item, accept=False, reason=reason, as_json=as_json)


def _state(item: AgendaItem) -> str:
    from backchannel.dialogue import AgendaStatus, Side

    if item.status is AgendaStatus.PROPOSED:
        return "awaiting " + ("their decision" if item.proposed_by is Side.OURS
                              else "your decision")
    when = local_time(item.decided_at_ms or 0)
    reason = f": {item.reason}" if item.reason else ""
    return f"{item.status.value} {when}{reason}"


def _round_table(meeting: AgendaRound, peer: str) -> Table:
    from rich.table import Table

    from backchannel.dialogue import Side

    agreed = "\n".join(f"{n}. {i.title}" for n, i in enumerate(meeting.agreed, 1))
    table = Table(title=f"Round {meeting.round}",
                  caption=f"Agreed agenda:\n{agreed}" if agreed else "Nothing agreed yet.")
    for heading in ("Item", "Proposed by", "Title", "Detail", "State"):
        table.add_column(heading)
    for item in meeting.items:
        table.add_row(short_id(item.item_id.hex()),
                      "you" if item.proposed_by is Side.OURS else peer,
                      item.title, item.detail, _state(item))
    return table


def show(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    round_number: int | None = typer.Option(
        None, "--round", min=1, help="Only this round [default: every round]."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the agenda: each item, who proposed it, its state, and the agreed agenda.

    Example: backchannel agenda show beijing --round 2
    """
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        dialogue = strategic.dialogue()
        rounds = ((dialogue.agenda(round_number),) if round_number is not None
                  else dialogue.agenda_rounds())
    rounds = tuple(r for r in rounds if r.items)
    if state.json:
        emit_json({"channel": strategic.name,
                   "rounds": [agenda_round_json(r) for r in rounds]})
        return
    if not rounds:
        state.out.print("No agenda items yet; to propose one, add --round N and its title "
                        "to: " + command_hint(state, "agenda", "propose", strategic.name),
                        soft_wrap=True)
    for meeting in rounds:
        state.out.print(_round_table(meeting, strategic.name))


for _command, _name in ((propose, "propose"), (accept, "accept"), (decline, "decline"),
                        (show, "show")):
    agenda_app.command(_name)(reports_errors(_command))

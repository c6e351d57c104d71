"""`codebook propose|accept|withdraw|list|send`: the channel's shared codebook
(docs/dialogue.md, "Codebook").

One side proposes an entry (a number, a code word, its text in each language, named
parameters); the other accepts it; then either sends it by number with the parameter
values, and each side reads it in its own language from the agreed text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.context import JSON_OPTION, cli_context, reports_errors
from backchannel.cli.dialogue import report_act
from backchannel.cli.output import emit_json

if TYPE_CHECKING:
    # Only for annotations: `codebook --help` loads neither the dialogue package
    # (cryptography under it) nor Rich.
    from backchannel.dialogue import CodeEntryView, CodeText

__all__ = ["codebook_app", "parse_assignments", "parse_code_texts"]

codebook_app = typer.Typer(
    no_args_is_help=True,
    help="The shared codebook: propose numbered entries, accept theirs, send them by number."
    "\n\nExample: backchannel codebook send beijing 7 time=06:00Z place=Plesetsk",
)

_PRECEDENCES = ("routine", "priority", "flash")


def parse_code_texts(langs: list[str]) -> list[CodeText]:
    """The entry's texts from `--lang TAG=TEXT` options.

    Raises:
        typer.BadParameter: none given, or one without `=`.
    """
    from backchannel.dialogue import CodeText

    if not langs:
        raise typer.BadParameter("give the entry's text: --lang en=TEXT (once per language)")
    texts = []
    for item in langs:
        tag, sep, body = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not TAG=TEXT", param_hint="--lang")
        texts.append(CodeText(tag.strip(), body))
    return texts


def parse_assignments(items: list[str]) -> dict[str, str]:
    """`NAME=VALUE` arguments as a dict.

    Raises:
        typer.BadParameter: one without `=`, or a name given twice.
    """
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="VALUES")
        if name in values:
            raise typer.BadParameter(f"{name!r} is given twice", param_hint="VALUES")
        values[name] = value
    return values


def propose(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    number: int = typer.Option(..., "--number", min=1, max=9999, help="The entry's number."),
    word: str = typer.Option(..., "--word", help="The code word the board shows."),
    langs: list[str] = typer.Option(  # noqa: B008 (typer's idiom)
        [], "--lang", help="The text in one language, TAG=TEXT; {name} marks a parameter."
    ),
    params: list[str] = typer.Option(  # noqa: B008 (typer's idiom)
        [], "--param", help="A parameter's name (repeat in the order values are given)."
    ),
    precedence: str | None = typer.Option(
        None, "--precedence", help="Default precedence: routine, priority or flash."
    ),
    ack_within: str | None = typer.Option(
        None, "--ack-within", help="Default acknowledgement deadline, such as 10m."
    ),
    replaces: str | None = typer.Option(
        None, "--replaces", help="Propose a new version of this entry of ours (number or word)."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Propose a codebook entry; it is usable once the other side accepts it.

    Example: backchannel codebook propose beijing --number 7 --word "BLUE HARBOR"
    --param time --param place --lang "en=Test launch at {time} from {place}."
    --lang "zh-Hans={time}从{place}进行试射。" --precedence flash
    """
    import asyncio

    from backchannel.cli.durations import parse_duration
    from backchannel.dialogue import Precedence
    from backchannel.dialogue.kinds import MAX_ACK_WITHIN_MS

    texts = parse_code_texts(langs)
    chosen = None
    if precedence is not None:
        if precedence.lower() not in _PRECEDENCES:
            raise typer.BadParameter("routine, priority or flash", param_hint="--precedence")
        chosen = Precedence[precedence.upper()]
    within = 0
    if ack_within is not None:
        within = parse_duration(ack_within, option="--ack-within", maximum_ms=MAX_ACK_WITHIN_MS)
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the proposal…"):
        result = asyncio.run(
            strategic.propose_code(number, word, texts, tuple(params), chosen, within, replaces)
        )
    report_act(state, strategic.name, result, act="codebook_propose",
               headline=f"Proposed codebook entry {number} to '{strategic.name}'",
               extra={"number": number})  # fmt: skip


def accept(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    entry: str = typer.Argument(..., help="Their entry: its number, code word or id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Accept the latest version of an entry they proposed.

    Example: backchannel codebook accept beijing 7
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the acceptance…"):
        result = asyncio.run(strategic.accept_code(entry))
    report_act(state, strategic.name, result, act="codebook_accept",
               headline=f"Accepted codebook entry {entry} of '{strategic.name}'")  # fmt: skip


def withdraw(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    entry: str = typer.Argument(..., help="The entry: its number, code word or id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Withdraw an entry (either side may): neither side sends it any more.

    Example: backchannel codebook withdraw beijing 7
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the withdrawal…"):
        result = asyncio.run(strategic.withdraw_code(entry))
    report_act(state, strategic.name, result, act="codebook_withdraw",
               headline=f"Withdrew codebook entry {entry} of '{strategic.name}'")  # fmt: skip


def send(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    entry: str = typer.Argument(..., help="The entry: its number or code word."),
    values: list[str] = typer.Argument(None, help="Each parameter as NAME=VALUE."),  # noqa: B008
    as_json: bool = JSON_OPTION,
) -> None:
    """Send an agreed entry by number: only its number, version and values travel.

    Example: backchannel codebook send beijing 7 time=06:00Z place=Plesetsk
    """
    import asyncio

    assigned = parse_assignments(values or [])
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending…"):
        result = asyncio.run(strategic.send_code(entry, assigned))
    report_act(state, strategic.name, result, act="codebook_send",
               headline=f"Sent codebook entry {entry} to '{strategic.name}'")  # fmt: skip


def entry_json(entry: CodeEntryView) -> dict[str, Any]:
    """One entry in the shape of the board's `codebook` list."""
    from backchannel.dialogue.board import code_entry_json

    return code_entry_json(entry)


def show(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    language: str | None = typer.Option(
        None, "--lang",
        help="Show the text in this language [default: yours (translate language), else "
             "each entry's first].",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the codebook: number, code word, state, and the text in a language.

    Example: backchannel codebook list beijing --lang ru
    """
    from rich.table import Table

    from backchannel.cli.output import shown
    from backchannel.dialogue import Side

    state = cli_context(ctx, as_json)
    from backchannel.cli.translations import principal_language

    with state.channel(channel) as strategic:
        entries = strategic.dialogue().codebook()
        language = language or principal_language(strategic.principal) or None
    if state.json:
        emit_json({"channel": strategic.name, "codebook": [entry_json(e) for e in entries]})
        return
    if not entries:
        state.out.print("The codebook is empty.")
        return
    table = Table(title=f"Codebook of '{strategic.name}'")
    for heading in ("No.", "Code word", "Owner", "Version", "State", "Text"):
        table.add_column(heading)
    for e in entries:
        proposal = (e.current or e.latest).proposal
        text = (proposal.text_in(language) if language else None) or proposal.texts[0]
        waiting = e.awaiting_acceptance
        status = e.status.value + (f" (v{waiting.version} awaits acceptance)" if waiting else "")
        table.add_row(
            str(proposal.number), shown(proposal.code_word),
            "you" if e.owner is Side.OURS else strategic.name, str(proposal.version),
            status, f"{text.language}: " + shown(text.text, multiline=True),
        )  # fmt: skip
    state.out.print(table)


for _command, _name in (
    (propose, "propose"), (accept, "accept"), (withdraw, "withdraw"), (show, "list"),
    (send, "send"),
):  # fmt: skip
    codebook_app.command(_name)(reports_errors(_command))

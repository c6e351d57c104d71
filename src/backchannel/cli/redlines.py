"""`redline add|list|ack`: positions stated so that they cannot be misread (docs/dialogue.md
§4.3).

The other side acknowledges that it *understands* a red line, not that it agrees. Red
lines are versioned; each version needs its own acknowledgement, and only the latest can
be acknowledged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

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
from backchannel.client.errors import ClientError, UnknownReference

if TYPE_CHECKING:
    # Only for annotations: `redline --help` builds the group without Rich, the engine or
    # the dialogue package (cryptography under both); the functions that use them at run
    # time import them there, asyncio too.
    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue import RedLineView

__all__ = ["redline_app"]

redline_app = typer.Typer(
    no_args_is_help=True,
    help="Red lines: declare them, list both sides' and their state, acknowledge theirs.\n\n"
         "Example: backchannel redline list",
)


def _declared(strategic: StrategicChannel, message_id: str) -> RedLineView:
    """The red line a REDLINE message of ours created or updated."""
    from backchannel.dialogue import Side

    wanted = bytes.fromhex(message_id)
    return next(r for r in strategic.dialogue().red_lines(Side.OURS)
                if any(v.message_id == wanted for v in r.versions))


def add(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    title: str = typer.Argument(..., help="A one-line title."),
    text: str = typer.Argument(..., help="The red line, stated plainly."),
    update: str | None = typer.Option(
        None, "--update", metavar="REDLINE",
        help="Declare a new version of this red line of yours (its id).",
    ),
    language: str | None = LANG_OPTION,
    translations: list[str] = TITLED_TRANSLATION_OPTION,
    translated_by: str | None = TRANSLATED_BY_OPTION,
    authoritative: str | None = AUTHORITATIVE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Declare a red line, or a new version of one of yours (which needs a new
    acknowledgement).

    Example: backchannel redline add washington Taiwan "Taiwan is the first red line that must not be crossed."
    With `--lang` it says its language and may carry attributed translations of its title
    and text (`--translation TAG=TITLE|TEXT`).
    """  # noqa: E501 - an example is one command line
    import asyncio

    from backchannel.cli.translations import parse_languages_block

    block = parse_languages_block(language, translations, translated_by, authoritative, titled=True)
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        with state.progress("Sending the red line…"):
            result = asyncio.run(strategic.declare_red_line(title, text, update, block))
        view = _declared(strategic, result.message_id)
    report_act(state, strategic.name, result, act="redline",
               headline=f"Red line {short_id(view.redline_id.hex())} version "
                        f"{view.latest.version} declared to '{strategic.name}'; it awaits "
                        "their acknowledgement",
               extra={"redline_id": view.redline_id.hex(), "version": view.latest.version})


def _state(view: RedLineView, peer: str) -> str:
    from backchannel.dialogue import Side

    lines = []
    for v in reversed(view.versions):
        if v.acknowledged_at_ms is not None:
            lines.append(f"v{v.version} understood {local_time(v.acknowledged_at_ms)}")
        elif v is view.latest:
            lines.append(f"v{v.version} awaiting "
                         + (f"{peer}'s acknowledgement" if view.owner is Side.OURS
                            else "your acknowledgement"))
        else:
            lines.append(f"v{v.version} never acknowledged")
    return "\n".join(lines)


def list_(
    ctx: typer.Context,
    channel: str | None = typer.Argument(None, help="Only this channel [default: all]."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List both sides' red lines: latest version, text, and what was acknowledged.

    Example: backchannel redline list beijing
    """
    from rich.table import Table

    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue import Side

    state = cli_context(ctx, as_json)
    found: list[tuple[str, RedLineView, dict[str, Any]]] = []
    with state.principal() as principal:
        names = [principal.channel(channel).name] if channel else [
            c.name for c in principal.channels()]
        for name in names:
            board = StrategicChannel(principal, name).board()
            shapes = cast(list[dict[str, Any]], board.to_dict()["red_lines"])
            found.extend((name, view, shape)
                         for view, shape in zip(board.red_lines, shapes, strict=True))
    if state.json:
        emit_json({"red_lines": [{"channel": name, **shape} for name, _, shape in found]})
        return
    if not found:
        state.out.print("No red lines declared yet.")
        return
    table = Table(title="Red lines (acknowledged means understood, not agreed)")
    for heading in ("Channel", "Red line", "Declared by", "Title", "Text (latest)", "State"):
        table.add_column(heading)
    for name, view, _ in found:
        table.add_row(name, short_id(view.redline_id.hex()),
                      "you" if view.owner is Side.OURS else name, view.latest.title,
                      view.latest.text, _state(view, name))
    state.out.print(table)


def ack(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    redline: str = typer.Argument(..., help="Their red line's id (or its first characters)."),
    version: int | None = typer.Option(
        None, "--version", min=1,
        help="The version you read; refused if a newer one has arrived since.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Acknowledge that you understand the latest version of their red line (not that you
    agree with it).

    Only the latest version can be acknowledged; `--version` makes sure it is the one you
    read (`redline list` shows it).

    Example: backchannel redline ack beijing 5e21a9c0 --version 1
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        redline_id = strategic.resolve(redline)
        view = strategic.dialogue().red_line(redline_id)
        if view is None:
            raise UnknownReference(f"'{redline}' is not a red line of '{strategic.name}'")
        if version is not None and version > view.latest.version:
            raise ClientError(
                f"red line {short_id(redline_id.hex())} has no version {version} yet: the "
                f"latest is version {view.latest.version} (backchannel redline list "
                f"{strategic.name})"
            )
        if version is not None and version != view.latest.version:
            raise ClientError(
                f"red line {short_id(redline_id.hex())} is at version {view.latest.version}; "
                f"version {version} can no longer be acknowledged: read the latest "
                f"({command_hint(state, 'redline', 'list', strategic.name)}) and "
                "acknowledge that"
            )
        with state.progress("Sending the acknowledgement…"):
            result = asyncio.run(strategic.acknowledge_red_line(redline_id.hex()))
    version = view.latest.version
    report_act(state, strategic.name, result, act="redline_ack",
               headline=f"Acknowledged as understood: red line "
                        f"{short_id(redline_id.hex())} version {version} of "
                        f"'{strategic.name}'",
               extra={"redline_id": redline_id.hex(), "version": version})


for _command, _name in ((add, "add"), (list_, "list"), (ack, "ack")):
    redline_app.command(_name)(reports_errors(_command))

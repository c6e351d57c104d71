"""`translate add|suggest|draft|show|command|language`: texts across languages
(docs/dialogue.md, "Translations").

A note (and a question, an answer, a red line, an agenda item) may carry translations,
each attributed, with the text that prevails (`send --lang en --translation zh-Hans=...`).
The receiver reads the texts side by side, and may share its own translation of a message
it received (`translate add`), attributed to its side. A translation command the principal
configures (`translate command set`) proposes translations; nothing else does, and the
project neither ships nor downloads a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors

if TYPE_CHECKING:
    # Only for annotations: `translate --help` loads neither the dialogue package
    # (cryptography under it) nor Rich.
    from backchannel.client.engine import Principal
    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue import Attribution, Languages, TextVersion, Translation

__all__ = [
    "BY_HELP",
    "parse_attribution",
    "parse_languages_block",
    "print_versions",
    "translate_app",
    "versions_json",
]

translate_app = typer.Typer(
    no_args_is_help=True,
    help="Translations: share yours of their message, propose one with your translation "
    "command, show texts side by side.\n\nExample: backchannel translate add beijing 3f9a "
    '--lang ru "Прошу подтвердить." --by "translator:A. Petrova"',
)
command_app = typer.Typer(
    no_args_is_help=True, help="The command that proposes translations (run only when asked)."
)
translate_app.add_typer(command_app, name="command")

BY_HELP = ("Who translated: staff, staff:NAME, translator:NAME, or machine:TOOL "
           "[default: staff].")  # fmt: skip


def parse_attribution(value: str | None, option: str = "--by") -> Attribution:
    """`staff`, `staff:NAME`, `translator:NAME` or `machine:TOOL` as an `Attribution`.

    Raises:
        typer.BadParameter: another word, or a name the text policy refuses.
    """
    from backchannel.dialogue import Attribution, AttributionKind
    from backchannel.protocol.errors import LocalProtocolError

    word, _, name = (value or "staff").partition(":")
    kinds = {"staff": AttributionKind.STAFF, "translator": AttributionKind.TRANSLATOR,
             "machine": AttributionKind.MACHINE}  # fmt: skip
    kind = kinds.get(word.strip().lower())
    if kind is None:
        raise typer.BadParameter("staff, staff:NAME, translator:NAME or machine:TOOL",
                                 param_hint=option)  # fmt: skip
    try:
        return Attribution(kind, name.strip())
    except LocalProtocolError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None


def parse_languages_block(
    language: str | None,
    translations: list[str],
    by: str | None,
    authoritative: str | None,
    *,
    titled: bool = False,
) -> Languages | None:
    """The language block of a body from `--lang`, `--translation TAG=TEXT` (with a
    title: `TAG=TITLE|TEXT`), `--translated-by` and `--authoritative`.

    Returns:
        None when no option was given (the body of before).

    Raises:
        typer.BadParameter: a translation without `=` (or, titled, without `|`), a
            translation without `--lang`, an `--authoritative` that is no given language,
            or a tag or text the rules refuse.
    """
    from backchannel.dialogue import Languages, Translation
    from backchannel.protocol.errors import LocalProtocolError

    if language is None:
        if translations or authoritative:
            raise typer.BadParameter("say the text's own language with --lang TAG",
                                     param_hint="--lang")  # fmt: skip
        return None
    attribution = parse_attribution(by, "--translated-by")
    made: list[Translation] = []
    try:
        for item in translations:
            tag, sep, text = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"{item!r} is not TAG=TEXT", param_hint="--translation")
            title = ""
            if titled:
                title, bar, text = text.partition("|")
                if not bar:
                    raise typer.BadParameter(f"{item!r} is not TAG=TITLE|TEXT",
                                             param_hint="--translation")  # fmt: skip
            made.append(Translation(tag, attribution, text, title))
        tags = [language.lower(), *(t.language.lower() for t in made)]
        chosen = 0
        if authoritative is not None:
            if authoritative.lower() not in tags:
                raise typer.BadParameter(f"{authoritative!r} is not one of the languages given",
                                         param_hint="--authoritative")  # fmt: skip
            chosen = tags.index(authoritative.lower())
        return Languages(language, tuple(made), chosen)
    except LocalProtocolError as error:
        raise typer.BadParameter(str(error), param_hint="--translation") from None


def principal_language(principal: Principal) -> str:
    """This principal's language: `translate language`, else the configuration file's
    `language`, else "" (none)."""
    from backchannel.cli.config import load_config
    from backchannel.client.duties import LANGUAGE_SETTING

    return principal.setting(LANGUAGE_SETTING) or load_config().language or ""


def _label(v: TextVersion, peer: str) -> str:
    from backchannel.cli.output import shown

    parts = [v.language or "language not given"]
    if v.role == "original":
        parts.append("original")
    elif v.role == "translation":
        parts.append(f"translation by {shown(v.by)}")
    else:
        who = "you" if v.shared_by is not None and v.shared_by.value == "ours" else shown(peer)
        parts.append(f"translation shared by {who} ({shown(v.by)})")
    if v.authoritative:
        parts.append("AUTHORITATIVE")
    return " · ".join(parts)


def print_versions(
    state: CliContext, versions: tuple[TextVersion, ...], peer: str, *, indent: str = ""
) -> None:
    """A message's texts side by side: one column per version (the authoritative first)
    on a wide terminal, one after the other on a narrow one. Every text is the
    counterpart's (or attributed to a translator) and is shown escaped."""
    from rich.table import Table

    from backchannel.cli.output import shown

    if not versions:
        return
    columns = len(versions)
    width = state.out.width or 80
    if width >= 40 * columns:
        table = Table(show_lines=False, box=None, padding=(0, 2, 0, len(indent)))
        for v in versions:
            table.add_column(_label(v, peer), overflow="fold", ratio=1)
        table.add_row(*(shown(f"{v.title}\n{v.text}" if v.title else v.text, multiline=True)
                        for v in versions))  # fmt: skip
        state.out.print(table)
        return
    for v in versions:
        state.out.print(f"{indent}[{_label(v, peer)}]", style="bold", markup=False)
        if v.title:
            state.out.print(indent + shown(v.title))
        state.out.print(indent + shown(v.text, multiline=True))


def versions_json(versions: tuple[TextVersion, ...]) -> list[dict[str, Any]]:
    return [v.to_dict() for v in versions]


def add(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str = typer.Argument(..., help="Their message: its id (or first characters)."),
    text: str = typer.Argument(..., help="Your translation; `-` reads it from stdin."),
    language: str = typer.Option(..., "--lang", metavar="TAG", help="Its language (BCP 47)."),
    title: str = typer.Option("", "--title", help="The translated title (red lines, agenda)."),
    by: str | None = typer.Option(None, "--by", help=BY_HELP),
    as_json: bool = JSON_OPTION,
) -> None:
    """Share your translation of their message: attributed to your side, bound to it.

    Both sides then read it beside the original; it never prevails over the text its
    author marked as authoritative.

    Example: backchannel translate add beijing 3f9a --lang ru "Прошу подтвердить." --by
    "translator:A. Petrova"
    """
    import asyncio

    from backchannel.cli.context import read_stdin_text
    from backchannel.cli.dialogue import report_act

    attribution = parse_attribution(by)
    if text == "-":
        text = read_stdin_text()
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the translation…"):
        result = asyncio.run(
            strategic.share_translation(message, language, text, attribution, title)
        )
    report_act(state, strategic.name, result, act="translation",
               headline=f"Shared a {language} translation of {message} with '{strategic.name}'",
               extra={"language": language, "by": attribution.to_dict()})  # fmt: skip


def _tool_name(command: str) -> str:
    import shlex
    from pathlib import Path

    try:
        argv = shlex.split(command)
    except ValueError:
        return "translation command"
    return Path(argv[0]).name[:60] if argv else "translation command"


def suggest(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str = typer.Argument(..., help="A message of theirs: its id (or first characters)."),
    language: str | None = typer.Option(
        None, "--lang", metavar="TAG", help="Translate into this language [default: yours]."
    ),
    share: bool = typer.Option(False, "--share", help="Send the proposal as your translation."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask your translation command for a translation of a message (nothing is sent
    unless --share).

    The command gets the authoritative text on stdin; whatever it does with it is its own
    business, so configure one that runs on this machine if nothing may leave it.

    Example: backchannel translate suggest beijing 3f9a --lang en
    """
    import asyncio

    from backchannel.cli.dialogue import report_act
    from backchannel.cli.output import emit_json, shown
    from backchannel.client.duties import TRANSLATION_COMMAND_SETTING
    from backchannel.client.errors import ClientError
    from backchannel.dialogue import Attribution, AttributionKind

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        target = language or principal_language(strategic.principal)
        if not target:
            raise ClientError("say the language: --lang TAG, or set yours: "
                              "backchannel translate language TAG")  # fmt: skip
        source_version = texts_of(strategic, message)[0]
        text = source_version.text
        title = source_version.title
        with state.progress("Running the translation command…"):
            proposal = strategic.propose_translation(text, source_version.language, target)
            proposed_title = (strategic.propose_translation(title, source_version.language,
                                                            target) if title else "")  # fmt: skip
        tool = _tool_name(strategic.principal.setting(TRANSLATION_COMMAND_SETTING) or "")
        if share:
            by = Attribution(AttributionKind.MACHINE, tool)
            with state.progress("Sending the translation…"):
                result = asyncio.run(
                    strategic.share_translation(message, target, proposal, by, proposed_title)
                )
            report_act(state, strategic.name, result, act="translation",
                       headline=f"Shared the {target} translation of {message} ({tool})",
                       extra={"language": target, "by": by.to_dict(),
                              "text": proposal})  # fmt: skip
            return
    if state.json:
        emit_json({"channel": strategic.name, "message": message, "language": target,
                   "tool": tool, "title": proposed_title, "text": proposal,
                   "sent": False})  # fmt: skip
        return
    state.out.print(f"Proposed {target} translation ({shown(tool)}; not sent):", style="bold")
    if proposed_title:
        state.out.print(shown(proposed_title))
    state.out.print(shown(proposal, multiline=True))


def texts_of(strategic: StrategicChannel, message: str) -> tuple[TextVersion, ...]:
    """A message's texts side by side; a message with one text gives that one."""
    from backchannel.dialogue import Languages, TextVersion
    from backchannel.dialogue.bodies import versions_of

    found = strategic.versions(message)
    if found:
        return found
    _, _, body = strategic.translatable(message)
    # A body without a block, nothing shared: its one text, as if it had an empty block.
    with_block = versions_of(_with_block(body, Languages("und")))
    only = with_block[0]
    return (TextVersion("", only.text, only.title, "original", authoritative=True),)


def _with_block(body: Any, block: Languages) -> Any:
    import dataclasses

    return dataclasses.replace(body, languages=block)


def draft(
    ctx: typer.Context,
    text: str = typer.Argument(..., help="Your draft; `-` reads it from stdin."),
    to: str = typer.Option(..., "--to", metavar="TAG", help="Translate into this language."),
    source: str | None = typer.Option(
        None, "--from", metavar="TAG", help="The draft's language [default: yours]."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask your translation command to translate a draft before you send it.

    Review the proposal, then send both: backchannel send CHANNEL TEXT --lang en
    --translation "ru=..." --translated-by "machine:TOOL".

    Example: backchannel translate draft "Please confirm receipt." --from en --to ru
    """
    from backchannel.cli.context import read_stdin_text
    from backchannel.cli.output import emit_json, shown
    from backchannel.client.duties import (
        TRANSLATION_COMMAND_SETTING,
        run_translation_command,
    )
    from backchannel.dialogue import check_bcp47

    if text == "-":
        text = read_stdin_text()
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        command = principal.setting(TRANSLATION_COMMAND_SETTING) or ""
        origin = source or principal_language(principal)
    check_bcp47(to, "target language")
    if origin:
        check_bcp47(origin, "source language")
    with state.progress("Running the translation command…"):
        proposal = run_translation_command(command, text, origin, to)
    tool = _tool_name(command)
    if state.json:
        emit_json({"from": origin or None, "to": to, "tool": tool, "text": proposal})
        return
    state.out.print(f"Proposed {to} translation ({shown(tool)}):", style="bold")
    state.out.print(shown(proposal, multiline=True))


def show(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str = typer.Argument(..., help="A message: its id (or first characters)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a message's texts side by side: the authoritative one first, then the
    author's translations, then those shared after it.

    Example: backchannel translate show beijing 3f9a
    """
    from backchannel.cli.output import emit_json

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        target, _, _ = strategic.translatable(message)
        versions = texts_of(strategic, message)
    if state.json:
        emit_json({"channel": strategic.name, "message_id": target.hex(),
                   "texts": versions_json(versions)})  # fmt: skip
        return
    print_versions(state, versions, strategic.name)


def command_set(
    ctx: typer.Context,
    command: str = typer.Argument(..., help="The command line; \"\" removes it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set the command that proposes translations: it reads the text on stdin, prints
    the translation, and gets BACKCHANNEL_SOURCE_LANGUAGE and BACKCHANNEL_TARGET_LANGUAGE.

    It runs only when you ask (`translate suggest`, `translate draft`). Nothing leaves
    this machine unless the command you configure sends it.

    Example: backchannel translate command set "argos-translate --from-lang en --to-lang ru"
    """
    import shlex

    from backchannel.cli.output import emit_json
    from backchannel.client.duties import TRANSLATION_COMMAND_SETTING
    from backchannel.client.errors import ClientError

    try:
        shlex.split(command)
    except ValueError as error:
        raise ClientError(f"cannot read the command line: {error}") from None
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        principal.set_setting(TRANSLATION_COMMAND_SETTING, command.strip())
    if state.json:
        emit_json({"command": command.strip() or None})
    elif command.strip():
        state.out.print("Translation command set; it runs only when you ask for a proposal.")
    else:
        state.out.print("No translation command: translations are yours or your staff's.")


def command_show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show the translation command.

    Example: backchannel translate command show
    """
    from backchannel.cli.output import emit_json
    from backchannel.client.duties import TRANSLATION_COMMAND_SETTING

    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        command = principal.setting(TRANSLATION_COMMAND_SETTING)
    if state.json:
        emit_json({"command": command or None})
    else:
        state.out.print(command or "No translation command set: backchannel translate "
                                   "command set COMMAND")  # fmt: skip


def language(
    ctx: typer.Context,
    tag: str | None = typer.Argument(None, help="Your language (BCP 47); omit to show it."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Set or show your language: codebook messages and texts in several languages are
    shown in it first.

    Example: backchannel translate language zh-Hans
    """
    from backchannel.cli.output import emit_json
    from backchannel.client.duties import LANGUAGE_SETTING
    from backchannel.dialogue import check_bcp47

    if tag is not None:
        check_bcp47(tag)
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        if tag is not None:
            principal.set_setting(LANGUAGE_SETTING, tag)
        current = principal_language(principal)
    if state.json:
        emit_json({"language": current or None})
    else:
        state.out.print(f"Your language: {current}" if current
                        else "No language set: backchannel translate language TAG")  # fmt: skip


for _command, _name in (
    (add, "add"), (suggest, "suggest"), (draft, "draft"), (show, "show"),
    (language, "language"),
):  # fmt: skip
    translate_app.command(_name)(reports_errors(_command))
command_app.command("set")(reports_errors(command_set))
command_app.command("show")(reports_errors(command_show))

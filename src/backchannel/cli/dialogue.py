"""`ack`, `hold`, `clarify` and `answer`: the acts that keep silence from being the only
answer (docs/dialogue.md §4.1, §4.2).

Every act is checked against the channel's dialogue state before anything is sent, so an
illegal one (acknowledging twice, answering a closed request) is one `error:` line and
sends nothing. Messages, requests and items are named by the first characters of their id,
as `inbox`, `status` and the other listings show them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors
from backchannel.cli.durations import parse_when
from backchannel.cli.hints import command_hint
from backchannel.cli.languageoptions import (
    AUTHORITATIVE_OPTION,
    LANG_OPTION,
    TRANSLATED_BY_OPTION,
    TRANSLATION_OPTION,
)
from backchannel.cli.output import emit_json, local_time, send_json, short_id

if TYPE_CHECKING:
    # Only for annotations: `report_act` is imported by `record`, `agenda`, `redline` and
    # `meet`, whose `--help` has no use for the engine (and cryptography under it). The
    # commands import asyncio themselves, for the same reason.
    from backchannel.client.engine import SendResult

__all__ = ["register", "report_act"]


def report_act(
    state: CliContext,
    channel: str,
    result: SendResult,
    *,
    act: str,
    headline: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Say what was sent and where it went; with `--json`, the `send` shape plus `act`.

    Args:
        act: the act's name in JSON (``"ack"``, ``"hold"``, ...).
        headline: the sentence for people, without where it was stored.
        extra: further JSON keys (the full ids the act refers to).
    """
    if state.json:
        emit_json({**send_json(channel, result), "act": act, **(extra or {})})
        return
    if result.stored_on:
        where = f"stored on {', '.join(result.stored_on)}"
    elif result.next_slot_s is not None:
        where = f"queued: the agent sends it in the channel's next slot, within " \
                f"{result.next_slot_s:g} s"
    else:
        where = "queued: no relay answered; this sends it: " + command_hint(state, "sync")
    # No full stop after a hint: it would be pasted with the command.
    end = "." if result.stored_on or result.next_slot_s is not None else ""
    state.out.print(f"{headline} (id {short_id(result.message_id)}); {where}{end}",
                    soft_wrap=True)
    if result.stored_on and result.queued_for:
        state.out.print(f"Still queued for {', '.join(result.queued_for)}.")


def ack(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str = typer.Argument(..., help="Their note's id (or its first characters)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Acknowledge a note: your explicit act, distinct from the automatic receipts.

    A note sent with a deadline (`send --ack-within`) is escalated on the sender's side
    when this does not arrive in time. A note is acknowledged once.

    Example: backchannel ack washington 3f9a2c1e
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        target = strategic.resolve(message).hex()
        with state.progress("Sending the acknowledgement…"):
            result = asyncio.run(strategic.ack(target))
    report_act(state, strategic.name, result, act="ack",
               headline=f"Acknowledged {short_id(target)} in '{strategic.name}'",
               extra={"target": target})


def hold(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str = typer.Argument(
        ..., help="Their note, or their clarification request, by id (first characters)."
    ),
    text: str = typer.Argument("", help="A word on why, or what you are waiting for."),
    until: str = typer.Option(
        ..., "--until", metavar="WHEN",
        help="When to expect the answer: a duration (2h) or a local time (14:00, "
             "2025-05-12T14:00).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Send a holding reply: "received, cannot answer yet; expect an answer by WHEN".

    It commits to nothing of substance, but it tells the sender that the message is in
    hand, and moves its deadline to WHEN.

    Example: backchannel hold washington 3f9a2c1e --until 2h "Consulting the capital."
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        expected_by = parse_when(until, now_ms=strategic.principal.now_ms(), option="--until")
        target = strategic.resolve(message).hex()
        with state.progress("Sending the holding reply…"):
            result = asyncio.run(strategic.hold(target, expected_by, text))
    report_act(state, strategic.name, result, act="hold",
               headline=f"Holding reply to {short_id(target)} sent to '{strategic.name}': "
                        f"answer expected by {local_time(expected_by)}",
               extra={"target": target, "expected_by_ms": expected_by})


def clarify(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    message: str = typer.Argument(..., help="Their message you ask about, by id."),
    question: str = typer.Argument(..., help="The question."),
    language: str | None = LANG_OPTION,
    translations: list[str] = TRANSLATION_OPTION,
    translated_by: str | None = TRANSLATED_BY_OPTION,
    authoritative: str | None = AUTHORITATIVE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Ask what exactly one of their messages means.

    The request is bound to that message (its id and its hash), so the answer cannot be
    taken to be about anything else. It stays open on both boards until answered.

    With `--lang` the question says its language and may carry attributed translations.

    Example: backchannel clarify beijing 3f9a2c1e "Does this include the 2024 sales?"
    """
    import asyncio

    from backchannel.cli.translations import parse_languages_block

    block = parse_languages_block(language, translations, translated_by, authoritative)
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        target = strategic.resolve(message).hex()
        with state.progress("Sending the request…"):
            result = asyncio.run(strategic.clarify(target, question, block))
    report_act(state, strategic.name, result, act="clarify",
               headline=f"Asked '{strategic.name}' about {short_id(target)}; they answer "
                        f"request {short_id(result.message_id)}",
               extra={"target": target})


def answer(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    request: str = typer.Argument(..., help="Their clarification request, by id."),
    text: str = typer.Argument(..., help="The answer."),
    language: str | None = LANG_OPTION,
    translations: list[str] = TRANSLATION_OPTION,
    translated_by: str | None = TRANSLATED_BY_OPTION,
    authoritative: str | None = AUTHORITATIVE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Answer a clarification request; the answer closes it.

    With `--lang` the answer says its language and may carry attributed translations.

    Example: backchannel answer washington 77c0d2aa "Yes: every sale since January."
    """
    import asyncio

    from backchannel.cli.translations import parse_languages_block

    block = parse_languages_block(language, translations, translated_by, authoritative)
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        target = strategic.resolve(request).hex()
        with state.progress("Sending the answer…"):
            result = asyncio.run(strategic.answer(target, text, block))
    report_act(state, strategic.name, result, act="answer",
               headline=f"Answered request {short_id(target)} in '{strategic.name}'",
               extra={"target": target})


def register(app: typer.Typer) -> None:
    """Add the acknowledgement and clarification commands to the root app."""
    for command in (ack, hold, clarify, answer):
        app.command()(reports_errors(command))

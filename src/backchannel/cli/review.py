"""`review`: a periodic channel review, for each side's own readout or a joint one."""

from __future__ import annotations

from pathlib import Path

import typer

from backchannel.cli.context import JSON_OPTION, cli_context, reports_errors

__all__ = ["register"]

_FORMATS = ("md", "json")


def review(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    since: str = typer.Option(
        "-365d", "--since", metavar="WHEN", help="The period's start: -30d, an ISO date, now."
    ),
    until: str = typer.Option("now", "--until", metavar="WHEN", help="The period's end."),
    out: Path | None = typer.Option(  # noqa: B008 (typer's idiom)
        None, "--out", "-o", metavar="FILE", help="Write the review to FILE (.md or .json)."
    ),
    file_format: str | None = typer.Option(
        None, "--format", metavar="FORMAT", help="md or json [default: from FILE's suffix, md]."
    ),
    propose: bool = typer.Option(
        False, "--propose-record", help="Also propose the review as an agreed record."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Review a period of the channel: what was sent, acknowledged, late, clarified and
    agreed, and how notification duties were kept.

    Messages count by their sending time, so both sides' readouts of one period count
    the same messages. With --propose-record the Markdown readout is proposed (and
    signed) as a record for the other side to co-sign.

    Example: backchannel review beijing --since 2026-01-01 --until 2027-01-01 --out review.md
    """
    import asyncio
    import json

    from backchannel.cli.dialogue import report_act
    from backchannel.cli.notifications import parse_event_time
    from backchannel.cli.output import emit_json, shown
    from backchannel.dialogue import LanguageVersion
    from backchannel.dialogue.review import review_channel

    chosen = file_format or (out.suffix.lstrip(".").lower() if out is not None else "md")
    if chosen not in _FORMATS:
        raise typer.BadParameter("md or json", param_hint="--format")
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        now = strategic.principal.now_ms()
        start = parse_event_time(since, now_ms=now, option="--since")
        end = parse_event_time(until, now_ms=now, option="--until")
        if end == now:
            end += 1  # "until now" includes what was sent this millisecond
        summary = review_channel(strategic.dialogue(), start, end, now)
        markdown = summary.to_markdown("you", strategic.name)
        sent = None
        if propose:
            title = f"Channel review {summary.to_dict()['since']} to {summary.to_dict()['until']}"
            with state.progress("Signing and sending the review…"):
                # A joint readout names the sides by their roles in the record.
                joint = summary.to_markdown("proposer", "co-signer")
                versions = [LanguageVersion("en", joint, authoritative=True)]
                sent = asyncio.run(strategic.propose_record(title[:200], versions))
    if out is not None:
        content = (json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n"
                   if chosen == "json" else markdown)  # fmt: skip
        out.write_text(content, encoding="utf-8")
    if sent is not None:
        report_act(state, strategic.name, sent, act="record_propose",
                   headline=f"Proposed the review to '{strategic.name}' as a record")  # fmt: skip
        return
    if state.json:
        emit_json({"channel": strategic.name, "review": summary.to_dict(),
                   "out": None if out is None else str(out)})  # fmt: skip
        return
    if out is not None:
        state.out.print(f"Wrote the review to {out}.")
    else:
        state.out.print(shown(markdown, multiline=True))


def register(app: typer.Typer) -> None:
    app.command()(reports_errors(review))

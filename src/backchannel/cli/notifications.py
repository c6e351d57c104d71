"""`duty propose|accept|list|notify|request`: notification duties (docs/dialogue.md §4.9).

One side proposes a category with its time rule ("missile test: notify at least 24 h
before", "incident at sea: notify within 1 h"); the other accepts it; then either side
notifies events under it, or asks the other for the notification it owes. The board
tracks each one: due, notified in time, late, missed (escalated like an overdue note).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import typer

from backchannel.cli.context import JSON_OPTION, cli_context, reports_errors

if TYPE_CHECKING:
    # Only for annotations: `duty --help` loads neither the dialogue package nor Rich.
    from backchannel.dialogue import DutyView, Notification

__all__ = ["duty_app", "parse_event_time"]

duty_app = typer.Typer(
    no_args_is_help=True,
    help="Notification duties: agreed categories with a time rule, notifications, and "
    "whether each came in time.\n\nExample: backchannel duty propose beijing \"Missile "
    "test\" --before 24h",
)

_RELATIVE = re.compile(r"([+-])(.+)")


def parse_event_time(text: str, *, now_ms: int, option: str = "--event-at") -> int:
    """An event's time: `now`, `+2d` or `-30m` from now, or an ISO date and time (local
    time unless it names a zone).

    Raises:
        typer.BadParameter: none of these.
    """
    import datetime as dt

    from backchannel.cli.durations import parse_duration

    if text.strip().lower() == "now":
        return now_ms
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        offset = parse_duration(match.group(2), option=option)
        return now_ms + offset if match.group(1) == "+" else max(now_ms - offset, 0)
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter("now, +DURATION, -DURATION or an ISO date and time such as "
                                 "2026-12-03T06:00Z", param_hint=option) from None  # fmt: skip
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1000)


def propose(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    title: str = typer.Argument(..., help="The category, one line (\"Missile test\")."),
    before: str | None = typer.Option(
        None, "--before", metavar="DURATION", help="Notify at least this long before the event."
    ),
    within: str | None = typer.Option(
        None, "--within", metavar="DURATION", help="Notify within this long after the event."
    ),
    detail: str = typer.Option("", "--detail", help="What counts as an event (one paragraph)."),
    replaces: str | None = typer.Option(
        None, "--replaces", metavar="DUTY", help="Propose a new version of this duty of yours."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Propose a notification duty; it binds both sides once the other side accepts it.

    Example: backchannel duty propose beijing "Incident at sea" --within 1h
    """
    import asyncio

    from backchannel.cli.dialogue import report_act
    from backchannel.cli.durations import parse_duration
    from backchannel.dialogue import DutyRule
    from backchannel.dialogue.kinds import MAX_ACK_WITHIN_MS

    if (before is None) == (within is None):
        raise typer.BadParameter("give one of --before DURATION and --within DURATION")
    rule = DutyRule.BEFORE if before is not None else DutyRule.WITHIN
    window = parse_duration(before or within or "", option="--before" if before else "--within",
                            maximum_ms=MAX_ACK_WITHIN_MS)  # fmt: skip
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the proposal…"):
        result = asyncio.run(strategic.propose_duty(title, rule, window, detail, replaces))
    report_act(state, strategic.name, result, act="duty_propose",
               headline=f"Proposed the notification duty '{title}' to '{strategic.name}'",
               extra={"rule": rule.name.lower(), "window_ms": window})  # fmt: skip


def accept(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    duty: str = typer.Argument(..., help="Their duty: its title or id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Accept their notification duty (its latest version).

    Example: backchannel duty accept beijing "Missile test"
    """
    import asyncio

    from backchannel.cli.dialogue import report_act

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Sending the acceptance…"):
        result = asyncio.run(strategic.accept_duty(duty))
    report_act(state, strategic.name, result, act="duty_accept",
               headline=f"Accepted the duty '{duty}' of '{strategic.name}'")  # fmt: skip


def notify(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    duty: str = typer.Argument(..., help="The duty: its title or id."),
    text: str = typer.Argument(..., help="The notification; `-` reads it from stdin."),
    event_at: str = typer.Option(
        ..., "--event-at", metavar="WHEN", help="When the event is or was: now, +2d, -30m, ISO."
    ),
    answers: str | None = typer.Option(
        None, "--answers", metavar="REQUEST", help="Their request this notification answers."
    ),
    language: str | None = typer.Option(None, "--lang", metavar="TAG", help="TEXT's language."),
    translations: list[str] = typer.Option(  # noqa: B008 (typer's idiom)
        [], "--translation", metavar="TAG=TEXT", help="A translation sent with it; repeat."
    ),
    translated_by: str | None = typer.Option(
        None, "--translated-by", metavar="WHO", help="staff, translator:NAME, machine:TOOL."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Notify an event under an agreed duty; it is in time if sent by the duty's deadline.

    Example: backchannel duty notify beijing "Missile test" "Test launch from Plesetsk."
    --event-at 2026-12-05T06:00Z
    """
    import asyncio

    from backchannel.cli.context import read_stdin_text
    from backchannel.cli.dialogue import report_act
    from backchannel.cli.translations import parse_languages_block

    block = parse_languages_block(language, translations, translated_by, None)
    if text == "-":
        text = read_stdin_text()
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        when = parse_event_time(event_at, now_ms=strategic.principal.now_ms())
        with state.progress("Sending the notification…"):
            result = asyncio.run(strategic.notify(duty, when, text, answers, block))
        item = _item_of(strategic.dialogue().notifications(), result.message_id)
        now = strategic.principal.now_ms()
    status = item.status(now).value if item is not None else "unknown"
    report_act(state, strategic.name, result, act="notify",
               headline=f"Notified '{strategic.name}' under '{duty}' "
                        f"({status.replace('_', ' ')})",
               extra={"event_at_ms": when, "status": status})  # fmt: skip


def _item_of(items: tuple[Notification, ...], message_id: str) -> Notification | None:
    wanted = bytes.fromhex(message_id)
    return next((n for n in items if wanted in (n.message_id, n.notified_by)), None)


def request(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    duty: str = typer.Argument(..., help="The duty: its title or id."),
    text: str = typer.Argument("", help="What you know of the event (optional)."),
    event_at: str = typer.Option(
        ..., "--event-at", metavar="WHEN", help="When the event is or was: now, +2d, -30m, ISO."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Say that they owe a notification of an event: due until the duty's deadline, then
    missed and escalated (resent, and your escalation command run).

    Example: backchannel duty request beijing "Incident at sea" --event-at -20m "Contact
    reported near the strait."
    """
    import asyncio

    from backchannel.cli.dialogue import report_act

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        when = parse_event_time(event_at, now_ms=strategic.principal.now_ms())
        with state.progress("Sending the request…"):
            result = asyncio.run(strategic.request_notification(duty, when, text))
    report_act(state, strategic.name, result, act="notify_request",
               headline=f"Asked '{strategic.name}' for the notification it owes under '{duty}'",
               extra={"event_at_ms": when})  # fmt: skip


def duty_json(duty: DutyView) -> dict[str, Any]:
    from backchannel.dialogue.board import duty_json as shape

    return shape(duty)


def show(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the duties and every notification under them, with its status.

    Example: backchannel duty list beijing
    """
    from rich.table import Table

    from backchannel.cli.output import emit_json, local_time, short_id, shown
    from backchannel.dialogue import Side
    from backchannel.dialogue.board import notification_json

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        dialogue = strategic.dialogue()
        duties, items = dialogue.duties(), dialogue.notifications()
        now = strategic.principal.now_ms()
    if state.json:
        emit_json({"channel": strategic.name, "duties": [duty_json(d) for d in duties],
                   "notifications": [notification_json(n, now) for n in items]})  # fmt: skip
        return
    if not duties:
        state.out.print("No notification duties yet: backchannel duty propose CHANNEL TITLE "
                        "--before DURATION")  # fmt: skip
        return
    titles = {d.duty_id: (d.current or d.latest).title for d in duties}
    table = Table(title=f"Notification duties of '{strategic.name}'")
    for heading in ("Duty", "Rule", "Proposed by", "State"):
        table.add_column(heading)
    for d in duties:
        shape = d.current or d.latest
        table.add_row(shown(shape.title), shape.describe(),
                      "you" if d.owner is Side.OURS else shown(strategic.name),
                      "agreed" if d.current else "awaits acceptance")  # fmt: skip
    state.out.print(table)
    if not items:
        return
    table = Table(title="Notifications")
    for heading in ("Id", "Duty", "Owed by", "Event", "Deadline", "Status", "Text"):
        table.add_column(heading)
    for n in items:
        status = n.status(now).value.replace("_", " ").upper()
        table.add_row(short_id(n.message_id.hex()), shown(titles.get(n.duty_id, "?")),
                      "you" if n.owed_by is Side.OURS else shown(strategic.name),
                      local_time(n.event_at_ms), local_time(n.deadline_ms), status,
                      shown(n.text, multiline=True))  # fmt: skip
    state.out.print(table)


for _command, _name in (
    (propose, "propose"), (accept, "accept"), (notify, "notify"), (request, "request"),
    (show, "list"),
):  # fmt: skip
    duty_app.command(_name)(reports_errors(_command))

"""`history` (alias `transcript`): a channel's conversation both ways, every act in place.

The data is the client's (`Principal.history`, a pure function over the stored messages
and the dialogue fold); this module only shows it: one line per message, a second line
with the receipts of each of ours, and a line where their sequence numbers skip or a fork
showed. Ids are the first 8 digits of the message id, which `read`, `ack`, `hold`,
`clarify` and `answer` accept as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import typer

from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors
from backchannel.cli.durations import parse_since
from backchannel.cli.hints import command_hint
from backchannel.cli.output import (
    emit_json,
    local_time,
    precedence_label,
    precedence_name,
    short_id,
    utc_time,
)

if TYPE_CHECKING:
    # Only for annotations: `client.history` brings the engine's dependencies
    # (cryptography, websockets: 0.3 s) that `history --help` has no use for; the
    # functions that match on these classes import them there.
    from backchannel.client.history import HistoryEntry, HistoryFork, HistoryGap, HistoryPage

__all__ = ["DEFAULT_LIMIT", "history_json", "register"]

# A screenful: enough to see where the conversation stands, few enough to read; the
# hint under it shows the earlier ones.
DEFAULT_LIMIT: Final = 20


def _counterpart(text: str) -> str:
    """Every string the counterpart chose (its name, its texts) is printed through here,
    so that the terminal-safe escaping of `cli.output` applies in one place."""
    return text


def _id(value: str) -> str:
    return short_id(value)


def _describe(entry: HistoryEntry) -> str:
    """What the message did, in words (the sender is shown beside it)."""
    text = _counterpart(entry.text)
    title = _counterpart(entry.title)
    said = f": {text}" if text else ""
    match entry.act:
        case "note":
            urgency = precedence_label(entry.precedence, entry.ack_within_ms)
            return f"note{f' [{urgency}]' if urgency else ''}: {text}"
        case "ack":
            return f"acknowledged note {_id(entry.target_id)}"
        case "hold":
            return (f"holding reply to {_id(entry.target_id)}: answer expected by "
                    f"{local_time(entry.expected_by_ms)}{said}")
        case "clarify":
            return f"asks about {_id(entry.target_id)}{said}"
        case "answer":
            return f"answers request {_id(entry.target_id)}{said}"
        case "redline":
            return (f"red line {_id(entry.subject_id)} version {entry.version}: {title}"
                    + (f" - {text}" if text else ""))
        case "redline_ack":
            return (f"understood (not: agreed to) red line {_id(entry.subject_id)} "
                    f"version {entry.version}")
        case "agenda_propose":
            return f"proposes for round {entry.round}: {title}" + (f" - {text}" if text else "")
        case "agenda_accept":
            return f"accepts agenda item {_id(entry.target_id)} (round {entry.round})"
        case "agenda_decline":
            return f"declines agenda item {_id(entry.target_id)} (round {entry.round}){said}"
        case "record_propose":
            return f"proposes record {_id(entry.subject_id)} version {entry.version}: {title}"
        case "record_sign":
            return (f"co-signs record {_id(entry.subject_id)} version {entry.version}: "
                    "it is on the record")
        case "linetest":
            return "line test"
        case "linetest_reply":
            return f"answers line test {_id(entry.target_id)}"
        case "translation":
            return (f"translation of {_id(entry.target_id)}"
                    + (f": {title} - {text}" if title else said))
        case "malformed":
            return "a message that does not decode (ignored)"
        case _:
            return "a message of a later version (not shown)"


def _status(entry: HistoryEntry) -> str:
    """The receipts of one of ours, or what this side did with one of theirs."""
    parts: list[str] = []
    if entry.direction == "out":
        if entry.delivered_at_ms:
            parts.append(f"delivered {local_time(entry.delivered_at_ms)}")
            if entry.read_at_ms:
                parts.append(f"read {local_time(entry.read_at_ms)}")
        elif entry.stored_on:
            where = ", ".join(_counterpart(url) for url in entry.stored_on)
            parts.append(f"stored on {where}; not yet delivered")
        else:
            parts.append("queued: no relay has it yet")
    elif entry.act == "note":
        parts.append(f"read {local_time(entry.read_at_ms)}" if entry.read_at_ms else "unread")
    if entry.acknowledged_at_ms:
        parts.append(f"acknowledged {local_time(entry.acknowledged_at_ms)}")
    if entry.act == "linetest":
        parts.append(f"answered {local_time(entry.answered_at_ms)}" if entry.answered_at_ms
                     else "not answered yet")
    if entry.anomaly:
        parts.append(f"ignored by the dialogue: {entry.anomaly}")
    return " · ".join(parts)


def _mark(state: CliContext, mark: HistoryGap | HistoryFork) -> str:
    from backchannel.client.history import HistoryFork, HistoryGap

    match mark:
        case HistoryGap(first_seq=first, last_seq=last):
            which = f"#{first}" if first == last else f"#{first}-{last}"
            return (f"-- gap: their message(s) {which} not received (not yet, or lost; "
                    "receipts count too) --")
        case HistoryFork(side=side, reason=reason, seq=seq):
            whose = "their" if side == "theirs" else "our"
            return (f"-- FORK of {whose} messages at #{seq}: {reason}; see: "
                    + command_hint(state, "status") + " --")


def _print_page(
    state: CliContext, page: HistoryPage, peer: str, again: list[str], since: str | None
) -> None:
    from backchannel.cli.urgency import CALM, note_urgency, print_urgent
    from backchannel.client.history import HistoryEntry

    if page.earlier:
        first = page.entries[0].message_id if page.entries else ""
        state.out.print(f"{page.earlier} earlier message(s): "
                        + command_hint(state, *again, "--before", _id(first)), style="dim",
                        soft_wrap=True)
    if not page.entries:
        state.out.print(f"No messages in '{peer}'" + (f" since {since}." if since else " yet."))
    # Names in one column: "you" or the counterpart's name, padded to the longer.
    width = max(len("you"), len(peer))
    for item in page.items:
        if not isinstance(item, HistoryEntry):
            state.out.print(_mark(state, item), style="bold", soft_wrap=True)
            continue
        who = ("you" if item.direction == "out" else peer).ljust(width)
        # A FLASH note looks as it does in `read`, `sync` and `watch` (cli/urgency.py):
        # styled, or with its word in front where there is no colour. No bell: a history
        # is read back, not arriving.
        urgency = note_urgency(item.precedence) if item.act == "note" else CALM
        print_urgent(state.out, f"{local_time(item.at_ms)}  {who}  {_id(item.message_id)}  "
                     f"{_describe(item)}", urgency)
        status = _status(item)
        if status:
            state.out.print(f"    {status}", style="dim")
        if item.versions:
            from backchannel.cli.translations import print_versions

            print_versions(state, item.versions, peer, indent="    ")
    if page.later:
        state.out.print(f"{page.later} later message(s): "
                        + command_hint(state, *again), style="dim", soft_wrap=True)


def _entry_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "type": "message",
        "message_id": entry.message_id,
        "direction": entry.direction,
        "seq": entry.seq,
        "act": entry.act,
        "at": utc_time(entry.at_ms),
        "sent_at": utc_time(entry.sent_at_ms),
        "title": entry.title,
        "text": entry.text,
        "target_id": entry.target_id or None,
        "subject_id": entry.subject_id or None,
        "version": entry.version or None,
        "round": entry.round or None,
        "precedence": precedence_name(entry.precedence) if entry.act == "note" else None,
        "ack_within_ms": entry.ack_within_ms,
        "expected_by": utc_time(entry.expected_by_ms),
        "delivered_at": utc_time(entry.delivered_at_ms),
        "read_at": utc_time(entry.read_at_ms),
        "acknowledged_at": utc_time(entry.acknowledged_at_ms),
        "answered_at": utc_time(entry.answered_at_ms),
        "stored_on": list(entry.stored_on),
        "anomaly": entry.anomaly or None,
        **({"texts": [v.to_dict() for v in entry.versions]} if entry.versions else {}),
    }


def history_json(page: HistoryPage) -> dict[str, Any]:
    """The `history --json` document (docs/cli.md, "history")."""
    from backchannel.client.history import HistoryEntry, HistoryFork, HistoryGap

    items: list[dict[str, Any]] = []
    for item in page.items:
        match item:
            case HistoryEntry():
                items.append(_entry_json(item))
            case HistoryGap(first_seq=first, last_seq=last):
                items.append({"type": "gap", "first_seq": first, "last_seq": last})
            case HistoryFork():
                items.append({"type": "fork", "side": item.side, "reason": item.reason,
                              "seq": item.seq, "detected_at": utc_time(item.detected_at_ms),
                              "message_id": item.message_id or None})
    entries = page.entries
    return {
        "channel": page.channel,
        "total": page.total,
        "earlier": page.earlier,
        "later": page.later,
        # The `--before` that shows the page before this one (null: this one is the first).
        "before": entries[0].message_id if page.earlier and entries else None,
        "items": items,
    }


def history(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    since: str | None = typer.Option(
        None, "--since", metavar="WHEN",
        help="Only messages from then on: a duration back (2h, 3d) or a date or time "
             "(2026-12-01, 2026-12-01T14:00; local unless a zone is given).",
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT, "--limit", min=1, metavar="N", help="Show the latest N messages."
    ),
    before: str | None = typer.Option(
        None, "--before", metavar="ID", help="Only messages before this one (its id)."
    ),
    line_tests: bool = typer.Option(
        True, "--line-tests/--no-line-tests",
        help="Show line tests and their answers (sent every hour, they can outnumber the "
             "conversation).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the conversation both ways, with every dialogue act in its place.

    Notes with their precedence, holding replies, acknowledgements, clarifications and
    their answers, red lines, agenda items, records and line tests, in the order this
    side stored them; under each of yours, whether it was delivered and read. Gaps in
    their numbering and forks are shown where they are. The ids are those `read`, `ack`,
    `hold`, `clarify` and `answer` take.

    Example: backchannel history beijing --since 2d
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        name = principal.channel(channel).name
        since_ms = 0 if since is None else parse_since(
            since, now_ms=principal.now_ms(), option="--since")
        page = principal.history(name, since_ms=since_ms, limit=limit, before=before,
                                 line_tests=line_tests)
    if state.json:
        emit_json(history_json(page))
        return
    # The same selection again, for the paging hints.
    again = ["history", name]
    if since is not None:
        again += ["--since", since]
    if limit != DEFAULT_LIMIT:
        again += ["--limit", str(limit)]
    if not line_tests:
        again.append("--no-line-tests")
    _print_page(state, page, _counterpart(name), again, since)


def register(app: typer.Typer) -> None:
    """Add `history` and its alias `transcript` to the root app."""
    command = reports_errors(history)
    app.command("history")(command)
    app.command("transcript", help="The same as `history`.")(command)

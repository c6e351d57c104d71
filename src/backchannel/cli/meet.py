"""`backchannel meet ...`: plan discreet in-person rounds."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from backchannel.cli.context import cli_context, reports_errors
from backchannel.cli.exitcodes import ExitCode, print_error
from backchannel.meet import (
    HostPolicy,
    MeetError,
    MeetingRequest,
    Suggestion,
    load_gazetteer,
    parse_date,
    parse_duration,
    suggest_venues,
)
from backchannel.meet.ranking import DEFAULT_TOP

__all__ = ["meet_app"]

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
    as_json = cli_context(ctx, as_json).json  # `backchannel --json meet suggest` too
    try:
        fmt = _map_format(map_file)
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
        if map_file is not None and fmt is not None:
            from backchannel.meet.mapping import render_map

            image = render_map(parties, suggestions, fmt)
            try:
                map_file.write_bytes(image)
            except OSError as exc:
                raise _fail(f"cannot write map to {map_file}: {exc.strerror}",
                            as_json=as_json) from None
    except MeetError as exc:
        raise _fail(str(exc), as_json=as_json) from None
    if as_json:
        typer.echo(json.dumps(_as_json(request, suggestions), indent=2, ensure_ascii=False))
    else:
        _print_table(request, suggestions)
        if map_file is not None:
            typer.echo(f"map written to {map_file}")


def _map_format(path: Path | None) -> str | None:
    if path is None:
        return None
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in ("png", "svg"):
        raise MeetError(f"--map file must end in .png or .svg, not {path.name!r}")
    return suffix


def _hours(h: float) -> str:
    return f"{int(h)}h{round((h - int(h)) * 60):02d}"


def _print_table(request: MeetingRequest, suggestions: tuple[Suggestion, ...]) -> None:
    names = [p.name for p in request.parties]
    table = Table(title=f"Discreet venues for {' – '.join(names)}", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("City")
    table.add_column("Country")
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
        first = s.plan.days[0]
        window = (
            f"{first.start:%H:%M}-{first.end:%H:%M}" if first.start and first.end else "none"
        )
        dates = f"{s.plan.first_day:%a %d %b}-{s.plan.last_day:%a %d %b %Y}\n{window} local"
        table.add_row(
            str(s.rank), f"{s.venue.name} ({s.venue.airport.iata})", s.venue.country_name,
            *legs, f"{s.spread_km:,.0f} km", s.host.neutrality.value, dates,
            "\n".join(s.reasons),
        )
    Console().print(table)


def _as_json(request: MeetingRequest, suggestions: tuple[Suggestion, ...]) -> dict[str, Any]:
    def place(p: Any) -> dict[str, Any]:
        return {"name": p.name, "country": p.country, "country_name": p.country_name,
                "lat": p.lat, "lon": p.lon, "airport": p.airport.iata,
                "timezone": p.airport.tz}

    return {
        "parties": [place(p) for p in request.parties],
        "after": request.after.isoformat(),
        "duration_days": request.duration_days,
        "venues": [
            {
                "rank": s.rank,
                "venue": place(s.venue) | {"capital": s.venue.capital,
                                           "metro_population": s.venue.metro_population},
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

    try:
        days = parse_duration(duration)
        start = parse_date(after) if after else dt.date.today()
    except MeetError as error:
        raise _fail(str(error), as_json=as_json or cli_context(ctx).json) from None
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

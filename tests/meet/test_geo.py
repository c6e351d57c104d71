"""Great-circle distances and flight times against published figures."""

from __future__ import annotations

import math

import pytest

from backchannel.meet import Gazetteer
from backchannel.meet.geo import (
    CONNECTION_PENALTY_H,
    REGIONAL_RANGE_KM,
    estimate_flight,
    great_circle_km,
    great_circle_path,
)

# Published great-circle distances between airports.
# - JFK-LHR ~5,540 km and IAD-PEK ~11,150 km: the figures route-distance calculators such as
#   Great Circle Mapper (gcmap.com) give, rounded; 1 % covers sphere-vs-ellipsoid differences.
# - The rest: the "Longest flights" table of Wikipedia (distances of the scheduled nonstop
#   routes SQ24, SQ22, QF9, QF7 and QR921 as listed there).
PUBLISHED_KM = [
    ("JFK", "LHR", 5_540),
    ("IAD", "PEK", 11_150),
    ("SIN", "JFK", 15_349),
    ("SIN", "EWR", 15_344),
    ("PER", "LHR", 14_499),
    ("SYD", "DFW", 13_804),
    ("AKL", "DOH", 14_535),
]

# Scheduled block times in hours, averaged over both directions where they differ, from the
# airlines' timetables (SQ24/SQ23, QF9/QF10, UA807/UA808, BA/AA transatlantic): the estimate
# must land within 10 %, which the jet stream alone exceeds on any single direction.
SCHEDULED_H = [
    ("SIN", "JFK", 18.6),
    ("PER", "LHR", 17.4),
    ("IAD", "PEK", 13.6),
    ("JFK", "LHR", 7.4),
]


def _km(g: Gazetteer, a: str, b: str) -> float:
    x, y = g.airports[a], g.airports[b]
    return great_circle_km(x.lat, x.lon, y.lat, y.lon)


@pytest.mark.parametrize(("a", "b", "published"), PUBLISHED_KM)
def test_distance_matches_published_figure_within_one_percent(
    gazetteer: Gazetteer, a: str, b: str, published: float
) -> None:
    assert _km(gazetteer, a, b) == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize(("a", "b", "hours"), SCHEDULED_H)
def test_flight_time_matches_scheduled_block_time(
    gazetteer: Gazetteer, a: str, b: str, hours: float
) -> None:
    estimate = estimate_flight(_km(gazetteer, a, b), both_long_haul=True)
    assert estimate.nonstop
    assert estimate.hours == pytest.approx(hours, rel=0.10)


def test_distance_is_symmetric_and_zero_on_the_diagonal() -> None:
    assert great_circle_km(48.1, 16.6, 40.1, 116.6) == pytest.approx(
        great_circle_km(40.1, 116.6, 48.1, 16.6)
    )
    assert great_circle_km(10.0, 20.0, 10.0, 20.0) == 0.0


def test_antipodes_are_half_the_circumference() -> None:
    assert great_circle_km(0, 0, 0, 180) == pytest.approx(math.pi * 6371.0088)


def test_long_leg_from_a_small_airport_pays_a_connection() -> None:
    direct = estimate_flight(8_000, both_long_haul=True)
    connecting = estimate_flight(8_000, both_long_haul=False)
    assert direct.nonstop and not connecting.nonstop
    assert connecting.hours - direct.hours == pytest.approx(CONNECTION_PENALTY_H)


def test_short_leg_is_nonstop_from_any_airport() -> None:
    assert estimate_flight(REGIONAL_RANGE_KM, both_long_haul=False).nonstop


def test_beyond_the_longest_nonstop_route_everyone_connects() -> None:
    assert not estimate_flight(17_000, both_long_haul=True).nonstop


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_flight_estimate_rejects_impossible_distances(bad: float) -> None:
    with pytest.raises(ValueError):
        estimate_flight(bad, both_long_haul=True)


def test_great_circle_path_ends_at_both_points_and_crosses_the_pole_region() -> None:
    path = great_circle_path(38.95, -77.46, 40.08, 116.58, points=65)
    assert path[0] == pytest.approx((38.95, -77.46), abs=1e-6)
    assert path[-1] == pytest.approx((40.08, 116.58), abs=1e-6)
    # Washington-Beijing flies over the Arctic: the route's peak is far north of both ends.
    assert max(lat for lat, _ in path) > 75


def test_great_circle_path_needs_two_points() -> None:
    with pytest.raises(ValueError):
        great_circle_path(0, 0, 1, 1, points=1)

"""Great-circle geometry and the flight-time estimate.

Distances are on a sphere of the IUGG mean Earth radius. Against the WGS-84 ellipsoid this
errs by at most about 0.5 %, far below what matters when choosing a city.

The flight-time formula (documented in docs/meet.md, "Flight time"):

    hours = FLIGHT_OVERHEAD_H + distance_km / BLOCK_SPEED_KMH
            + CONNECTION_PENALTY_H  if the leg cannot be flown nonstop

A leg is flown nonstop when it is short enough for any airport (REGIONAL_RANGE_KM), or when
both ends are long-haul airports and the leg is within the longest scheduled nonstop route
(MAX_NONSTOP_KM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "BLOCK_SPEED_KMH",
    "CONNECTION_PENALTY_H",
    "EARTH_RADIUS_KM",
    "FLIGHT_OVERHEAD_H",
    "MAX_NONSTOP_KM",
    "REGIONAL_RANGE_KM",
    "FlightEstimate",
    "estimate_flight",
    "great_circle_km",
    "great_circle_path",
]

# IUGG mean Earth radius R1 = (2a + b) / 3 for WGS-84; the usual choice for spherical
# distance because it minimises the error against the ellipsoid over all directions.
EARTH_RADIUS_KM = 6371.0088

# Taxi out, climb, descent and taxi in cost about 45 minutes more than cruising the same
# distance would; calibrated on scheduled block times (see docs/meet.md).
FLIGHT_OVERHEAD_H = 0.75

# Average ground speed of a long-haul jet over a year of winds in both directions (cruise at
# about Mach 0.83, 880-900 km/h true airspeed, less time at lower speed near airports).
BLOCK_SPEED_KMH = 870.0

# A narrow-body (A320/737 family) schedules routes up to roughly this length; longer legs need
# a wide-body, which only long-haul airports see regularly.
REGIONAL_RANGE_KM = 4_000.0

# The longest scheduled nonstop route (Singapore-New York, 15,349 km) rounded up: beyond it
# nobody flies nonstop, whatever the airports.
MAX_NONSTOP_KM = 15_500.0

# A connection costs a minimum connecting time of 1-2 hours, plus the detour and the extra
# climb and descent of a second leg: three hours in all is a fair middle.
CONNECTION_PENALTY_H = 3.0


@dataclass(frozen=True, slots=True)
class FlightEstimate:
    """An estimated journey by air between two airports.

    Attributes:
        distance_km: great-circle distance between the airports.
        hours: estimated door-of-aircraft time, including a connection if one is needed.
        nonstop: whether the leg can be flown without connecting.
    """

    distance_km: float
    hours: float
    nonstop: bool


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance between two points, in kilometres.

    Uses the haversine formula, which stays accurate for nearby and for antipodal points.

    Args:
        lat1: latitude of the first point in degrees (north positive).
        lon1: longitude of the first point in degrees (east positive).
        lat2: latitude of the second point in degrees.
        lon2: longitude of the second point in degrees.

    Returns:
        The distance in kilometres on a sphere of radius `EARTH_RADIUS_KM`.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def estimate_flight(distance_km: float, *, both_long_haul: bool) -> FlightEstimate:
    """Estimate the flying time of one leg from its distance.

    Args:
        distance_km: great-circle distance in kilometres (not negative).
        both_long_haul: whether both airports see scheduled long-haul (wide-body) service.

    Returns:
        The estimate; see the module docstring for the formula.

    Raises:
        ValueError: if `distance_km` is negative or not finite.
    """
    if not math.isfinite(distance_km) or distance_km < 0:
        raise ValueError(f"distance must be a finite, non-negative number, not {distance_km}")
    if distance_km == 0:
        return FlightEstimate(distance_km=0.0, hours=0.0, nonstop=True)
    nonstop = distance_km <= REGIONAL_RANGE_KM or (
        both_long_haul and distance_km <= MAX_NONSTOP_KM
    )
    hours = FLIGHT_OVERHEAD_H + distance_km / BLOCK_SPEED_KMH
    if not nonstop:
        hours += CONNECTION_PENALTY_H
    return FlightEstimate(distance_km=distance_km, hours=hours, nonstop=nonstop)


def great_circle_path(
    lat1: float, lon1: float, lat2: float, lon2: float, *, points: int = 64
) -> list[tuple[float, float]]:
    """Return points along the great circle from one point to another, for drawing.

    Args:
        lat1: latitude of the start in degrees.
        lon1: longitude of the start in degrees.
        lat2: latitude of the end in degrees.
        lon2: longitude of the end in degrees.
        points: how many points to return, both ends included (at least 2).

    Returns:
        `(lat, lon)` pairs in degrees, longitudes in [-180, 180].

    Raises:
        ValueError: if `points` is less than 2.
    """
    if points < 2:
        raise ValueError("a path needs at least two points")
    a = _unit_vector(lat1, lon1)
    b = _unit_vector(lat2, lon2)
    dot = max(-1.0, min(1.0, sum(x * y for x, y in zip(a, b, strict=True))))
    omega = math.acos(dot)
    path: list[tuple[float, float]] = []
    for i in range(points):
        t = i / (points - 1)
        if omega < 1e-12:
            v = a
        else:
            # Spherical linear interpolation; antipodal ends (sin(omega) == 0) cannot occur
            # for distinct cities on Earth at the dataset's precision, but guard anyway.
            s = math.sin(omega) or 1e-12
            wa = math.sin((1 - t) * omega) / s
            wb = math.sin(t * omega) / s
            v = (wa * a[0] + wb * b[0], wa * a[1] + wb * b[1], wa * a[2] + wb * b[2])
        path.append(_lat_lon(v))
    return path


def _unit_vector(lat: float, lon: float) -> tuple[float, float, float]:
    phi, lmb = math.radians(lat), math.radians(lon)
    return (math.cos(phi) * math.cos(lmb), math.cos(phi) * math.sin(lmb), math.sin(phi))


def _lat_lon(v: tuple[float, float, float]) -> tuple[float, float]:
    x, y, z = v
    return (math.degrees(math.atan2(z, math.hypot(x, y))), math.degrees(math.atan2(y, x)))

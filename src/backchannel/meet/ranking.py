"""Rank candidate venues and explain each rank (docs/meet.md, "Ranking").

A venue's score is in hours; lower is better:

    score = worst_flight_h
          + FAIRNESS_WEIGHT * (worst_flight_h - best_flight_h)
          + NEUTRALITY_PENALTY_H[tier]
          + (NOT_CAPITAL_PENALTY_H if the venue is not a capital)
          + WINDOW_WEIGHT * max(0, TARGET_WINDOW_H - first day's window)

For two parties, minimising the worst traveller already balances the two journeys; the
fairness term makes an imbalance cost more still. For more parties it is the same formula.
Discretion filters before scoring: a venue needs an urban area of `DISCRETION_MIN_METRO`
people and an international airport (named so, or serving a capital or a long-haul city:
see `has_international_airport`); venues to avoid are dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backchannel.meet.errors import InvalidRequest
from backchannel.meet.geo import FlightEstimate, estimate_flight, great_circle_km
from backchannel.meet.neutrality import HostPolicy, HostState, Neutrality, host_countries
from backchannel.meet.places import Gazetteer, Place
from backchannel.meet.schedule import MeetingPlan, Traveller, plan_meeting

__all__ = [
    "DEFAULT_TOP",
    "DISCRETION_MIN_METRO",
    "FAIRNESS_WEIGHT",
    "MAX_PARTIES",
    "MAX_TOP",
    "MIN_PARTIES",
    "NEUTRALITY_PENALTY_H",
    "NOT_CAPITAL_PENALTY_H",
    "TARGET_WINDOW_H",
    "WINDOW_WEIGHT",
    "Leg",
    "MeetingRequest",
    "Suggestion",
    "has_international_airport",
    "suggest_venues",
]

# A meeting needs someone to meet.
MIN_PARTIES = 2

# Beyond eight delegations a round is a conference, and no venue is discreet for it.
MAX_PARTIES = 8

DEFAULT_TOP = 5

# Longer lists stop being advice.
MAX_TOP = 50

# An hour of imbalance between the delegations costs half an hour of the worst journey:
# enough to prefer the fair venue when two are close, not enough to send everyone further.
FAIRNESS_WEIGHT = 0.5

# What a less neutral host costs, in hours of the worst journey.
NEUTRALITY_PENALTY_H: Mapping[Neutrality, float] = {
    Neutrality.NEUTRAL: 0.0,
    Neutrality.NON_ALIGNED: 1.0,
    Neutrality.ALLOWED: 1.5,
    Neutrality.PARTY: 2.0,
}

# An urban area this large has the hotels and the international traffic for a delegation's
# arrival to go unnoticed (Valletta's area, about 140,000 people, just passes).
DISCRETION_MIN_METRO = 100_000

# A capital has embassies and routine diplomatic traffic, which is cover; elsewhere a
# motorcade is news.
NOT_CAPITAL_PENALTY_H = 0.5

# A round needs about four hours of sessions a day; each hour short costs this much.
TARGET_WINDOW_H = 4.0
WINDOW_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Leg:
    """One delegation's journey to a venue.

    Attributes:
        party: the delegation's home.
        flight: distance and estimated time.
    """

    party: Place
    flight: FlightEstimate


@dataclass(frozen=True, slots=True)
class MeetingRequest:
    """What to plan.

    Attributes:
        parties: the delegations' homes (two to `MAX_PARTIES`).
        policy: which countries may host.
        avoid: venues used recently, not to be suggested again.
        after: meetings strictly after this date.
        duration_days: meeting days.
        top: how many venues to return.
    """

    parties: tuple[Place, ...]
    policy: HostPolicy
    avoid: tuple[Place, ...]
    after: dt.date
    duration_days: int = 2
    top: int = DEFAULT_TOP


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A ranked venue and why.

    Attributes:
        rank: 1 for the best.
        venue: the city.
        legs: each delegation's journey, in the order of the request.
        host: the host country's tier and basis.
        score: the ranking score in hours (lower is better).
        plan: suggested dates and daily windows.
        reasons: human-readable explanation, most important first.
    """

    rank: int
    venue: Place
    legs: tuple[Leg, ...]
    host: HostState
    score: float
    plan: MeetingPlan
    reasons: tuple[str, ...]

    @property
    def spread_km(self) -> float:
        """Longest minus shortest journey, in km."""
        d = [leg.flight.distance_km for leg in self.legs]
        return max(d) - min(d)

    @property
    def total_km(self) -> float:
        """Sum of all journeys, in km."""
        return sum(leg.flight.distance_km for leg in self.legs)


def has_international_airport(venue: Place) -> bool:
    """Whether a venue's airport can be assumed to take international scheduled flights.

    The datasets hold no traffic figures, so this is a proxy: the airport's name says
    "International", or it serves a capital (Valletta's "Luqa Airport") or an urban area of
    a million people (Zurich's "Zurich Airport"). Glider fields and bus stations that carry
    IATA codes fail it.

    Args:
        venue: a candidate venue.

    Returns:
        True if the proxy holds.
    """
    return "international" in venue.airport.name.lower() or venue.capital or venue.long_haul


def _validate(request: MeetingRequest) -> None:
    n = len(request.parties)
    if n < MIN_PARTIES:
        raise InvalidRequest(
            f"a meeting needs at least {MIN_PARTIES} parties; got {n} "
            "(repeat --between, e.g. --between Washington --between Beijing)"
        )
    if n > MAX_PARTIES:
        raise InvalidRequest(f"at most {MAX_PARTIES} parties; got {n}")
    seen: dict[str, Place] = {}
    for p in request.parties:
        if p.airport.iata in seen:
            raise InvalidRequest(
                f"{seen[p.airport.iata].label} and {p.label} are the same place "
                f"(both fly from {p.airport.iata})"
            )
        seen[p.airport.iata] = p
    if not 1 <= request.top <= MAX_TOP:
        raise InvalidRequest(f"--top must be 1 to {MAX_TOP}, not {request.top}")


def suggest_venues(request: MeetingRequest, gazetteer: Gazetteer) -> tuple[Suggestion, ...]:
    """Rank the venues for a round and explain each.

    Args:
        request: parties, host policy, avoided venues, dates.
        gazetteer: the place data (`load_gazetteer()`).

    Returns:
        Up to `request.top` suggestions, best first (empty if no venue qualifies).

    Raises:
        InvalidRequest: too few or too many parties, duplicated parties, contradictory
            host options, or a bad `top`.
    """
    _validate(request)
    hosts = host_countries(request.policy, (p.country for p in request.parties))
    avoided = {p.airport.iata for p in request.avoid}
    party_airports = {p.airport.iata for p in request.parties}
    scored: list[tuple[float, str, Place, tuple[Leg, ...], MeetingPlan]] = []
    for country in sorted(hosts):
        for venue in gazetteer.venues_in(country):
            if venue.airport.iata in avoided or venue.metro_population < DISCRETION_MIN_METRO:
                continue
            if not has_international_airport(venue):
                continue
            if venue.airport.iata in party_airports and not request.policy.include_parties:
                continue
            legs = tuple(_leg(p, venue) for p in request.parties)
            plan = plan_meeting(
                venue.airport.tz,
                [Traveller(leg.party.name, leg.party.airport.tz, leg.flight.hours)
                 for leg in legs],
                request.after,
                request.duration_days,
            )
            score = _score(legs, hosts[country], venue, plan)
            scored.append((score, venue.label, venue, legs, plan))
    scored.sort(key=lambda s: (s[0], s[1]))
    return tuple(
        Suggestion(
            rank=i + 1,
            venue=venue,
            legs=legs,
            host=hosts[venue.country],
            score=score,
            plan=plan,
            reasons=_reasons(venue, legs, hosts[venue.country], plan),
        )
        for i, (score, _, venue, legs, plan) in enumerate(scored[: request.top])
    )


def _leg(party: Place, venue: Place) -> Leg:
    a, b = party.airport, venue.airport
    distance = great_circle_km(a.lat, a.lon, b.lat, b.lon)
    flight = estimate_flight(distance, both_long_haul=party.long_haul and venue.long_haul)
    return Leg(party=party, flight=flight)


def _score(legs: Sequence[Leg], host: HostState, venue: Place, plan: MeetingPlan) -> float:
    hours = [leg.flight.hours for leg in legs]
    worst, best = max(hours), min(hours)
    score = worst + FAIRNESS_WEIGHT * (worst - best) + NEUTRALITY_PENALTY_H[host.neutrality]
    if not venue.capital:
        score += NOT_CAPITAL_PENALTY_H
    return score + WINDOW_WEIGHT * max(0.0, TARGET_WINDOW_H - plan.days[0].hours)


def _people(n: int) -> str:
    if n >= 1_000_000:
        return f"about {n / 1e6:.1f} million people"
    if n >= 1_000:
        return f"about {n // 1000:,} thousand people"
    return f"about {max(100, round(n, -2)):,} people"


def _size(venue: Place) -> str:
    """How big the venue is, in its own country's people.

    A city-state or border town inside a foreign city (Vatican City in Rome) is described by
    its own population and the city it sits in, not by its neighbour's millions; the
    neighbour's hotels and airport still count for discretion (`DISCRETION_MIN_METRO`).
    """
    if venue.enclave_of:
        own = venue.host_metro_population or venue.population
        return (f"{_people(own)}, inside the urban area of {venue.enclave_of} "
                f"({_people(venue.metro_population).removesuffix(' people')})")
    return _people(venue.metro_population)


def _reasons(
    venue: Place, legs: Sequence[Leg], host: HostState, plan: MeetingPlan
) -> tuple[str, ...]:
    reasons: list[str] = []
    km = sorted(leg.flight.distance_km for leg in legs)
    journeys = ", ".join(f"{leg.party.name} {leg.flight.distance_km:,.0f} km" for leg in legs)
    if len(legs) == 2:
        reasons.append(
            f"both sides travel about {km[0]:,.0f}-{km[-1]:,.0f} km ({journeys}): "
            f"a difference of {km[-1] - km[0]:,.0f} km"
        )
    else:
        reasons.append(
            f"longest journey {km[-1]:,.0f} km, shortest {km[0]:,.0f} km ({journeys})"
        )
    connecting = [leg.party.name for leg in legs if not leg.flight.nonstop]
    if connecting:
        reasons.append(f"no nonstop flight likely from {', '.join(connecting)} (+connection)")
    reasons.append(f"{host.neutrality.value}: {host.basis}")
    size = _size(venue)
    if venue.capital:
        reasons.append(f"capital, {size}: embassies and diplomatic traffic are routine")
    else:
        reasons.append(f"not a capital ({size}): visiting delegations stand out more")
    first = plan.days[0]
    if first.start is None or first.end is None:
        reasons.append("no hour of the first day suits every delegation's body clock")
    else:
        reasons.append(
            f"first day's window {first.start:%H:%M}-{first.end:%H:%M} local "
            f"({first.hours:g} h) after a night's rest"
        )
    return tuple(reasons)

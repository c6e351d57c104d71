"""Dates and a daily meeting window, time-zone aware (docs/meet.md, "Time").

Each delegation leaves home at `DEPARTURE_HOUR` local time on the first day after
``--after``, flies for its estimated time, and sleeps at least one night at the venue before
the first session. On each meeting day a delegation is willing to sit between
`AWAKE_START_H` and `AWAKE_END_H` *by its body clock*, which starts on home time and moves
`ADAPT_H_PER_DAY` towards venue time per night spent there. The window is the longest stretch
of the venue's working day (`WORKDAY_START_H`-`WORKDAY_END_H`) that every delegation accepts.

Zone offsets come from the IANA database through `zoneinfo`, with the airports' zones from
airportsdata, so daylight-saving time on the actual dates is taken into account.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backchannel.meet.errors import InvalidRequest

__all__ = [
    "ADAPT_H_PER_DAY",
    "AWAKE_END_H",
    "AWAKE_START_H",
    "DEPARTURE_HOUR",
    "MAX_DURATION_DAYS",
    "WORKDAY_END_H",
    "WORKDAY_START_H",
    "DayWindow",
    "MeetingPlan",
    "Traveller",
    "parse_date",
    "parse_duration",
    "plan_meeting",
]

# A discreet round lasts a day or a few; a week of absence from two capitals is noticed.
MAX_DURATION_DAYS = 7

# Delegations leave home in the morning of their travel day.
DEPARTURE_HOUR = 8

# Working hours at the venue: a long diplomatic day, breakfast to a late dinner.
WORKDAY_START_H = 8
WORKDAY_END_H = 20

# Hours of the body clock in which a jet-lagged negotiator is still useful.
AWAKE_START_H = 7
AWAKE_END_H = 22

# The body clock re-aligns by about one hour per day (the usual rule of thumb for jet lag).
ADAPT_H_PER_DAY = 1.0

# The window is searched in steps of a quarter of an hour.
_SLOT_MIN = 15


@dataclass(frozen=True, slots=True)
class Traveller:
    """A delegation's journey, as the schedule needs it.

    Attributes:
        label: how to name the delegation ("Washington").
        home_tz: IANA zone of its home airport.
        flight_hours: estimated flying time to the venue.
    """

    label: str
    home_tz: str
    flight_hours: float


@dataclass(frozen=True, slots=True)
class DayWindow:
    """The meeting window of one day, in venue local time.

    Attributes:
        date: the meeting day.
        start: start of the window, or None if no hour suits everyone.
        end: end of the window, or None.
        hours: length of the window in hours (0 if none).
    """

    date: dt.date
    start: dt.time | None
    end: dt.time | None
    hours: float


@dataclass(frozen=True, slots=True)
class MeetingPlan:
    """Suggested dates and daily windows at one venue.

    Attributes:
        venue_tz: IANA zone of the venue.
        arrivals: (delegation, local arrival time at the venue) per delegation.
        days: one window per meeting day, in order.
    """

    venue_tz: str
    arrivals: tuple[tuple[str, dt.datetime], ...]
    days: tuple[DayWindow, ...]

    @property
    def first_day(self) -> dt.date:
        """The first meeting day."""
        return self.days[0].date

    @property
    def last_day(self) -> dt.date:
        """The last meeting day."""
        return self.days[-1].date


_DURATION = re.compile(r"\s*(\d{1,3})\s*(d|day|days)?\s*", re.IGNORECASE)


def parse_duration(text: str) -> int:
    """Parse a meeting length such as "2d", "3 days" or "1".

    Args:
        text: the option's value.

    Returns:
        The number of meeting days.

    Raises:
        InvalidRequest: not a whole number of days between 1 and `MAX_DURATION_DAYS`.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise InvalidRequest(f"duration {text!r} is not a number of days, e.g. '2d'")
    days = int(match.group(1))
    if not 1 <= days <= MAX_DURATION_DAYS:
        raise InvalidRequest(
            f"duration must be 1 to {MAX_DURATION_DAYS} days (a discreet round is short), "
            f"not {days}"
        )
    return days


def parse_date(text: str) -> dt.date:
    """Parse a calendar date in ISO form.

    Args:
        text: e.g. "2024-01-20".

    Returns:
        The date.

    Raises:
        InvalidRequest: not a valid YYYY-MM-DD date.
    """
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(f"date {text!r} is not a valid YYYY-MM-DD date") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"time zone {name!r} is not in the zone database") from None


def _offset_h(zone: ZoneInfo, day: dt.date) -> float:
    offset = dt.datetime.combine(day, dt.time(12), tzinfo=zone).utcoffset()
    return offset.total_seconds() / 3600 if offset is not None else 0.0


def plan_meeting(
    venue_tz: str,
    travellers: Sequence[Traveller],
    after: dt.date,
    duration_days: int,
) -> MeetingPlan:
    """Suggest meeting dates and a daily window at a venue.

    Args:
        venue_tz: IANA zone of the venue's airport.
        travellers: the delegations and their flights.
        after: meetings are planned strictly after this date (travel starts the day after).
        duration_days: number of meeting days (1 to `MAX_DURATION_DAYS`).

    Returns:
        The plan; see the module docstring for the rules.

    Raises:
        InvalidRequest: a zone is unknown, there are no travellers, or the duration is out of
            range.
    """
    if not travellers:
        raise InvalidRequest("a meeting needs delegations")
    if not 1 <= duration_days <= MAX_DURATION_DAYS:
        raise InvalidRequest(f"duration must be 1 to {MAX_DURATION_DAYS} days")
    venue = _zone(venue_tz)
    depart_day = after + dt.timedelta(days=1)
    arrivals: list[tuple[str, dt.datetime]] = []
    for t in travellers:
        leave = dt.datetime.combine(depart_day, dt.time(DEPARTURE_HOUR), tzinfo=_zone(t.home_tz))
        land = (leave + dt.timedelta(hours=t.flight_hours)).astimezone(venue)
        arrivals.append((t.label, land))
    first = max(land.date() for _, land in arrivals) + dt.timedelta(days=1)
    days: list[DayWindow] = []
    for k in range(duration_days):
        day = first + dt.timedelta(days=k)
        venue_off = _offset_h(venue, day)
        allowed = set(range(WORKDAY_START_H * 60, WORKDAY_END_H * 60, _SLOT_MIN))
        for t, (_, land) in zip(travellers, arrivals, strict=True):
            nights = (day - land.date()).days
            allowed &= _awake_slots(_offset_h(_zone(t.home_tz), day), venue_off, nights)
        days.append(_longest_run(day, allowed))
    return MeetingPlan(venue_tz=venue_tz, arrivals=tuple(arrivals), days=tuple(days))


def _awake_slots(home_off: float, venue_off: float, nights: int) -> set[int]:
    """Venue-local minutes of the day in which a delegation is awake by its body clock."""
    gap = venue_off - home_off
    shift = max(-abs(gap), min(abs(gap), ADAPT_H_PER_DAY * nights)) * (1 if gap >= 0 else -1)
    body_off = home_off + shift
    # Body-clock time t is venue time t + (venue_off - body_off).
    delta_min = round((venue_off - body_off) * 60)
    slots: set[int] = set()
    for minute in range(AWAKE_START_H * 60, AWAKE_END_H * 60, _SLOT_MIN):
        slots.add((minute + delta_min) % (24 * 60))
    return slots


def _longest_run(day: dt.date, allowed: set[int]) -> DayWindow:
    best_start, best_len = 0, 0
    run_start, run_len = 0, 0
    for minute in range(WORKDAY_START_H * 60, WORKDAY_END_H * 60, _SLOT_MIN):
        if minute in allowed:
            if run_len == 0:
                run_start = minute
            run_len += 1
            if run_len > best_len:
                best_start, best_len = run_start, run_len
        else:
            run_len = 0
    if best_len == 0:
        return DayWindow(date=day, start=None, end=None, hours=0.0)
    end = best_start + best_len * _SLOT_MIN
    return DayWindow(
        date=day,
        start=dt.time(best_start // 60, best_start % 60),
        end=dt.time(end // 60 % 24, end % 60),
        hours=best_len * _SLOT_MIN / 60,
    )

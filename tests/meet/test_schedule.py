"""Dates and the daily window, across time zones and daylight-saving changes."""

from __future__ import annotations

import datetime as dt

import pytest

from backchannel.meet import InvalidRequest, parse_date, parse_duration
from backchannel.meet.schedule import (
    MAX_DURATION_DAYS,
    WORKDAY_END_H,
    WORKDAY_START_H,
    Traveller,
    plan_meeting,
)

WASHINGTON = Traveller("Washington", "America/New_York", 9.0)
BEIJING = Traveller("Beijing", "Asia/Shanghai", 9.3)


@pytest.mark.parametrize(("text", "days"), [("2d", 2), ("1", 1), ("3 days", 3), (" 7D ", 7)])
def test_durations_parse(text: str, days: int) -> None:
    assert parse_duration(text) == days


@pytest.mark.parametrize("text", ["", "0d", "8d", "2h", "two days", "-1d", "1.5d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_duration(text)


def test_dates_parse_and_bad_dates_are_refused() -> None:
    assert parse_date("2024-01-20") == dt.date(2024, 1, 20)
    for bad in ("2024-02-30", "20/01/2024", "tomorrow", ""):
        with pytest.raises(InvalidRequest, match="YYYY-MM-DD"):
            parse_date(bad)


def test_vienna_plan_after_a_night_s_rest() -> None:
    plan = plan_meeting("Europe/Vienna", [WASHINGTON, BEIJING], dt.date(2023, 5, 1), 2)
    # Both leave on 2 May at 08:00 home time; Washington lands at 23:00 Vienna time.
    arrivals = dict(plan.arrivals)
    assert arrivals["Washington"].hour == 23
    assert arrivals["Beijing"].date() == dt.date(2023, 5, 2)
    assert (plan.first_day, plan.last_day) == (dt.date(2023, 5, 3), dt.date(2023, 5, 4))
    first = plan.days[0]
    # Washington's body clock wakes at 07:00 EDT+1 h = noon in Vienna; Beijing's 22:00
    # CST-1 h = 17:00 in Vienna.
    assert (first.start, first.end, first.hours) == (dt.time(12), dt.time(17), 5.0)
    # Another night of adaptation widens the window by an hour at each end.
    assert plan.days[1].hours == 7.0


def test_window_stays_within_the_venue_workday() -> None:
    plan = plan_meeting("Europe/Vienna", [Traveller("Vienna", "Europe/Vienna", 0.0),
                                          Traveller("Bratislava", "Europe/Bratislava", 0.8)],
                        dt.date(2024, 3, 1), 1)
    assert plan.days[0].start == dt.time(WORKDAY_START_H)
    assert plan.days[0].end == dt.time(WORKDAY_END_H)


def test_daylight_saving_on_the_actual_dates_is_used() -> None:
    # The US changes clocks on 10 March 2024, Europe on 31 March: for three weeks New York
    # is five hours behind Vienna instead of six, so Washington's day starts an hour earlier
    # in Vienna; Beijing (no DST, seven hours ahead in winter) still stops at 16:00.
    before = plan_meeting("Europe/Vienna", [WASHINGTON, BEIJING], dt.date(2024, 3, 1), 1)
    during = plan_meeting("Europe/Vienna", [WASHINGTON, BEIJING], dt.date(2024, 3, 15), 1)
    assert (before.days[0].start, before.days[0].end) == (dt.time(12), dt.time(16))
    assert (during.days[0].start, during.days[0].end) == (dt.time(11), dt.time(16))


def test_opposite_body_clocks_can_leave_no_window() -> None:
    # Honolulu (UTC-10) and Auckland (UTC+12 in June) meeting in Reykjavik (UTC): one is
    # awake there from 16:00, the other until 11:00.
    plan = plan_meeting("Atlantic/Reykjavik", [Traveller("Honolulu", "Pacific/Honolulu", 0.0),
                                               Traveller("Auckland", "Pacific/Auckland", 0.0)],
                        dt.date(2024, 6, 1), 1)
    assert plan.days[0].start is None and plan.days[0].hours == 0.0


def test_bad_plan_inputs_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        plan_meeting("Europe/Vienna", [], dt.date(2024, 1, 1), 1)
    with pytest.raises(InvalidRequest):
        plan_meeting("Mars/Olympus", [WASHINGTON], dt.date(2024, 1, 1), 1)
    with pytest.raises(InvalidRequest):
        plan_meeting("Europe/Vienna", [WASHINGTON], dt.date(2024, 1, 1), MAX_DURATION_DAYS + 1)

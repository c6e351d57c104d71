"""Durations and moments as principals type them."""

from __future__ import annotations

import datetime as dt

import pytest
import typer

from backchannel.cli.durations import format_duration, parse_duration, parse_since, parse_when

NOW = 1_700_000_000_000


@pytest.mark.parametrize(("text", "ms"), [
    ("300ms", 300), ("90s", 90_000), ("10m", 600_000), ("2h", 7_200_000),
    ("1h30m", 5_400_000), ("1.5h", 5_400_000), ("2d", 172_800_000), (" 10M ", 600_000),
])
def test_durations_are_read(text: str, ms: int) -> None:
    assert parse_duration(text, option="--ack-within") == ms


@pytest.mark.parametrize("text", ["", "10", "m", "10x", "-5m", "10m5", "0s", "ten minutes"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text, option="--ack-within")


def test_zero_means_never_where_allowed() -> None:
    assert parse_duration("0", option="--every", allow_zero=True) == 0
    assert parse_duration("off", option="--every", allow_zero=True) == 0


def test_when_is_a_duration_a_local_time_or_an_iso_moment() -> None:
    assert parse_when("2h", now_ms=NOW, option="--until") == NOW + 7_200_000
    now = dt.datetime.fromtimestamp(NOW / 1000).astimezone()
    later = (now + dt.timedelta(days=1)).replace(microsecond=0, tzinfo=None)
    assert parse_when(later.isoformat(), now_ms=NOW, option="--until") == round(
        later.astimezone().timestamp() * 1000)
    utc = dt.datetime.fromtimestamp(NOW / 1000 + 60, dt.UTC).isoformat()
    assert parse_when(utc, now_ms=NOW, option="--until") == NOW + 60_000
    # A time of day already past today is tomorrow's.
    past = (now - dt.timedelta(minutes=1)).strftime("%H:%M")
    assert NOW < parse_when(past, now_ms=NOW, option="--until") <= NOW + 86_400_000


@pytest.mark.parametrize("text", ["yesterday", "2000-01-01T00:00", "13:61"])
def test_when_refuses_the_past_and_nonsense(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_when(text, now_ms=NOW, option="--until")


@pytest.mark.parametrize(("ms", "text"), [
    (300, "300ms"), (45_000, "45s"), (5_400_000, "1h30m"), (3_605_000, "1h"),
    (172_800_000, "2d"), (65_000, "1m5s"),
])
def test_durations_are_shown_in_two_units_at_most(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_since_is_a_duration_back_or_a_date() -> None:
    assert parse_since("2h", now_ms=NOW, option="--since") == NOW - 7_200_000
    day = dt.datetime.fromtimestamp(NOW / 1000).date()
    midnight = dt.datetime.combine(day, dt.time()).astimezone()
    assert parse_since(day.isoformat(), now_ms=NOW, option="--since") == round(
        midnight.timestamp() * 1000)
    assert parse_since("2023-11-14T00:00:00Z", now_ms=NOW, option="--since") == 1_699_920_000_000


@pytest.mark.parametrize("text", ["yesterday", "2999-01-01", "14:00:00x"])
def test_bad_or_future_since_is_a_usage_error(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_since(text, now_ms=NOW, option="--since")

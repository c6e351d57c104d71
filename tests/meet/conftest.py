"""Shared fixtures: the datasets are loaded once per test session."""

from __future__ import annotations

import datetime as dt

import pytest

from backchannel.meet import (
    Gazetteer,
    HostPolicy,
    MeetingRequest,
    Suggestion,
    load_gazetteer,
    suggest_venues,
)

# The week of the first reported round (Vienna, May 2023).
VIENNA_ROUND = dt.date(2023, 5, 1)


@pytest.fixture(scope="session")
def gazetteer() -> Gazetteer:
    return load_gazetteer()


@pytest.fixture(scope="session")
def washington_beijing(gazetteer: Gazetteer) -> tuple[Suggestion, ...]:
    request = MeetingRequest(
        parties=(gazetteer.resolve("Washington"), gazetteer.resolve("Beijing")),
        policy=HostPolicy(),
        avoid=(),
        after=VIENNA_ROUND,
        duration_days=2,
        top=5,
    )
    return suggest_venues(request, gazetteer)

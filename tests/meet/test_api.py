"""The public surface of `backchannel.meet` is pinned, and it stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import backchannel.meet as meet
from backchannel import LocalProtocolError


def test_public_names_are_pinned() -> None:
    assert sorted(meet.__all__) == sorted([
        "DEFAULT_HOSTS", "Airport", "AmbiguousPlace", "Country", "DayWindow",
        "FlightEstimate", "Gazetteer", "HostPolicy", "HostState", "InvalidRequest", "Leg",
        "MeetError", "MeetingPlan", "MeetingRequest", "Neutrality", "NoAirportNearby", "Place",
        "Suggestion", "UnknownCountry", "UnknownPlace", "estimate_flight", "great_circle_km",
        "load_gazetteer", "parse_date", "parse_duration", "suggest_venues",
    ])


def test_errors_blame_the_caller() -> None:
    for error in (meet.UnknownPlace, meet.AmbiguousPlace, meet.UnknownCountry,
                  meet.InvalidRequest, meet.NoAirportNearby):
        assert issubclass(error, meet.MeetError)
    assert issubclass(meet.MeetError, LocalProtocolError)


def test_the_package_does_no_io_of_its_own() -> None:
    forbidden = {"open", "print", "input"}
    for path in Path(meet.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in forbidden, f"{path.name} calls {node.func.id}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"write_bytes", "write_text"}, path.name
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not {"socket", "urllib", "requests", "http"} & set(names), path.name

"""The map is a real PNG or SVG picture of the routes and venues."""

from __future__ import annotations

import itertools
import math
import xml.etree.ElementTree as ET

import pytest

from backchannel.meet import (
    Gazetteer,
    HostPolicy,
    InvalidRequest,
    MeetingRequest,
    Suggestion,
    suggest_venues,
)
from backchannel.meet.mapping import (
    LABEL_MIN_SEPARATION_PT,
    MAX_ROUTED_VENUES,
    place_labels,
    render_map,
    venue_label_positions,
)

from .conftest import VIENNA_ROUND

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_png_map(gazetteer: Gazetteer, washington_beijing: tuple[Suggestion, ...]) -> None:
    parties = washington_beijing[0].legs[0].party, washington_beijing[0].legs[1].party
    image = render_map(parties, washington_beijing, "png")
    assert image.startswith(PNG_MAGIC)
    width = int.from_bytes(image[16:20], "big")
    height = int.from_bytes(image[20:24], "big")
    assert width > 1000 and height > 500
    assert len(image) > 50_000  # world outlines, not an empty canvas


def test_svg_map_parses_and_names_the_places(
    washington_beijing: tuple[Suggestion, ...],
) -> None:
    parties = tuple(leg.party for leg in washington_beijing[0].legs)
    image = render_map(parties, washington_beijing, "svg")
    root = ET.fromstring(image)
    assert root.tag.endswith("svg")
    text = image.decode()
    for name in ("Washington", "Beijing", "Vienna"):
        assert name in text
    assert text.count("<path") > 100  # coastlines and borders


def test_unknown_map_format_is_refused(washington_beijing: tuple[Suggestion, ...]) -> None:
    with pytest.raises(InvalidRequest, match="png, svg"):
        render_map((), washington_beijing, "gif")


def _svg_ids(image: bytes) -> list[str]:
    return [el.get("id", "") for el in ET.fromstring(image).iter() if el.get("id")]


def test_svg_has_a_legend_a_venue_list_and_routes_to_every_venue(
    washington_beijing: tuple[Suggestion, ...],
) -> None:
    parties = tuple(leg.party for leg in washington_beijing[0].legs)
    image = render_map(parties, washington_beijing, "svg")
    ids = _svg_ids(image)
    assert "legend" in ids and "venue-list" in ids and "direct-route" in ids
    text = image.decode()
    for entry in ("a delegation's home", "routes to venue 1", "direct route Washington-Beijing"):
        assert entry in text
    assert len(washington_beijing) == MAX_ROUTED_VENUES
    for s in washington_beijing:  # every venue listed gets a route from each party
        assert f"venue-{s.rank}" in ids
        for party in (1, 2):
            assert f"route-{s.rank}-{party}" in ids


def test_more_venues_than_routes_says_so_in_the_legend(gazetteer: Gazetteer) -> None:
    parties = (gazetteer.resolve("Washington"), gazetteer.resolve("Moscow"))
    request = MeetingRequest(parties, HostPolicy(neutral_only=True), (), VIENNA_ROUND, top=8)
    suggestions = suggest_venues(request, gazetteer)
    image = render_map(parties, suggestions, "svg")
    ids = _svg_ids(image)
    assert f"route-{MAX_ROUTED_VENUES}-1" in ids
    assert f"route-{MAX_ROUTED_VENUES + 1}-1" not in ids
    assert f"venues {MAX_ROUTED_VENUES + 1}-8: marked, no routes" in image.decode()
    # Swiss, Austrian and Italian venues a few points apart on the page: numbers kept apart.
    labels = venue_label_positions(parties, suggestions)
    assert len(labels) == len(suggestions)
    for a, b in itertools.combinations(labels, 2):
        assert math.dist(a, b) >= LABEL_MIN_SEPARATION_PT


def test_labels_of_crowded_points_do_not_overlap() -> None:
    points = [(100.0 + i, 100.0 + (i % 2)) for i in range(12)]  # twelve venues in one city
    star = (110.0, 100.0)
    labels = place_labels(points, [star])
    for a, b in itertools.combinations(labels, 2):
        assert math.dist(a, b) >= LABEL_MIN_SEPARATION_PT
    assert all(math.dist(label, star) > LABEL_MIN_SEPARATION_PT / 2 for label in labels)
    # A lone point keeps its label on it.
    assert place_labels([(5.0, 5.0)]) == [(5.0, 5.0)]

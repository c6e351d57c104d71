"""The map is a real PNG or SVG picture of the routes and venues."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from backchannel.meet import Gazetteer, InvalidRequest, Suggestion
from backchannel.meet.mapping import render_map

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

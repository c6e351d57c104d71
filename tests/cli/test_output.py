"""Small pieces of the CLI's output and input parsing."""

from __future__ import annotations

import pytest
import typer

from backchannel.cli.output import local_time, short_id, utc_time
from backchannel.cli.pairing import parse_ttl


@pytest.mark.parametrize(("text", "ms"), [("90s", 90_000), ("30m", 1_800_000),
                                          ("12h", 43_200_000), ("7d", 604_800_000),
                                          ("1.5h", 5_400_000), (" 2D ", 172_800_000)])
def test_invite_lifetimes(text: str, ms: int) -> None:
    assert parse_ttl(text) == ms


@pytest.mark.parametrize("text", ["", "7", "0s", "-1d", "31d", "1w", "soon"])
def test_bad_invite_lifetimes(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_ttl(text)


def test_times() -> None:
    assert utc_time(0) is None and local_time(0) == "-" and local_time(0, empty="never") == "never"
    assert utc_time(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert local_time(1_700_000_000_123).startswith("2023-11-1")  # another day: date shown


def test_short_ids_are_prefixes() -> None:
    assert short_id("0123456789abcdef") == "01234567"

"""docs/relay.md states every relay limit as `limits.py` defines it (review 2026-12 §3:
the document said 200 frames/s where the code said 2,000).

The limits table names the `RelayLimits` fields of each row in backticks and their
defaults in the same order; this test reads both and compares each value, with its unit,
to `RelayLimits()`, and checks that no field is left out of the table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from backchannel.relay.limits import RelayLimits

DOC = Path(__file__).resolve().parents[2] / "docs" / "relay.md"
HEADING = "### Limits"
UNITS = {"": 1.0, "bytes": 1.0, "KiB": 1024.0, "MiB": 1024.0**2, "GiB": 1024.0**3,
         "s": 1.0, "days": 86_400.0}
_NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(bytes|KiB|MiB|GiB|days|s)?(?![\w/])")


def limits_table(text: str) -> list[tuple[list[str], list[float]]]:
    """(fields, values) of each row of the limits table."""
    section = text[text.index(HEADING):]
    rows: list[tuple[list[str], list[float]]] = []
    started = False
    for line in section.splitlines()[1:]:
        if not line.startswith("|"):
            if started:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        header, started = not started, True
        if header or len(cells) != 3 or set(cells[2]) <= set("-:"):
            continue
        fields = re.findall(r"`(\w+)`", cells[1])
        values = [float(n.replace(",", "")) * UNITS[u or ""]
                  for n, u in _NUMBER.findall(cells[2])]
        rows.append((fields, values))
    return rows


def test_the_limits_table_matches_the_defaults() -> None:
    rows = limits_table(DOC.read_text(encoding="utf-8"))
    assert rows, "no limits table found"
    defaults = RelayLimits()
    seen: set[str] = set()
    for fields, values in rows:
        assert len(fields) == len(values), (fields, values)
        for field, value in zip(fields, values, strict=True):
            assert getattr(defaults, field) == pytest.approx(value), (
                f"docs/relay.md says {field} = {value:g}, limits.py says "
                f"{getattr(defaults, field)}")
            seen.add(field)
    missing = {f.name for f in dataclasses.fields(RelayLimits)} - seen
    assert not missing, f"limits not in the docs/relay.md table: {sorted(missing)}"


def test_the_parser_reads_units_and_catches_drift() -> None:
    text = (f"{HEADING}\n\n| setting | field | default |\n|---|---|--:|\n"
            "| frames (burst) | `frames_per_second` (`frame_burst`) | 200 (400) |\n"
            "| ttl | `envelope_ttl` / `mailbox_idle_ttl` | 30 days / 90 days |\n"
            "| outbox | `max_outbox_bytes` | 8 MiB |\n\nafter\n")
    rows = limits_table(text)
    assert rows == [(["frames_per_second", "frame_burst"], [200.0, 400.0]),
                    (["envelope_ttl", "mailbox_idle_ttl"], [30 * 86_400.0, 90 * 86_400.0]),
                    (["max_outbox_bytes"], [8 * 1024.0**2])]
    assert RelayLimits().frames_per_second != rows[0][1][0]  # the drift the review found

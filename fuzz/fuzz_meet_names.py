"""Invariant: any bytes, read as a place name, resolve to a Place with an airport, or raise
MeetError; nothing else escapes.

Run: python fuzz/fuzz_meet_names.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.meet.errors import MeetError
from backchannel.meet.places import load_gazetteer

SEEDS = [
    b"Vienna",
    b"Washington, D.C.",
    b"Springfield",
    b"IAD",
    b"S\xc3\xa3o Paulo, Brazil",
    b"Malta",
    b"Portland, OR",
]


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        place = load_gazetteer().resolve(text)
    except MeetError:
        return
    assert -90.0 <= place.lat <= 90.0 and -180.0 <= place.lon <= 180.0
    assert len(place.airport.iata) == 3 and place.airport.tz


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

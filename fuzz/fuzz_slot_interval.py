"""Invariant: any text given as a slot interval (`slots --every`, the `slots` settings,
BACKCHANNEL_SLOTS) gives None ("off") or a number of seconds within
[MIN_SLOT_INTERVAL, MAX_SLOT_INTERVAL], or a ClientError whose message has no character
the text policy refuses; nothing else escapes.

Run: python fuzz/fuzz_slot_interval.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

from backchannel.client.errors import ClientError
from backchannel.client.slotpolicy import MAX_SLOT_INTERVAL, MIN_SLOT_INTERVAL, parse_interval
from backchannel.protocol.text import first_refused

SEEDS = [b"15", b"off", b"0", b"0.1", b"3600s", b"nan", b"inf", b"-1", b"1e3", b"\x1b[2J"]


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        seconds = parse_interval(text)
    except ClientError as error:
        assert first_refused(str(error)) is None, repr(str(error))
        return
    assert seconds is None or MIN_SLOT_INTERVAL <= seconds <= MAX_SLOT_INTERVAL, seconds


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

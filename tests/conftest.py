"""What the whole suite shares."""

from __future__ import annotations

import os

from backchannel.client.relays import OPEN_JITTER_ENV
from backchannel.client.slotpolicy import SLOTS_ENV

# A new relay connection waits a random delay before it opens (client/relays.py), so that a
# relay cannot read a sync's connections in channel order. On the suite's loopback relays
# there is nobody to hide the order from, and the waits add up to minutes over its syncs;
# set here, before any test, so the processes the tests start inherit it. The delay itself
# is tested where it is the subject (tests/client/test_observer.py), with the bound given.
os.environ.setdefault(OPEN_JITTER_ENV, "0")

# While a watch runs, every channel sends in constant-rate slots (client/slots.py), one
# envelope every 15 s by default: a test that watches would wait that long for each send.
# Off for the suite's watches; the slots are tested where they are the subject
# (tests/client/test_slots*.py), which turn them on per channel with a short interval.
os.environ.setdefault(SLOTS_ENV, "off")

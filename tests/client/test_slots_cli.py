"""`slots` and `status` through the CLI: the interval set per channel, refused outside
its bounds, and the cost per day shown."""

from __future__ import annotations

import json

from backchannel.client.slots import SLOT_BUCKET
from tests.cli.conftest import Pair, no_configuration_file, one_error_line, pair, relay, run

__all__ = ["no_configuration_file", "pair", "relay"]  # the CLI suite's fixtures


def test_slots_set_off_and_cost_shown(pair: Pair) -> None:
    w = pair.washington
    shown = json.loads(run(w, "slots", "beijing", "--json").stdout)
    # The suite turns slots off in the environment (tests/conftest.py).
    assert shown["interval_s"] is None and shown["bytes_per_day"] == 0
    set_ = json.loads(run(w, "slots", "beijing", "--every", "30", "--json").stdout)
    assert set_["interval_s"] == 30.0
    assert set_["bytes_per_day"] == SLOT_BUCKET * 2880 * set_["relays"]
    (board,) = json.loads(run(w, "status", "beijing", "--json").stdout)["channels"]
    assert board["slots"] == {k: v for k, v in set_.items() if k != "channel"}
    text = run(w, "status", "beijing").stdout
    assert "every 30 s" in text and "2.9 MB a day" in text
    assert "off: envelopes leave" in run(w, "slots", "beijing", "--every", "off").stdout
    line = one_error_line(run(w, "slots", "beijing", "--every", "0.01", code=1))
    assert "0.1 to 3600" in line

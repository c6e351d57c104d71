"""`slots` and `status` through the CLI: the interval set per channel, refused outside
its bounds, and the cost per day shown."""

from __future__ import annotations

import json
import time
from pathlib import Path

from backchannel.client.slotpolicy import SLOT_BUCKET
from tests.cli.conftest import Pair, no_configuration_file, one_error_line, pair, relay, run
from tests.cli.test_agent import bc, homes

__all__ = ["homes", "no_configuration_file", "pair", "relay"]  # the CLI suites' fixtures


def test_slots_set_off_and_cost_shown(pair: Pair) -> None:
    w = pair.washington
    shown = json.loads(run(w, "slots", "beijing", "--json").stdout)
    # The suite turns slots off in the environment (tests/conftest.py).
    assert shown["interval_s"] is None and shown["bytes_per_day"] == 0
    set_ = json.loads(run(w, "slots", "beijing", "--every", "30", "--json").stdout)
    assert set_["interval_s"] == 30.0
    assert set_["bytes_per_day"] == SLOT_BUCKET * 2880 * set_["relays"]
    (board,) = json.loads(run(w, "status", "beijing", "--json").stdout)["channels"]
    # The board adds what the slot loops last reported per direction (nothing yet).
    assert board["slots"] == {**{k: v for k, v in set_.items() if k != "channel"},
                              "directions": []}
    text = run(w, "status", "beijing").stdout
    assert "every 30 s" in text and "2.9 MB a day" in text
    assert "off: envelopes leave" in run(w, "slots", "beijing", "--every", "off").stdout
    line = one_error_line(run(w, "slots", "beijing", "--every", "0.01", code=1))
    assert "0.1 to 3600" in line


def test_a_send_through_the_agent_waits_for_the_next_slot(
    homes: tuple[Path, Path, str],
) -> None:
    alice, bob, _ = homes
    bc("--home", str(alice), "slots", "bob", "--every", "0.2")
    assert "Agent started" in bc("--home", str(alice), "agent").stdout
    sent = json.loads(bc("--home", str(alice), "send", "bob", "in a slot", "--json").stdout)
    # The agent's flush left it to the slots: not an error, and said how soon.
    assert sent["stored_on"] == [] and sent["next_slot_within_s"] == 0.25
    for _ in range(200):
        (board,) = json.loads(bc("--home", str(alice), "status", "bob", "--json").stdout)[
            "channels"]
        if board["queued"] == 0:
            break
        time.sleep(0.05)
    assert board["queued"] == 0 and board["slots"]["interval_s"] == 0.2
    bc("--home", str(bob), "sync")
    inbox = json.loads(bc("--home", str(bob), "inbox", "--json").stdout)["messages"]
    assert [m["text"] for m in inbox].count("in a slot") == 1

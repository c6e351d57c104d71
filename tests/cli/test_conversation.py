"""Two principals talk through the CLI over a real relay: the whole life of a channel."""

from __future__ import annotations

import json

from backchannel.cli.exitcodes import ExitCode
from tests.cli.conftest import Pair, run


def test_a_message_goes_both_ways_with_receipts(pair: Pair) -> None:
    w, b = pair.washington, pair.beijing
    sent = json.loads(run(w, "send", "beijing", "We propose Vienna.", "--json").stdout)
    assert sent["stored_on"] == [pair.relay.url] and sent["queued"] is False

    synced = json.loads(run(b, "--json", "sync").stdout)
    assert synced["new_messages"] == 1 and synced["relays_down"] == {}

    inbox = json.loads(run(b, "inbox", "washington", "--json").stdout)["messages"]
    assert [m["text"] for m in inbox] == ["We propose Vienna."]
    assert inbox[0]["message_id"] == sent["message_id"] and inbox[0]["read_at"] is None

    shown = run(b, "read", "washington", sent["message_id"][:8]).stdout
    assert "We propose Vienna." in shown
    assert "No unread messages" in run(b, "read", "washington").stdout

    run(w, "sync")
    (status,) = json.loads(run(w, "status", "--json").stdout)["channels"]
    assert (status["sent"], status["delivered"], status["read"]) == (1, 1, 1)
    assert status["queued"] == 0 and status["gaps"] == [] and status["rejected"] == 0

    reply = run(b, "send", "washington", "Vienna is acceptable.")
    assert "Sent to washington" in reply.stdout and "stored on" in reply.stdout
    assert "1 new message(s)" in run(w, "sync").stdout
    assert "Vienna is acceptable." in run(w, "inbox").stdout


def test_both_sides_see_the_same_safety_number_and_confirm_it(pair: Pair) -> None:
    mine = json.loads(run(pair.washington, "verify", "beijing", "--json").stdout)
    theirs = json.loads(run(pair.beijing, "verify", "washington", "--json").stdout)
    assert mine["digits"] == theirs["digits"] and mine["words"] == theirs["words"]
    assert len(mine["groups"]) == 12 and all(len(g) == 5 for g in mine["groups"])
    assert len(mine["words"]) == 12 and mine["verified"] is False

    human = run(pair.washington, "verify", "beijing", "--confirm").stdout
    assert "is verified" in human
    # The whole number is shown, and the advice is to compare all of it: an impostor's
    # number can share its first groups with the genuine one (review §4 row 31).
    for row in range(0, 12, 4):
        assert " ".join(mine["groups"][row:row + 4]) in human
    assert " ".join(mine["words"][:6]) in human and " ".join(mine["words"][6:]) in human
    assert "Compare all 12 groups (or all 12 words)" in human and "to the last" in human
    assert "first" not in human  # never "compare the first groups"
    assert "all 12 groups" in " ".join(run(None, "verify", "--help").stdout.split())
    channels = json.loads(run(pair.washington, "channels", "--json").stdout)
    assert channels["channels"][0]["verified"] is True
    assert channels["channels"][0]["role"] == "inviter" and channels["pending_invites"] == []


def test_a_message_sent_while_the_relay_is_down_is_queued_then_delivered(pair: Pair) -> None:
    pair.relay.stop()
    queued = run(pair.washington, "send", "beijing", "Sent while the relay was down.",
                 code=ExitCode.NOT_DELIVERED)  # not delivered, but kept
    assert "Queued" in queued.stdout and "sync" in queued.stdout
    (status,) = json.loads(run(pair.washington, "status", "--json").stdout)["channels"]
    assert status["queued"] == 1

    pair.relay.start()  # same port, same database
    flushed = json.loads(run(pair.washington, "sync", "--json").stdout)
    assert flushed["sent"] >= 1 and flushed["relays_down"] == {}
    assert json.loads(run(pair.beijing, "sync", "--json").stdout)["new_messages"] == 1
    inbox = json.loads(run(pair.beijing, "inbox", "--json").stdout)["messages"]
    assert [m["text"] for m in inbox] == ["Sent while the relay was down."]

"""A copied home, as its user meets it on the command line (review §4 row 5; docs/client.md,
"Backups and copies"): a backup restored after the original went on is a loud fork on
the counterpart's side, never a silent loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from backchannel.cli.exitcodes import ExitCode
from tests.cli.conftest import Pair, run


def test_a_restored_backup_that_sends_is_a_fork_for_the_counterpart(
    pair: Pair, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    run(w, "send", "beijing", "before the backup")
    run(b, "sync")
    backup = tmp_path / "backup"
    shutil.copytree(w, backup)  # between commands: nothing holds the home
    run(w, "send", "beijing", "after the backup, from the original")
    run(b, "sync")
    run(b, "send", "washington", "read by the original")
    run(w, "sync")  # the original steps its ratchet and sends its receipts

    shutil.rmtree(w)
    shutil.copytree(backup, w)  # the laptop died: the backup comes back
    run(b, "send", "washington", "sent after the restore")
    inbox = json.loads(run(w, "inbox", "--json").stdout)["messages"]
    assert inbox == []  # what the original received after the backup is gone from it
    run(w, "sync")
    run(w, "send", "beijing", "the restored copy's note")

    result = run(b, "sync", code=ExitCode.FORK_DETECTED)
    assert "FORK:" in result.stderr
    (status,) = json.loads(run(b, "status", "--json").stdout)["channels"]
    assert status["forks"] and all("used twice" in fork for fork in status["forks"])
    texts = [m["text"] for m in json.loads(run(b, "inbox", "--json").stdout)["messages"]]
    assert texts == ["before the backup", "after the backup, from the original"]

"""Hints are complete commands that run as they are pasted (review §4 rows 7 and 25), and
`sync` counts what it received and shows (row 17).

The principals live under a folder whose name has a space, and call each other by names
with spaces, so that a hint that forgot `--home` or a quote fails here."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from backchannel.cli.context import CliContext, default_home
from backchannel.cli.hints import command_hint
from backchannel.client.engine import Principal
from tests.cli.conftest import ThreadRelay, run
from tests.client.conftest import FAST_KDF, pair

W, B = "washington dc", "beijing office"  # each is the other's channel name


@dataclass
class Spaced:
    washington: Path
    beijing: Path


@pytest.fixture()
def spaced(tmp_path: Path, relay: ThreadRelay) -> Spaced:
    homes = tmp_path / "my homes"
    w_home, b_home = homes / "w", homes / "b"

    async def paired() -> None:
        w = Principal.create(w_home, W, "pw", kdf=FAST_KDF)
        b = Principal.create(b_home, B, "pw", kdf=FAST_KDF)
        await pair(w, b, [relay.url])
        for _ in range(3):  # let the pairing's line tests and their receipts settle
            await w.sync()
            await b.sync()
        w.close()
        b.close()

    asyncio.run(paired())
    return Spaced(w_home, b_home)


def bc(home: Path, *args: str) -> str:
    return run(home, *args, passphrase="pw").stdout


def hints(out: str) -> list[str]:
    """Every `backchannel ...` command line printed, as it would be pasted."""
    return [m.group(0) for m in re.finditer(r"backchannel --home .*$", out, re.MULTILINE)]


def paste(hint: str) -> str:
    """Run a hint exactly as a shell would split it (no `BACKCHANNEL_HOME` set)."""
    argv = shlex.split(hint)
    assert argv[0] == "backchannel", hint
    return run(None, *argv[1:], passphrase="pw").stdout


def test_command_hint_names_the_home_and_quotes(tmp_path: Path) -> None:
    assert command_hint(CliContext(default_home()), "read", "beijing") == "backchannel read beijing"
    home = tmp_path / "my home"
    assert command_hint(CliContext(home), "read", "new york") == (
        f"backchannel --home '{home}' read 'new york'")


def test_hints_of_sync_read_and_inbox_run_as_they_are(spaced: Spaced) -> None:
    w, b = spaced.washington, spaced.beijing
    (sync_hint,) = hints(bc(b, "inbox"))  # nothing received yet: fetch with sync
    assert sync_hint.endswith(" sync")
    note = json.loads(bc(w, "send", B, "Incident at sea.", "--flash", "--ack-within", "10m",
                         "--json"))["message_id"][:8]
    synced = paste(sync_hint)
    # A FLASH note is named on a line of its own, with the command that opens it, then
    # counted with the command that opens every new one.
    flash_hint, read_hint = hints(synced)
    assert shlex.split(flash_hint)[-3:] == ["read", W, note]
    assert shlex.split(read_hint)[-2:] == ["read", W]
    opened = paste(read_hint)
    assert "Incident at sea." in opened
    ack_hint, hold_hint = hints(opened)
    assert shlex.split(ack_hint)[-3:] == ["ack", W, note]
    assert shlex.split(hold_hint)[-5:] == ["hold", W, note, "--until", "1h"]
    assert "Holding reply to" in paste(hold_hint)
    # Held: the acknowledgement is still owed, another holding reply is not suggested.
    again = bc(b, "read", W, note)
    assert hints(again) == [ack_hint] and "held: answer expected by" in again
    assert "Acknowledged" in paste(ack_hint)
    # Acknowledged: nothing is owed, nothing is suggested.
    done = bc(b, "read", W, note)
    assert "Incident at sea." in done and "Acknowledge" not in done and hints(done) == []


def test_sync_counts_what_it_received_and_shows(spaced: Spaced) -> None:
    w, b = spaced.washington, spaced.beijing
    note = json.loads(bc(w, "send", B, "One note.", "--json"))["message_id"]
    # Beijing gets the note, and sends its delivery receipt.
    assert "Synced: 1 new message(s), 0 dialogue message(s), 0 receipt(s), 1 sent." in bc(
        b, "sync")
    bc(b, "ack", W, note[:8])
    # Washington gets that receipt and the acknowledgement, the one act it shows.
    out = bc(w, "sync")
    assert "Synced: 0 new message(s), 1 dialogue message(s), 1 receipt(s), 1 sent." in out
    assert out.count(f"{B} acknowledged your note {note[:8]}") == 1
    data = json.loads(bc(b, "sync", "--json"))
    assert (data["new_messages"], data["receipts"], data["dialogue"]) == (0, 1, [])

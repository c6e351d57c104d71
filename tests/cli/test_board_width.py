"""The status board at 80 columns (review §4 row 11): every section readable, no cell cut
with "…", no line wider than the terminal; piped, as wide as its lines and unpadded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from backchannel.cli.section import Section
from tests.cli.conftest import PASSPHRASE, Pair, run
from tests.cli.test_process import _CMD

pytestmark = pytest.mark.timeout(180)

_SGR = re.compile(r"\x1b\[[0-9;]*m")
HOLD_TEXT = "Consulting the capital before answering."
QUESTION = "Does this include the fishing vessels near the islands?"


def js(home: Path, *args: str) -> Any:
    return json.loads(run(home, *args, "--json").stdout)


def _busy_board(pair: Pair) -> dict[str, str]:
    """Every section of Washington's board filled; the ids it must show."""
    w, b = pair.washington, pair.beijing
    flash = js(w, "send", "beijing", "Incident at sea: confirm.", "--flash",
               "--ack-within", "10m")["message_id"]
    theirs = js(b, "send", "washington", "Our answer follows.", "--flash",
                "--ack-within", "1h")["message_id"]
    run(b, "sync")
    run(b, "hold", "washington", flash[:8], "--until", "2h", HOLD_TEXT)
    request = js(b, "clarify", "washington", flash[:8], QUESTION)["message_id"]
    redline = js(b, "redline", "add", "washington", "Taiwan",
                 "Taiwan is the first red line that must not be crossed.")["redline_id"]
    item = js(w, "agenda", "propose", "beijing", "--round", "2", "Taiwan Strait",
              "--detail", "Vienna, 12-13 May, Hofburg palace")["item_id"]
    record = js(w, "record", "propose", "beijing", "Joint statement on maritime incidents",
                "Both sides will notify each other of incidents at sea within one hour.")[
                    "record_id"]
    run(w, "sync")
    return {k: v[:8] for k, v in (("flash", flash), ("theirs", theirs), ("request", request),
                                  ("redline", redline), ("item", item), ("record", record))}


def _status_on_a_terminal(home: Path, columns: int) -> str:
    """`backchannel status` on a pseudo-terminal `columns` wide, colour codes removed."""
    import pty

    primary, secondary = pty.openpty()
    env = {**os.environ, "BACKCHANNEL_PASSPHRASE": PASSPHRASE, "BACKCHANNEL_HOME": str(home),
           "COLUMNS": str(columns), "TERM": "xterm"}
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        env.pop(name, None)
    proc = subprocess.Popen([*_CMD, "status"], stdin=secondary, stdout=secondary,
                            stderr=secondary, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(primary)
    assert proc.wait(60) == 0, b"".join(chunks)
    return _SGR.sub("", b"".join(chunks).decode().replace("\r\n", "\n"))


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")
def test_the_board_fits_80_columns_and_cuts_nothing(pair: Pair) -> None:
    ids = _busy_board(pair)
    shown = _status_on_a_terminal(pair.washington, 80)
    lines = shown.splitlines()
    assert "…" not in shown, shown
    assert max(cell_len(line) for line in lines) <= 80, shown
    for section in ("Notes awaiting acknowledgement", "Open clarification requests",
                    "Red lines awaiting acknowledgement", "Next meeting: round 2", "Records"):
        assert section in shown, section
    for ref in ids.values():
        assert ref in shown, ref
    for value in ("beijing's ack", "your ack", "FLASH", "Precedence", "Deadline",
                  "Consulting the capital", "fishing vessels", "Hofburg",
                  "co-signature"):
        assert value in shown, value

    piped = run(pair.washington, "status").stdout
    assert all(line == line.rstrip(" ") for line in piped.splitlines())
    assert "…" not in piped and HOLD_TEXT in piped  # a pipe is as wide as its lines


def test_a_section_stacks_when_its_columns_cannot_each_keep_their_longest_word() -> None:
    section = Section("Records", ("Record", "Proposed by", "Version", "Title", "State"))
    section.add_row("8e42a3a4", "washington", "1", "Joint statement on maritime incidents",
                    "awaiting beijing's co-signature")
    widths = {}
    for width in (200, 66, 40):
        console = Console(width=width, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(section)
        text = console.export_text()
        assert "…" not in text and max(map(cell_len, text.splitlines())) <= width, text
        widths[width] = text
    assert "┃ Record " in widths[200] and "co-signature" in widths[200]  # a table
    assert "┃ Record " in widths[66]  # still a table, its text columns wrapped
    assert "│ Proposed by │ washington" in widths[40]  # one block: heading, value

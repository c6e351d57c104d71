"""An invite too long for one QR code (it carries its relays' forwarding keys) still
gives its code, and says plainly why no QR code came with it."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_agent import CLI, ENV, bc

pytestmark = pytest.mark.timeout(120)


def _relay(db: Path) -> tuple[subprocess.Popen[str], str]:
    """`relay serve` as a user runs it: it makes and publishes a forwarding key."""
    relay = subprocess.Popen(
        [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0", "--db",
         f"sqlite:///{db}", "--no-metrics"], stderr=subprocess.PIPE, text=True, env=ENV)
    assert relay.stderr is not None
    return relay, str(json.loads(relay.stderr.readline())["url"])


def test_an_invite_with_forwarding_keys_is_given_as_text_without_a_qr_code(
    tmp_path: Path,
) -> None:
    first, url1 = _relay(tmp_path / "one.db")
    second, url2 = _relay(tmp_path / "two.db")
    try:
        home = str(tmp_path / "alice")
        bc("--home", home, "init", "--name", "alice", "--allow-weak-passphrase")
        png = tmp_path / "invite.png"
        made = bc("--home", home, "invite", "--relay", url1, "--relay", url2, "--qr",
                  "--qr-file", str(png))
        (code,) = made.stdout.splitlines()  # the code alone: no half-drawn symbol
        assert code.startswith("BC1-") and len(code) > 2953  # QR's largest binary symbol
        assert f"no QR code: this code is {len(code):,} characters" in made.stderr
        assert not png.exists() and "saved" not in made.stderr
        # The code itself is good: a counterpart joins with it.
        bc("--home", str(tmp_path / "bob"), "init", "--name", "bob", "--allow-weak-passphrase")
        bc("--home", str(tmp_path / "bob"), "accept", code)
    finally:
        for relay in (first, second):
            relay.send_signal(signal.SIGTERM)
            relay.wait(30)

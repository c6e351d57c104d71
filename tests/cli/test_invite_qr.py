"""An invite over two relays fits one QR code (version 4 pins each relay's identity in 32
bytes instead of carrying its 1,225-byte forwarding key); one too long for a QR code still
gives its code, and says plainly why no QR code came with it."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from backchannel.cli.pairing import no_qr_reason, qr_symbol
from tests.cli.test_agent import CLI, ENV, bc

pytestmark = pytest.mark.timeout(120)

# QR's largest binary symbol (version 40, level L) holds this many bytes.
QR_MAX_BYTES = 2953


def _relay(db: Path) -> tuple[subprocess.Popen[str], str]:
    """`relay serve` as a user runs it: it makes a key file (forwarding key and relay
    identity) and publishes the signed statement of its key."""
    relay = subprocess.Popen(
        [*CLI, "relay", "serve", "--host", "127.0.0.1", "--port", "0", "--db",
         f"sqlite:///{db}", "--no-metrics"], stderr=subprocess.PIPE, text=True, env=ENV)
    assert relay.stderr is not None
    return relay, str(json.loads(relay.stderr.readline())["url"])


def test_an_invite_over_two_relays_fits_one_qr_code(tmp_path: Path) -> None:
    first, url1 = _relay(tmp_path / "one.db")
    second, url2 = _relay(tmp_path / "two.db")
    try:
        home = str(tmp_path / "alice")
        bc("--home", home, "init", "--name", "alice", "--allow-weak-passphrase")
        png = tmp_path / "invite.png"
        made = bc("--home", home, "invite", "--relay", url1, "--relay", url2, "--qr",
                  "--qr-file", str(png))
        code = made.stdout.splitlines()[0]
        assert code.startswith("BC1-") and len(code) < QR_MAX_BYTES
        assert "warning" not in made.stderr and "no QR code" not in made.stderr
        assert png.exists() and f"QR code saved to {png}" in made.stderr
        # The code is good: a counterpart joins with it (fetching and verifying each
        # relay's key against its pin).
        bc("--home", str(tmp_path / "bob"), "init", "--name", "bob", "--allow-weak-passphrase")
        bc("--home", str(tmp_path / "bob"), "accept", code)
    finally:
        for relay in (first, second):
            relay.send_signal(signal.SIGTERM)
            relay.wait(30)


def test_a_code_too_long_for_a_qr_code_says_why() -> None:
    code = "BC1-" + "a" * QR_MAX_BYTES  # lower case: binary mode, as base64url is
    assert qr_symbol(code) is None
    assert f"this code is {len(code):,} characters" in no_qr_reason(code)
    assert qr_symbol("BC1-" + "a" * 2000) is not None

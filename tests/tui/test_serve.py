"""`tui --serve`: bound to 127.0.0.1 only, each session runs this console on the same
home, and without textual-serve installed the command says how to add it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from backchannel.cli.tui import SERVE_HOST, serve_command
from tests.cli.conftest import run


def test_the_served_console_is_this_console_on_the_same_home_on_loopback() -> None:
    assert SERVE_HOST == "127.0.0.1"
    words = shlex.split(serve_command("/tmp/a home"))
    assert words[0] == sys.executable and words[-3:] == ["--home", "/tmp/a home", "tui"]


def test_serve_without_textual_serve_says_how_to_add_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "textual_serve.server", None)  # an import fails
    result = run(tmp_path / "home", "tui", "--serve", code=None)
    assert result.exit_code != 0
    assert "pip install 'backchannel[serve]'" in result.stderr

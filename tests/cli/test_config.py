"""The configuration file: its settings, their precedence (option > environment > file >
built-in default), its errors (exit 2, naming the file, the line and the key, never a
traceback), and what the launcher forwards to an agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backchannel.cli.config import ConfigError, load_config
from backchannel.cli.context import CliContext, builtin_home
from backchannel.cli.hints import command_hint
from backchannel.cli.launcher import _configured

from .conftest import ThreadRelay, one_error_line, run


@pytest.fixture()
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A configuration file BACKCHANNEL_CONFIG names; each test writes what it needs."""
    path = tmp_path / "config.toml"
    path.write_text("")
    monkeypatch.setenv("BACKCHANNEL_CONFIG", str(path))
    return path


def _shown(*args: str) -> dict[str, object]:
    """`config show --json`, parsed."""
    result = run(None, *args, "config", "show", "--json")
    shown: dict[str, object] = json.loads(result.stdout)
    return shown


def test_the_home_comes_from_the_file(config_file: Path, tmp_path: Path) -> None:
    config_file.write_text(f'home = "{tmp_path / "washington"}"\n')
    run(None, "init", "--name", "washington")
    assert (tmp_path / "washington" / "state.db").exists()
    assert "washington" in run(None, "whoami").stdout
    # The file's home is the default one: hints do not spell it out.
    assert command_hint(CliContext(tmp_path / "washington"), "status") == "backchannel status"


def test_a_tilde_in_the_home_is_expanded(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    config_file.write_text('home = "~/bc/washington"\n')
    assert _shown()["home"] == {"value": str(tmp_path / "bc" / "washington"), "from": "file"}


def test_the_option_beats_the_environment_beats_the_file(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text(f'home = "{tmp_path / "from-file"}"\n')
    assert _shown()["home"] == {"value": str(tmp_path / "from-file"), "from": "file"}
    monkeypatch.setenv("BACKCHANNEL_HOME", str(tmp_path / "from-env"))
    from typer.testing import CliRunner

    from backchannel.cli.main import app

    shown = json.loads(CliRunner().invoke(app, ["config", "show", "--json"]).stdout)
    assert shown["home"] == {"value": str(tmp_path / "from-env"), "from": "environment"}
    shown = json.loads(CliRunner().invoke(
        app, ["--home", str(tmp_path / "typed"), "config", "show", "--json"]).stdout)
    assert shown["home"] == {"value": str(tmp_path / "typed"), "from": "option"}


def test_without_a_file_the_built_in_defaults_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sys.platform != "linux":
        pytest.skip("XDG_CONFIG_HOME names the config folder on Linux only")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing-here"))
    monkeypatch.delenv("BACKCHANNEL_CONFIG")
    assert load_config().path is None
    shown = _shown()
    assert shown["file"] is None
    assert shown["home"] == {"value": str(builtin_home()), "from": "default"}
    assert shown["relays"] == {"value": [], "from": "default"}
    assert run(None, "config", "path").stdout.strip() == str(
        tmp_path / "nothing-here" / "backchannel" / "config.toml")


def test_invite_uses_the_file_s_relays_unless_relay_is_given(
    config_file: Path, tmp_path: Path, relay: ThreadRelay
) -> None:
    home = tmp_path / "washington"
    run(home, "init", "--name", "washington")
    config_file.write_text(f'relays = ["{relay.url}"]\n')
    made = json.loads(run(home, "invite", "--json").stdout)
    assert made["relays"] == [relay.url]
    # Given on the command line, --relay wins: the file's relay (nothing listens on port
    # 9) is not even tried.
    config_file.write_text('relays = ["ws://127.0.0.1:9/"]\n')
    made = json.loads(run(home, "invite", "--relay", relay.url, "--json").stdout)
    assert made["relays"] == [relay.url]


def test_json_true_prints_json_and_no_json_turns_it_off(config_file: Path) -> None:
    config_file.write_text("json = true\n")
    shown = json.loads(run(None, "config", "show").stdout)
    assert shown["json"] == {"value": True, "from": "file"}
    assert run(None, "--no-json", "config", "show").stdout.startswith("Configuration file:")
    # Errors too are JSON under the file's `json = true`.
    failed = run(None, "--home", "/nonexistent", "status", code=3)
    assert json.loads(failed.stderr)["error"]["code"] == "not_found"


@pytest.mark.parametrize(("text", "where", "words"), [
    ("home = \n", "line 1", ["not valid TOML"]),
    ('home = "/x"\nhome = "/y"\n', "line 2", ["not valid TOML"]),
    ('home = "/x"\nrelay = ["wss://r.example.org"]\n', "line 2", ["unknown key 'relay'"]),
    ('[relays]\nurl = "wss://r.example.org"\n', "line 1", ["'relays' must be a list"]),
    ("json = 1\n", "line 1", ["'json' must be true or false"]),
    ('\nhome = "relative/path"\n', "line 2", ["'home' must be an absolute folder"]),
    ('relays = ["ws://relay.example.org"]\n', "line 1", ["'relays'", "wss://"]),
    ('relays = [\n  "wss://ok.example.org",\n  "https://relay.example.org",\n]\n', "line 1",
     ["'relays'", "web address"]),
])
def test_a_broken_file_is_a_usage_error_naming_file_line_and_key(
    config_file: Path, text: str, where: str, words: list[str]
) -> None:
    config_file.write_text(text)
    result = run(Path("/nonexistent"), "status", code=2)
    line = one_error_line(result)
    assert f"configuration file {config_file}, {where}: " in line
    for word in words:
        assert word in line
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert run(None, "config", "show", code=2).stderr.strip() == line
    # Where the file is can still be asked (the one command that does not stop at it).
    assert run(None, "config", "path").stdout.strip() == str(config_file)
    with pytest.raises(ConfigError):
        load_config()


def test_a_missing_file_named_by_the_environment_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKCHANNEL_CONFIG", str(tmp_path / "typo.toml"))
    line = one_error_line(run(None, "status", code=2))
    assert "typo.toml" in line and "BACKCHANNEL_CONFIG" in line


def test_a_broken_file_does_not_stop_help_or_version(config_file: Path) -> None:
    config_file.write_text("this is not toml\n")
    for argv in (["--version"], ["--help"]):
        done = subprocess.run(
            [sys.executable, "-c", "from backchannel.cli.launcher import main; main()", *argv],
            capture_output=True, text=True, timeout=60, env=os.environ.copy())
        assert done.returncode == 0 and done.stderr == "", (argv, done.stderr)


def test_the_launcher_hands_the_agent_the_file_s_settings(config_file: Path) -> None:
    config_file.write_text('home = "/bc/w"\njson = true\nrelays = ["wss://a.example.org"]\n')
    home, argv = _configured(["invite", "--ttl", "2d"], "invite") or (None, [])
    assert home == Path("/bc/w")
    assert argv == ["--json", "invite", "--relay", "wss://a.example.org", "--ttl", "2d"]
    # What the command line says stays as it is.
    _, argv = _configured(["--no-json", "invite", "--relay", "wss://b.example.org"],
                          "invite") or (None, [])
    assert argv == ["--no-json", "invite", "--relay", "wss://b.example.org"]
    config_file.write_text("relay = 1\n")
    assert _configured(["status"], "status") is None  # run here, where the error is told

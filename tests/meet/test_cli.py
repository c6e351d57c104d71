"""`backchannel meet suggest` end to end, through Typer's test runner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backchannel.cli.main import app

BASE = ["meet", "suggest", "--between", "Washington", "--between", "Beijing",
        "--after", "2023-05-01"]


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def test_table_lists_vienna_with_both_distances(runner: CliRunner) -> None:
    result = runner.invoke(app, [*BASE, "--top", "3"], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "Vienna" in result.output and "7,165 km" in result.output
    assert "7,452 km" in result.output


def test_json_output(runner: CliRunner) -> None:
    result = runner.invoke(app, [*BASE, "--json", "--duration", "3d", "--top", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len(data["venues"]) == 4
    names = [v["venue"]["name"] for v in data["venues"][:3]]
    assert "Vienna" in names
    vienna = data["venues"][names.index("Vienna")]
    assert [leg["from"] for leg in vienna["legs"]] == ["Washington", "Beijing"]
    assert len(vienna["daily_windows"]) == 3
    assert vienna["dates"]["first"] > "2023-05-01"


def test_rotation_and_country_options(runner: CliRunner) -> None:
    result = runner.invoke(app, [*BASE, "--json", "--avoid", "Vienna", "--avoid", "Malta",
                                 "--avoid", "Bangkok", "--exclude", "Serbia",
                                 "--allow", "Norway", "--top", "10"])
    assert result.exit_code == 0, result.output
    countries = {v["venue"]["country"] for v in json.loads(result.output)["venues"]}
    assert "RS" not in countries
    assert not {v["venue"]["name"] for v in json.loads(result.output)["venues"]} & {
        "Vienna", "Valletta", "Bangkok"}


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_map_file(runner: CliRunner, tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"venues.{suffix}"
    result = runner.invoke(app, [*BASE, "--top", "3", "--map", str(target)])
    assert result.exit_code == 0, result.output
    head = target.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n" if suffix == "png" else head.startswith(b"<?xml")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["meet", "suggest", "--between", "Washington"], "at least 2 parties"),
        (["meet", "suggest"], "at least 2 parties"),
        ([*BASE, "--allow", "CH", "--exclude", "Switzerland"], "both allowed and excluded"),
        ([*BASE, "--neutral-only", "--include-parties"], "contradict"),
        (["meet", "suggest", "-b", "Atlantis City", "-b", "Beijing"], "unknown place"),
        (["meet", "suggest", "-b", "Springfield", "-b", "Beijing"], "ambiguous place"),
        ([*BASE, "--exclude", "Narnia"], "unknown country"),
        ([*BASE, "--duration", "2 weeks"], "not a number of days"),
        ([*BASE, "--after", "next Tuesday"], "YYYY-MM-DD"),
        ([*BASE, "--map", "venues.gif"], ".png or .svg"),
        ([*BASE, "--avoid", "Qqxzzv"], "unknown place"),
    ],
)
def test_bad_input_gives_one_clear_line_and_a_failure_code(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]
    assert "Traceback" not in result.output


def test_help_has_an_example(runner: CliRunner) -> None:
    result = runner.invoke(app, ["meet", "suggest", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example:" in result.output and "--between" in result.output



def test_map_without_the_map_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # A fresh process where matplotlib cannot be imported, as when the extra is not
    # installed (None in sys.modules makes every import of it fail).
    target = tmp_path / "venues.png"
    script = ("import sys; sys.modules['matplotlib'] = None; "
              "from backchannel.cli.main import app; app()")
    result = subprocess.run([sys.executable, "-c", script, *BASE, "--map", str(target)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "pip install 'backchannel[map]'" in result.stderr
    assert not target.exists()

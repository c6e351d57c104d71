"""`backchannel meet suggest` end to end, through Typer's test runner."""

from __future__ import annotations

import datetime as dt
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
    data = json.loads(result.stdout)
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
    countries = {v["venue"]["country"] for v in json.loads(result.stdout)["venues"]}
    assert "RS" not in countries
    assert not {v["venue"]["name"] for v in json.loads(result.stdout)["venues"]} & {
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


def _venues(runner: CliRunner, *extra: str) -> list[dict[str, object]]:
    result = runner.invoke(app, [*BASE, "--json", *extra])
    assert result.exit_code == 0, result.output
    venues: list[dict[str, object]] = json.loads(result.stdout)["venues"]
    return venues


def _km(leg: object) -> str:
    assert isinstance(leg, dict)
    return f"{leg['distance_km']:,.0f} km"


@pytest.mark.parametrize("columns", [80, 200])
def test_report_fits_the_console_and_shows_every_venue_and_distance(
    runner: CliRunner, columns: int
) -> None:
    venues = _venues(runner)
    result = runner.invoke(app, BASE, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert not [line for line in lines if line != line.rstrip()]
    for v in venues:
        assert isinstance(v["venue"], dict) and isinstance(v["legs"], list)
        assert str(v["venue"]["name"]) in result.stdout
        for leg in v["legs"]:
            assert _km(leg) in result.stdout
    if columns == 80:  # stacked: one short block per venue, blocks apart by a blank line
        blocks = result.stdout.split("\n\n")[1:]
        assert len(blocks) == len(venues)
        assert all(len(block.strip().splitlines()) < 12 for block in blocks)
    else:  # wide enough for the table, and no word of it cut
        assert "┃ Why" in result.stdout and "…" not in result.stdout


def test_piped_output_is_not_wrapped_or_padded(runner: CliRunner) -> None:
    venues = _venues(runner)
    result = runner.invoke(app, BASE, env={"COLUMNS": ""})  # no terminal, no COLUMNS
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line != line.rstrip()]
    for v in venues:  # every reason whole on one line
        assert isinstance(v["reasons"], list)
        for reason in v["reasons"]:
            assert any(line.endswith(f"- {reason}") for line in lines), reason


def test_every_resolved_place_is_shown_with_its_country(runner: CliRunner) -> None:
    args = ["meet", "suggest", "-b", "Washington", "-b", "Pekin", "--avoid", "Wien",
            "--after", "2023-05-01"]
    result = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Resolved: Washington, District of Columbia, United States (IAD)" in result.stdout
    assert "Beijing, China (PEK) for 'Pekin'" in result.stdout
    assert "Avoiding: Vienna, Austria (VIE) for 'Wien'" in result.stdout
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert [(p["query"], p["label"]) for p in data["parties"]] == [
        ("Washington", "Washington, District of Columbia, United States"),
        ("Pekin", "Beijing, China")]
    assert [(p["query"], p["label"]) for p in data["avoid"]] == [("Wien", "Vienna, Austria")]
    illinois = runner.invoke(app, ["meet", "suggest", "-b", "Pekin, Illinois", "-b", "Beijing",
                                   "--after", "2023-05-01"], env={"COLUMNS": "80"})
    assert "Resolved: Pekin, Illinois, United States (PIA)" in illinois.stdout


def test_a_past_date_is_planned_with_a_warning(runner: CliRunner) -> None:
    result = runner.invoke(app, [*BASE, "--json"])
    assert result.exit_code == 0
    assert ("warning: --after 2023-05-01 is in the past; planning as of that date"
            in result.stderr)
    assert json.loads(result.stdout)["warnings"]
    future = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    result = runner.invoke(app, ["meet", "suggest", "-b", "Washington", "-b", "Beijing",
                                 "--after", future, "--json"])
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["warnings"] == []


def test_global_json_before_the_command_is_honoured(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--json", *BASE, "--top", "2"])
    assert result.exit_code == 0, result.output
    assert [v["venue"]["name"] for v in json.loads(result.stdout)["venues"]] == [
        "Vienna", "Vatican City"]

"""`--version` and `--help` answer without importing what no command needs yet, the
registry says what the commands say, and help reads without Python types in it.

Timing is bench/cli.py's business; these check what is imported, which does not depend
on how loaded the machine is.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backchannel.cli import registry
from backchannel.cli.main import _load, _root, app

# Everything a `--help` or `--version` has no use for.
HEAVY = ("backchannel.client.engine", "backchannel.meet", "cryptography", "typer", "rich")
# What a command's own `--help` has no use for: it builds that one command with Typer, and
# needs neither the client (its engine, cryptography, websockets, asyncpg), the venue
# planner's gazetteer, the map, nor Rich (help is plain text, `helpstyle`). Each is
# imported by the functions that use it (review §4 row 10: `send --help` took 0.46 s).
NOT_FOR_COMMAND_HELP = ("backchannel.client.engine", "cryptography", "asyncpg", "websockets",
                        "backchannel.meet.places", "matplotlib", "rich")
# The help texts printed before the imports were made lazy (COLUMNS=100, through the
# console script), which must not change with them. When a command's help is changed
# on purpose, rewrite its file: UPDATE_HELP_SNAPSHOTS=1 pytest tests/cli/test_startup.py
HELP_SNAPSHOTS = Path(__file__).parent / "help"

_PROBE = """
import sys
sys.argv = ["backchannel", *{argv!r}]
from backchannel.cli.launcher import main
try:
    main()
except SystemExit as done:
    code = done.code
heavy = sorted({{m.split(".")[0] if m.split(".")[0] != "backchannel" else m
                for m in sys.modules if m.startswith({heavy!r})}})
sys.stderr.write(f"{{code}} {{heavy}}\\n")
"""


def _launch(*argv: str, heavy: tuple[str, ...] = HEAVY) -> tuple[str, str]:
    """Run the console script's `main` in a fresh interpreter: (stdout, 'code [heavy]'),
    where `heavy` lists which of `heavy` (module-name prefixes) it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=list(argv), heavy=heavy)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "100", "BACKCHANNEL_HOME": "/nonexistent"},
    )
    return done.stdout, done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("argv", [["--version"], ["-V"], ["--home", "x", "--version"]])
def test_version_is_printed_without_importing_the_client(argv: list[str]) -> None:
    out, ending = _launch(*argv)
    assert out.strip() == registry.version()
    assert ending == "0 []"


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--json", "--help"]])
def test_root_help_is_printed_without_importing_the_client(argv: list[str]) -> None:
    out, ending = _launch(*argv)
    assert ending == "0 []"
    # The same text Typer prints in-process, so the two ways cannot disagree.
    here = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert out == here.stdout


def test_a_bare_backchannel_shows_the_root_help_as_typer_does() -> None:
    out, ending = _launch()
    assert ending == "2 []"
    here = CliRunner().invoke(app, [], env={"COLUMNS": "100"})
    assert here.exit_code == 2 and out == here.stdout


def test_the_version_is_the_package_metadata_s() -> None:
    try:
        installed = importlib.metadata.version("backchannel")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("backchannel is not installed, only on the path")
    assert registry.version() == installed


def test_version_in_process_too() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == registry.version()


def test_a_command_loads_only_its_own_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c",
         "import sys; from typer.testing import CliRunner; from backchannel.cli.main import app;"
         "CliRunner().invoke(app, ['relay', 'serve', '--help']);"
         "print(sorted(m for m in sys.modules if m.startswith(('backchannel.client.engine',"
         " 'backchannel.meet', 'backchannel.cli.messaging'))))"],
        capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_every_registry_entry_is_the_command_it_names() -> None:
    for entry in registry.COMMANDS:
        command = _load(entry)
        assert command.name == entry.name
        first_line = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert first_line == entry.summary, entry.name


def test_the_root_help_names_every_root_option() -> None:
    documented = " ".join(term for term, _ in registry.ROOT_OPTIONS).split()
    flags = [flag for parameter in inspect.signature(_root).parameters.values()
             for flag in getattr(parameter.default, "param_decls", None) or ()]
    assert len(flags) == 4
    for flag in flags:
        assert flag in documented or f"{flag}," in documented, flag


def test_an_unknown_command_suggests_a_known_one() -> None:
    result = CliRunner().invoke(app, ["stauts"])
    assert result.exit_code == 2 and "Did you mean 'status'" in result.stderr


@pytest.mark.parametrize("command", [["send"], ["redline", "ack"], ["agenda", "show"],
                                     ["meet", "suggest"], ["relay", "serve"], ["read"]])
def test_help_shows_no_python_types(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    for noise in ("<bool>", "<str>", "<int", "range>", "x>=", "{", "╭"):
        assert noise not in result.stdout, (noise, command)
    assert all(line == line.rstrip() for line in result.stdout.splitlines())
    example = [line for line in result.stdout.splitlines() if "Example" in line]
    assert example and example[0].strip().startswith("Example: backchannel")


# Every command review §4 row 10 timed, and those that shared its imports.
COMMAND_HELPS = [["send"], ["sync"], ["status"], ["history"], ["record"], ["record", "verify"],
                 ["relay", "serve"], ["meet", "suggest"], ["redline"], ["agenda", "show"],
                 ["codebook"], ["codebook", "send"], ["codebook", "propose"],
                 ["ack"], ["init"], ["invite"], ["channels"]]


@pytest.mark.parametrize("command", COMMAND_HELPS, ids=" ".join)
def test_a_command_s_help_imports_neither_the_client_nor_the_planner(command: list[str]) -> None:
    out, ending = _launch(*command, "--help", heavy=NOT_FOR_COMMAND_HELP)
    assert ending == "0 []", f"`{' '.join(command)} --help` imported {ending[2:]}"
    assert out.startswith(f"Usage: backchannel {' '.join(command)} ")


@pytest.mark.parametrize("command", [["send"], ["status"], ["relay", "serve"],
                                     ["meet", "suggest"]], ids=" ".join)
def test_a_command_s_help_is_the_text_it_always_was(command: list[str]) -> None:
    out, _ = _launch(*command, "--help", heavy=())
    snapshot = HELP_SNAPSHOTS / f"{'-'.join(command)}.txt"
    if os.environ.get("UPDATE_HELP_SNAPSHOTS") == "1":
        snapshot.write_text(out, encoding="utf-8")
    assert out == snapshot.read_text(encoding="utf-8")


def test_meet_s_help_shows_the_planner_s_own_default_for_top() -> None:
    # cli.meet keeps a copy so that its help needs no gazetteer; the two must agree.
    from backchannel.cli import meet as meet_command
    from backchannel.meet.ranking import DEFAULT_TOP

    assert meet_command.DEFAULT_TOP == DEFAULT_TOP

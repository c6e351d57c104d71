"""Shell completion: the scripts `--show-completion` prints, and the answers a script gets
when it runs `backchannel` with `_BACKCHANNEL_COMPLETE` set (as a shell would: a fresh
process through the console script's `main`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_MAIN = """
import sys
from backchannel.cli.launcher import main
try:
    main()
finally:
    loaded = [m for m in ("backchannel.cli.messaging", "backchannel.client.engine")
              if m in sys.modules]
    sys.stderr.write(f"loaded {loaded}\\n")
"""


def _backchannel(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _MAIN, *argv], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_the_script(shell: str) -> None:
    done = _backchannel("--show-completion", shell)
    assert done.returncode == 0, done.stderr
    assert "backchannel" in done.stdout and "_BACKCHANNEL_COMPLETE" in done.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = _backchannel("--show-completion", "tcsh")
    assert done.returncode == 2
    assert "'tcsh'" in done.stderr and "bash, zsh, fish" in done.stderr


def _completions(words: str, cword: int, instruction: str) -> list[str]:
    done = _backchannel(_BACKCHANNEL_COMPLETE=instruction, COMP_WORDS=words,
                        COMP_CWORD=str(cword))
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("instruction", ["bash_complete", "complete_bash"])
def test_command_names_complete_without_loading_the_commands(instruction: str) -> None:
    names = _completions("backchannel ", 1, instruction)
    assert {"send", "sync", "history", "status", "config"} <= set(names)
    assert _completions("backchannel s", 1, instruction) == ["send", "sync", "status", "slots"]
    done = _backchannel(_BACKCHANNEL_COMPLETE=instruction, COMP_WORDS="backchannel ",
                        COMP_CWORD="1")
    assert done.stderr.strip().splitlines()[-1] == "loaded []"


def test_subcommands_and_options_complete() -> None:
    assert _completions("backchannel redline ", 2, "bash_complete") == ["add", "list", "ack"]
    assert {"--home", "--json", "--no-json"} <= set(
        _completions("backchannel --", 1, "bash_complete"))
    assert "--relay" in _completions("backchannel invite --re", 2, "bash_complete")


def test_install_completion_writes_the_script_for_bash(tmp_path: Path) -> None:
    done = _backchannel("--install-completion", "bash", HOME=str(tmp_path))
    assert done.returncode == 0, done.stderr
    script = tmp_path / ".bash_completions" / "backchannel.sh"
    assert "_BACKCHANNEL_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize("words", ["backchannel ", "backchannel s", "backchannel re",
                                   "backchannel x"])
def test_the_launcher_s_quick_answer_is_typer_s(words: str) -> None:
    env = {**os.environ, "_BACKCHANNEL_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": "1"}
    through_typer = subprocess.run(
        [sys.executable, "-c", "from backchannel.cli.main import run_here; run_here()"],
        capture_output=True, text=True, timeout=60, env=env)
    quick = _backchannel(**env)
    assert quick.stdout == through_typer.stdout.rstrip("\n") + ("\n" if quick.stdout else "")
    assert quick.stderr.strip() == "loaded []"
    assert "typer" not in _backchannel_modules(env)


def _backchannel_modules(env: dict[str, str]) -> str:
    probe = ("import sys\nfrom backchannel.cli.launcher import main\ntry:\n    main()\n"
             "except SystemExit:\n    pass\nsys.stderr.write(' '.join(sorted(sys.modules)))")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, env=env).stderr


def test_bash_completes_through_the_script_it_is_shown(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash here")
    # A `backchannel` on PATH that runs this source tree, as the console script would.
    program = tmp_path / "backchannel"
    program.write_text(f"#!/bin/sh\nexec {sys.executable} -c "
                       "'from backchannel.cli.launcher import main; main()' \"$@\"\n")
    program.chmod(0o755)
    script = _backchannel("--show-completion", "bash").stdout
    run_it = (f"{script}\nCOMP_WORDS=(backchannel hi); COMP_CWORD=1\n"
              "_backchannel_completion backchannel\necho \"${COMPREPLY[@]}\"\n"
              "COMP_WORDS=(backchannel redline a); COMP_CWORD=2\n"
              "_backchannel_completion backchannel\necho \"${COMPREPLY[@]}\"\n")
    path = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["bash", "--norc", "-c", run_it], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PATH": path})
    assert done.stdout.splitlines() == ["history", "add ack"], done.stderr

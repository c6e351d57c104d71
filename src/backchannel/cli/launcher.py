"""The `backchannel` entry point: ask the home's running agent, or run the command here.

Standard library only until it knows which: a command served by a running agent costs
one interpreter start and one round trip on the agent's socket, not the import of Typer,
Rich and the whole client. Commands that never touch a principal (`relay`, `demo`, `meet`,
`init`, `config`, `agent` itself, `--help`, `--version`) always run here; `watch` becomes a view of
the agent's events when an agent runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ALWAYS_HERE", "command_of", "main", "served_by_agent"]

_HOME_ENV = "BACKCHANNEL_HOME"
# Commands that never use a principal's state, or own it themselves: run here, and
# refused by the agent if a client asks it to run them.
# `config` describes the configuration of the command typed, not the agent's.
ALWAYS_HERE = frozenset({"agent", "relay", "demo", "meet", "init", "tui", "config"})
_HELP = frozenset({"--help", "-h", "--version", "-V"})
# `main.COMPLETE_VAR` and the root's completion options, named again here: importing
# `main` would import Typer.
_COMPLETE_VAR = "_BACKCHANNEL_COMPLETE"
_COMPLETION_OPTIONS = frozenset({"--show-completion", "--install-completion"})


def served_by_agent(argv: list[str], command: str) -> bool:
    """Whether a running agent serves this command: all but `ALWAYS_HERE`, and of those
    `meet propose`, which sends on the principal's channel (`meet suggest` only computes,
    and its `--map FILE` is relative to where it was typed)."""
    if command == "meet":
        return argv[argv.index(command) + 1:argv.index(command) + 2] == ["propose"]
    return command not in ALWAYS_HERE


def command_of(argv: list[str]) -> str | None:
    """The command a command line names (after the global options), if any."""
    return _home_and_command(argv)[1]


def _home_and_command(argv: list[str]) -> tuple[Path | None, str | None]:
    """The `--home` given before the command (else the environment's), and the command."""
    home: str | None = os.environ.get(_HOME_ENV) or None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--home" and i + 1 < len(argv):
            home, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--home="):
            home = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            return (Path(home) if home else None), arg
        i += 1
    return (Path(home) if home else None), None


def _default_home() -> Path:
    """The built-in home (the configuration file's `home` comes first: `_configured`)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("backchannel"))


def _configured(argv: list[str], command: str) -> tuple[Path | None, list[str]] | None:
    """The configuration file's home, and the command line with the file's other
    settings written out for the agent (it may have been started with another file:
    what is in force is the file of the command that was typed).

    Returns:
        None when the file cannot be used: the command then runs here, and the root
        group reports what is wrong with it (exit 2).
    """
    from backchannel.cli.config import ConfigError, load_config
    from backchannel.cli.exitcodes import wants_json

    try:
        settings = load_config()
    except ConfigError:
        return None
    if settings.json and not wants_json(argv) and "--no-json" not in argv:
        argv = ["--json", *argv]
    at = argv.index(command) + 1
    if command == "invite" and settings.relays and not any(
        arg == "--relay" or arg.startswith("--relay=") for arg in argv[at:]
    ):
        # Before anything else of `invite`: `invite --relay URL revoke ID` is still a
        # revocation (the group ignores its options when a subcommand runs).
        argv = [*argv[:at], *(word for url in settings.relays for word in ("--relay", url)),
                *argv[at:]]
    return settings.home, argv


def _forward(home: Path, argv: list[str], command: str) -> int | None:
    """Run the command through the agent; None when no agent answers."""
    from backchannel.client.agent.client import AgentUnavailable, connect

    try:
        connection = connect(home)
    except AgentUnavailable:
        return None
    with connection:
        if command == "watch":
            return _view_events(connection, as_json="--json" in argv)
        stdin = ""
        if "-" in argv[argv.index(command) + 1 :] and not sys.stdin.isatty():
            stdin = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        params = {
            "argv": argv,
            "columns": _columns(),
            "stdin": stdin,
        }
        try:
            result = connection.call("cli", params)
        except (AgentUnavailable, ConnectionError) as error:
            from backchannel.cli.exitcodes import ExitCode, print_error, wants_json

            print_error(
                ExitCode.FAILURE,
                f"the agent stopped before it answered ({error}); the command may or may "
                "not have been carried out: look with `backchannel status`",
                as_json=wants_json(argv),
            )
            return ExitCode.FAILURE
    sys.stdout.write(str(result.get("stdout", "")))
    sys.stdout.flush()
    sys.stderr.write(str(result.get("stderr", "")))
    code = result.get("code", 1)
    return code if isinstance(code, int) else 1


def _columns() -> int | None:
    """The caller's terminal width (not `shutil`'s: it costs 40 ms of imports), or None
    when stdout is not a terminal: the agent then neither wraps nor pads lines."""
    try:
        if not sys.stdout.isatty():
            return None
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        return _env_columns()


def _env_columns() -> int:
    raw = os.environ.get("COLUMNS", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 80


def _answer_at_once(argv: list[str]) -> int | None:
    """`--version` and the root `--help` (also for a bare `backchannel`), from the
    registry: no Typer, no client.

    Returns the exit code, or None when the command line asks for something else.
    """
    from backchannel.cli import registry

    before_command = argv[: argv.index(command)] if (command := command_of(argv)) else argv
    if registry.VERSION_FLAGS & set(before_command):
        sys.stdout.write(registry.version() + "\n")
        return 0
    if registry.HELP_FLAGS & set(before_command) or not argv:
        sys.stdout.write(registry.root_help(registry.help_width()))
        return 0 if argv else 2  # bare `backchannel`: the help, and a usage error as Typer's
    return None


def _view_events(connection: object, *, as_json: bool) -> int:
    import json

    from backchannel.client.agent.client import AgentConnection
    from backchannel.protocol.text import escaped, json_escaped

    assert isinstance(connection, AgentConnection)
    hello = connection.call("hello")
    if not as_json:
        sys.stderr.write(
            f"Watching through the agent (pid {hello.get('pid')}); Ctrl-C to stop.\n"
        )
    try:
        for message in connection.events():
            # Events carry the counterpart's names and texts: nothing raw a terminal acts on.
            if as_json:
                event = json.dumps(message.get("event"), ensure_ascii=False)
                sys.stdout.write(json_escaped(event) + "\n")
            else:
                sys.stdout.write(escaped(str(message.get("text", "")), multiline=True) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    return 0


def _agent_holds(home: Path) -> bool:
    """True while an agent holds the home's lock (it may be starting, its socket not up)."""
    import fcntl

    path = home / "lock"
    try:
        with open(path, "rb") as lock:
            if lock.read(64).split()[1:] != [b"agent"]:
                return False
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False  # nobody holds it: the agent that wrote it is gone
    except (OSError, IndexError):
        return False


def _complete_command_name() -> list[str] | None:
    """The commands a bash completion script is after when it completes the first word,
    from the registry: a Tab there is the most frequent request, and Typer would take
    0.3 s to give the same list (a test compares the two).

    Returns:
        None for any other request (another shell, a later word, an option, quotes the
        shell's splitting would have to undo): Typer answers those.
    """
    if os.environ.get(_COMPLETE_VAR) not in ("complete_bash", "bash_complete"):
        return None
    words, cword = os.environ.get("COMP_WORDS", ""), os.environ.get("COMP_CWORD", "")
    if cword != "1" or any(char in words for char in "'\"\\"):
        return None
    typed = words.split()[1:2]
    incomplete = typed[0] if typed and not words.endswith(" ") else ""
    if incomplete.startswith("-"):
        return None
    from backchannel.cli import registry

    return [c.name for c in registry.COMMANDS if c.name.startswith(incomplete)]


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    """The console script."""
    argv = sys.argv[1:]
    names = _complete_command_name()
    if names is not None:
        sys.stdout.write("".join(name + "\n" for name in names))
        raise SystemExit(0)
    command = command_of(argv)
    root_words = argv[: argv.index(command)] if command else argv
    if os.environ.get(_COMPLETE_VAR) or _COMPLETION_OPTIONS & set(root_words):
        # A completion script asking (no arguments: the words are in the environment),
        # or `--show-completion SHELL`, whose SHELL is no command: Typer answers.
        from backchannel.cli.main import run_here

        run_here()
        return
    answered = _answer_at_once(argv)
    if answered is not None:
        raise SystemExit(answered)
    home, command = _home_and_command(argv)
    if command in ("watch", "agent"):
        # Long-running: a SIGTERM before their loop takes it over (it then stops after
        # committing) ends them cleanly, exit 0, not by the signal.
        import signal

        signal.signal(signal.SIGTERM, _exit_cleanly)
    configured = None
    if command is not None and served_by_agent(argv, command) and not _HELP & set(argv):
        configured = _configured(argv, command)
    if configured is not None:
        assert command is not None
        config_home, argv = configured
        home = home or config_home or _default_home()
        code = _forward(home, argv, command)
        if code is None and _agent_holds(home):
            # An agent is starting (unlocking, connecting): wait for it to answer rather
            # than for its lock, which it keeps for its whole life.
            import time

            from backchannel.client.agent.paths import lock_timeout_from_env

            deadline = time.monotonic() + lock_timeout_from_env()
            while code is None and time.monotonic() < deadline and _agent_holds(home):
                time.sleep(0.05)
                code = _forward(home, argv, command)
        if code is not None:
            raise SystemExit(code)
    from backchannel.cli.main import run_here
    from backchannel.client.errors import AgentTookOver

    try:
        run_here()
    except AgentTookOver:
        # An agent took the home while this command waited for it (and nothing was done
        # yet: the home is the first thing a command opens). Ask the agent.
        from backchannel.cli.context import default_home  # the file's home, else ours

        code = _forward(home or default_home(), argv, command or "")
        raise SystemExit(1 if code is None else code) from None

"""What every principal command shares: the home folder, the passphrase, errors, progress.

The root callback stores a `CliContext` in Typer's context object; commands open the
principal through it, so the passphrase is asked for only by commands that need it (never
by `--help`, `relay serve` or `demo`), and asked for once.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shlex
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, ParamSpec, TextIO, TypeVar, cast

import typer
from typer._click import Context as ClickContext

from backchannel.cli.exitcodes import ExitCode, print_error
from backchannel.client.errors import (
    AgentTookOver,
    ChannelNotFound,
    NotInitialised,
    RelayUnreachable,
    StateCorrupted,
    UnknownReference,
    WrongPassphrase,
)
from backchannel.client.passphrase import ALLOW_WEAK_ENV, WeakPassphrase, check_passphrase
from backchannel.protocol.errors import BackchannelError

if TYPE_CHECKING:
    # Only for annotations: the engine (and cryptography under it) and Rich are imported
    # when a command opens the principal or prints, not when the root group loads.
    from rich.console import Console

    from backchannel.client.agent.lock import LockHolder
    from backchannel.client.engine import Principal
    from backchannel.client.strategic import StrategicChannel

__all__ = [
    "AGENT_REQUEST",
    "HOME_ENV",
    "JSON_OPTION",
    "NEW_PASSPHRASE_ENV",
    "PASSPHRASE_ENV",
    "CliContext",
    "ask_passphrase",
    "builtin_home",
    "cli_context",
    "default_home",
    "exit_code_of",
    "exit_with",
    "plain_console",
    "read_stdin_text",
    "reports_errors",
]

HOME_ENV: Final = "BACKCHANNEL_HOME"
PASSPHRASE_ENV: Final = "BACKCHANNEL_PASSPHRASE"
# The new passphrase of `passphrase change`, for scripts (the old one is PASSPHRASE_ENV).
NEW_PASSPHRASE_ENV: Final = "BACKCHANNEL_NEW_PASSPHRASE"

# Every principal command also takes `--json` after its name, as scripts tend to write it;
# the root `backchannel --json COMMAND` does the same.
JSON_OPTION: Final = typer.Option(
    False, "--json", help="Print JSON on stdout (shapes in docs/cli.md)."
)

# Tries at an interactive prompt before `wrong passphrase` ends the command (as sudo and
# ssh give): enough for a typo or two, too few to make guessing at the prompt useful.
PASSPHRASE_TRIES: Final = 3

P = ParamSpec("P")
R = TypeVar("R")


class _AgentRequest(threading.local):
    """Set by the agent for the worker thread that runs one forwarded command: the
    principal it opened (no passphrase, no second lock) and the caller's terminal width."""

    principal: Principal | None = None
    columns: int | None = None


AGENT_REQUEST: Final = _AgentRequest()


# Written to a pipe or a file, a line is as long as it is: nothing reads it at a terminal's
# width, and a hard wrap at 80 columns would cut a command or an id in two. This is the
# widest a table may grow there (a table of notes is as wide as its longest note).
PIPE_WIDTH: Final = 10_000


class TrimmedLines(io.TextIOBase):
    """A text stream that drops the spaces a line ends with (Rich pads table cells and
    centred titles with them), so that piped output diffs and greps cleanly."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._spaces = ""  # trailing spaces held back until we know what follows them

    def write(self, text: str) -> int:
        lines = (self._spaces + text).split("\n")
        last = lines.pop()
        done = "".join(line.rstrip(" ") + "\n" for line in lines)
        kept = last.rstrip(" ")
        self._spaces = last[len(kept):]
        self._stream.write(done + kept)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or a bare stream
        return False


# How often a terminal is asked for a passphrase before the command gives up: enough for
# typos, few enough that a script stuck on a terminal ends.
_MAX_ASKS: Final = 5


def ask_passphrase(prompt: str, *, confirm: bool = False) -> str:
    """Ask on the terminal, hidden; an empty answer or two entries that differ are said
    so and asked again (Click's prompt would ask again without a word).

    Raises:
        BackchannelError: no answer after `_MAX_ASKS` tries.
    """
    for _ in range(_MAX_ASKS):
        first = str(typer.prompt(prompt, hide_input=True, default="", show_default=False))
        if not first:
            typer.echo("The passphrase cannot be empty: it encrypts the local state.", err=True)
            continue
        if confirm:
            again = str(typer.prompt("Repeat for confirmation", hide_input=True, default="",
                                     show_default=False))
            if again != first:
                typer.echo("The two entries differ; try again.", err=True)
                continue
        return first
    raise BackchannelError(f"no passphrase after {_MAX_ASKS} tries; nothing changed")


def plain_console(*, stderr: bool = False) -> Console:
    """A Rich console that prints text as it is, with anything unprintable escaped.

    Created on use so that it writes to whatever `sys.stdout` is now (tests swap it). Names
    and messages come from the counterpart, so neither markup nor emoji codes in them are
    interpreted (``[bold]`` in a name prints as ``[bold]``), and control and format
    characters are escaped (`console.EscapingConsole`); Rich drops colour by itself when
    the stream is not a terminal. Not on a terminal (a pipe, a file, a command run by the
    agent for a pipe), lines are neither wrapped nor padded (`PIPE_WIDTH`, `TrimmedLines`).
    """
    from backchannel.cli.console import EscapingConsole

    stream = sys.stderr if stderr else sys.stdout
    if AGENT_REQUEST.columns is None and not _is_terminal(stream):
        return EscapingConsole(
            file=cast(TextIO, TrimmedLines(stream)), width=PIPE_WIDTH, soft_wrap=True,
            highlight=False, markup=False, emoji=False,
        )
    return EscapingConsole(
        stderr=stderr, highlight=False, markup=False, emoji=False, width=AGENT_REQUEST.columns
    )


def default_home() -> Path:
    """The principal's home when neither `--home` nor `BACKCHANNEL_HOME` is given: the
    configuration file's `home`, else the user data folder.

    Raises:
        ConfigError: the configuration file cannot be used (the root group says so
            before any command runs, so a command meets this only if the file changed).
    """
    from backchannel.cli.config import load_config

    configured = load_config().home
    return configured if configured is not None else builtin_home()


def builtin_home() -> Path:
    """The home when nothing names one: the user data folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("backchannel"))


@dataclass(slots=True)
class CliContext:
    """Global options of one `backchannel` invocation.

    Attributes:
        home: the folder holding the principal's state file.
        json: print machine-readable JSON on stdout instead of tables and prose.
    """

    home: Path
    json: bool = False
    _passphrase: str | None = field(default=None, repr=False)
    _asked: bool = field(default=False, repr=False)  # the passphrase came from a prompt

    @property
    def out(self) -> Console:
        return plain_console()

    @property
    def err(self) -> Console:
        return plain_console(stderr=True)

    def passphrase(self, *, confirm: bool = False) -> str:
        """The passphrase from `BACKCHANNEL_PASSPHRASE`, or asked for on the terminal.

        Args:
            confirm: ask twice (for `init`, where a typo would lock the principal out).

        Raises:
            BackchannelError: no passphrase in the environment and no terminal to ask on.
        """
        if self._passphrase is None:
            from_env = os.environ.get(PASSPHRASE_ENV, "")
            if from_env:
                self._passphrase = from_env
            elif sys.stdin.isatty():
                self._passphrase = ask_passphrase("Passphrase", confirm=confirm)
                self._asked = True
            else:
                raise BackchannelError(
                    f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal to be asked"
                )
        return self._passphrase

    def new_passphrase(self, *, env: str, prompt: str, allow_weak: bool) -> str:
        """A new passphrase (for `init` or `passphrase change`): from the environment
        variable `env`, or asked twice on the terminal, and checked against the policy
        (`client.passphrase`). At the terminal a weak one is refused with its reason and
        asked again; from the environment it is an error.

        Raises:
            BackchannelError: none given and no terminal, or too weak (`WeakPassphrase`).
        """
        allow_weak = allow_weak or os.environ.get(ALLOW_WEAK_ENV, "") == "1"
        from_env = os.environ.get(env, "")
        if from_env:
            check_passphrase(from_env, allow_weak=allow_weak)
            return from_env
        if not sys.stdin.isatty():
            raise BackchannelError(
                f"no passphrase: set {env} or run in a terminal to be asked"
            )
        for _ in range(_MAX_ASKS):
            chosen = ask_passphrase(prompt, confirm=True)
            try:
                check_passphrase(chosen, allow_weak=allow_weak)
            except WeakPassphrase as weak:
                typer.echo(str(weak), err=True)
                continue
            return chosen
        raise BackchannelError(f"no acceptable passphrase after {_MAX_ASKS} tries; nothing changed")

    @contextlib.contextmanager
    def principal(self, *, role: str = "command") -> Iterator[Principal]:
        """Open the principal in `home` for the length of one command, then close it.

        Inside the agent, the request's own handle (the agent holds the home). Otherwise
        under the home's lock: while another process has it, say so once and wait.
        """
        if AGENT_REQUEST.principal is not None:
            yield AGENT_REQUEST.principal
            return
        from backchannel.client.agent.lock import lock_timeout_from_env

        def waiting(holder: LockHolder | None) -> None:
            who = f" (pid {holder.pid})" if holder is not None else ""
            typer.echo(f"waiting for another backchannel process on {self.home}{who}", err=True)

        def agent_answers(holder: LockHolder | None) -> bool:
            # An agent that took the home while we waited keeps it: stop waiting and let
            # the launcher ask it (`AgentTookOver`).
            if role != "command" or holder is None or holder.role != "agent":
                return False
            from backchannel.client.agent.client import AgentUnavailable, connect

            try:
                connect(self.home, timeout=0.2).close()
            except AgentUnavailable:
                return False
            return True

        from backchannel.client.agent.handle import AgentPrincipal
        from backchannel.client.engine import Principal
        from backchannel.client.keystore import STATE_FILE

        # An agent (`watch` and `tui` serve as one) opens the agent's handle: the requests
        # it serves send over its relay connections.
        opener = AgentPrincipal if role == "agent" else Principal

        # Said before the passphrase is asked for: typing it would be for nothing.
        if not self.home.is_dir():
            raise NotInitialised(
                f"the home folder {self.home} does not exist (a new principal: "
                f"backchannel --home {shlex.quote(str(self.home))} init --name NAME)"
            )
        if not (self.home / STATE_FILE).exists():
            raise NotInitialised(f"no principal in {self.home}: run `backchannel init`")
        for attempt in range(1, PASSPHRASE_TRIES + 1):
            try:
                principal = opener.open(
                    self.home,
                    self.passphrase(),
                    lock_timeout=lock_timeout_from_env(),
                    on_wait=waiting,
                    lock_role=role,
                    give_up=agent_answers,
                )
                break
            except WrongPassphrase:
                # A typo at the prompt gets another try; a wrong BACKCHANNEL_PASSPHRASE
                # would be wrong again.
                if not self._asked or attempt == PASSPHRASE_TRIES:
                    raise
                typer.echo("wrong passphrase; try again", err=True)
                self._passphrase = None
        if principal.read_only_reason:
            _allow_read_only(principal)
        try:
            yield principal
        finally:
            principal.close()

    @contextlib.contextmanager
    def channel(self, name_or_id: str) -> Iterator[StrategicChannel]:
        """Open the principal and one channel's strategic features for one command."""
        from backchannel.client.strategic import StrategicChannel

        with self.principal() as principal:
            yield StrategicChannel(principal, name_or_id)

    def progress(self, what: str) -> contextlib.AbstractContextManager[object]:
        """A spinner on stderr while a network operation runs (none with `--json`)."""
        if self.json:
            return contextlib.nullcontext()
        from rich.text import Text

        from backchannel.protocol.text import escaped

        # A spinner reads its text as markup: give it a Text, escaped.
        return self.err.status(Text(escaped(what)))


def cli_context(ctx: typer.Context, as_json: bool = False) -> CliContext:
    """The `CliContext` the root callback stored, with a command's own `--json` applied."""
    state = ctx.find_object(CliContext)
    if state is None:  # a command invoked without the root callback (embedding)
        state = CliContext(Path(os.environ.get(HOME_ENV) or default_home()))
        ctx.obj = state
    if as_json:
        state.json = True
    return state


def read_stdin_text() -> str:
    """The text an argument given as `-` stands for: all of stdin, less the one newline
    that `echo` and a here-document end it with.

    Raises:
        typer.BadParameter: stdin was empty.
    """
    text = sys.stdin.read()
    text = text[:-1] if text.endswith("\n") else text
    if not text:
        raise typer.BadParameter("stdin was empty (`-` reads the text from it)")
    return text


def _allow_read_only(principal: Principal) -> None:
    """Run a read command on a read-only home after one notice; refuse any other before
    it does anything (`cli.readonly`)."""
    from typer._click.globals import get_current_context

    from backchannel.cli.readonly import check_read_only, read_only_notice
    from backchannel.client.errors import HomeReadOnly

    click = get_current_context(silent=True)
    command = " ".join(click.command_path.split()[1:]) if click is not None else ""
    try:
        check_read_only(principal.home, principal.read_only_reason, command)
    except HomeReadOnly:
        principal.close()
        raise
    typer.echo(read_only_notice(principal.home, principal.read_only_reason), err=True)


def _is_read_only_write(error: BaseException) -> bool:
    """SQLite refused a write to a read-only file (SQLITE_READONLY and its variants)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_READONLY


def exit_code_of(error: BaseException) -> ExitCode:
    """The exit code of an error a command raised (the table in docs/cli.md)."""
    # Imported on use, as `cli.readonly` is: only the read-only home raises it.
    from backchannel.client.errors import HomeReadOnly

    match error:
        case HomeReadOnly():
            return ExitCode.HOME_READ_ONLY
        case sqlite3.OperationalError() if _is_read_only_write(error):
            return ExitCode.HOME_READ_ONLY
        case WrongPassphrase():
            return ExitCode.WRONG_PASSPHRASE
        case NotInitialised() | ChannelNotFound() | UnknownReference():
            return ExitCode.NOT_FOUND
        case RelayUnreachable():
            return ExitCode.RELAY_UNREACHABLE
        case KeyboardInterrupt():
            return ExitCode.INTERRUPTED
        case _:
            return ExitCode.FAILURE


def _message_of(error: BaseException) -> str:
    match error:
        case StateCorrupted():
            return f"{error}; the state file was left as it is"
        case sqlite3.OperationalError() if _is_read_only_write(error):
            return f"the home is read-only ({error}); nothing changed"
        case sqlite3.DatabaseError():
            return f"the state file is damaged ({error}); it was left as it is"
        case OSError():
            where = f": {error.filename}" if error.filename else ""
            return f"{error.strerror or error}{where}"
        case KeyboardInterrupt():
            return "interrupted"
        case _:
            return str(error)


def _wants_json(kwargs: dict[str, object]) -> bool:
    """`--json` after the command (its `as_json`) or before it (the root's `CliContext`)."""
    if kwargs.get("as_json") is True:
        return True
    ctx = kwargs.get("ctx")
    # Typer hands commands a context of its vendored Click's class, not `typer.Context`.
    state = ctx.find_object(CliContext) if isinstance(ctx, ClickContext) else None
    return state is not None and state.json


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn what the principal can act on into one `error: ...` line (one JSON object
    under `--json`) on stderr and the exit code `exit_code_of` gives it."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AgentTookOver:
            raise  # the launcher hands the command to the agent (see `launcher.main`)
        except (BackchannelError, sqlite3.DatabaseError, OSError, KeyboardInterrupt) as error:
            code = exit_code_of(error)
            print_error(code, _message_of(error), as_json=_wants_json(kwargs))
            raise typer.Exit(code) from None

    return wrapper


def exit_with(code: ExitCode, message: str, state: CliContext) -> typer.Exit:
    """For a command that printed its result but did not do all it should (nothing
    delivered, a fork seen): under `--json` also the error object on stderr (the text
    output already said it). Returns the `typer.Exit` to raise."""
    if state.json:
        print_error(code, message, as_json=True)
    return typer.Exit(code)

"""What every principal command shares: the home folder, the passphrase, errors, progress.

The root callback stores a `CliContext` in Typer's context object; commands open the
principal through it, so the passphrase is asked for only by commands that need it (never
by `--help`, `relay serve` or `demo`), and asked for once.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, ParamSpec, TypeVar

import typer
from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text

from backchannel.client.agent.lock import LockHolder
from backchannel.client.engine import Principal
from backchannel.client.errors import AgentTookOver, StateCorrupted
from backchannel.client.strategic import StrategicChannel
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.text import escaped

__all__ = [
    "AGENT_REQUEST",
    "HOME_ENV",
    "JSON_OPTION",
    "PASSPHRASE_ENV",
    "CliContext",
    "EscapingConsole",
    "cli_context",
    "default_home",
    "plain_console",
    "reports_errors",
]

HOME_ENV: Final = "BACKCHANNEL_HOME"
PASSPHRASE_ENV: Final = "BACKCHANNEL_PASSPHRASE"

# Every principal command also takes `--json` after its name, as scripts tend to write it;
# the root `backchannel --json COMMAND` does the same.
JSON_OPTION: Final = typer.Option(
    False, "--json", help="Print JSON on stdout (shapes in docs/cli.md)."
)

P = ParamSpec("P")
R = TypeVar("R")


class _AgentRequest(threading.local):
    """Set by the agent for the worker thread that runs one forwarded command: the
    principal it opened (no passphrase, no second lock) and the caller's terminal width."""

    principal: Principal | None = None
    columns: int | None = None


AGENT_REQUEST: Final = _AgentRequest()


class EscapingConsole(Console):
    """A Rich console that never prints a control, format or separator character that
    was in a string it was given.

    Every string printed, a table's cells and titles included, goes through
    `render_str`, which escapes it with the text policy's `escaped` (line feeds and tabs
    kept: tables and bodies span lines). So text from the counterpart or a relay cannot
    reach the terminal as an escape sequence or a bidi override even where a command forgot
    to pass it through `output.shown`. Rich's own styles are added after this, and are
    not affected. Text objects built by hand bypass it: build them from `shown(...)`.
    """

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        return super().render_str(
            escaped(text, multiline=True), style=style, justify=justify, overflow=overflow,
            emoji=emoji, markup=markup, highlight=highlight, highlighter=highlighter,
        )


def plain_console(*, stderr: bool = False) -> Console:
    """A Rich console that prints text as it is, with anything unprintable escaped.

    Created on use so that it writes to whatever `sys.stdout` is now (tests swap it). Names
    and messages come from the counterpart, so neither markup nor emoji codes in them are
    interpreted (``[bold]`` in a name prints as ``[bold]``), and control and format
    characters are escaped (`EscapingConsole`); Rich drops colour by itself when the
    stream is not a terminal.
    """
    return EscapingConsole(
        stderr=stderr, highlight=False, markup=False, emoji=False, width=AGENT_REQUEST.columns
    )


def default_home() -> Path:
    """The principal's home when neither `--home` nor `BACKCHANNEL_HOME` is given."""
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
                self._passphrase = str(
                    typer.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)
                )
            else:
                raise BackchannelError(
                    f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal to be asked"
                )
        return self._passphrase

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

        principal = Principal.open(
            self.home,
            self.passphrase(),
            lock_timeout=lock_timeout_from_env(),
            on_wait=waiting,
            lock_role=role,
            give_up=agent_answers,
        )
        try:
            yield principal
        finally:
            principal.close()

    @contextlib.contextmanager
    def channel(self, name_or_id: str) -> Iterator[StrategicChannel]:
        """Open the principal and one channel's strategic features for one command."""
        with self.principal() as principal:
            yield StrategicChannel(principal, name_or_id)

    def progress(self, what: str) -> contextlib.AbstractContextManager[object]:
        """A spinner on stderr while a network operation runs (none with `--json`)."""
        if self.json:
            return contextlib.nullcontext()
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


def _fail(message: str) -> typer.Exit:
    # One line, on stderr, so that a script can show it as it is. It may quote a name or
    # a URL from the other side: escaped, and on one line.
    typer.echo(f"error: {escaped(message)}", err=True)
    return typer.Exit(1)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn what the principal can act on into one `error: ...` line and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AgentTookOver:
            raise  # the launcher hands the command to the agent (see `launcher.main`)
        except StateCorrupted as error:
            raise _fail(f"{error}; the state file was left as it is") from None
        except BackchannelError as error:
            raise _fail(str(error)) from None
        except sqlite3.DatabaseError as error:
            raise _fail(f"the state file is damaged ({error}); it was left as it is") from None
        except OSError as error:
            where = f": {error.filename}" if error.filename else ""
            raise _fail(f"{error.strerror or error}{where}") from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper

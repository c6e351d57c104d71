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
from rich.console import Console

from backchannel.client.agent.lock import LockHolder
from backchannel.client.engine import Principal
from backchannel.client.errors import AgentTookOver, StateCorrupted
from backchannel.client.passphrase import ALLOW_WEAK_ENV, WeakPassphrase, check_passphrase
from backchannel.client.strategic import StrategicChannel
from backchannel.protocol.errors import BackchannelError

__all__ = [
    "AGENT_REQUEST",
    "HOME_ENV",
    "JSON_OPTION",
    "NEW_PASSPHRASE_ENV",
    "PASSPHRASE_ENV",
    "CliContext",
    "ask_passphrase",
    "cli_context",
    "default_home",
    "plain_console",
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

P = ParamSpec("P")
R = TypeVar("R")


class _AgentRequest(threading.local):
    """Set by the agent for the worker thread that runs one forwarded command: the
    principal it opened (no passphrase, no second lock) and the caller's terminal width."""

    principal: Principal | None = None
    columns: int | None = None


AGENT_REQUEST: Final = _AgentRequest()


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
    """A Rich console that prints text as it is.

    Created on use so that it writes to whatever `sys.stdout` is now (tests swap it). Names
    and messages come from the counterpart, so neither markup nor emoji codes in them are
    interpreted; Rich drops colour by itself when the stream is not a terminal.
    """
    return Console(
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
                self._passphrase = ask_passphrase("Passphrase", confirm=confirm)
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
        return self.err.status(what)


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
    # One line, on stderr, so that a script can show it as it is.
    typer.echo(f"error: {message}", err=True)
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

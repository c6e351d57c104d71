"""The `backchannel` command: a root group that loads each command when it runs.

The commands are listed in `registry`; a command's module (and with it the client, the
venue planner, Rich tables, cryptography) is imported only when that command is invoked
or its own `--help` is asked for, so that `backchannel --help`, `--version` and a
mistyped command answer at once.

Every way a command line can end goes through `LazyRoot.main`: usage errors, `typer.Exit`
codes, Ctrl-C. Errors are printed there and in `context.reports_errors`, both with
`exitcodes.print_error`, as one `error:` line or, under `--json`, one JSON object.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import typer
import typer.main

# Typer vendors Click and exports only some of its exceptions; these are the ones its own
# `main` catches, and so must this one.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup
from typer.models import TyperInfo

from backchannel.cli import registry
from backchannel.cli.context import HOME_ENV, JSON_OPTION, CliContext, cli_context, default_home
from backchannel.cli.exitcodes import ExitCode, print_error, wants_json
from backchannel.cli.helpstyle import PlainHelpCommand, PlainHelpGroup, restyle

__all__ = ["LazyRoot", "app", "main", "register_demo", "run_here"]


def _load(entry: registry.CommandEntry) -> TyperCommand | TyperGroup:
    """Import the module that defines `entry` and build its Click command."""
    module = importlib.import_module(entry.module)
    found = getattr(module, entry.attribute)
    if isinstance(found, typer.Typer):
        info = TyperInfo(restyle(found), name=entry.name)
        return typer.main.get_group_from_info(
            info, pretty_exceptions_short=True, suggest_commands=True, rich_markup_mode=None
        )
    # A `register(app)` function: it adds this command (and its neighbours) to an app.
    holder = typer.Typer(rich_markup_mode=None)
    found(holder)
    restyle(holder)
    for command_info in holder.registered_commands:
        assert command_info.callback is not None
        name = command_info.name or typer.main.get_command_name(command_info.callback.__name__)
        if name == entry.name:
            command = typer.main.get_command_from_info(
                command_info, pretty_exceptions_short=True, rich_markup_mode=None
            )
            assert isinstance(command, PlainHelpCommand)
            return command
    raise LookupError(f"{entry.module}.{entry.attribute} does not register {entry.name!r}")


class LazyRoot(PlainHelpGroup):
    """The root group: commands come from `registry` and are built on first use."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return [command.name for command in registry.COMMANDS]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name not in self.commands:
            entry = registry.entry(cmd_name)
            if entry is None:
                return None
            self.commands[cmd_name] = _load(entry)
        return self.commands[cmd_name]

    def resolve_command(  # type: ignore[override]
        self, ctx: typer.Context, args: list[str]
    ) -> tuple[str | None, Any, list[str]]:
        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as error:
            # Typer suggests among the commands already built; suggest among all.
            names = [command.name for command in registry.COMMANDS]
            matches = get_close_matches(args[0], names) if args else []
            if matches:
                error.message = (error.message.rstrip(".") + ". Did you mean "
                                 + ", ".join(repr(m) for m in matches) + "?")
            raise

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:  # type: ignore[override]
        # The same text the launcher prints without importing Typer (registry.root_help).
        formatter.write(registry.root_help(registry.help_width()))

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        code = self._run(argv, prog_name=prog_name, **extra)
        if not standalone_mode:
            return code
        sys.exit(code)

    def _run(self, argv: list[str], **extra: Any) -> int:
        """Run the command line; every ending is an exit code, every error printed once."""
        as_json = wants_json(argv)
        try:
            result = super().main(argv, standalone_mode=False, **extra)
        except NoArgsIsHelpError as shown:  # `backchannel redline`: its help, on stdout
            typer.echo(shown.format_message())
            return ExitCode.USAGE
        except ClickException as error:
            if as_json or not isinstance(error, UsageError):
                print_error(ExitCode.USAGE if error.exit_code == 2 else ExitCode.FAILURE,
                            error.format_message(), as_json=as_json)
            else:
                error.show()
            return error.exit_code
        except typer.Abort:  # Ctrl-C or end of input at a prompt
            print_error(ExitCode.INTERRUPTED, "interrupted", as_json=as_json)
            return ExitCode.INTERRUPTED
        return result if isinstance(result, int) else ExitCode.OK


app = typer.Typer(
    name="backchannel",
    cls=LazyRoot,
    no_args_is_help=True,
    add_completion=False,
    # Plain help (helpstyle): Rich's panels cost 0.2 s of imports on every `--help`.
    rich_markup_mode=None,
    # Said explicitly: a crash report must never print local variables, which may hold
    # the passphrase or keys. Failures the principal can act on are one `error:` line.
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(registry.version())
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    home: Path | None = typer.Option(  # noqa: B008 - Typer declares options this way
        None, "--home", envvar=HOME_ENV, metavar="DIR", show_default=False,
        help="The principal's folder [default: your data folder].",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON on stdout instead of tables (see docs/cli.md)."
    ),
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, expose_value=False,
        callback=_print_version, help="Print the version and exit.",
    ),
) -> None:
    """A confidential, candid and dependable strategic channel between two principals."""
    ctx.obj = CliContext(home or default_home(), json=as_json)


def demo(
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
    verbose: bool = typer.Option(
        False, "--verbose", "-v",
        help="Also show the technical details, the transcript and the whole board."),
) -> None:
    """Play the scripted demonstration: a local relay, two principals, a strategic round.

    A short conversation, then a red line, urgent notes (one held then acknowledged, one
    escalated), a clarification, the next round's agenda, an agreed record verified
    offline and a line test, ending with the status board. Everything runs in a
    temporary folder on this machine (loopback only) and is deleted afterwards. The exit
    code is 1 if any message was lost or a step failed.

    Example: backchannel demo --verbose
    """
    from backchannel.cli.demo import run_demo

    state: CliContext = cli_context(ctx, as_json)
    raise typer.Exit(run_demo(as_json=state.json, verbose=verbose))


def register_demo(target: typer.Typer) -> None:
    """Add `demo` to an app (the registry's loader for it)."""
    target.command()(demo)


def run_here() -> None:
    """Run the command in this process (no agent, or a command that never uses one)."""
    app(prog_name="backchannel")


def main() -> None:
    """The console script: through the home's agent when one runs (see `launcher`)."""
    from backchannel.cli.launcher import main as launch

    launch()

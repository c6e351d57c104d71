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
import os
import sys
from collections.abc import Sequence
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Final

import typer
import typer.main

# Typer vendors Click and exports only some of its exceptions; these are the ones its own
# `main` catches, and so must this one.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer.core import TyperCommand, TyperGroup
from typer.models import TyperInfo

from backchannel.cli import registry
from backchannel.cli.config import Config, ConfigError, load_config
from backchannel.cli.context import (
    HOME_ENV,
    JSON_OPTION,
    CliContext,
    builtin_home,
    cli_context,
    default_home,
)
from backchannel.cli.exitcodes import ExitCode, print_error, wants_json
from backchannel.cli.helpstyle import PlainHelpCommand, PlainHelpGroup, restyle

__all__ = ["COMPLETE_VAR", "SHELLS", "LazyRoot", "app", "main", "register_demo", "run_here"]

# Click's name for the variable a completion script sets (`_{PROG}_COMPLETE`).
COMPLETE_VAR: Final = "_BACKCHANNEL_COMPLETE"
# The shells a completion script is written for (Typer's templates).
SHELLS: Final = ("bash", "zsh", "fish")
_COMPLETION_OPTIONS: Final = frozenset({"--show-completion", "--install-completion"})


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

    def shell_complete(self, ctx: typer.Context, incomplete: str) -> list[Any]:  # type: ignore[override]
        # The names and summaries from the registry: Typer's own asks every command for
        # its help, which imports every command's module on each Tab.
        from typer._click.core import Command
        from typer._click.shell_completion import CompletionItem
        from typer._click.utils import make_default_short_help

        # Shortened as Click shortens a subcommand's help, so that zsh's and fish's menus
        # show one line per command.
        names = [CompletionItem(command.name, help=make_default_short_help(command.summary))
                 for command in registry.COMMANDS if command.name.startswith(incomplete)]
        return names + Command.shell_complete(self, ctx, incomplete)

    def _main_shell_completion(
        self, ctx_args: Any, prog_name: str, complete_var: str | None = None
    ) -> None:
        """Answer a completion script's request (`COMPLETE_VAR` set), then exit.

        Both orders of the instruction are understood: Typer's scripts (the ones
        `--show-completion` prints) send `complete_bash`, Click's convention is
        `bash_complete`; either way the answer is in the format of Typer's script (for
        bash, one word a line).
        """
        instruction = os.environ.get(COMPLETE_VAR, "")
        if not instruction:
            return
        shell, _, action = instruction.partition("_")
        if shell in SHELLS:
            instruction = f"{action}_{shell}"
        from typer._completion_classes import completion_init
        from typer.completion import shell_complete

        completion_init()  # Typer's classes for bash, zsh and fish: its scripts' formats
        sys.exit(shell_complete(self, ctx_args, "backchannel", COMPLETE_VAR, instruction))

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
        completing = bool(os.environ.get(COMPLETE_VAR))
        if not completing and _COMPLETION_OPTIONS & set(_before_command(argv)):
            return _completion_script(argv)
        try:
            settings = load_config()
        except ConfigError as error:
            # `config` shows the error itself (and `config path` still says where the
            # file is); a Tab press must not print an error into the command line.
            if not completing and _command_of(argv) != "config":
                print_error(ExitCode.USAGE, str(error), as_json=as_json)
                return ExitCode.USAGE
            settings = Config()
        as_json = as_json or (bool(settings.json) and "--no-json" not in argv)
        extra.setdefault("default_map", _defaults_from(settings))
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


def _command_of(argv: list[str]) -> str | None:
    from backchannel.cli.launcher import command_of

    return command_of(argv)


def _before_command(argv: list[str]) -> list[str]:
    """The root's part of a command line: the words before the command."""
    command = _command_of(argv)
    return argv[: argv.index(command)] if command else argv


def _defaults_from(settings: Config) -> dict[str, Any]:
    """The configuration file as Click's `default_map`: below the command line and the
    environment (`--home` and BACKCHANNEL_HOME), above the built-in defaults. The home
    is not here: `default_home` reads it, so that hints know it is the default."""
    defaults: dict[str, Any] = {}
    if settings.json:
        defaults["as_json"] = True
    if settings.relays:
        defaults["invite"] = {"relays": list(settings.relays)}
    return defaults


def _completion_script(argv: list[str]) -> int:
    """`--show-completion [SHELL]` and `--install-completion [SHELL]`.

    Read here rather than declared as options: this Typer's options cannot take an
    optional value, and Typer's own pair are bare flags whenever `shellingham` is
    installed, so `--show-completion bash` would name a command `bash`. Without a
    shell, the one this process runs under.
    """
    from typer._completion_shared import _get_shell_name, get_completion_script, install

    words = _before_command(argv)
    show = "--show-completion" in words
    option = "--show-completion" if show else "--install-completion"
    after = argv[argv.index(option) + 1 :]
    shell = after[0] if after and not after[0].startswith("-") else _get_shell_name()
    if shell not in SHELLS:
        named = f"{shell!r} is not a shell it knows" if shell else "no shell detected"
        print_error(ExitCode.USAGE, f"{option}: {named}; name one of {', '.join(SHELLS)}: "
                    f"backchannel {option} bash", as_json=wants_json(argv))
        return ExitCode.USAGE
    if show:
        typer.echo(get_completion_script(prog_name="backchannel", complete_var=COMPLETE_VAR,
                                         shell=shell))
        return ExitCode.OK
    _, path = install(shell=shell, prog_name="backchannel", complete_var=COMPLETE_VAR)
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell")
    return ExitCode.OK


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
        False, "--json/--no-json", show_default=False,
        help="Print JSON on stdout instead of tables (see docs/cli.md); --no-json: tables "
             "even when the configuration file says json = true.",
    ),
    version: bool = typer.Option(
        False, "--version", "-V", is_eager=True, expose_value=False,
        callback=_print_version, help="Print the version and exit.",
    ),
) -> None:
    """A confidential, candid and dependable strategic channel between two principals."""
    if home is None:
        try:
            home = default_home()
        except ConfigError:
            # Only `config` (which says what is wrong) and completion get this far with
            # a broken file: `_run` stops every other command before.
            home = builtin_home()
    ctx.obj = CliContext(home, json=as_json)


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

"""`backchannel config path` and `config show`: which configuration file is read, and
what is in force, with where each value came from.

The file itself is read and checked in `cli.config`; nothing here opens the principal.
"""

from __future__ import annotations

import json
import os
from typing import Any, Final

import typer
from typer._click import Context as ClickContext
from typer._click.core import ParameterSource

from backchannel.cli.config import CONFIG_ENV, Config, ConfigError, config_path, load_config
from backchannel.cli.context import HOME_ENV, JSON_OPTION, cli_context, reports_errors
from backchannel.protocol.text import escaped, json_escaped

__all__ = ["config_app"]

config_app = typer.Typer(
    help="The configuration file: where it is, and the settings in force.\n\n"
         "Keys, precedence and errors: docs/cli.md, \"The configuration file\".\n\n"
         "Example: backchannel config show",
    no_args_is_help=True,
)

# Where a value came from, as `config show` names it (the `from` of its JSON).
_FROM_OPTION: Final = "option"
_FROM_ENV: Final = "environment"
_FROM_FILE: Final = "file"
_FROM_DEFAULT: Final = "default"


def _emit(data: dict[str, Any]) -> None:
    # Paths and URLs may hold anything a file name can: escaped, as every JSON output is.
    typer.echo(json_escaped(json.dumps(data, ensure_ascii=False, indent=2)))


@config_app.command("path")
def path(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the configuration file's path, whether or not it exists.

    It is printed even when the file is broken (every other command then stops).

    Example: backchannel config path
    """
    state = cli_context(ctx, as_json)
    file, named = config_path()
    if state.json:
        _emit({"path": str(file), "exists": file.is_file(), "named_by": CONFIG_ENV if named
               else None})
        return
    typer.echo(escaped(str(file)))


@config_app.command("show")
@reports_errors
def show(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show the settings in force and where each came from.

    Each is from an option, the environment, the file or the built-in default.

    A broken file is a usage error (exit 2) naming the file, the line and the key.

    Example: backchannel config show --json
    """
    state = cli_context(ctx, as_json)
    try:
        settings = load_config()
    except ConfigError as error:
        from backchannel.cli.exitcodes import ExitCode, print_error

        print_error(ExitCode.USAGE, str(error), as_json=state.json)
        raise typer.Exit(ExitCode.USAGE) from None
    root = ctx.find_root()
    home_from = _home_source(root, settings)
    relays_from = _FROM_FILE if settings.relays else _FROM_DEFAULT
    json_from = _json_source(root, as_json)
    if state.json:
        _emit({
            "file": str(settings.path) if settings.path is not None else None,
            "home": {"value": str(state.home), "from": home_from},
            "relays": {"value": list(settings.relays), "from": relays_from},
            "json": {"value": state.json, "from": json_from},
        })
        return
    file = str(settings.path) if settings.path is not None else (
        f"none ({config_path()[0]} does not exist)")
    typer.echo(f"Configuration file: {escaped(file)}")
    relays = ", ".join(settings.relays) or "none (invite needs --relay)"
    rows = [("home", str(state.home), home_from), ("relays", relays, relays_from),
            ("json", "true" if state.json else "false", json_from)]
    for key, value, source in rows:
        typer.echo(f"  {key:<7} {escaped(value)}  ({source})")


def _home_source(root: ClickContext, settings: Config) -> str:
    source = root.get_parameter_source("home")
    if source is ParameterSource.COMMANDLINE:
        return _FROM_OPTION
    if source is ParameterSource.ENVIRONMENT or os.environ.get(HOME_ENV):
        return _FROM_ENV
    return _FROM_FILE if settings.home is not None else _FROM_DEFAULT


def _json_source(root: ClickContext, own_flag: bool) -> str:
    source = root.get_parameter_source("as_json")
    if own_flag or source is ParameterSource.COMMANDLINE:
        return _FROM_OPTION
    return _FROM_FILE if source is ParameterSource.DEFAULT_MAP else _FROM_DEFAULT

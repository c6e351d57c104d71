"""`backchannel relay ...`: run a neutral relay."""

from __future__ import annotations

import typer

relay_app = typer.Typer(help="Run a neutral, blind relay.", no_args_is_help=True)

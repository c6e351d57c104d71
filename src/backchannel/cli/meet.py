"""`backchannel meet ...`: plan discreet in-person rounds."""

from __future__ import annotations

import typer

meet_app = typer.Typer(
    help="Suggest discreet venues and dates for a meeting.", no_args_is_help=True
)

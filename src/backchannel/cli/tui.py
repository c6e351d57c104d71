"""`backchannel tui`: the principal's console (channels, conversation, board, FLASH banner).

Textual and the engine are imported inside the command, so `tui --help` stays light.
"""

from __future__ import annotations

import typer

from backchannel.cli.context import cli_context, reports_errors


def tui(ctx: typer.Context) -> None:
    """The principal's console: channels, conversation, board; every act a key away.

    It holds the home for its lifetime (as a command does) and syncs once a second; a FLASH
    note awaiting your acknowledgement shows a red banner and rings the bell. Press ? for
    the keys, q to quit.

    Example: backchannel --home ~/.backchannel tui
    """
    from backchannel.tui.app import ConsoleApp
    from backchannel.tui.live import ConsoleData

    state = cli_context(ctx)
    with state.principal() as principal:
        ConsoleApp(ConsoleData(principal)).run()


def register(app: typer.Typer) -> None:
    """Add `tui` to the root app."""
    app.command()(reports_errors(tui))

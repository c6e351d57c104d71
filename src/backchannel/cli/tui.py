"""`backchannel tui`: the principal's console (channels, conversation, board, FLASH banner).

Textual and the engine are imported inside the command, so `tui --help` stays light.
"""

from __future__ import annotations

import shlex
import sys
from typing import Final

import typer

from backchannel.cli.context import cli_context, reports_errors
from backchannel.client.errors import ClientError

# `--serve` binds here and nowhere else: the console holds the home's keys, and a page
# served on a public address would hand them to whoever reaches it.
SERVE_HOST: Final = "127.0.0.1"
SERVE_PORT: Final = 8000


def serve_command(home: str) -> str:
    """The command each browser session runs: this console on the same home."""
    return shlex.join([sys.executable, "-c", "from backchannel.cli.main import main; main()",
                       "--home", home, "tui"])


def tui(
    ctx: typer.Context,
    serve: bool = typer.Option(
        False, "--serve",
        help="Serve the console in a browser (textual-serve), on 127.0.0.1 only.",
    ),
    port: int = typer.Option(SERVE_PORT, "--port", min=1, max=65535,
                             help="The port for --serve."),
) -> None:
    """The principal's console: channels, conversation, board; every act a key away.

    It holds the home for its lifetime (as a command does), syncs once a second and runs
    the duties (line tests, escalations); a FLASH note awaiting your acknowledgement shows
    a red banner and rings the bell. Press ? for the keys, ctrl+p for the palette, q to
    quit. With --serve, each browser tab on http://127.0.0.1:PORT runs its own console
    (give the passphrase in BACKCHANNEL_PASSPHRASE).

    Example: backchannel --home ~/.backchannel tui
    """
    state = cli_context(ctx)
    if serve:
        try:
            from textual_serve.server import Server  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            raise ClientError("--serve needs textual-serve: pip install 'backchannel[serve]'"
                              ) from None
        Server(serve_command(str(state.home)), host=SERVE_HOST, port=port,
               title="backchannel").serve()
        return

    from backchannel.tui.app import ConsoleApp
    from backchannel.tui.live import ConsoleData

    with state.principal() as principal:
        ConsoleApp(ConsoleData(principal)).run()


def register(app: typer.Typer) -> None:
    """Add `tui` to the root app."""
    app.command()(reports_errors(tui))

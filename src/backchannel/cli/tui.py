"""`backchannel tui`: the principal's console (channels, conversation, board, FLASH banner).

Textual and the engine are imported inside the command, so `tui --help` stays light.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import typer

from backchannel.cli.context import cli_context, reports_errors
from backchannel.client.errors import ClientError

if TYPE_CHECKING:
    from backchannel.client.engine import Principal

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

    With an agent running for the home, the console is its client: it reads and acts
    through it and needs no passphrase. Otherwise it holds the home and runs the agent
    itself for its lifetime (the socket, receiving, the duties), so other commands are
    served by it meanwhile. Events refresh it at once. A FLASH note awaiting your
    acknowledgement shows a red banner and rings the bell. Press ? for the keys, ctrl+p
    for the palette, q to quit. With --serve, each browser tab on http://127.0.0.1:PORT
    runs its own console (give the passphrase in BACKCHANNEL_PASSPHRASE, unless an agent
    runs).

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

    import asyncio

    from backchannel.cli.agent import agent_hello
    from backchannel.tui.app import ConsoleApp

    if agent_hello(state) is not None:
        asyncio.run(_as_agent_client(state.home))
        return
    with state.principal(role="agent") as principal:
        if principal.read_only_reason:
            # No agent can run on a home it cannot write: the console reads it alone.
            from backchannel.tui.live import ConsoleData

            ConsoleApp(ConsoleData(principal)).run()
            return
        asyncio.run(_with_own_agent(principal))


async def _as_agent_client(home: Path) -> None:
    from backchannel.tui.app import ConsoleApp
    from backchannel.tui.source import AgentSource

    source = AgentSource(home)
    try:
        await ConsoleApp(source).run_async()
    finally:
        await source.close()


async def _with_own_agent(principal: Principal) -> None:
    from backchannel.tui.app import ConsoleApp
    from backchannel.tui.source import embedded_agent

    running: list[ConsoleApp] = []

    def agent_ended() -> None:
        # The agent ending first (`agent --stop`, SIGTERM) ends the console with it.
        for app in running:
            app.exit()

    async with embedded_agent(principal, on_end=agent_ended) as source:
        running.append(ConsoleApp(source))
        await running[0].run_async()


def register(app: typer.Typer) -> None:
    """Add `tui` to the root app."""
    app.command()(reports_errors(tui))

"""The `backchannel` command."""

from __future__ import annotations

import typer

from backchannel import __version__
from backchannel.cli.meet import meet_app
from backchannel.cli.relay import relay_app

app = typer.Typer(
    name="backchannel",
    help="A confidential, candid and dependable strategic channel between two principals.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(relay_app, name="relay")
app.add_typer(meet_app, name="meet")


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


@app.command()
def demo() -> None:
    """Play the scripted demonstration on the embedded default.

    Example: backchannel demo
    """
    from backchannel.cli.demo import run_demo

    raise typer.Exit(run_demo())


def main() -> None:
    app()

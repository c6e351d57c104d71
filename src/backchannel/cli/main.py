"""The `backchannel` command."""

from __future__ import annotations

from pathlib import Path

import typer

from backchannel import __version__
from backchannel.cli import account, agent, board, dialogue, messaging, pairing, watch
from backchannel.cli.agenda import agenda_app
from backchannel.cli.context import HOME_ENV, JSON_OPTION, CliContext, cli_context, default_home
from backchannel.cli.meet import meet_app
from backchannel.cli.records import record_app
from backchannel.cli.redlines import redline_app
from backchannel.cli.relay import relay_app
from backchannel.cli.watch import escalation_app

app = typer.Typer(
    name="backchannel",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    # Said explicitly: a crash report must never print local variables, which may hold
    # the passphrase or keys. Failures the principal can act on are one `error:` line.
    pretty_exceptions_show_locals=False,
)

app.add_typer(relay_app, name="relay")
app.add_typer(meet_app, name="meet")
pairing.register(app)
messaging.register(app)
board.register(app)
dialogue.register(app)
app.add_typer(redline_app, name="redline")
app.add_typer(agenda_app, name="agenda")
app.add_typer(record_app, name="record")
watch.register(app)
agent.register(app)
account.register(app)
app.add_typer(escalation_app, name="escalation")


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
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """A confidential, candid and dependable strategic channel between two principals.

    The passphrase that encrypts a principal's state is asked for on the terminal, or taken
    from BACKCHANNEL_PASSPHRASE.

    Example: backchannel --home ~/bc/washington status
    """
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    ctx.obj = CliContext(home or default_home(), json=as_json)


@app.command()
def demo(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Play the scripted demonstration: a local relay, two principals, a strategic round.

    A short conversation, then a red line, urgent notes (one held then acknowledged, one
    escalated), a clarification, the next round's agenda, an agreed record verified
    offline and a line test, ending with the status board. Everything runs in a
    temporary folder on this machine (loopback only) and is deleted afterwards. The exit
    code is 1 if any message was lost or a step failed.

    Example: backchannel demo
    """
    from backchannel.cli.demo import run_demo

    state: CliContext = cli_context(ctx, as_json)
    raise typer.Exit(run_demo(as_json=state.json))


def run_here() -> None:
    """Run the command in this process (no agent, or a command that never uses one)."""
    app(prog_name="backchannel")


def main() -> None:
    """The console script: through the home's agent when one runs (see `launcher`)."""
    from backchannel.cli.launcher import main as launch

    launch()

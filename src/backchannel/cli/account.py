"""`passphrase change`: the principal's own account.

Not run by an agent: the agent and each of its request workers hold the state open under
the old key, and would go on sealing records with it. While an agent holds the home, the
command says so and changes nothing; stop the agent (`backchannel agent --stop`), change the
passphrase, start the agent again with the new one.
"""

from __future__ import annotations

import typer

from backchannel.cli.context import (
    AGENT_REQUEST,
    JSON_OPTION,
    NEW_PASSPHRASE_ENV,
    cli_context,
    reports_errors,
)
from backchannel.cli.output import emit_json
from backchannel.client.errors import ClientError

__all__ = ["passphrase_app", "register"]

passphrase_app = typer.Typer(
    no_args_is_help=True, add_completion=False, rich_markup_mode="markdown",
    help="The passphrase that encrypts this principal's state.\n\n"
         "Example: backchannel --home ~/bc/washington passphrase change",
)


def change(
    ctx: typer.Context,
    allow_weak: bool = typer.Option(
        False, "--allow-weak-passphrase",
        help="Accept a new passphrase the policy refuses (for tests and throwaway homes).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-encrypt the whole state under a new passphrase, in one transaction.

    The current passphrase is asked for first (or taken from BACKCHANNEL_PASSPHRASE), then
    the new one twice (or taken from BACKCHANNEL_NEW_PASSPHRASE); the new one must pass the
    same policy as at `init`. Afterwards the old passphrase opens nothing in the file;
    copies of the file made before still open with it. Refused while an agent runs: stop
    it first.

    Example: backchannel passphrase change
    """
    state = cli_context(ctx, as_json)
    if AGENT_REQUEST.principal is not None:
        raise ClientError(
            "the agent holds this home under the current passphrase: stop it "
            "(backchannel agent --stop), run `backchannel passphrase change`, then start "
            "it again"
        )
    with state.principal() as principal:  # opening it checks the current passphrase
        new = state.new_passphrase(env=NEW_PASSPHRASE_ENV, prompt="New passphrase",
                                   allow_weak=allow_weak)
        if new == state.passphrase():
            raise ClientError("the new passphrase is the current one; nothing changed")
        with state.progress("Re-encrypting the state…"):
            principal.change_passphrase(new)
    if state.json:
        emit_json({"changed": True, "home": str(state.home)})
        return
    state.out.print(f"Passphrase changed for {state.home}; the old one no longer opens it.")


# Wired here, not in `register`: the root group loads `passphrase_app` by itself when
# `passphrase` runs (cli/registry.py).
passphrase_app.command("change")(reports_errors(change))


def register(app: typer.Typer) -> None:
    """Add `passphrase change` to the root app."""
    app.add_typer(passphrase_app, name="passphrase")

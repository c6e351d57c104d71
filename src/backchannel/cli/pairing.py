"""`init`, `invite`, `accept` and `verify`: a principal, a channel, and trust in it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Final

import typer

from backchannel.cli.context import JSON_OPTION, PASSPHRASE_ENV, cli_context, reports_errors
from backchannel.cli.hints import command_hint
from backchannel.cli.output import (
    channel_json,
    emit_json,
    invite_json,
    local_time,
    shown,
    utc_time,
)
from backchannel.client.errors import ClientError
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.text import check_relay_url, escaped

# Not here: the engine and the keystore (cryptography under both), and asyncio; the
# commands that use them import them, since `init --help` has no use for them (0.3 s).

__all__ = ["parse_ttl", "register"]

_TTL_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# An invite is a standing way into a new channel until it is used; a month is the most
# a courier should need, and anything longer is more likely forgotten than used.
MAX_INVITE_TTL_S: Final = 30 * 86400


def parse_ttl(text: str) -> int:
    """An invite lifetime such as ``90s``, ``30m``, ``12h`` or ``7d``, in milliseconds.

    Raises:
        typer.BadParameter: not a positive number with a unit, or longer than 30 days.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text.lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration such as 90s, 30m, 12h or 7d",
                                 param_hint="--ttl")
    seconds = float(match[1]) * _TTL_UNITS[match[2]]
    if not 0 < seconds <= MAX_INVITE_TTL_S:
        raise typer.BadParameter("an invite lives more than 0 seconds and at most 30 days",
                                 param_hint="--ttl")
    return int(seconds * 1000)


def init(
    ctx: typer.Context,
    name: str = typer.Option(..., "--name", help="Your name or role, as your counterpart sees it."),
    allow_weak: bool = typer.Option(
        False, "--allow-weak-passphrase",
        help="Accept a passphrase the policy refuses (for tests and throwaway homes).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a principal (a fresh identity key) in the home folder.

    The passphrase encrypts everything stored; it is asked for twice, or taken from
    BACKCHANNEL_PASSPHRASE. It must have at least 12 characters and not be a common
    password, one character repeated or a run such as 1234 (three or four unrelated words
    do); `--allow-weak-passphrase` or BACKCHANNEL_ALLOW_WEAK_PASSPHRASE=1 lifts that for
    tests.

    Example: backchannel --home ~/bc/washington init --name washington
    """
    from backchannel.client.engine import Principal
    from backchannel.client.keystore import STATE_FILE

    state = cli_context(ctx, as_json)
    if (state.home / STATE_FILE).exists():
        # Said before asking for a passphrase that would not be used.
        raise ClientError(f"{state.home} already holds a principal; use another --home")
    passphrase = state.new_passphrase(env=PASSPHRASE_ENV, prompt="Passphrase",
                                      allow_weak=allow_weak)
    principal = Principal.create(state.home, name, passphrase)
    principal.close()
    if state.json:
        emit_json({"name": principal.name, "home": str(state.home)})
        return
    state.out.print(f"Created principal '{principal.name}' in {state.home}.")
    state.out.print("Next: backchannel invite --relay URL (or accept your counterpart's code).")


def qr_symbol(code: str) -> Any | None:
    """The code's QR symbol, or None when the code is longer than one symbol holds (a
    version 4 invite pins each relay in 32 bytes, so two relays fit with room to spare;
    many relays with long URLs may not, nor a version 3 invite with two relays' keys)."""
    import segno
    from segno.encoder import DataOverflowError

    # Level L: the code is up to 2.9 KB and signed, so error correction only has to
    # survive a camera, not tampering; a higher level would not fit in one symbol.
    try:
        return segno.make(code, error="l")
    except DataOverflowError:
        return None


def no_qr_reason(code: str) -> str:
    """Why `code` comes without a QR code (`qr_symbol` gave None), for the CLI and the
    console alike."""
    return (f"no QR code: this code is {len(code):,} characters (its relays' addresses "
            "included), more than one QR code holds; pass the code as text")


def _qr_format(path: Path | None) -> None:
    if path is not None and path.suffix.lower() not in (".png", ".svg"):
        raise typer.BadParameter(f"must end in .png or .svg, not {path.name!r}",
                                 param_hint="--qr-file")


def _relay_urls(urls: list[str] | None) -> list[str] | None:
    """Refuse a URL that is not wss:// (ws:// only to this machine) before asking for the
    passphrase or connecting: the tokens in an invite travel in the clear over ws://."""
    for url in urls or ():
        try:
            check_relay_url(url)
        except LocalProtocolError as error:
            raise typer.BadParameter(escaped(str(error)), param_hint="--relay") from None
    return urls


def invite(
    ctx: typer.Context,
    relays: list[str] | None = typer.Option(  # noqa: B008 - Typer declares options this way
        None, "--relay", metavar="URL", callback=_relay_urls,
        help="A relay for the channel (wss://, or ws:// on this machine); repeat.",
    ),
    ttl: str = typer.Option("7d", "--ttl", help="How long the code stays valid: 90s, 12h, 7d."),
    qr: bool = typer.Option(False, "--qr", help="Also show the code as a QR code."),
    qr_file: Path | None = typer.Option(  # noqa: B008
        None, "--qr-file", metavar="FILE.png|FILE.svg", help="Also save the QR code here."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a one-time invite code for a new channel; give it to your counterpart.

    The code carries the relay addresses, a one-time mailbox and your signed prekeys; it
    holds no secret that opens past messages, but whoever uses it first gets the channel,
    so pass it by a route you trust and compare the safety number afterwards.

    `backchannel invite revoke ID` withdraws a code not yet used (ids in `channels`).

    Example: backchannel invite --relay wss://relay.example.org --ttl 2d --qr
    """
    import asyncio

    if ctx.invoked_subcommand is not None:
        return  # `invite revoke`: the group's options are not an invite to make
    if not relays:
        raise typer.BadParameter(
            "give at least one relay: --relay URL, or `relays` in the config file "
            "(`backchannel config path` shows where it is)", param_hint="--relay")
    state = cli_context(ctx, as_json)
    ttl_ms = parse_ttl(ttl)
    _qr_format(qr_file)
    with state.principal() as principal:
        with state.progress(f"Creating mailboxes on {len(relays)} relay(s)…"):
            code = asyncio.run(principal.invite(relays, ttl_ms=ttl_ms))
        # The invite just made is the newest one waiting; its record has the exact expiry.
        expires_ms = max(principal.pending_invites(), key=lambda i: i.created_at_ms).expires_at_ms
    symbol = qr_symbol(code) if qr or qr_file is not None else None
    if symbol is None and (qr or qr_file is not None):
        typer.echo(f"warning: {no_qr_reason(code)}", err=True)
        qr, qr_file = False, None
    if qr_file is not None and symbol is not None:
        symbol.save(str(qr_file), scale=4)
    if state.json:
        emit_json({"code": code, "relays": list(dict.fromkeys(relays)),
                   "expires_at": utc_time(expires_ms),
                   "qr_file": str(qr_file) if qr_file is not None else None})
        if qr and symbol is not None:  # stdout carries the JSON alone
            symbol.terminal(out=sys.stderr, compact=True)
        return
    typer.echo(code)
    if qr and symbol is not None:
        symbol.terminal(out=sys.stdout, compact=True)
    state.err.print(f"One-time invite, valid until {local_time(expires_ms)}."
                    + (f" QR code saved to {qr_file}." if qr_file is not None else ""))
    state.err.print("Your counterpart runs: backchannel accept CODE; then you run: "
                    "backchannel sync")


def accept(
    ctx: typer.Context,
    code: str = typer.Argument(..., help="The invite code, or - to read it from stdin."),
    name: str | None = typer.Option(
        None, "--name", help="Your name for the channel [default: the inviter's name]."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Join the channel an invite code offers (PQXDH) and send the first message.

    Example: backchannel accept BC1-AAECAwQF... --name washington
    """
    import asyncio

    state = cli_context(ctx, as_json)
    if code == "-":
        code = typer.get_text_stream("stdin").read()
    with state.principal() as principal, state.progress("Joining the channel…"):
        channel = asyncio.run(principal.accept(code, name=name))
    if state.json:
        emit_json({"channel": channel_json(channel)})
        return
    # The name is the inviter's, from the invite: escaped, so it cannot clear the screen
    # and print a fake "verified" over the hint below (the console escapes the hint too).
    state.out.print(f"Joined channel '{shown(channel.name)}'; the first message is on its way.")
    state.out.print("Now compare the safety number, all 12 groups to the last: "
                    + command_hint(state, "verify", channel.name), soft_wrap=True)


def verify(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    confirm: bool = typer.Option(
        False, "--confirm", help="Record that you compared it out of band and it matched."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Show a channel's safety number (12 groups of 5 digits and 12 words).

    Both of you see the same number; compare it in person or read it aloud over a line you
    trust, all 12 groups (or all 12 words), never only the first ones: an impostor's
    number can begin with the same groups as the genuine one. If it matches, record that
    with --confirm.

    Example: backchannel verify beijing --confirm
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        record = principal.channel(channel)
        digits, words, verified = principal.safety_number(record.name)
        if confirm and not verified:
            principal.confirm_verified(record.name)
            verified = True
    groups = digits.split()
    if state.json:
        emit_json({"channel": record.name, "digits": "".join(groups), "groups": groups,
                   "words": list(words), "verified": verified,
                   "identity_changed": record.identity_changed})
        return
    out = state.out
    peer = shown(record.name)
    out.print(f"Safety number of channel '{peer}':\n")
    for row in range(0, len(groups), 4):
        out.print("    " + " ".join(groups[row : row + 4]))
    out.print("\n    " + " ".join(words[:6]) + "\n    " + " ".join(words[6:]) + "\n")
    # Half of the digits are one side's fingerprint (docs/protocol.md §2): an impostor who
    # replaced only the other side's identity leaves half of them as they were, and if
    # that half sorts first, the first 6 groups match. Only the whole number tells.
    if not verified or confirm:
        out.print(f"Compare all {len(groups)} groups (or all {len(words)} words) with your "
                  "counterpart's, to the last one: an impostor's number can begin with the "
                  "same groups as the genuine one.")
    if record.identity_changed and not confirm and not verified:
        out.print(f"Warning: '{peer}' has a different identity key than an earlier "
                  "channel of that name. Sending waits until you compare this number "
                  "with your counterpart and confirm it.", style="bold")
    if confirm:
        out.print(f"Recorded: channel '{peer}' is verified.")
    elif verified:
        out.print("Verified: you confirmed this number earlier.")
    else:
        out.print("Not verified yet. If it matches your counterpart's: "
                  + command_hint(state, "verify", record.name, "--confirm"), soft_wrap=True)


def whoami(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show this principal's name and identity fingerprint and public keys.

    The fingerprint is what `record verify` names for each signer of an agreed record, so a
    third party can tell which key is whose. The keys are public; nothing secret is shown.

    Example: backchannel --home ./washington whoami
    """
    state = cli_context(ctx, as_json)
    with state.principal() as principal:
        name, identity = principal.name, principal.identity
    data = {
        "name": name,
        "fingerprint": identity.fingerprint,
        "signing_key": identity.signing_key.hex(),
        "agreement_key": identity.agreement_key.hex(),
    }
    if state.json:
        emit_json(data)
        return
    state.out.print(f"{name}: identity fingerprint {identity.fingerprint}")
    state.out.print(f"  signing key (Ed25519)    {data['signing_key']}")
    state.out.print(f"  agreement key (X25519)   {data['agreement_key']}")


def revoke(
    ctx: typer.Context,
    invite_id: str = typer.Argument(..., metavar="ID",
                                    help="The invite's id (at least 6 characters)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Withdraw an invite nobody has used yet: its mailboxes are deleted on the relays, so
    whoever tries the code is refused, and its one-time key is deleted here.

    Ids are in `backchannel channels`. An invite already taken up is a channel: remove it
    with `backchannel channels remove NAME`.

    Example: backchannel invite revoke 3f9a2c71
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.principal() as principal, state.progress("Deleting the invite's mailboxes…"):
        record, left = asyncio.run(principal.revoke_invite(invite_id))
    if state.json:
        emit_json({"revoked": invite_json(record), "mailboxes_left": left})
        return
    state.out.print(f"Revoked invite {record.invite_id[:8]}: the code can no longer be used.")
    for where in left:
        state.err.print(f"warning: relay {where} could not delete the invite's mailbox; "
                        "a joiner there is stored but never answered, until it expires")


invite_app = typer.Typer(
    invoke_without_command=True, no_args_is_help=False, add_completion=False,
    rich_markup_mode="markdown",
)


# Wired here, not in `register`: the root group loads `invite_app` by itself when `invite`
# runs (cli/registry.py).
invite_app.callback()(reports_errors(invite))
invite_app.command("revoke")(reports_errors(revoke))


def register(app: typer.Typer) -> None:
    """Add the pairing commands to the root app (`invite` is a group: `invite revoke`)."""
    for command in (init, accept, verify, whoami):
        app.command()(reports_errors(command))
    app.add_typer(invite_app, name="invite")

"""`record propose|sign|show|export|verify`: the one thing that is on the record
(docs/dialogue.md §4.5, §6).

Everything else a channel carries is deniable. An agreed record is a statement one side
proposes and signs and the other co-signs, both with their identity keys; exported, it is
a file that `record verify` checks anywhere, offline, with no home folder and no
passphrase.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from backchannel.cli.context import JSON_OPTION, CliContext, cli_context, reports_errors
from backchannel.cli.dialogue import report_act
from backchannel.cli.hints import command_hint, command_line
from backchannel.cli.output import emit_json, local_time, short_id, shown
from backchannel.client.errors import ClientError

if TYPE_CHECKING:
    # Only for annotations: `record --help` builds the group without Rich, the engine or
    # the dialogue package (cryptography under both); the functions that use them at run
    # time import them there.
    from backchannel.client.strategic import StrategicChannel
    from backchannel.dialogue import (
        LanguageVersion,
        RecordFileError,
        RecordView,
        VerifiedRecord,
        VerifiedSigner,
    )

__all__ = ["parse_languages", "record_app"]

record_app = typer.Typer(
    no_args_is_help=True,
    help="Agreed records: propose a statement, co-sign theirs, show, export, verify a file."
         "\n\nExample: backchannel record verify vienna-statement.txt",
)


def parse_languages(
    text: str | None,
    langs: list[str],
    authoritative: str | None,
    authentic: list[str] | None = None,
) -> list[LanguageVersion]:
    """The statement's language versions from `TEXT` or from `--lang TAG=TEXT` options.

    Raises:
        typer.BadParameter: both or neither given, a `--lang` without `=`, or several
            languages and no (or an unknown) `--authoritative`.
    """
    from backchannel.dialogue import LanguageVersion

    if text is not None and langs:
        raise typer.BadParameter("give the text either as TEXT or as --lang TAG=TEXT, not both")
    if text is not None:
        return [LanguageVersion(authoritative or "en", text, authoritative=True)]
    if not langs:
        raise typer.BadParameter("give the statement: TEXT, or --lang en=TEXT --lang zh=TEXT")
    pairs = []
    for item in langs:
        tag, sep, body = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not TAG=TEXT (such as en=...)",
                                     param_hint="--lang")
        pairs.append((tag.strip(), body))
    tags = {tag.lower() for tag, _ in pairs}
    if authentic:
        # The authentic-text clause: these versions are equally authentic; one of them
        # may prevail in case of divergence (--authoritative), or none does.
        wanted = {tag.lower() for tag in authentic}
        if not wanted <= tags:
            raise typer.BadParameter(f"{sorted(wanted - tags)} not among the --lang tags",
                                     param_hint="--authentic")
        if authoritative is not None and authoritative.lower() not in tags:
            raise typer.BadParameter(f"{authoritative!r} is not one of the --lang tags",
                                     param_hint="--authoritative")
        prevails = (authoritative or "").lower()
        return [LanguageVersion(tag, body, authoritative=tag.lower() == prevails,
                                authentic=tag.lower() in wanted) for tag, body in pairs]
    if authoritative is None and len(pairs) > 1:
        raise typer.BadParameter("with several languages, name the one that prevails "
                                 "(or the equally authentic ones: --authentic TAG, repeated)",
                                 param_hint="--authoritative")
    chosen = authoritative or pairs[0][0]
    if chosen.lower() not in {tag.lower() for tag, _ in pairs}:
        raise typer.BadParameter(f"{chosen!r} is not one of the --lang tags",
                                 param_hint="--authoritative")
    return [LanguageVersion(tag, body, authoritative=tag.lower() == chosen.lower())
            for tag, body in pairs]


def _mark(v: LanguageVersion) -> str:
    """How a version's heading says what it is under the authentic-text clause."""
    if v.authoritative:
        return ", authoritative"
    return ", authentic" if v.authentic else ", translation"


def _proposed(strategic: StrategicChannel, message_id: str) -> RecordView:
    """The record a RECORD_PROPOSE message of ours created or amended."""
    wanted = bytes.fromhex(message_id)
    return next(r for r in strategic.dialogue().records()
                if any(v.message_id == wanted for v in r.versions))


def propose(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    title: str = typer.Argument(..., help="The statement's title (one line)."),
    text: str | None = typer.Argument(None, help="The statement, in one language."),
    langs: list[str] = typer.Option(  # noqa: B008 - Typer declares options this way
        [], "--lang", metavar="TAG=TEXT", help="The statement in one language; repeat."
    ),
    authoritative: str | None = typer.Option(
        None, "--authoritative", metavar="TAG",
        help="The language that prevails [default: en, or the only --lang].",
    ),
    update: str | None = typer.Option(
        None, "--update", metavar="RECORD", help="Propose a new version of this record of yours."
    ),
    authentic: list[str] = typer.Option(  # noqa: B008 - Typer declares options this way
        [], "--authentic", metavar="TAG",
        help="A language version that is authentic (repeat: equally authentic texts; "
             "--authoritative then names the one that prevails, if any).",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Propose a statement for the record, signed with your identity key; it is agreed
    when the other side co-signs it.

    Which texts are authentic is signed with them (the authentic-text clause): one text
    that prevails (--authoritative), or several equally authentic (--authentic, repeated).

    Example: backchannel record propose beijing "Vienna round" --lang en="The two sides held candid talks." --lang zh="双方进行了坦诚的会谈。" --authoritative en
    """  # noqa: E501 - an example is one command line
    import asyncio

    state = cli_context(ctx, as_json)
    versions = parse_languages(text, langs, authoritative, authentic)
    with state.channel(channel) as strategic:
        with state.progress("Signing and sending the proposal…"):
            result = asyncio.run(strategic.propose_record(title, versions, update))
        view = _proposed(strategic, result.message_id)
    report_act(state, strategic.name, result, act="record_propose",
               headline=f"Proposed record {short_id(view.record_id.hex())} version "
                        f"{view.latest.version} to '{strategic.name}', signed by you; it "
                        "awaits their co-signature",
               extra={"record_id": view.record_id.hex(), "version": view.latest.version,
                      "statement_hash": view.latest.statement_hash.hex()})


def sign(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    record: str = typer.Argument(..., help="Their record's id (or its first characters)."),
    version: int | None = typer.Option(
        None, "--version", min=1,
        help="The version you read; refused if the record changed since.",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Co-sign the latest version of their proposed record: this puts it on the record.

    Read it first (`record show CHANNEL RECORD`); `--version` makes sure that what you
    sign is what you read.

    Example: backchannel record sign washington 1f3e9d20 --version 1
    """
    import asyncio

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        record_id = strategic.resolve(record)
        view = strategic.dialogue().record(record_id)
        if view is None:
            raise ClientError(f"'{record}' is not a record of '{strategic.name}'")
        latest = view.latest
        if version is not None and version != latest.version:
            raise ClientError(
                f"record {short_id(record_id.hex())} was changed after version {version} was "
                f"proposed: version {latest.version} is the latest; read it ("
                + command_hint(state, "record", "show", strategic.name,
                               short_id(record_id.hex()))
                + ") and sign that"
            )
        with state.progress("Signing and sending…"):
            result = asyncio.run(strategic.sign_record(record_id.hex()))
    report_act(state, strategic.name, result, act="record_sign",
               headline=f"Co-signed record {short_id(record_id.hex())} version "
                        f"{latest.version} of '{strategic.name}': it is on the record",
               extra={"record_id": record_id.hex(), "version": latest.version,
                      "statement_hash": latest.statement_hash.hex()})


def _record_state(view: RecordView, peer: str) -> str:
    from backchannel.dialogue import RecordStatus, Side

    if view.latest.status is RecordStatus.AGREED:
        return "agreed"
    if view.owner is Side.OURS:
        return f"awaiting {peer}'s co-signature"
    return "awaiting your co-signature"


def _record_shapes(strategic: StrategicChannel) -> list[dict[str, Any]]:
    return cast(list[dict[str, Any]], strategic.board().to_dict()["records"])


def _show_one(state: CliContext, strategic: StrategicChannel, ref: str) -> None:
    from backchannel.dialogue import Side

    record_id = strategic.resolve(ref)
    view = strategic.dialogue().record(record_id)
    if view is None:
        raise ClientError(f"'{ref}' is not a record of '{strategic.name}'")
    latest = view.latest
    if state.json:
        (shape,) = (s for s in _record_shapes(strategic) if s["record_id"] == record_id.hex())
        emit_json({"channel": strategic.name, "record": {
            **shape, "texts": {v.language: v.text for v in latest.statement.versions}}})
        return
    out = state.out
    # The title, the texts and the name may be the counterpart's: shown escaped, so that
    # what is displayed is the order of the bytes both sides sign.
    out.print(f"Record {record_id.hex()} version {latest.version}: "
              f"{shown(_record_state(view, strategic.name))}", style="bold")
    out.print(f"Title:     {shown(latest.statement.title)}")
    out.print(f"Statement: {latest.statement_hash.hex()}")
    who = "you" if latest.proposed_by is Side.OURS else shown(strategic.name)
    out.print(f"Proposed by {who}, signed {local_time(latest.proposal.signed_at_ms)}")
    if latest.cosignature is not None:
        other = shown(strategic.name) if latest.proposed_by is Side.OURS else "you"
        out.print(f"Co-signed by {other}, signed {local_time(latest.cosignature.signed_at_ms)}")
    out.print(f"Authentic texts: {latest.statement.authentic_clause()}")
    for v in latest.statement.versions:
        out.print()
        out.print(f"=== {v.language}{_mark(v)} ===", style="bold")
        out.print(shown(v.text, multiline=True))
    earlier = [f"v{v.version} {v.status.value}" for v in view.versions[:-1]]
    if earlier:
        out.print()
        out.print("Earlier versions: " + ", ".join(earlier), style="dim")


def show(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    record: str | None = typer.Argument(None, help="One record, in full [default: a list]."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the channel's records, or show one in full (every language) with its
    signatures.

    Example: backchannel record show beijing 1f3e9d20
    """
    from rich.table import Table

    from backchannel.dialogue import Side

    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        if record is not None:
            _show_one(state, strategic, record)
            return
        views = strategic.dialogue().records()
        if state.json:
            emit_json({"channel": strategic.name, "records": _record_shapes(strategic)})
            return
    if not views:
        state.out.print("No records yet; to propose one, add its title and text to: "
                        + command_hint(state, "record", "propose", strategic.name),
                        soft_wrap=True)
        return
    table = Table(title=f"Records of '{strategic.name}'")
    for heading in ("Record", "Proposed by", "Version", "Title", "Languages", "State"):
        table.add_column(heading)
    for view in views:
        latest = view.latest
        table.add_row(short_id(view.record_id.hex()),
                      "you" if view.owner is Side.OURS else strategic.name,
                      str(latest.version), latest.statement.title,
                      ", ".join(v.language for v in latest.statement.versions),
                      _record_state(view, strategic.name))
    state.out.print(table)


def export(
    ctx: typer.Context,
    channel: str = typer.Argument(..., help="Channel name or id."),
    record: str = typer.Argument(..., help="The record's id (or its first characters)."),
    output: Path = typer.Option(  # noqa: B008 - Typer declares options this way
        ..., "-o", "--output", metavar="FILE", help="Where to write the file."
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Write an agreed (co-signed) record to a file that anyone can verify offline.

    Example: backchannel record export beijing 1f3e9d20 -o vienna-statement.txt
    """
    state = cli_context(ctx, as_json)
    with state.channel(channel) as strategic:
        record_id = strategic.resolve(record).hex()
        data = strategic.export_record(record_id)
    output.write_bytes(data)
    if state.json:
        emit_json({"channel": strategic.name, "record_id": record_id, "file": str(output),
                   "bytes": len(data)})
        return
    state.out.print(f"Wrote agreed record {short_id(record_id)} to {output} "
                    f"({len(data)} bytes). Anyone can check it: "
                    + command_line("record", "verify", str(output)), soft_wrap=True)


def _read_record_file(path: str) -> bytes:
    from backchannel.dialogue.agreed import MAX_RECORD_FILE_BYTES

    # One byte more than a valid file may have, so a larger file is refused as such
    # without reading all of it.
    if path == "-":
        return sys.stdin.buffer.read(MAX_RECORD_FILE_BYTES + 1)
    with open(path, "rb") as f:
        return f.read(MAX_RECORD_FILE_BYTES + 1)


def _failure_word(error: RecordFileError) -> str:
    """What `record verify --json` says went wrong, one stable word per kind of failure
    (the table is built here, not at import: its classes come with cryptography)."""
    from backchannel.dialogue import (
        MalformedRecordFile,
        MissingCosignature,
        RecordSignatureInvalid,
        RecordTextAltered,
        UnexpectedSigner,
    )

    failures: tuple[tuple[type[RecordFileError], str], ...] = (
        (MissingCosignature, "missing_cosignature"),
        (RecordSignatureInvalid, "signature_invalid"),
        (UnexpectedSigner, "unexpected_signer"),
        (RecordTextAltered, "text_altered"),
        (MalformedRecordFile, "malformed"),
    )
    return next((word for kind, word in failures if isinstance(error, kind)), "invalid")


def _signer_lines(signer: VerifiedSigner, label: str) -> list[str]:
    moment = dt.datetime.fromtimestamp(signer.signed_at_ms / 1000, dt.UTC)
    local = moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    utc = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return [f"{label} key {signer.fingerprint} (Ed25519 {signer.identity.signing_key.hex()})",
            f"{' ' * len(label)} signed {local} ({utc}), by its own clock"]


def _print_verified(state: CliContext, path: str, verified: VerifiedRecord) -> None:
    out = state.out
    out.print(f"VALID: {path} is an agreed record signed by both parties and unchanged "
              "since.", style="bold green")
    out.print(f"Record:        {verified.record_id.hex()} version {verified.version}")
    out.print(f"Title:         {shown(verified.statement.title)}")
    out.print(f"Statement:     {verified.statement_hash.hex()}")
    for line in (_signer_lines(verified.proposer, "Proposed by: ")
                 + _signer_lines(verified.cosigner, "Co-signed by:")):
        out.print(line)
    out.print(f"Authentic texts: {verified.statement.authentic_clause()}", style="bold")
    for v in verified.statement.versions:
        out.print()
        out.print(f"=== {v.language}{_mark(v)} ===", style="bold")
        out.print(shown(v.text, multiline=True))
    out.print()
    out.print("The keys name who signed; to know which principals hold them, compare them "
              "with keys you obtained from those principals.", style="dim")


def verify(
    ctx: typer.Context,
    path: str = typer.Argument(..., metavar="FILE", help="The record file, or - for stdin."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check an agreed-record file offline: both signatures and every byte.

    Needs no home folder, no passphrase and no network. Prints what was agreed, who signed
    it (their identity keys) and when; exit code 1, with the reason, if the file is not a
    valid agreed record (any byte changed, a signature missing or not matching).

    Example: backchannel record verify vienna-statement.txt
    """
    from backchannel.dialogue import RecordFileError, verify_record_file

    state = cli_context(ctx, as_json)  # nothing is opened: `--home` plays no part
    data = _read_record_file(path)
    try:
        verified = verify_record_file(data)
    except RecordFileError as error:
        if state.json:
            emit_json({"valid": False, "error": _failure_word(error), "reason": str(error)})
        raise ClientError(f"{path} is not a valid agreed record: {error}") from None
    if state.json:
        emit_json({"valid": True, "file": path, **verified.to_dict()})
        return
    _print_verified(state, path, verified)


for _command, _name in ((propose, "propose"), (sign, "sign"), (show, "show"),
                        (export, "export"), (verify, "verify")):
    record_app.command(_name)(reports_errors(_command))

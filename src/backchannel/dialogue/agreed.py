"""The agreed-record file: the one artefact of a channel that is on the record.

A file holds one version of a record: its statement, both principals' public identities,
both signatures and the signing times. Anyone can check it offline, with no secret and no
channel (`verify_record_file`). The file is UTF-8 text in two parts (`docs/dialogue.md`,
"The agreed-record file")::

    Backchannel agreed record                <- a readable copy, derived from the block
    ...
    -----BEGIN BACKCHANNEL AGREED RECORD-----
    <base64 of the signed block, 64 characters a line>
    -----END BACKCHANNEL AGREED RECORD-----

The signed block (binary)::

    magic            8    "BCRECORD"
    format           u8   RECORD_FILE_FORMAT (1)
    record_id        16
    version          u32
    statement             `Statement` encoding
    proposer         66   PublicIdentity.encode()
    cosigner         66
    proposed_at      u64  the proposer's signing time (ms since the epoch, UTC)
    proposer sig     64   Ed25519 over record_signing_bytes(PROPOSER, ...)
    cosigned         u8   1 (0: a proposal awaiting its co-signature)
    [cosigned_at u64, cosigner sig 64]   when cosigned = 1

A file is valid only byte for byte as `export_record` writes it: the readable part, line
breaks and base64 are all checked, so changing any byte is detected.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from backchannel.dialogue.kinds import ID_SIZE, MAX_TIMESTAMP_MS, MAX_VERSION
from backchannel.dialogue.statement import (
    SignerRole,
    Statement,
    record_signing_bytes,
    statement_hash,
)
from backchannel.protocol.e2e.keys import PublicIdentity
from backchannel.protocol.e2e.primitives import SIGNATURE_SIZE
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "MAX_RECORD_FILE_BYTES",
    "RECORD_FILE_FORMAT",
    "AgreedRecord",
    "MalformedRecordFile",
    "MissingCosignature",
    "RecordFileError",
    "RecordSignature",
    "RecordSignatureInvalid",
    "RecordTextAltered",
    "UnexpectedSigner",
    "VerifiedRecord",
    "VerifiedSigner",
    "export_proposal",
    "export_record",
    "format_utc",
    "verify_record_file",
]

RECORD_FILE_FORMAT: Final = 1
_MAGIC: Final = b"BCRECORD"
# A statement is at most 48 KiB; the file holds it twice (readable, and base64 at 4/3) with
# a few hundred bytes of headers: 256 KiB is ample and stops a huge file before parsing.
MAX_RECORD_FILE_BYTES: Final = 256 * 1024
_BEGIN: Final = "-----BEGIN BACKCHANNEL AGREED RECORD-----\n"
_END: Final = "-----END BACKCHANNEL AGREED RECORD-----\n"
# RFC 7468 §2: base64 lines of 64 characters.
_LINE: Final = 64
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ROLE_NAMES: Final = {SignerRole.PROPOSER: "proposer", SignerRole.COSIGNER: "co-signer"}


class RecordFileError(RemoteProtocolError):
    """This is not a valid agreed record: do not rely on it."""


class MalformedRecordFile(RecordFileError):
    """The file is not an agreed-record file (damaged, truncated or of another kind)."""


class RecordSignatureInvalid(RecordFileError):
    """A signature does not match the record: it was changed after signing, or signed by
    a key other than the one the file names."""

    def __init__(self, role: SignerRole) -> None:
        super().__init__(f"the {_ROLE_NAMES[role]}'s signature does not match this record")
        self.role = role


class MissingCosignature(RecordFileError):
    """Only the proposer signed: this is a proposal, not an agreed record."""

    def __init__(self) -> None:
        super().__init__("the record has no co-signature: it is a proposal, not agreed")


class UnexpectedSigner(RecordFileError):
    """The record is validly signed, but not by the principals you expected."""


class RecordTextAltered(RecordFileError):
    """The signed block is intact but the readable copy above it, or its layout, differs."""

    def __init__(self) -> None:
        super().__init__("the file differs from the signed record it contains")


@dataclass(frozen=True, slots=True)
class RecordSignature:
    """One signature of a record: who, when, and the Ed25519 signature itself."""

    signer: PublicIdentity
    signed_at_ms: int
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.signature) != SIGNATURE_SIZE:
            raise LocalProtocolError(f"a signature is {SIGNATURE_SIZE} bytes")
        if not 0 <= self.signed_at_ms <= MAX_TIMESTAMP_MS:
            raise LocalProtocolError("signing time out of range")


@dataclass(frozen=True, slots=True)
class AgreedRecord:
    """One version of a record, signed by its proposer and co-signed by the other side."""

    record_id: bytes
    version: int
    statement: Statement
    proposal: RecordSignature
    cosignature: RecordSignature

    @property
    def statement_hash(self) -> bytes:
        return statement_hash(self.statement)


@dataclass(frozen=True, slots=True)
class VerifiedSigner:
    """Who signed, in what role, and when (by the signer's own clock)."""

    role: SignerRole
    identity: PublicIdentity
    signed_at_ms: int

    @property
    def fingerprint(self) -> str:
        return self.identity.fingerprint

    def to_dict(self) -> dict[str, object]:
        return {
            "role": _ROLE_NAMES[self.role],
            "fingerprint": self.fingerprint,
            "signing_key": self.identity.signing_key.hex(),
            "signed_at_ms": self.signed_at_ms,
            "signed_at": format_utc(self.signed_at_ms),
        }


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """A record whose two signatures were checked: what was agreed, by whom, when."""

    record_id: bytes
    version: int
    statement: Statement
    statement_hash: bytes
    proposer: VerifiedSigner
    cosigner: VerifiedSigner

    @property
    def authoritative_language(self) -> str:
        return self.statement.authoritative.language

    def to_dict(self) -> dict[str, object]:
        return {
            "record_id": self.record_id.hex(),
            "version": self.version,
            "title": self.statement.title,
            "statement_hash": self.statement_hash.hex(),
            "authoritative_language": self.authoritative_language,
            "authentic_languages": [v.language for v in self.statement.authentic],
            "prevailing_language": (
                None if self.statement.prevailing is None else self.statement.prevailing.language
            ),
            "authentic_clause": self.statement.authentic_clause(),
            "languages": [v.language for v in self.statement.versions],
            "texts": {v.language: v.text for v in self.statement.versions},
            "proposer": self.proposer.to_dict(),
            "cosigner": self.cosigner.to_dict(),
        }


def format_utc(ms: int) -> str:
    """A time in ms since the epoch as ISO 8601 UTC with milliseconds (pure: no clock)."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class _Contents:
    record_id: bytes
    version: int
    statement: Statement
    proposer: PublicIdentity
    cosigner: PublicIdentity
    proposal: RecordSignature
    cosignature: RecordSignature | None

    def signing_bytes(self, role: SignerRole, signed_at_ms: int) -> bytes:
        digest = statement_hash(self.statement)
        return record_signing_bytes(
            role, self.record_id, self.version, self.proposer, self.cosigner, digest, signed_at_ms
        )


def _block(c: _Contents) -> bytes:
    w = Writer().raw(_MAGIC).u8(RECORD_FILE_FORMAT).fixed(c.record_id, ID_SIZE).u32(c.version)
    c.statement.write(w)
    w.raw(c.proposer.encode()).raw(c.cosigner.encode())
    w.u64(c.proposal.signed_at_ms).fixed(c.proposal.signature, SIGNATURE_SIZE)
    if c.cosignature is None:
        return w.u8(0).getvalue()
    w.u8(1).u64(c.cosignature.signed_at_ms).fixed(c.cosignature.signature, SIGNATURE_SIZE)
    return w.getvalue()


def _signer_line(label: str, identity: PublicIdentity, signed_at_ms: int | None) -> str:
    if signed_at_ms is None:
        return f"{label} {identity.fingerprint} (Ed25519 {identity.signing_key.hex()}): not signed"
    when = format_utc(signed_at_ms)
    return f"{label} {identity.fingerprint} (Ed25519 {identity.signing_key.hex()}) at {when}"


def _render(c: _Contents) -> bytes:
    digest = statement_hash(c.statement)
    lines = [
        "Backchannel agreed record"
        if c.cosignature
        else "Backchannel record PROPOSAL (not agreed)",
        "",
        f"Record:       {c.record_id.hex()} version {c.version}",
        f"Title:        {c.statement.title}",
        f"Statement:    {digest.hex()}",
        f"Authoritative language: {c.statement.authoritative.language}",
        # Only in files of statements with equally authentic texts, so that a file of
        # before this clause renders, and verifies, byte for byte as it did.
        *([f"Authentic texts: {c.statement.authentic_clause()}"]
          if c.statement.has_equal_texts else []),
        _signer_line("Proposed by: ", c.proposer, c.proposal.signed_at_ms),
        _signer_line(
            "Co-signed by:", c.cosigner, c.cosignature.signed_at_ms if c.cosignature else None
        ),
        "",
    ]
    for version in c.statement.versions:
        mark = (", authoritative" if version.authoritative
                else ", authentic" if version.authentic else "")  # fmt: skip
        lines += [f"=== {version.language}{mark} ===", version.text, ""]
    lines += [
        "Verify with: backchannel record verify FILE",
        "The text above copies the signed block below; the signatures cover the block.",
        "",
    ]
    encoded = base64.b64encode(_block(c)).decode("ascii")
    armor = "".join(encoded[i : i + _LINE] + "\n" for i in range(0, len(encoded), _LINE))
    return ("\n".join(lines) + "\n" + _BEGIN + armor + _END).encode("utf-8")


def _check_signature(c: _Contents, role: SignerRole, signature: RecordSignature) -> None:
    data = c.signing_bytes(role, signature.signed_at_ms)
    if not signature.signer.verify(signature.signature, data):
        raise RecordSignatureInvalid(role)


def export_record(record: AgreedRecord) -> bytes:
    """Write an agreed record as a file anyone can verify offline.

    Args:
        record: the record, as `Dialogue.agreed_record` returns it.

    Returns:
        The file's bytes (UTF-8 text).

    Raises:
        LocalProtocolError: a signature does not verify (the record was not built by the
            dialogue fold, or was altered since).
    """
    contents = _Contents(
        record.record_id,
        record.version,
        record.statement,
        record.proposal.signer,
        record.cosignature.signer,
        record.proposal,
        record.cosignature,
    )
    try:
        _check_signature(contents, SignerRole.PROPOSER, record.proposal)
        _check_signature(contents, SignerRole.COSIGNER, record.cosignature)
    except RecordSignatureInvalid as error:
        raise LocalProtocolError(f"refusing to export: {error}") from None
    return _render(contents)


def export_proposal(
    record_id: bytes,
    version: int,
    statement: Statement,
    proposal: RecordSignature,
    cosigner: PublicIdentity,
) -> bytes:
    """Write a proposal awaiting its co-signature, for review away from the channel.

    `verify_record_file` refuses such a file with `MissingCosignature`.

    Raises:
        LocalProtocolError: the proposer's signature does not verify.
    """
    contents = _Contents(record_id, version, statement, proposal.signer, cosigner, proposal, None)
    try:
        _check_signature(contents, SignerRole.PROPOSER, proposal)
    except RecordSignatureInvalid as error:
        raise LocalProtocolError(f"refusing to export: {error}") from None
    return _render(contents)


def _unarmor(data: bytes) -> bytes:
    if len(data) > MAX_RECORD_FILE_BYTES:
        raise MalformedRecordFile(f"file is larger than {MAX_RECORD_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRecordFile("file is not UTF-8 text") from None
    if not text.endswith(_END):
        raise MalformedRecordFile("file does not end with the agreed-record block")
    start = text.rfind("\n" + _BEGIN)
    if start < 0:
        raise MalformedRecordFile("file has no agreed-record block")
    armor = text[start + 1 + len(_BEGIN) : -len(_END)]
    encoded = armor.replace("\n", "")
    try:
        block = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRecordFile("the agreed-record block is not base64") from None
    if base64.b64encode(block).decode("ascii") != encoded:
        raise MalformedRecordFile("the agreed-record block is not in canonical base64")
    return block


def _parse_block(block: bytes) -> _Contents:
    reader = Reader(block, "agreed record")
    try:
        if reader.fixed(len(_MAGIC)) != _MAGIC:
            raise MalformedRecordFile("not an agreed-record block")
        if reader.u8() != RECORD_FILE_FORMAT:
            raise MalformedRecordFile("unknown agreed-record format")
        record_id = reader.fixed(ID_SIZE)
        version = reader.u32()
        if not 1 <= version <= MAX_VERSION:
            raise MalformedRecordFile("record version out of range")
        statement = Statement.read(reader)
        proposer, cosigner = PublicIdentity.read(reader), PublicIdentity.read(reader)
        proposal = RecordSignature(proposer, reader.u64(), reader.fixed(SIGNATURE_SIZE))
        cosignature = None
        match reader.u8():
            case 0:
                pass
            case 1:
                cosignature = RecordSignature(cosigner, reader.u64(), reader.fixed(SIGNATURE_SIZE))
            case _:
                raise MalformedRecordFile("co-signature flag is neither 0 nor 1")
        reader.finish()
    except (RemoteProtocolError, LocalProtocolError) as error:
        if isinstance(error, RecordFileError):
            raise
        raise MalformedRecordFile(f"damaged agreed-record block: {error}") from None
    return _Contents(record_id, version, statement, proposer, cosigner, proposal, cosignature)


def verify_record_file(
    data: bytes, *, parties: Collection[PublicIdentity] | None = None
) -> VerifiedRecord:
    """Check an agreed-record file offline: both signatures, and every byte of the file.

    Args:
        data: the file's bytes.
        parties: if given, the two identities the record must be signed by (in either
            role); a third party who knows the principals' keys passes them here. Without
            it, the result names the signers and the caller must check their fingerprints.

    Returns:
        What was agreed, by whom (identities and roles) and when (each signer's clock).

    Raises:
        MalformedRecordFile: not an agreed-record file, or damaged.
        RecordSignatureInvalid: a signature does not match (any change to the signed
            block, or a signature made by a key the file does not name).
        MissingCosignature: only the proposer signed.
        UnexpectedSigner: valid, but not signed by `parties`.
        RecordTextAltered: the signed block is intact but the rest of the file is not.
    """
    contents = _parse_block(_unarmor(data))
    if contents.proposer == contents.cosigner:
        raise MalformedRecordFile("proposer and co-signer are the same identity")
    _check_signature(contents, SignerRole.PROPOSER, contents.proposal)
    if contents.cosignature is None:
        raise MissingCosignature()
    _check_signature(contents, SignerRole.COSIGNER, contents.cosignature)
    if parties is not None:
        expected = {p.encode() for p in parties}
        found = {contents.proposer.encode(), contents.cosigner.encode()}
        if found != expected:
            raise UnexpectedSigner("the record is not signed by the expected principals")
    if _render(contents) != data:
        raise RecordTextAltered()
    return VerifiedRecord(
        contents.record_id,
        contents.version,
        contents.statement,
        statement_hash(contents.statement),
        VerifiedSigner(SignerRole.PROPOSER, contents.proposer, contents.proposal.signed_at_ms),
        VerifiedSigner(SignerRole.COSIGNER, contents.cosigner, contents.cosignature.signed_at_ms),
    )

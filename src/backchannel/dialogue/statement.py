"""The statement of an agreed record and exactly what its two signatures cover.

A statement has a title and one text per language, exactly one of them authoritative (the
one that prevails if the versions differ). Its encoding is canonical: one value, one
sequence of bytes, so its hash names it.

Both signatures of a record are Ed25519 signatures by the principals' identity keys over
`record_signing_bytes`::

    RECORD_SIGNATURE_LABEL   28 bytes, "Backchannel agreed record v1"
    role                     u8   1 proposer, 2 co-signer
    record_id                16
    version                  u32
    proposer identity        66   PublicIdentity.encode()
    co-signer identity       66
    statement hash           32   statement_hash(statement)
    signed_at                u64  the signer's clock, ms since the epoch

So a signature names the record, its version, its exact statement, both parties and the
signer's role: it cannot be moved to another record, version, statement or pair of
principals, and a proposer's signature cannot pass for a co-signature.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from backchannel.dialogue.kinds import (
    HASH_SIZE,
    ID_SIZE,
    MAX_LANGUAGE_TAG_BYTES,
    MAX_LANGUAGES,
    MAX_STATEMENT_BYTES,
    MAX_TIMESTAMP_MS,
    MAX_TITLE_BYTES,
    MAX_VERSION,
)
from backchannel.dialogue.text import check_id, check_line, check_text, check_time, decoding
from backchannel.protocol.e2e.keys import PublicIdentity
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "RECORD_SIGNATURE_LABEL",
    "STATEMENT_HASH_LABEL",
    "LanguageVersion",
    "SignerRole",
    "Statement",
    "check_language_tag",
    "record_signing_bytes",
    "statement_hash",
]

# Domain separation: these bytes begin everything an identity key signs for a record, and
# nothing else the identity key signs (prekeys) begins with them.
RECORD_SIGNATURE_LABEL: Final = b"Backchannel agreed record v1"
STATEMENT_HASH_LABEL: Final = b"Backchannel agreed statement v1"
# A BCP 47 tag's characters (RFC 5646 §2.1): letters, digits and hyphens.
_LANGUAGE_TAG: Final = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")


def check_language_tag(tag: str) -> None:
    """Check that `tag` has the form of a BCP 47 language tag (RFC 5646 §2.1).

    Raises:
        LocalProtocolError: too long, not ASCII, or not letters, digits and hyphens in
            the tag's shape.
    """
    if (
        not isinstance(tag, str)
        or len(tag) > MAX_LANGUAGE_TAG_BYTES
        or not tag.isascii()
        or _LANGUAGE_TAG.fullmatch(tag) is None
    ):
        raise LocalProtocolError("a language is a BCP 47 tag such as 'en' or 'zh-Hans'")


class SignerRole(IntEnum):
    """Which of a record's two signatures: the proposal's or the co-signature."""

    PROPOSER = 1
    COSIGNER = 2


# A version's flag on the wire: a translation for information, the authentic text that
# prevails, or an authentic text (equally authentic with the others so marked).
_TRANSLATION_FLAG: Final = 0
_PREVAILS_FLAG: Final = 1
_AUTHENTIC_FLAG: Final = 2


@dataclass(frozen=True, slots=True)
class LanguageVersion:
    """The statement's text in one language.

    Attributes:
        language: a BCP 47 tag, such as "en" or "zh-Hans".
        text: the text.
        authoritative: this text prevails if the versions differ (it is authentic).
        authentic: this text is authentic (equally with the other authentic ones); a
            version neither authentic nor authoritative is a translation for information.
    """

    language: str
    text: str = field(repr=False)
    authoritative: bool = False
    authentic: bool = False

    def __post_init__(self) -> None:
        check_language_tag(self.language)
        check_text(self.text, MAX_STATEMENT_BYTES, f"statement text in {self.language}")
        if not isinstance(self.authoritative, bool) or not isinstance(self.authentic, bool):
            raise LocalProtocolError("authoritative and authentic are True or False")
        if self.authoritative:
            object.__setattr__(self, "authentic", True)

    @property
    def flag(self) -> int:
        if self.authoritative:
            return _PREVAILS_FLAG
        return _AUTHENTIC_FLAG if self.authentic else _TRANSLATION_FLAG


@dataclass(frozen=True, slots=True)
class Statement:
    """What a record says: a title and its text in one or more languages, and which of
    them are authentic (the authentic-text clause, signed with the texts).

    Layout: title (u16 length + UTF-8), count u8, then per version: language (u16 length +
    ASCII), flag u8 (0: a translation; 1: authentic, and prevails in case of divergence;
    2: authentic), text (u16 length + UTF-8). The versions keep the order their author
    gave; languages are distinct (ignoring case). At most one version prevails; if none
    does, at least two are authentic ("equally authentic", none prevailing). A statement
    of before this clause had exactly one version with flag 1 and the others 0, and
    reads as it did: that text is authentic and prevails, the others are translations.
    """

    title: str = field(repr=False)
    versions: tuple[LanguageVersion, ...]

    def __post_init__(self) -> None:
        check_line(self.title, MAX_TITLE_BYTES, "statement title")
        if not 1 <= len(self.versions) <= MAX_LANGUAGES:
            raise LocalProtocolError(f"a statement has 1 to {MAX_LANGUAGES} language versions")
        languages = {v.language.lower() for v in self.versions}
        if len(languages) != len(self.versions):
            raise LocalProtocolError("each language appears once in a statement")
        prevailing = sum(v.authoritative for v in self.versions)
        if prevailing > 1:
            raise LocalProtocolError("at most one language version prevails")
        if prevailing == 0 and sum(v.authentic for v in self.versions) < 2:
            raise LocalProtocolError(
                "name the version that prevails, or at least two equally authentic versions"
            )
        size = len(self._encode_unchecked())
        if size > MAX_STATEMENT_BYTES:
            raise LocalProtocolError(
                f"statement is {size} bytes, the limit is {MAX_STATEMENT_BYTES}"
            )

    @classmethod
    def single(cls, title: str, text: str, language: str = "en") -> Statement:
        """A statement in one language, which is therefore authoritative."""
        return cls(title, (LanguageVersion(language, text, authoritative=True),))

    @property
    def authoritative(self) -> LanguageVersion:
        """The version that prevails; if none does, the first authentic one."""
        prevailing = self.prevailing
        return prevailing if prevailing is not None else self.authentic[0]

    @property
    def prevailing(self) -> LanguageVersion | None:
        """The version that prevails in case of divergence, if one does."""
        return next((v for v in self.versions if v.authoritative), None)

    @property
    def authentic(self) -> tuple[LanguageVersion, ...]:
        """The authentic versions (the prevailing one included), in the author's order."""
        return tuple(v for v in self.versions if v.authentic)

    @property
    def has_equal_texts(self) -> bool:
        """Whether the statement uses the equally-authentic form (flag 2): files of
        statements that do not read exactly as before."""
        return any(v.authentic and not v.authoritative for v in self.versions)

    def authentic_clause(self) -> str:
        """The authentic-text clause in words (derived from the signed flags)."""
        authentic = [v.language for v in self.authentic]
        others = [v.language for v in self.versions if not v.authentic]
        prevailing = self.prevailing
        if len(authentic) == 1:
            clause = f"The {authentic[0]} text is authentic."
        elif prevailing is None:
            clause = f"The {', '.join(authentic)} texts are equally authentic."
        else:
            clause = (
                f"The {', '.join(authentic)} texts are equally authentic; in case of "
                f"divergence, the {prevailing.language} text prevails."
            )
        if others:
            clause += f" The {', '.join(others)} " + (
                "text is a translation." if len(others) == 1 else "texts are translations."
            )
        return clause

    def _encode_unchecked(self) -> bytes:
        writer = Writer().text16(self.title).u8(len(self.versions))
        for version in self.versions:
            writer.text16(version.language).u8(version.flag).text16(version.text)
        return writer.getvalue()

    def encode(self) -> bytes:
        return self._encode_unchecked()

    def write(self, writer: Writer) -> None:
        writer.raw(self._encode_unchecked())

    @classmethod
    def read(cls, reader: Reader) -> Statement:
        """Read a statement from the middle of a body.

        Raises:
            RemoteProtocolError: malformed, out of bounds or not canonical.
        """
        with decoding("statement"):
            title = reader.text16(MAX_TITLE_BYTES)
            count = reader.u8()
            if not 1 <= count <= MAX_LANGUAGES:
                raise RemoteProtocolError(f"statement has {count} language versions")
            versions = []
            for _ in range(count):
                language = reader.text16(MAX_LANGUAGE_TAG_BYTES)
                flag = reader.u8()
                if flag > _AUTHENTIC_FLAG:
                    raise RemoteProtocolError(f"unknown authentic-text flag {flag}")
                text = reader.text16(MAX_STATEMENT_BYTES)
                versions.append(
                    LanguageVersion(
                        language, text, flag == _PREVAILS_FLAG, flag != _TRANSLATION_FLAG
                    )
                )
            return cls(title, tuple(versions))

    @classmethod
    def decode(cls, data: bytes) -> Statement:
        """Parse an encoded statement.

        Raises:
            RemoteProtocolError: malformed, out of bounds, not canonical or trailing bytes.
        """
        reader = Reader(data, "statement")
        statement = cls.read(reader)
        reader.finish()
        return statement


def statement_hash(statement: Statement) -> bytes:
    """The SHA-256 name of a statement: what a co-signer says it read."""
    return hashlib.sha256(STATEMENT_HASH_LABEL + statement.encode()).digest()


def record_signing_bytes(
    role: SignerRole,
    record_id: bytes,
    version: int,
    proposer: PublicIdentity,
    cosigner: PublicIdentity,
    digest: bytes,
    signed_at_ms: int,
) -> bytes:
    """The exact bytes one signature of a record covers (layout in the module docstring).

    Args:
        role: whose signature this is.
        record_id: the record's 16-byte id.
        version: the record version, from 1.
        proposer: the identity of the principal who proposed this version.
        cosigner: the identity of the other principal.
        digest: `statement_hash` of the statement.
        signed_at_ms: the signer's clock when signing.

    Returns:
        The bytes to sign or to verify.

    Raises:
        LocalProtocolError: an argument out of range.
    """
    check_id(record_id, ID_SIZE, "record id")
    check_id(digest, HASH_SIZE, "statement hash")
    check_time(version, MAX_VERSION, "record version")
    check_time(signed_at_ms, MAX_TIMESTAMP_MS, "signing time")
    return (
        Writer()
        .raw(RECORD_SIGNATURE_LABEL)
        .u8(role)
        .fixed(record_id, ID_SIZE)
        .u32(version)
        .raw(proposer.encode())
        .raw(cosigner.encode())
        .fixed(digest, HASH_SIZE)
        .u64(signed_at_ms)
        .getvalue()
    )

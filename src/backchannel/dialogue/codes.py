"""The bodies of the shared codebook's four kinds (`docs/dialogue.md`, "Codebook").

A codebook entry is named by a 16-byte id its author draws at random, and has versions
counted from 1. Each version carries its number (what is read aloud), its code word (what
the board shows), the text in each language, the names of its parameters, and an optional
default precedence and acknowledgement deadline. A text names a parameter as `{name}`;
every name a text uses is declared, and every declared name is a plain identifier, so
rendering is a substitution that cannot inject anything the text policy refuses.

A codebook message (`CodebookSend`) carries only the entry id, the version and the
parameter values: each side renders it from the agreed text in its own language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Final

from backchannel.dialogue.kinds import (
    ID_SIZE,
    MAX_ACK_WITHIN_MS,
    MAX_CODE_NUMBER,
    MAX_CODE_PARAMETERS,
    MAX_CODE_WORD_BYTES,
    MAX_LANGUAGE_TAG_BYTES,
    MAX_LANGUAGES,
    MAX_PARAMETER_NAME_BYTES,
    MAX_PARAMETER_VALUE_BYTES,
    MAX_TEXT_BYTES,
    MAX_VERSION,
    DialogueKind,
    Precedence,
)
from backchannel.dialogue.statement import check_language_tag
from backchannel.dialogue.text import check_id, check_line, check_text, check_time
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "CodeText",
    "CodebookAccept",
    "CodebookPropose",
    "CodebookSend",
    "CodebookWithdraw",
    "render_code_text",
]

# A parameter's name: a lowercase identifier, so `{name}` is unambiguous in any script.
_PARAMETER_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")
# What a text uses as a parameter: braces around anything but braces.
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
# Precedence 0 on the wire: the entry has no default, the sender chooses (ROUTINE if not).
_NO_PRECEDENCE: Final = 0


def _check_version(version: int, what: str) -> None:
    if not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise LocalProtocolError(f"{what} must be between 1 and {MAX_VERSION}, not {version}")


@dataclass(frozen=True, slots=True)
class CodeText:
    """An entry's text in one language (a BCP 47 tag), with `{name}` for each parameter."""

    language: str
    text: str = field(repr=False)

    def __post_init__(self) -> None:
        check_language_tag(self.language)
        check_text(self.text, MAX_TEXT_BYTES, f"codebook text in {self.language}")


@dataclass(frozen=True, slots=True)
class CodebookPropose:
    """A codebook entry, or a new version of one, proposed by the entry's owner.

    Layout: entry_id 16, version u32 (from 1), number u16 (1-9999), code word (u16 +
    UTF-8, one line), precedence u8 (0: none, 1-3), ack_within_ms u64 (0: none),
    parameter count u8, each name (u16 + ASCII identifier), text count u8 (1-8), each:
    language (u16 + ASCII BCP 47 tag), text (u16 + UTF-8). Parameter names and languages
    are distinct (languages ignoring case) and keep their author's order.
    """

    KIND: ClassVar[int] = DialogueKind.CODEBOOK_PROPOSE
    entry_id: bytes
    version: int
    number: int
    code_word: str = field(repr=False)
    texts: tuple[CodeText, ...] = field(repr=False)
    parameters: tuple[str, ...] = ()
    precedence: Precedence | None = None
    ack_within_ms: int = 0

    def __post_init__(self) -> None:
        check_id(self.entry_id, ID_SIZE, "codebook entry id")
        _check_version(self.version, "codebook entry version")
        if not isinstance(self.number, int) or not 1 <= self.number <= MAX_CODE_NUMBER:
            raise LocalProtocolError(f"a codebook number is between 1 and {MAX_CODE_NUMBER}")
        check_line(self.code_word, MAX_CODE_WORD_BYTES, "code word")
        if self.precedence is not None:
            if self.precedence not in {int(p) for p in Precedence}:
                raise LocalProtocolError(f"unknown precedence {self.precedence}")
            object.__setattr__(self, "precedence", Precedence(self.precedence))
        check_time(self.ack_within_ms, MAX_ACK_WITHIN_MS, "acknowledgement deadline")
        self._check_parameters()
        self._check_texts()

    def _check_parameters(self) -> None:
        if len(self.parameters) > MAX_CODE_PARAMETERS:
            raise LocalProtocolError(
                f"a codebook entry has at most {MAX_CODE_PARAMETERS} parameters"
            )
        for name in self.parameters:
            if (
                not isinstance(name, str)
                or len(name) > MAX_PARAMETER_NAME_BYTES
                or not name.isascii()
                or _PARAMETER_NAME.fullmatch(name) is None
            ):
                raise LocalProtocolError(
                    "a parameter name is a lowercase identifier such as 'time' or 'place'"
                )
        if len(set(self.parameters)) != len(self.parameters):
            raise LocalProtocolError("each parameter name appears once in an entry")

    def _check_texts(self) -> None:
        if not 1 <= len(self.texts) <= MAX_LANGUAGES:
            raise LocalProtocolError(f"a codebook entry has 1 to {MAX_LANGUAGES} languages")
        if not all(isinstance(t, CodeText) for t in self.texts):
            raise LocalProtocolError("a codebook entry's texts are CodeText values")
        if len({t.language.lower() for t in self.texts}) != len(self.texts):
            raise LocalProtocolError("each language appears once in a codebook entry")
        declared = set(self.parameters)
        for t in self.texts:
            used = set(_PLACEHOLDER.findall(t.text))
            if not used <= declared:
                raise LocalProtocolError(
                    f"the {t.language} text uses an undeclared parameter: "
                    + ", ".join(sorted(repr(u) for u in used - declared))
                )
            if "{" in _PLACEHOLDER.sub("", t.text) or "}" in _PLACEHOLDER.sub("", t.text):
                raise LocalProtocolError(f"the {t.language} text has an unmatched brace")

    def text_in(self, language: str) -> CodeText | None:
        """The text in `language` (ignoring case), or None."""
        return next((t for t in self.texts if t.language.lower() == language.lower()), None)

    def encode(self) -> bytes:
        w = Writer().fixed(self.entry_id, ID_SIZE).u32(self.version).u16(self.number)
        w.text16(self.code_word)
        w.u8(_NO_PRECEDENCE if self.precedence is None else int(self.precedence))
        w.u64(self.ack_within_ms).u8(len(self.parameters))
        for name in self.parameters:
            w.text16(name)
        w.u8(len(self.texts))
        for t in self.texts:
            w.text16(t.language).text16(t.text)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> CodebookPropose:
        entry_id, version, number = r.fixed(ID_SIZE), r.u32(), r.u16()
        code_word = r.text16(MAX_CODE_WORD_BYTES)
        raw_precedence = r.u8()
        if raw_precedence != _NO_PRECEDENCE and raw_precedence not in {int(p) for p in Precedence}:
            raise RemoteProtocolError(f"unknown precedence {raw_precedence}")
        precedence = None if raw_precedence == _NO_PRECEDENCE else Precedence(raw_precedence)
        ack_within_ms = r.u64()
        count = r.u8()
        if count > MAX_CODE_PARAMETERS:
            raise RemoteProtocolError(f"codebook entry has {count} parameters")
        parameters = tuple(r.text16(MAX_PARAMETER_NAME_BYTES) for _ in range(count))
        count = r.u8()
        if not 1 <= count <= MAX_LANGUAGES:
            raise RemoteProtocolError(f"codebook entry has {count} languages")
        texts = tuple(
            CodeText(r.text16(MAX_LANGUAGE_TAG_BYTES), r.text16(MAX_TEXT_BYTES))
            for _ in range(count)
        )
        return cls(
            entry_id, version, number, code_word, texts, parameters, precedence, ack_within_ms
        )


@dataclass(frozen=True, slots=True)
class CodebookAccept:
    """The other side accepts one version of an entry. Layout: entry_id 16, version u32."""

    KIND: ClassVar[int] = DialogueKind.CODEBOOK_ACCEPT
    entry_id: bytes
    version: int

    def __post_init__(self) -> None:
        check_id(self.entry_id, ID_SIZE, "codebook entry id")
        _check_version(self.version, "codebook entry version")

    def encode(self) -> bytes:
        return Writer().fixed(self.entry_id, ID_SIZE).u32(self.version).getvalue()

    @classmethod
    def read(cls, r: Reader) -> CodebookAccept:
        return cls(r.fixed(ID_SIZE), r.u32())


@dataclass(frozen=True, slots=True)
class CodebookWithdraw:
    """Either side withdraws an entry, every version of it. Layout: entry_id 16."""

    KIND: ClassVar[int] = DialogueKind.CODEBOOK_WITHDRAW
    entry_id: bytes

    def __post_init__(self) -> None:
        check_id(self.entry_id, ID_SIZE, "codebook entry id")

    def encode(self) -> bytes:
        return self.entry_id

    @classmethod
    def read(cls, r: Reader) -> CodebookWithdraw:
        return cls(r.fixed(ID_SIZE))


@dataclass(frozen=True, slots=True)
class CodebookSend:
    """A codebook message. Layout: entry_id 16, version u32, value count u8, each value
    (u16 + UTF-8, one line, may be empty) in the order the entry declares its parameters."""

    KIND: ClassVar[int] = DialogueKind.CODEBOOK_SEND
    entry_id: bytes
    version: int
    values: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        check_id(self.entry_id, ID_SIZE, "codebook entry id")
        _check_version(self.version, "codebook entry version")
        if len(self.values) > MAX_CODE_PARAMETERS:
            raise LocalProtocolError(f"a codebook message has at most {MAX_CODE_PARAMETERS} values")
        for value in self.values:
            check_line(value, MAX_PARAMETER_VALUE_BYTES, "parameter value", allow_empty=True)

    def encode(self) -> bytes:
        w = Writer().fixed(self.entry_id, ID_SIZE).u32(self.version).u8(len(self.values))
        for value in self.values:
            w.text16(value)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> CodebookSend:
        entry_id, version, count = r.fixed(ID_SIZE), r.u32(), r.u8()
        if count > MAX_CODE_PARAMETERS:
            raise RemoteProtocolError(f"codebook message has {count} values")
        return cls(
            entry_id, version, tuple(r.text16(MAX_PARAMETER_VALUE_BYTES) for _ in range(count))
        )


def render_code_text(text: CodeText, parameters: tuple[str, ...], values: tuple[str, ...]) -> str:
    """An entry's text with each `{name}` replaced by its value.

    Raises:
        LocalProtocolError: not one value per parameter.
    """
    if len(values) != len(parameters):
        raise LocalProtocolError(
            f"the entry has {len(parameters)} parameters, the message {len(values)} values"
        )
    by_name = dict(zip(parameters, values, strict=True))
    return _PLACEHOLDER.sub(lambda m: by_name[m.group(1)], text.text)

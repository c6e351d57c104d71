"""The body of each dialogue message kind, with a strict codec.

Each body is a frozen dataclass that checks its invariants when built (raising
`LocalProtocolError`: the caller asked for something impossible) and decodes with
`decode_body`, which raises `RemoteProtocolError` and nothing else on any malformed input
(the bytes came from the peer). Every encoding is canonical: `decode(b).encode() == b`.

A body refers to another message by its 16-byte message id. Some things are named by the
id of the message that created them: a clarification request, an agenda item and a line
test are named by the id of the CLARIFY, AGENDA_PROPOSE or LINETEST message. Red lines and
records have their own id, because they outlive one message (they have versions).

Only `RecordPropose` and `RecordSign` carry a signature: everything else is deniable.
Layouts are in `docs/dialogue.md`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Final

from backchannel.dialogue.codes import (
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
)
from backchannel.dialogue.kinds import (
    HASH_SIZE,
    ID_SIZE,
    MAX_ACK_WITHIN_MS,
    MAX_NOTE_TEXT_BYTES,
    MAX_REASON_BYTES,
    MAX_ROUND,
    MAX_TEXT_BYTES,
    MAX_TIMESTAMP_MS,
    MAX_TITLE_BYTES,
    MAX_VERSION,
    DialogueKind,
    Precedence,
)
from backchannel.dialogue.notify import DutyAccept, DutyPropose, Notify, NotifyRequest
from backchannel.dialogue.statement import Statement
from backchannel.dialogue.text import check_id, check_line, check_text, check_time, decoding
from backchannel.dialogue.translations import (
    AddedTranslation,
    Languages,
    TextVersion,
    Translate,
    read_languages,
    text_versions,
    write_languages,
)
from backchannel.protocol.e2e.primitives import SIGNATURE_SIZE
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.message import MessageKind
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "NOTE_KIND",
    "Ack",
    "AgendaAccept",
    "AgendaDecline",
    "AgendaPropose",
    "Answer",
    "Body",
    "Clarify",
    "Hold",
    "LineTest",
    "LineTestReply",
    "Note",
    "RecordPropose",
    "RecordSign",
    "RedLine",
    "RedLineAck",
    "Translate",
    "decode_body",
    "versions_of",
]

NOTE_KIND: Final = int(MessageKind.NOTE)
_PRECEDENCES: Final = frozenset(int(p) for p in Precedence)
_DIALOGUE_KINDS: Final = frozenset(int(k) for k in DialogueKind)


def _check_languages(
    languages: Languages | None,
    original: str,
    text_bound: int,
    *,
    titled: bool = False,
    text_may_be_empty: bool = False,
) -> None:
    if languages is None:
        return
    if not isinstance(languages, Languages):
        raise LocalProtocolError("a body's translations are a Languages block")
    languages.check_for(titled=titled, text_bound=text_bound,
                        original_size=len(original.encode()),
                        text_may_be_empty=text_may_be_empty)  # fmt: skip


def _positive(value: int, maximum: int, what: str) -> None:
    if not 1 <= value <= maximum:
        raise LocalProtocolError(f"{what} must be between 1 and {maximum}, not {value}")


@dataclass(frozen=True, slots=True)
class Note:
    """An ordinary message, with its precedence and an optional acknowledgement deadline.

    Layout: precedence u8 (1-3), ack_within_ms u64 (0: no deadline), text (u16 + UTF-8),
    then, optionally, a language block (`Languages`: the text's language, translations).
    """

    KIND: ClassVar[int] = NOTE_KIND
    precedence: Precedence
    ack_within_ms: int
    text: str = field(repr=False)
    languages: Languages | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.precedence not in _PRECEDENCES:
            raise LocalProtocolError(f"unknown precedence {self.precedence}")
        object.__setattr__(self, "precedence", Precedence(self.precedence))
        check_time(self.ack_within_ms, MAX_ACK_WITHIN_MS, "acknowledgement deadline")
        check_text(self.text, MAX_NOTE_TEXT_BYTES, "note text")
        _check_languages(self.languages, self.text, MAX_NOTE_TEXT_BYTES)

    def encode(self) -> bytes:
        w = Writer().u8(self.precedence).u64(self.ack_within_ms).text16(self.text)
        return write_languages(w, self.languages).getvalue()

    @classmethod
    def read(cls, r: Reader) -> Note:
        precedence, within = _precedence(r.u8()), r.u64()
        return cls(precedence, within, r.text16(MAX_NOTE_TEXT_BYTES), read_languages(r))


@dataclass(frozen=True, slots=True)
class Ack:
    """The principal acknowledges a note of the other side. Layout: message_id 16."""

    KIND: ClassVar[int] = DialogueKind.ACK
    message_id: bytes

    def __post_init__(self) -> None:
        check_id(self.message_id, ID_SIZE, "acknowledged message id")

    def encode(self) -> bytes:
        return self.message_id

    @classmethod
    def read(cls, r: Reader) -> Ack:
        return cls(r.fixed(ID_SIZE))


@dataclass(frozen=True, slots=True)
class Hold:
    """Received, cannot answer yet: expect an answer by `expected_by_ms`.

    Targets a note of the other side, or an open clarification request it made.
    Layout: message_id 16, expected_by_ms u64, text (u16 + UTF-8, may be empty).
    """

    KIND: ClassVar[int] = DialogueKind.HOLD
    message_id: bytes
    expected_by_ms: int
    text: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        check_id(self.message_id, ID_SIZE, "held message id")
        check_time(self.expected_by_ms, MAX_TIMESTAMP_MS, "expected-by time")
        check_text(self.text, MAX_TEXT_BYTES, "holding reply", allow_empty=True)

    def encode(self) -> bytes:
        w = Writer().fixed(self.message_id, ID_SIZE).u64(self.expected_by_ms)
        return w.text16(self.text).getvalue()

    @classmethod
    def read(cls, r: Reader) -> Hold:
        return cls(r.fixed(ID_SIZE), r.u64(), r.text16(MAX_TEXT_BYTES))


@dataclass(frozen=True, slots=True)
class Clarify:
    """A question about one message of the other side; the request id is this message's id.

    Layout: target_id 16, target_hash 32 (the target's `Message.hash`), question (u16 +
    UTF-8), then, optionally, a language block.
    """

    KIND: ClassVar[int] = DialogueKind.CLARIFY
    target_id: bytes
    target_hash: bytes
    question: str = field(repr=False)
    languages: Languages | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_id(self.target_id, ID_SIZE, "clarified message id")
        check_id(self.target_hash, HASH_SIZE, "clarified message hash")
        check_text(self.question, MAX_TEXT_BYTES, "question")
        _check_languages(self.languages, self.question, MAX_TEXT_BYTES)

    def encode(self) -> bytes:
        w = Writer().fixed(self.target_id, ID_SIZE).fixed(self.target_hash, HASH_SIZE)
        return write_languages(w.text16(self.question), self.languages).getvalue()

    @classmethod
    def read(cls, r: Reader) -> Clarify:
        target, digest = r.fixed(ID_SIZE), r.fixed(HASH_SIZE)
        return cls(target, digest, r.text16(MAX_TEXT_BYTES), read_languages(r))


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer that closes a clarification request. Layout: request_id 16, text, then,
    optionally, a language block."""

    KIND: ClassVar[int] = DialogueKind.ANSWER
    request_id: bytes
    text: str = field(repr=False)
    languages: Languages | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_id(self.request_id, ID_SIZE, "clarification request id")
        check_text(self.text, MAX_TEXT_BYTES, "answer")
        _check_languages(self.languages, self.text, MAX_TEXT_BYTES)

    def encode(self) -> bytes:
        w = Writer().fixed(self.request_id, ID_SIZE).text16(self.text)
        return write_languages(w, self.languages).getvalue()

    @classmethod
    def read(cls, r: Reader) -> Answer:
        request = r.fixed(ID_SIZE)
        return cls(request, r.text16(MAX_TEXT_BYTES), read_languages(r))


@dataclass(frozen=True, slots=True)
class RedLine:
    """A red line, or a new version of one. Layout: redline_id 16, version u32 (from 1),
    title (u16 + UTF-8, one line), text (u16 + UTF-8), then, optionally, a language block
    (each translation with its title)."""

    KIND: ClassVar[int] = DialogueKind.REDLINE
    redline_id: bytes
    version: int
    title: str = field(repr=False)
    text: str = field(repr=False)
    languages: Languages | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_id(self.redline_id, ID_SIZE, "red line id")
        _positive(self.version, MAX_VERSION, "red line version")
        check_line(self.title, MAX_TITLE_BYTES, "red line title")
        check_text(self.text, MAX_TEXT_BYTES, "red line text")
        _check_languages(self.languages, self.title + self.text, MAX_TEXT_BYTES, titled=True)

    def encode(self) -> bytes:
        w = Writer().fixed(self.redline_id, ID_SIZE).u32(self.version)
        return write_languages(w.text16(self.title).text16(self.text), self.languages).getvalue()

    @classmethod
    def read(cls, r: Reader) -> RedLine:
        redline, version = r.fixed(ID_SIZE), r.u32()
        title, text = r.text16(MAX_TITLE_BYTES), r.text16(MAX_TEXT_BYTES)
        return cls(redline, version, title, text, read_languages(r))


@dataclass(frozen=True, slots=True)
class RedLineAck:
    """One version of a red line is understood (not agreed). Layout: redline_id 16, version u32."""

    KIND: ClassVar[int] = DialogueKind.REDLINE_ACK
    redline_id: bytes
    version: int

    def __post_init__(self) -> None:
        check_id(self.redline_id, ID_SIZE, "red line id")
        _positive(self.version, MAX_VERSION, "red line version")

    def encode(self) -> bytes:
        return Writer().fixed(self.redline_id, ID_SIZE).u32(self.version).getvalue()

    @classmethod
    def read(cls, r: Reader) -> RedLineAck:
        return cls(r.fixed(ID_SIZE), r.u32())


@dataclass(frozen=True, slots=True)
class AgendaPropose:
    """An item for meeting round `round`; the item id is this message's id.

    Layout: round u32 (from 1), title (u16 + UTF-8, one line), detail (u16 + UTF-8, may be
    empty: venue, dates, who attends), then, optionally, a language block (each
    translation with its title; its text, the detail, may be empty).
    """

    KIND: ClassVar[int] = DialogueKind.AGENDA_PROPOSE
    round: int
    title: str = field(repr=False)
    detail: str = field(default="", repr=False)
    languages: Languages | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _positive(self.round, MAX_ROUND, "meeting round")
        check_line(self.title, MAX_TITLE_BYTES, "agenda item title")
        check_text(self.detail, MAX_REASON_BYTES, "agenda item detail", allow_empty=True)
        _check_languages(self.languages, self.title + self.detail, MAX_REASON_BYTES,
                         titled=True, text_may_be_empty=True)  # fmt: skip

    def encode(self) -> bytes:
        w = Writer().u32(self.round).text16(self.title).text16(self.detail)
        return write_languages(w, self.languages).getvalue()

    @classmethod
    def read(cls, r: Reader) -> AgendaPropose:
        number, title = r.u32(), r.text16(MAX_TITLE_BYTES)
        return cls(number, title, r.text16(MAX_REASON_BYTES), read_languages(r))


@dataclass(frozen=True, slots=True)
class AgendaAccept:
    """The other side accepts an agenda item. Layout: round u32, item_id 16."""

    KIND: ClassVar[int] = DialogueKind.AGENDA_ACCEPT
    round: int
    item_id: bytes

    def __post_init__(self) -> None:
        _positive(self.round, MAX_ROUND, "meeting round")
        check_id(self.item_id, ID_SIZE, "agenda item id")

    def encode(self) -> bytes:
        return Writer().u32(self.round).fixed(self.item_id, ID_SIZE).getvalue()

    @classmethod
    def read(cls, r: Reader) -> AgendaAccept:
        return cls(r.u32(), r.fixed(ID_SIZE))


@dataclass(frozen=True, slots=True)
class AgendaDecline:
    """The other side declines an agenda item. Layout: round u32, item_id 16, reason (may be
    empty)."""

    KIND: ClassVar[int] = DialogueKind.AGENDA_DECLINE
    round: int
    item_id: bytes
    reason: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        _positive(self.round, MAX_ROUND, "meeting round")
        check_id(self.item_id, ID_SIZE, "agenda item id")
        check_text(self.reason, MAX_REASON_BYTES, "reason", allow_empty=True)

    def encode(self) -> bytes:
        w = Writer().u32(self.round).fixed(self.item_id, ID_SIZE)
        return w.text16(self.reason).getvalue()

    @classmethod
    def read(cls, r: Reader) -> AgendaDecline:
        return cls(r.u32(), r.fixed(ID_SIZE), r.text16(MAX_REASON_BYTES))


@dataclass(frozen=True, slots=True)
class RecordPropose:
    """A statement proposed for the record, signed by its proposer (`statement` module).

    Layout: record_id 16, version u32 (from 1), statement, signed_at_ms u64, signature 64.
    """

    KIND: ClassVar[int] = DialogueKind.RECORD_PROPOSE
    record_id: bytes
    version: int
    statement: Statement
    signed_at_ms: int
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_id(self.record_id, ID_SIZE, "record id")
        _positive(self.version, MAX_VERSION, "record version")
        if not isinstance(self.statement, Statement):
            raise LocalProtocolError("a record proposal carries a Statement")
        check_time(self.signed_at_ms, MAX_TIMESTAMP_MS, "signing time")
        check_id(self.signature, SIGNATURE_SIZE, "signature")

    def encode(self) -> bytes:
        w = Writer().fixed(self.record_id, ID_SIZE).u32(self.version)
        self.statement.write(w)
        return w.u64(self.signed_at_ms).fixed(self.signature, SIGNATURE_SIZE).getvalue()

    @classmethod
    def read(cls, r: Reader) -> RecordPropose:
        record_id, version = r.fixed(ID_SIZE), r.u32()
        statement = Statement.read(r)
        return cls(record_id, version, statement, r.u64(), r.fixed(SIGNATURE_SIZE))


@dataclass(frozen=True, slots=True)
class RecordSign:
    """The co-signature of one version of a record.

    Layout: record_id 16, version u32, statement_hash 32, signed_at_ms u64, signature 64.
    """

    KIND: ClassVar[int] = DialogueKind.RECORD_SIGN
    record_id: bytes
    version: int
    statement_hash: bytes
    signed_at_ms: int
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        check_id(self.record_id, ID_SIZE, "record id")
        _positive(self.version, MAX_VERSION, "record version")
        check_id(self.statement_hash, HASH_SIZE, "statement hash")
        check_time(self.signed_at_ms, MAX_TIMESTAMP_MS, "signing time")
        check_id(self.signature, SIGNATURE_SIZE, "signature")

    def encode(self) -> bytes:
        w = Writer().fixed(self.record_id, ID_SIZE).u32(self.version)
        w.fixed(self.statement_hash, HASH_SIZE).u64(self.signed_at_ms)
        return w.fixed(self.signature, SIGNATURE_SIZE).getvalue()

    @classmethod
    def read(cls, r: Reader) -> RecordSign:
        return cls(r.fixed(ID_SIZE), r.u32(), r.fixed(HASH_SIZE), r.u64(), r.fixed(SIGNATURE_SIZE))


@dataclass(frozen=True, slots=True)
class LineTest:
    """A line test; its id is this message's id and its time the message's `sent_at`.

    Layout: empty (the envelope pads it like any other message).
    """

    KIND: ClassVar[int] = DialogueKind.LINETEST

    def encode(self) -> bytes:
        return b""

    @classmethod
    def read(cls, r: Reader) -> LineTest:
        return cls()


@dataclass(frozen=True, slots=True)
class LineTestReply:
    """The automatic answer to a line test. Layout: test_id 16."""

    KIND: ClassVar[int] = DialogueKind.LINETEST_REPLY
    test_id: bytes

    def __post_init__(self) -> None:
        check_id(self.test_id, ID_SIZE, "line test id")

    def encode(self) -> bytes:
        return self.test_id

    @classmethod
    def read(cls, r: Reader) -> LineTestReply:
        return cls(r.fixed(ID_SIZE))


Body = (
    Note
    | Ack
    | Hold
    | Clarify
    | Answer
    | RedLine
    | RedLineAck
    | AgendaPropose
    | AgendaAccept
    | AgendaDecline
    | RecordPropose
    | RecordSign
    | LineTest
    | LineTestReply
    | CodebookPropose
    | CodebookAccept
    | CodebookWithdraw
    | CodebookSend
    | Translate
    | DutyPropose
    | DutyAccept
    | Notify
    | NotifyRequest
)
"""Any body the dialogue layer reads or writes."""


def _precedence(value: int) -> Precedence:
    if value not in _PRECEDENCES:
        raise RemoteProtocolError(f"unknown precedence {value}")
    return Precedence(value)


def _reader_for(kind: int, r: Reader) -> Body | None:
    match kind:
        case MessageKind.NOTE:
            return Note.read(r)
        case DialogueKind.ACK:
            return Ack.read(r)
        case DialogueKind.HOLD:
            return Hold.read(r)
        case DialogueKind.CLARIFY:
            return Clarify.read(r)
        case DialogueKind.ANSWER:
            return Answer.read(r)
        case DialogueKind.REDLINE:
            return RedLine.read(r)
        case DialogueKind.REDLINE_ACK:
            return RedLineAck.read(r)
        case DialogueKind.AGENDA_PROPOSE:
            return AgendaPropose.read(r)
        case DialogueKind.AGENDA_ACCEPT:
            return AgendaAccept.read(r)
        case DialogueKind.AGENDA_DECLINE:
            return AgendaDecline.read(r)
        case DialogueKind.RECORD_PROPOSE:
            return RecordPropose.read(r)
        case DialogueKind.RECORD_SIGN:
            return RecordSign.read(r)
        case DialogueKind.LINETEST:
            return LineTest.read(r)
        case DialogueKind.LINETEST_REPLY:
            return LineTestReply.read(r)
        case DialogueKind.CODEBOOK_PROPOSE:
            return CodebookPropose.read(r)
        case DialogueKind.CODEBOOK_ACCEPT:
            return CodebookAccept.read(r)
        case DialogueKind.CODEBOOK_WITHDRAW:
            return CodebookWithdraw.read(r)
        case DialogueKind.CODEBOOK_SEND:
            return CodebookSend.read(r)
        case DialogueKind.TRANSLATION:
            return Translate.read(r)
        case DialogueKind.DUTY_PROPOSE:
            return DutyPropose.read(r)
        case DialogueKind.DUTY_ACCEPT:
            return DutyAccept.read(r)
        case DialogueKind.NOTIFY:
            return Notify.read(r)
        case DialogueKind.NOTIFY_REQUEST:
            return NotifyRequest.read(r)
        case _:
            return None


def decode_body(kind: int, data: bytes) -> Body | None:
    """Decode the body of a message of the given kind.

    Args:
        kind: the message's kind (`MessageKind.NOTE` or a `DialogueKind`).
        data: the message's body.

    Returns:
        The body, or None when the kind is not one the dialogue layer reads (receipts,
        kinds of a later version): those are kept by the client but play no part here.

    Raises:
        RemoteProtocolError: the body is malformed, out of bounds or has trailing bytes.
    """
    what = f"{DialogueKind(kind).name.lower()} body" if kind in _DIALOGUE_KINDS else "note body"
    reader = Reader(data, what)
    with decoding(what):
        body = _reader_for(kind, reader)
    if body is not None:
        reader.finish()
    return body


def versions_of(
    body: Body | None, added: Iterable[AddedTranslation] = ()
) -> tuple[TextVersion, ...]:
    """A translatable body's texts side by side: the authoritative first, then the
    author's translations, then those shared by the receiver (`added`). Empty for a body
    with one text and nothing shared, and for kinds with no text to translate."""
    match body:
        case Note(text=text, languages=languages) | Answer(text=text, languages=languages):
            return text_versions(languages, text, "", added)
        case Clarify(question=text, languages=languages):
            return text_versions(languages, text, "", added)
        case RedLine(title=title, text=text, languages=languages):
            return text_versions(languages, text, title, added)
        case AgendaPropose(title=title, detail=text, languages=languages):
            return text_versions(languages, text, title, added)
        case Notify(text=text, languages=languages):
            return text_versions(languages, text, "", added)
        case _:
            return ()

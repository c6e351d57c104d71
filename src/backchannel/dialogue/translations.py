"""Texts in more than one language: the original, its translations, who made each, and
which text is authoritative (`docs/dialogue.md`, "Translations").

A note, a clarification request, an answer, a red line and an agenda item may end with a
*language block* (`Languages`): the language of the body's own text (the original), and up
to seven translations, each with its BCP 47 tag and its attribution (the author's staff, a
named translator, or a machine tool the user named), and which of the texts is
authoritative. A body without the block is exactly the body of before, byte for byte, so
every message stored or sent before this block existed decodes as it did.

The receiver adds its own translation of a received message with a TRANSLATION message
(`Translate`): bound to the exact message by its id and chain hash, like a clarification
request, and attributed to the receiver's side. It is never authoritative: the author's
choice stands.

Language tags here are checked strictly against RFC 5646 §2.1 (`check_bcp47`): a tag that
is not well-formed, or is longer than 35 characters, is refused with `InvalidLanguageTag`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Final

from backchannel.dialogue.events import (
    DialogueEvent,
    IllegalTransition,
    KnownMessage,
    Side,
    short_id,
)
from backchannel.dialogue.kinds import (
    HASH_SIZE,
    ID_SIZE,
    MAX_LANGUAGE_TAG_BYTES,
    MAX_LANGUAGES,
    MAX_NOTE_TEXT_BYTES,
    MAX_TITLE_BYTES,
    DialogueKind,
)
from backchannel.dialogue.text import check_id, check_line, check_text
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.message import MessageKind
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "MAX_ATTRIBUTION_BYTES",
    "TITLED_KINDS",
    "TRANSLATABLE_KINDS",
    "AddedTranslation",
    "Attribution",
    "AttributionKind",
    "InvalidLanguageTag",
    "Languages",
    "TextVersion",
    "Translate",
    "Translation",
    "TranslationLedger",
    "check_bcp47",
    "read_languages",
    "text_versions",
    "write_languages",
]

# A translator's name or a tool's name ("DeepL", "argos-translate 1.9"): one short line.
MAX_ATTRIBUTION_BYTES: Final = 200

# RFC 5646 §2.1 "langtag" and "privateuse" (the irregular grandfathered tags such as
# "i-klingon" are refused: no one writes a diplomatic note in them).
_ALNUM: Final = "[A-Za-z0-9]"
_LANGTAG: Final = re.compile(
    r"(?:[A-Za-z]{2,3}(?:-[A-Za-z]{3}){0,3}|[A-Za-z]{4,8})"  # language (with extlang)
    r"(?:-[A-Za-z]{4})?"  # script
    r"(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"  # region
    rf"(?:-(?:{_ALNUM}{{5,8}}|[0-9]{_ALNUM}{{3}}))*"  # variants
    rf"(?:-[0-9A-WYZa-wyz](?:-{_ALNUM}{{2,8}})+)*"  # extensions
    rf"(?:-[xX](?:-{_ALNUM}{{1,8}})+)?"  # private use
)
_PRIVATE_ONLY: Final = re.compile(rf"[xX](?:-{_ALNUM}{{1,8}})+")


class InvalidLanguageTag(LocalProtocolError):
    """A language tag that is not a well-formed BCP 47 tag of at most 35 characters."""


def check_bcp47(tag: object, what: str = "language") -> str:
    """Check that `tag` is a well-formed BCP 47 language tag (RFC 5646 §2.1).

    Returns:
        The tag, unchanged (tags compare ignoring case; their author's case is kept).

    Raises:
        InvalidLanguageTag: not a string, longer than 35 characters, not ASCII, or not
            in the grammar (such as "en-", "e", "en--us", "en-a", "zh_Hans", "en\\n").
    """
    if (
        not isinstance(tag, str)
        or not 1 <= len(tag) <= MAX_LANGUAGE_TAG_BYTES
        or not tag.isascii()
        or (_LANGTAG.fullmatch(tag) is None and _PRIVATE_ONLY.fullmatch(tag) is None)
    ):
        shown = repr(tag)[:50] if isinstance(tag, str) else type(tag).__name__
        raise InvalidLanguageTag(
            f"{what} {shown} is not a BCP 47 language tag such as 'en', 'ru' or 'zh-Hans'"
        )
    # A duplicate singleton ("en-a-bb-a-cc") is ill-formed too (RFC 5646 §2.2.6).
    singletons = [p.lower() for p in tag.split("-")[1:] if len(p) == 1]
    if "x" in singletons:
        singletons = singletons[: singletons.index("x")]
    if len(set(singletons)) != len(singletons):
        raise InvalidLanguageTag(f"{what} {tag!r} repeats an extension")
    return tag


class AttributionKind(IntEnum):
    """Who made a translation."""

    STAFF = 1
    """The translating side's own staff (for the author's translations: the author's)."""
    TRANSLATOR = 2
    """A translator, named."""
    MACHINE = 3
    """A machine translation tool, named by the user who ran it."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """Who made a translation. Layout: kind u8 (1-3), name (u16 + UTF-8, one line; may be
    empty only for STAFF)."""

    kind: AttributionKind
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in {int(k) for k in AttributionKind}:
            raise LocalProtocolError(f"unknown attribution {self.kind}")
        object.__setattr__(self, "kind", AttributionKind(self.kind))
        check_line(
            self.name,
            MAX_ATTRIBUTION_BYTES,
            "translator's name" if self.kind is AttributionKind.TRANSLATOR else "tool's name",
            allow_empty=self.kind is AttributionKind.STAFF,
        )

    def describe(self) -> str:
        """In words: "staff", "translator Li Wei", "machine (argos 1.9)"."""
        match self.kind:
            case AttributionKind.STAFF:
                return f"staff ({self.name})" if self.name else "staff"
            case AttributionKind.TRANSLATOR:
                return f"translator {self.name}"
            case _:
                return f"machine ({self.name})"

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.name.lower(), "name": self.name}

    def write(self, w: Writer) -> None:
        w.u8(self.kind).text16(self.name)

    @classmethod
    def read(cls, r: Reader) -> Attribution:
        raw = r.u8()
        if raw not in {int(k) for k in AttributionKind}:
            raise RemoteProtocolError(f"unknown attribution {raw}")
        return cls(AttributionKind(raw), r.text16(MAX_ATTRIBUTION_BYTES))


@dataclass(frozen=True, slots=True)
class Translation:
    """A text in one language, with who made it.

    Layout: language (u16 + ASCII BCP 47 tag), attribution, title (u16 + UTF-8, one line;
    empty unless the translated body has a title), text (u16 + UTF-8; empty only when the
    title is not, for an agenda item without detail).
    """

    language: str
    by: Attribution
    text: str = field(repr=False)
    title: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        check_bcp47(self.language, "translation language")
        if not isinstance(self.by, Attribution):
            raise LocalProtocolError("a translation's attribution is an Attribution")
        check_line(self.title, MAX_TITLE_BYTES, "translated title", allow_empty=True)
        check_text(
            self.text,
            MAX_NOTE_TEXT_BYTES,
            f"translation into {self.language}",
            allow_empty=bool(self.title.strip()),
        )

    @property
    def size(self) -> int:
        return len(self.text.encode()) + len(self.title.encode())

    def write(self, w: Writer) -> None:
        w.text16(self.language)
        self.by.write(w)
        w.text16(self.title).text16(self.text)

    @classmethod
    def read(cls, r: Reader) -> Translation:
        language = r.text16(MAX_LANGUAGE_TAG_BYTES)
        by = Attribution.read(r)
        title = r.text16(MAX_TITLE_BYTES)
        return cls(language, by, r.text16(MAX_NOTE_TEXT_BYTES), title)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"language": self.language, "by": self.by.to_dict(),
                                  "text": self.text}  # fmt: skip
        if self.title:
            out["title"] = self.title
        return out


@dataclass(frozen=True, slots=True)
class Languages:
    """The language block at the end of a translatable body.

    Layout: original language (u16 + ASCII BCP 47 tag), authoritative u8 (0: the original,
    k: the k-th translation), count u8 (0 to 7), each a `Translation`. Languages are
    distinct, ignoring case, the original's included.

    Attributes:
        original: the language of the body's own text.
        translations: the author's translations, in the author's order.
        authoritative: which text prevails if they differ: 0 the original, k the k-th
            translation.
    """

    original: str
    translations: tuple[Translation, ...] = ()
    authoritative: int = 0

    def __post_init__(self) -> None:
        check_bcp47(self.original, "original language")
        if len(self.translations) > MAX_LANGUAGES - 1:
            raise LocalProtocolError(f"a message has at most {MAX_LANGUAGES - 1} translations")
        if not all(isinstance(t, Translation) for t in self.translations):
            raise LocalProtocolError("translations are Translation values")
        tags = [self.original.lower(), *(t.language.lower() for t in self.translations)]
        if len(set(tags)) != len(tags):
            raise LocalProtocolError("each language appears once among a message's texts")
        if not isinstance(self.authoritative, int) or not (
            0 <= self.authoritative <= len(self.translations)
        ):
            raise LocalProtocolError(
                "the authoritative text is the original (0) or one of the translations"
            )

    @property
    def authoritative_language(self) -> str:
        if self.authoritative == 0:
            return self.original
        return self.translations[self.authoritative - 1].language

    def size(self) -> int:
        """UTF-8 bytes of the translations' texts and titles."""
        return sum(t.size for t in self.translations)

    def check_for(self, *, titled: bool, text_bound: int, original_size: int,
                  text_may_be_empty: bool = False) -> None:  # fmt: skip
        """The rules that depend on the body carrying the block.

        Raises:
            LocalProtocolError: a title where the body has none (or none where it has
                one), a translated text above the original's bound, or all texts together
                above 48 KiB (what one message holds).
        """
        for t in self.translations:
            if titled != bool(t.title):
                raise LocalProtocolError(
                    f"the translation into {t.language} "
                    + ("needs the title translated" if titled else "has a title its text lacks")
                )
            if not t.text.strip() and not text_may_be_empty:
                raise LocalProtocolError(f"the translation into {t.language} is empty")
            if len(t.text.encode()) > text_bound:
                raise LocalProtocolError(
                    f"the translation into {t.language} is above the {text_bound}-byte bound"
                )
        total = original_size + self.size()
        if total > MAX_NOTE_TEXT_BYTES:
            raise LocalProtocolError(
                f"a message's texts together are {total} bytes, the limit is "
                f"{MAX_NOTE_TEXT_BYTES}"
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "original": self.original,
            "authoritative": self.authoritative_language,
            "translations": [t.to_dict() for t in self.translations],
        }

    def write(self, w: Writer) -> None:
        w.text16(self.original).u8(self.authoritative).u8(len(self.translations))
        for t in self.translations:
            t.write(w)

    @classmethod
    def read(cls, r: Reader) -> Languages:
        original = r.text16(MAX_LANGUAGE_TAG_BYTES)
        authoritative, count = r.u8(), r.u8()
        if count > MAX_LANGUAGES - 1:
            raise RemoteProtocolError(f"message has {count} translations")
        translations = tuple(Translation.read(r) for _ in range(count))
        return cls(original, translations, authoritative)


def write_languages(w: Writer, languages: Languages | None) -> Writer:
    """Append the block (nothing when None: the body of before)."""
    if languages is not None:
        languages.write(w)
    return w


def read_languages(r: Reader) -> Languages | None:
    """The block, if bytes remain after the body's own fields."""
    return Languages.read(r) if r.remaining else None


# Kinds whose text may be translated, and those of them that have a title.
TRANSLATABLE_KINDS: Final = frozenset({
    int(MessageKind.NOTE), int(DialogueKind.CLARIFY), int(DialogueKind.ANSWER),
    int(DialogueKind.REDLINE), int(DialogueKind.AGENDA_PROPOSE), int(DialogueKind.NOTIFY),
})  # fmt: skip
TITLED_KINDS: Final = frozenset({int(DialogueKind.REDLINE), int(DialogueKind.AGENDA_PROPOSE)})


@dataclass(frozen=True, slots=True)
class Translate:
    """A translation of one message of the other side, made and shared by this side.

    Layout: target_id 16, target_hash 32 (the target's `Message.hash`), translation.
    """

    KIND: ClassVar[int] = DialogueKind.TRANSLATION
    target_id: bytes
    target_hash: bytes
    translation: Translation

    def __post_init__(self) -> None:
        check_id(self.target_id, ID_SIZE, "translated message id")
        check_id(self.target_hash, HASH_SIZE, "translated message hash")
        if not isinstance(self.translation, Translation):
            raise LocalProtocolError("a TRANSLATION carries a Translation")

    def encode(self) -> bytes:
        w = Writer().fixed(self.target_id, ID_SIZE).fixed(self.target_hash, HASH_SIZE)
        self.translation.write(w)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> Translate:
        return cls(r.fixed(ID_SIZE), r.fixed(HASH_SIZE), Translation.read(r))


@dataclass(frozen=True, slots=True)
class AddedTranslation:
    """A translation shared after the fact, by the side that received the message.

    Attributes:
        message_id: the TRANSLATION message's id.
        target_id: the message it translates.
        side: the side that made it (the receiver of the target).
        translation: the text, its language and its attribution.
        at_ms: when we stored it.
    """

    message_id: bytes
    target_id: bytes
    side: Side
    translation: Translation = field(repr=False)
    at_ms: int


class TranslationLedger:
    """Every translation shared with a TRANSLATION message, by the message it translates.

    The fold's rule (no crossing message can break it): the target is a known message of
    the other side, of a translatable kind, with the hash the translation names, and the
    translation has a title exactly when the target's kind does.
    """

    __slots__ = ("_by_target",)

    def __init__(self) -> None:
        self._by_target: dict[bytes, list[AddedTranslation]] = {}

    def check(self, side: Side, body: Translate, target: KnownMessage | None) -> None:
        """Check that `side` may translate the target.

        Raises:
            IllegalTransition: unknown target, the side's own message, a kind with no
                text, a hash that differs, or a title where the target has none.
        """
        name = short_id(body.target_id)
        if target is None:
            raise IllegalTransition(f"cannot translate message {name}: unknown message")
        if target.side is side:
            raise IllegalTransition(
                f"cannot translate message {name}: its own author translates it in the message"
            )
        if target.kind not in TRANSLATABLE_KINDS:
            raise IllegalTransition(f"cannot translate message {name}: it has no text to translate")
        if target.message_hash != body.target_hash:
            raise IllegalTransition(
                f"cannot translate message {name}: the hash differs from the message's"
            )
        titled = target.kind in TITLED_KINDS
        if titled != bool(body.translation.title):
            raise IllegalTransition(
                f"cannot translate message {name}: "
                + ("its title needs translating" if titled else "it has no title")
            )
        if target.kind == DialogueKind.REDLINE and not body.translation.text.strip():
            raise IllegalTransition(f"cannot translate red line {name}: the text is empty")
        if target.kind not in TITLED_KINDS and not body.translation.text.strip():
            raise IllegalTransition(f"cannot translate message {name}: the text is empty")

    def apply(self, event: DialogueEvent, body: Translate, target: KnownMessage | None) -> None:
        self.check(event.side, body, target)
        added = AddedTranslation(
            event.message_id, body.target_id, event.side, body.translation, event.received_at_ms
        )
        self._by_target.setdefault(body.target_id, []).append(added)

    def of(self, target_id: bytes) -> tuple[AddedTranslation, ...]:
        """The translations shared of one message, in stored order."""
        return tuple(self._by_target.get(target_id, ()))

    def all(self) -> tuple[AddedTranslation, ...]:
        """Every shared translation, by target id then stored order (the same on both
        sides for the same messages)."""
        return tuple(a for key in sorted(self._by_target) for a in self._by_target[key])

    def count(self, side: Side | None = None) -> int:
        return sum(1 for a in self._iter() if side is None or a.side is side)

    def _iter(self) -> Iterable[AddedTranslation]:
        for added in self._by_target.values():
            yield from added


@dataclass(frozen=True, slots=True)
class TextVersion:
    """One language version of a message as a principal reads it, side by side with the
    others.

    Attributes:
        language: its BCP 47 tag ("" when the author did not say).
        text: the text (a red line's or agenda item's text or detail).
        title: the title, for a red line or an agenda item ("" otherwise).
        role: "original", "translation" (the author's) or "shared" (the receiver's,
            sent after the message with a TRANSLATION).
        by: who made it, in words ("" for the original).
        authoritative: the author marked this text as the one that prevails.
        shared_by: for a shared translation, the side that made it.
    """

    language: str
    text: str = field(repr=False)
    title: str = field(repr=False)
    role: str
    by: str = ""
    authoritative: bool = False
    shared_by: Side | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "language": self.language or None,
            "role": self.role,
            "by": self.by or None,
            "authoritative": self.authoritative,
            "shared_by": None if self.shared_by is None else self.shared_by.value,
            "title": self.title,
            "text": self.text,
        }


def text_versions(
    languages: Languages | None,
    text: str,
    title: str = "",
    added: Iterable[AddedTranslation] = (),
) -> tuple[TextVersion, ...]:
    """Every version of a message's text, the authoritative one first, then the author's
    translations, then those the receiver shared. Empty when the message has one text only
    (no language block, nothing shared): nothing to show side by side.

    Args:
        languages: the body's language block, if any.
        text: the body's own text.
        title: the body's own title, if it has one.
        added: the translations shared of the message (`Dialogue.translations`).
    """
    shared = tuple(
        TextVersion(
            a.translation.language, a.translation.text, a.translation.title, "shared",
            a.translation.by.describe(), shared_by=a.side,
        )
        for a in added
    )
    if languages is None and not shared:
        return ()
    original = TextVersion(
        "" if languages is None else languages.original, text, title, "original",
        authoritative=languages is None or languages.authoritative == 0,
    )  # fmt: skip
    chosen = 0 if languages is None else languages.authoritative
    own = tuple(
        TextVersion(
            t.language, t.text, t.title, "translation", t.by.describe(), authoritative=chosen == i
        )
        for i, t in enumerate(() if languages is None else languages.translations, start=1)
    )
    ordered = sorted((original, *own), key=lambda v: not v.authoritative)
    return (*ordered, *shared)

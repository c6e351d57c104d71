"""Hypothesis strategies for every dialogue body."""

from __future__ import annotations

from hypothesis import strategies as st

from backchannel.dialogue import (
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Attribution,
    AttributionKind,
    Body,
    Clarify,
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeText,
    DutyAccept,
    DutyPropose,
    DutyRule,
    Hold,
    Languages,
    LanguageVersion,
    LineTest,
    LineTestReply,
    Note,
    Notify,
    NotifyRequest,
    Precedence,
    RecordPropose,
    RecordSign,
    RedLine,
    RedLineAck,
    Statement,
    Translate,
    Translation,
)
from backchannel.dialogue.codes import MAX_CODE_WORD_BYTES
from backchannel.dialogue.kinds import MAX_ACK_WITHIN_MS, MAX_TIMESTAMP_MS

ids = st.binary(min_size=16, max_size=16)
hashes = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
times = st.integers(0, MAX_TIMESTAMP_MS)
counters = st.integers(1, 2**32 - 1)
# What the text policy (backchannel.protocol.text) lets through: no controls, format
# characters or separators; bodies add line feed, tab and the two zero-width joiners.
_line_chars = st.characters(blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"))
texts = st.text(st.one_of(_line_chars, st.sampled_from("\n\t\u200c\u200d")), min_size=1,
                max_size=40).filter(
    str.strip
)
optional_texts = st.one_of(st.just(""), texts)
lines = st.text(_line_chars, min_size=1, max_size=40).filter(str.strip)
languages = st.from_regex(r"[a-z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}", fullmatch=True)


# Well-formed BCP 47 tags (RFC 5646): language, optional script, region, variant.
bcp47 = st.from_regex(
    r"[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|[0-9]{3}))?(-[a-z0-9]{5,8})?", fullmatch=True
)


@st.composite
def statements(draw: st.DrawFn) -> Statement:
    tags = draw(st.lists(languages, min_size=1, max_size=4, unique_by=str.lower))
    if len(tags) > 1 and draw(st.booleans()):
        # The authentic-text clause: some versions equally authentic, one perhaps prevailing.
        authentic = draw(st.lists(st.booleans(), min_size=len(tags), max_size=len(tags)))
        authentic[0] = authentic[1] = True
        prevails = draw(st.sampled_from([None, 0, 1]))
        versions = tuple(
            LanguageVersion(tag, draw(texts), authoritative=i == prevails, authentic=a)
            for i, (tag, a) in enumerate(zip(tags, authentic, strict=True))
        )
        return Statement(draw(lines), versions)
    chosen = draw(st.integers(0, len(tags) - 1))
    versions = tuple(
        LanguageVersion(tag, draw(texts), authoritative=i == chosen) for i, tag in enumerate(tags)
    )
    return Statement(draw(lines), versions)


attributions = st.one_of(
    st.builds(Attribution, st.just(AttributionKind.STAFF), st.one_of(st.just(""), lines)),
    st.builds(Attribution, st.sampled_from([AttributionKind.TRANSLATOR, AttributionKind.MACHINE]),
              lines),
)  # fmt: skip


@st.composite
def language_blocks(draw: st.DrawFn, *, titled: bool = False) -> Languages:
    tags = draw(st.lists(bcp47, min_size=1, max_size=4, unique_by=str.lower))
    translations = tuple(
        Translation(tag, draw(attributions), draw(texts), draw(lines) if titled else "")
        for tag in tags[1:]
    )
    return Languages(tags[0], translations, draw(st.integers(0, len(translations))))


def _maybe(titled: bool = False) -> st.SearchStrategy[Languages | None]:
    return st.one_of(st.none(), language_blocks(titled=titled))


parameter_names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
values = st.one_of(st.just(""), lines)


@st.composite
def code_entries(draw: st.DrawFn) -> CodebookPropose:
    names = tuple(draw(st.lists(parameter_names, max_size=3, unique=True)))
    tags = draw(st.lists(languages, min_size=1, max_size=3, unique_by=str.lower))
    # Texts without braces of their own, with some of the declared parameters in them.
    plain = texts.map(lambda t: t.replace("{", "(").replace("}", ")"))
    code_texts = tuple(
        CodeText(tag, draw(plain) + "".join(f" {{{n}}}" for n in names if draw(st.booleans())))
        for tag in tags
    )
    return CodebookPropose(
        draw(ids),
        draw(counters),
        draw(st.integers(1, 9999)),
        # 40 characters of up to 4 bytes each may pass the code word's limit.
        draw(lines.filter(lambda word: len(word.encode()) <= MAX_CODE_WORD_BYTES)),
        code_texts,
        names,
        draw(st.one_of(st.none(), st.sampled_from(Precedence))),
        draw(st.integers(0, MAX_ACK_WITHIN_MS)),
    )


bodies: st.SearchStrategy[Body] = st.one_of(
    st.builds(Note, st.sampled_from(Precedence), st.integers(0, MAX_ACK_WITHIN_MS), texts,
              _maybe()),
    st.builds(Ack, ids),
    st.builds(Hold, ids, times, optional_texts),
    st.builds(Clarify, ids, hashes, texts, _maybe()),
    st.builds(Answer, ids, texts, _maybe()),
    st.builds(RedLine, ids, counters, lines, texts, _maybe(titled=True)),
    st.builds(RedLineAck, ids, counters),
    st.builds(AgendaPropose, counters, lines, optional_texts, _maybe(titled=True)),
    st.builds(AgendaAccept, counters, ids),
    st.builds(AgendaDecline, counters, ids, optional_texts),
    st.builds(RecordPropose, ids, counters, statements(), times, signatures),
    st.builds(RecordSign, ids, counters, hashes, times, signatures),
    st.just(LineTest()),
    st.builds(LineTestReply, ids),
    code_entries(),
    st.builds(CodebookAccept, ids, counters),
    st.builds(CodebookWithdraw, ids),
    st.builds(CodebookSend, ids, counters, st.lists(values, max_size=4).map(tuple)),
    st.builds(DutyPropose, ids, counters, st.sampled_from(DutyRule),
              st.integers(1, MAX_ACK_WITHIN_MS), lines, optional_texts),
    st.builds(DutyAccept, ids, counters),
    st.builds(Notify, ids, counters, times, texts, st.one_of(st.just(bytes(16)), ids), _maybe()),
    st.builds(NotifyRequest, ids, counters, times, optional_texts),
    st.builds(Translate, ids, hashes,
              st.builds(Translation, bcp47, attributions, texts, st.one_of(st.just(""), lines))),
)

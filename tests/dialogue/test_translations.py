"""Translations: language blocks on bodies, TRANSLATION messages, strict BCP 47 tags, and
the authentic-text clause of agreed statements."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.dialogue import (
    Ack,
    AgendaPropose,
    Answer,
    Attribution,
    AttributionKind,
    Clarify,
    DialogueKind,
    IllegalTransition,
    InvalidLanguageTag,
    Languages,
    LanguageVersion,
    Note,
    Precedence,
    RecordFileError,
    RedLine,
    Statement,
    Translate,
    Translation,
    check_bcp47,
    decode_body,
    export_record,
    verify_record_file,
)
from backchannel.dialogue.kinds import MAX_NOTE_TEXT_BYTES
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError, UnsafeText
from backchannel.protocol.message import MessageKind
from backchannel.protocol.wire import Writer
from tests.dialogue.conftest import Channel, assert_refused
from tests.dialogue.strategies import bcp47, language_blocks, statements

LI_WEI = Attribution(AttributionKind.TRANSLATOR, "Li Wei")
STAFF = Attribution(AttributionKind.STAFF)
TOOL = Attribution(AttributionKind.MACHINE, "argos-translate 1.9")
ZH = Translation("zh-Hans", LI_WEI, "请确认收到。")
BLOCK = Languages("en", (ZH,), authoritative=0)


def test_a_body_without_translations_is_the_body_of_before_byte_for_byte() -> None:
    old = bytes.fromhex("0300000000000927c000026869")  # Note(FLASH, 600 000, "hi"), pinned
    note = decode_body(MessageKind.NOTE, old)
    assert note == Note(Precedence.FLASH, 600_000, "hi")
    assert isinstance(note, Note) and note.languages is None and note.encode() == old


def test_the_language_block_layout_is_fixed() -> None:
    note = Note(Precedence.ROUTINE, 0, "hi", Languages("en", (ZH,), 1))
    tail = (Writer().text16("en").u8(1).u8(1).text16("zh-Hans").u8(2).text16("Li Wei")
            .text16("").text16("请确认收到。").getvalue())  # fmt: skip
    assert note.encode() == Note(Precedence.ROUTINE, 0, "hi").encode() + tail
    assert decode_body(MessageKind.NOTE, note.encode()) == note
    assert note.languages is not None and note.languages.authoritative_language == "zh-Hans"


@given(language_blocks())
def test_every_untitled_body_round_trips_with_any_block(block: Languages) -> None:
    for body in (Note(Precedence.FLASH, 0, "x", block), Clarify(b"\1" * 16, b"\2" * 32, "?", block),
                 Answer(b"\1" * 16, "a", block)):  # fmt: skip
        data = body.encode()
        assert decode_body(body.KIND, data) == body
        assert decode_body(body.KIND, data).encode() == data  # type: ignore[union-attr]


@given(language_blocks(titled=True))
def test_titled_bodies_round_trip_with_translated_titles(block: Languages) -> None:
    for body in (RedLine(b"\1" * 16, 1, "t", "x", block), AgendaPropose(1, "t", "", block)):
        assert decode_body(body.KIND, body.encode()) == body


@pytest.mark.parametrize(
    "tag", ["en", "ru", "zh-Hans", "zh-Hant-TW", "sr-Latn-RS", "de-CH-1996", "es-419",
            "en-a-bbb-x-priv", "x-internal", "zh-yue-HK", "haw"],
)  # fmt: skip
def test_well_formed_tags_are_accepted(tag: str) -> None:
    assert check_bcp47(tag) == tag


@pytest.mark.parametrize(
    "tag", ["", "e", "en-", "-en", "en--us", "en-a", "zh_Hans", "i-klingon", "en-a-bb-a-cc",
            "a" * 36, "en\n", "en\u202e", "ен", "en US", "en-x", "toolongtag", "12"],
)  # fmt: skip
def test_hostile_or_ill_formed_tags_are_refused_with_a_typed_error(tag: str) -> None:
    with pytest.raises(InvalidLanguageTag):
        check_bcp47(tag)
    with pytest.raises(InvalidLanguageTag):
        Translation(tag, STAFF, "x")
    # From the network: the same refusal, as the peer's fault.
    body = Note(Precedence.ROUTINE, 0, "x").encode() + Writer().text16(tag).u8(0).u8(0).getvalue()
    with pytest.raises(RemoteProtocolError):
        decode_body(MessageKind.NOTE, body)


@given(bcp47)
def test_generated_tags_are_well_formed(tag: str) -> None:
    assert check_bcp47(tag) == tag


def test_the_block_s_rules() -> None:
    with pytest.raises(LocalProtocolError, match="once"):
        Languages("en", (Translation("EN", STAFF, "x"),))
    with pytest.raises(LocalProtocolError, match="authoritative"):
        Languages("en", (ZH,), authoritative=2)
    with pytest.raises(LocalProtocolError, match="at most 7"):
        Languages("en", tuple(Translation(f"e{c}", STAFF, "x") for c in "abcdefgh"))
    with pytest.raises(LocalProtocolError, match="name"):
        Attribution(AttributionKind.TRANSLATOR, "")
    with pytest.raises(UnsafeText):
        Attribution(AttributionKind.MACHINE, "tool\u202e")
    with pytest.raises(UnsafeText):
        Translation("ru", STAFF, "\x1b[2J")
    with pytest.raises(LocalProtocolError, match="title"):
        Note(Precedence.ROUTINE, 0, "x", Languages("en", (Translation("ru", STAFF, "y", "t"),)))
    with pytest.raises(LocalProtocolError, match="title"):
        RedLine(b"\1" * 16, 1, "t", "x", Languages("en", (Translation("ru", STAFF, "y"),)))
    half = "x" * (MAX_NOTE_TEXT_BYTES // 2 + 1)
    with pytest.raises(LocalProtocolError, match="together"):
        Note(Precedence.ROUTINE, 0, half, Languages("en", (Translation("ru", STAFF, half),)))


def test_a_receiver_shares_its_own_attributed_translation(channel: Channel) -> None:
    note = channel.send("alice", Note(Precedence.PRIORITY, 0, "Please confirm receipt.",
                                      Languages("en")))  # fmt: skip
    mine = Translation("ru", Attribution(AttributionKind.STAFF, "duty officer"),
                       "Прошу подтвердить получение.")  # fmt: skip
    channel.send("bob", Translate(note.message_id, note.message_hash, mine))
    for dialogue, side in ((channel.alice, "theirs"), (channel.bob, "ours")):
        (added,) = dialogue.translations(note.message_id)
        assert added.translation == mine and added.side.value == side
        assert dialogue.board(channel.now_ms).to_dict()["translations"][0]["language"] == "ru"
    assert channel.alice.anomalies == channel.bob.anomalies == ()


def test_translating_one_s_own_message_or_a_wrong_hash_is_refused(channel: Channel) -> None:
    note = channel.send("alice", Note(Precedence.ROUTINE, 0, "hello"))
    ack = channel.send("bob", Ack(note.message_id))
    with pytest.raises(IllegalTransition, match="own author"):
        channel.alice.check(Translate(note.message_id, note.message_hash, ZH), channel.now_ms)
    with pytest.raises(IllegalTransition, match="hash"):
        channel.bob.check(Translate(note.message_id, b"\0" * 32, ZH), channel.now_ms)
    with pytest.raises(IllegalTransition, match="no text"):
        channel.alice.check(Translate(ack.message_id, ack.message_hash, ZH), channel.now_ms)
    with pytest.raises(IllegalTransition, match="unknown"):
        channel.bob.check(Translate(b"\7" * 16, b"\0" * 32, ZH), channel.now_ms)


def test_a_peer_breaking_the_translation_rules_is_an_anomaly(channel: Channel) -> None:
    own = channel.send("alice", Note(Precedence.ROUTINE, 0, "hello"))
    theirs = channel.send("bob", RedLine(b"\5" * 16, 1, "Line", "No closer than 12 nm."))
    kind = DialogueKind.TRANSLATION
    # Bob translating his own red line, or Alice's note without its hash.
    by_bob = Translate(theirs.message_id, theirs.message_hash, Translation("en", STAFF, "x", "t"))
    assert_refused(channel, "alice", kind, by_bob.encode(), "own author")
    assert_refused(channel, "alice", kind,
                   Translate(own.message_id, b"\0" * 32, ZH).encode(), "hash")  # fmt: skip
    # Alice's translation of Bob's red line must translate its title too.
    assert_refused(channel, "bob", kind, Translate(theirs.message_id, theirs.message_hash,
                   ZH).encode(), "title")  # fmt: skip
    assert_refused(channel, "alice", kind, b"\0" * 10, "malformed")


def test_a_red_line_translation_needs_its_title(channel: Channel) -> None:
    line = channel.send("bob", RedLine(b"\5" * 16, 1, "Line", "No closer than 12 nm."))
    with pytest.raises(IllegalTransition, match="title"):
        channel.alice.check(Translate(line.message_id, line.message_hash, ZH), channel.now_ms)
    titled = Translation("zh-Hans", LI_WEI, "不得靠近12海里以内。", "红线")
    channel.send("alice", Translate(line.message_id, line.message_hash, titled))
    assert channel.bob.translations(line.message_id)[0].translation.title == "红线"


def test_statements_of_before_encode_as_before_and_read_one_authentic_text() -> None:
    old = Statement("T", (LanguageVersion("en", "a", authoritative=True),
                          LanguageVersion("ru", "б")))  # fmt: skip
    assert old.encode() == Writer().text16("T").u8(2).text16("en").u8(1).text16("a") \
        .text16("ru").u8(0).text16("б").getvalue()
    assert old.authentic_clause() == "The en text is authentic. The ru text is a translation."
    assert not old.has_equal_texts


def test_equally_authentic_texts_with_and_without_a_prevailing_one() -> None:
    equal = Statement("T", (LanguageVersion("en", "a", authentic=True),
                            LanguageVersion("zh-Hans", "甲", authentic=True)))  # fmt: skip
    assert equal.prevailing is None and equal.authoritative.language == "en"
    assert equal.authentic_clause() == "The en, zh-Hans texts are equally authentic."
    assert [b for b in equal.encode() if b in (1, 2)].count(2) >= 2
    assert Statement.decode(equal.encode()) == equal
    prevails = Statement("T", (LanguageVersion("en", "a", authentic=True),
                               LanguageVersion("ru", "б", authoritative=True),
                               LanguageVersion("fr", "c")))  # fmt: skip
    assert prevails.authentic_clause() == (
        "The en, ru texts are equally authentic; in case of divergence, the ru text prevails."
        " The fr text is a translation."
    )
    with pytest.raises(LocalProtocolError, match="at least two"):
        Statement("T", (LanguageVersion("en", "a", authentic=True),))


@given(statements())
def test_statements_round_trip_with_their_clause(statement: Statement) -> None:
    assert Statement.decode(statement.encode()) == statement
    assert statement.authentic_clause()


def test_an_agreed_record_carries_the_clause_inside_what_both_signed(channel: Channel) -> None:
    equal = Statement("Joint statement", (
        LanguageVersion("en", "Both sides will notify.", authentic=True),
        LanguageVersion("zh-Hans", "双方将予以通知。", authentic=True)))  # fmt: skip
    record_id = b"\x09" * 16
    channel.send("alice", channel.alice.propose_record(channel.keys["alice"], record_id, equal,
                                                       channel.now_ms))  # fmt: skip
    digest = channel.bob.record(record_id).latest.statement_hash  # type: ignore[union-attr]
    cosign = channel.bob.cosign_record(channel.keys["bob"], record_id, 1, digest, channel.now_ms)
    channel.send("bob", cosign)
    data = export_record(channel.alice.agreed_record(record_id))
    assert b"Authentic texts: The en, zh-Hans texts are equally authentic." in data
    verified = verify_record_file(data)
    assert verified.to_dict()["authentic_clause"] == equal.authentic_clause()
    assert verified.to_dict()["prevailing_language"] is None
    # Turning the equal texts into "en prevails" changes the signed statement: refused.
    tampered = data.replace(b"=== zh-Hans, authentic ===", b"=== zh-Hans ===")
    with pytest.raises(RecordFileError):
        verify_record_file(tampered)


@given(st.binary(max_size=200))
def test_any_bytes_after_a_note_are_a_canonical_block_or_refused(tail: bytes) -> None:
    data = Note(Precedence.ROUTINE, 0, "x").encode() + tail
    try:
        note = decode_body(MessageKind.NOTE, data)
    except RemoteProtocolError:
        return
    assert isinstance(note, Note) and note.encode() == data
    assert (note.languages is None) == (tail == b"")

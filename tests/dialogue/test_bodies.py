"""Every body codec: round trips, canonical encodings, and garbage gives RemoteProtocolError."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.dialogue import (
    Ack,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Body,
    Clarify,
    DialogueKind,
    Hold,
    LanguageVersion,
    LineTest,
    Note,
    Precedence,
    RecordPropose,
    RedLine,
    RedLineAck,
    Statement,
    decode_body,
)
from backchannel.dialogue.kinds import (
    MAX_ACK_WITHIN_MS,
    MAX_LANGUAGES,
    MAX_NOTE_TEXT_BYTES,
    MAX_STATEMENT_BYTES,
    MAX_TEXT_BYTES,
    MAX_TITLE_BYTES,
)
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.message import MessageKind
from backchannel.protocol.wire import Writer
from tests.dialogue.strategies import bodies, statements

KINDS = [int(MessageKind.NOTE), *(int(k) for k in DialogueKind)]
ID = b"\x07" * 16
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(bodies)
def test_every_body_round_trips_canonically(body: Body) -> None:
    data = body.encode()
    decoded = decode_body(body.KIND, data)
    assert decoded == body
    assert decoded is not None and decoded.encode() == data


@FAST
@given(st.sampled_from(KINDS), st.binary(max_size=200))
def test_garbage_decodes_canonically_or_raises_remote_protocol_error(
    kind: int, data: bytes
) -> None:
    try:
        body = decode_body(kind, data)
    except RemoteProtocolError:
        return
    assert body is not None and body.encode() == data


@FAST
@given(bodies, st.data())
def test_mutated_bodies_raise_only_remote_protocol_error(body: Body, data: st.DataObject) -> None:
    encoded = bytearray(body.encode())
    if encoded:
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(encoded) + 3))
    mutated = bytes(encoded[:cut]) + b"\x00" * max(0, cut - len(encoded))
    try:
        decoded = decode_body(body.KIND, mutated)
    except RemoteProtocolError:
        return
    assert decoded is not None and decoded.encode() == mutated


@FAST
@given(statements())
def test_statement_round_trips(statement: Statement) -> None:
    assert Statement.decode(statement.encode()) == statement


def test_kinds_start_at_0x0100_and_do_not_collide_with_the_protocol() -> None:
    assert min(DialogueKind) == 0x0100
    assert not {int(k) for k in DialogueKind} & {int(k) for k in MessageKind}
    assert [int(p) for p in Precedence] == [1, 2, 3]


def test_unknown_kinds_are_not_the_dialogue_s_business() -> None:
    assert decode_body(int(MessageKind.RECEIPT_READ), b"anything") is None
    assert decode_body(0x01FF, b"") is None


def _note(precedence: int = 1, within: int = 0, text: bytes = b"x") -> Writer:
    return Writer().u8(precedence).u64(within).bytes16(text)


def _red_line(version: int = 1, title: str = "t") -> bytes:
    return Writer().fixed(ID, 16).u32(version).text16(title).text16("x").getvalue()


_LONG_QUESTION = "x" * (MAX_TEXT_BYTES + 1)
_CLARIFY_TOO_LONG = Writer().fixed(ID, 16).fixed(bytes(32), 32).text16(_LONG_QUESTION).getvalue()


@pytest.mark.parametrize(
    ("kind", "data", "why"),
    [
        (MessageKind.NOTE, _note(0).getvalue(), "precedence"),
        (MessageKind.NOTE, _note(4).getvalue(), "precedence"),
        (MessageKind.NOTE, _note(within=MAX_ACK_WITHIN_MS + 1).getvalue(), "deadline"),
        (MessageKind.NOTE, _note(text=b"").getvalue(), "empty"),
        (MessageKind.NOTE, _note(text=b"\xff").getvalue(), "UTF-8"),
        (MessageKind.NOTE, _note(text=b"\x1b[2J").getvalue(), "control"),
        # Bytes after a note's text are its language block: one byte is a truncated one.
        (MessageKind.NOTE, _note().u8(0).getvalue(), "truncated"),
        (MessageKind.NOTE, _note().text16("en").u8(0).u8(0).u8(0).getvalue(), "trailing"),
        (MessageKind.NOTE, Writer().u8(1).u64(0).getvalue(), "truncated"),
        (MessageKind.NOTE, _note(text=b"x" * (MAX_NOTE_TEXT_BYTES + 1)).getvalue(), "exceeds"),
        (DialogueKind.ACK, b"\x00" * 15, "truncated"),
        (DialogueKind.ACK, b"\x00" * 17, "trailing"),
        (DialogueKind.CLARIFY, _CLARIFY_TOO_LONG, "exceeds"),
        (DialogueKind.REDLINE, _red_line(version=0), "version"),
        (DialogueKind.REDLINE, _red_line(title="a\nb"), "control"),
        (DialogueKind.REDLINE, _red_line(title="t" * (MAX_TITLE_BYTES + 1)), "exceeds"),
        (DialogueKind.REDLINE_ACK, Writer().fixed(ID, 16).u32(0).getvalue(), "version"),
        (DialogueKind.AGENDA_PROPOSE, Writer().u32(0).text16("t").text16("").getvalue(), "round"),
        (DialogueKind.AGENDA_ACCEPT, Writer().u32(1).getvalue(), "truncated"),
        (DialogueKind.LINETEST, b"\x00", "trailing"),
        (DialogueKind.LINETEST_REPLY, b"", "truncated"),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(kind: int, data: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        decode_body(kind, data)


def _statement_bytes(count: int, flags: list[int], tags: list[str]) -> bytes:
    w = Writer().text16("Title").u8(count)
    for tag, flag in zip(tags, flags, strict=True):
        w.text16(tag).u8(flag).text16("text")
    return w.getvalue()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_statement_bytes(0, [], []), "language versions"),
        (_statement_bytes(MAX_LANGUAGES + 1, [], []), "language versions"),
        (_statement_bytes(1, [3], ["en"]), "authentic-text flag"),
        (_statement_bytes(1, [2], ["en"]), "at least two equally authentic"),
        (_statement_bytes(1, [0], ["en"]), "at least two equally authentic"),
        (_statement_bytes(2, [2, 0], ["en", "fr"]), "at least two equally authentic"),
        (_statement_bytes(2, [1, 1], ["en", "fr"]), "at most one"),
        (_statement_bytes(2, [1, 0], ["en", "EN"]), "once"),
        (_statement_bytes(1, [1], ["e n"]), "BCP 47"),
        (_statement_bytes(1, [1], ["englishlanguage"]), "BCP 47"),
    ],
)
def test_malformed_statements_are_refused(data: bytes, why: str) -> None:
    body = Writer().fixed(ID, 16).u32(1).raw(data).u64(0).fixed(b"\0" * 64, 64).getvalue()
    with pytest.raises(RemoteProtocolError, match=why):
        decode_body(DialogueKind.RECORD_PROPOSE, body)


def test_building_an_impossible_body_is_the_caller_s_error() -> None:
    with pytest.raises(LocalProtocolError):
        Note(Precedence.FLASH, -1, "x")
    with pytest.raises(LocalProtocolError):
        Note(7, 0, "x")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Note(Precedence.FLASH, 0, "   ")
    with pytest.raises(LocalProtocolError):
        Note(Precedence.FLASH, 0, "\ud800")
    with pytest.raises(LocalProtocolError):
        Ack(b"short")
    with pytest.raises(LocalProtocolError):
        Hold(ID, -5)
    with pytest.raises(LocalProtocolError):
        Clarify(ID, b"\0" * 31, "why?")
    with pytest.raises(LocalProtocolError):
        Answer(ID, "")
    with pytest.raises(LocalProtocolError):
        RedLine(ID, 0, "t", "x")
    with pytest.raises(LocalProtocolError):
        RedLineAck(ID, 2**32)
    with pytest.raises(LocalProtocolError):
        AgendaPropose(1, "two\nlines")
    with pytest.raises(LocalProtocolError):
        AgendaDecline(1, ID, "r" * 2000)
    with pytest.raises(LocalProtocolError):
        Statement("t", ())
    with pytest.raises(LocalProtocolError):
        Statement("t", (LanguageVersion("en", "a"), LanguageVersion("fr", "b")))
    with pytest.raises(LocalProtocolError):
        Statement.single("t", "x" * MAX_STATEMENT_BYTES)
    with pytest.raises(LocalProtocolError):
        RecordPropose(ID, 1, Statement.single("t", "x"), 0, b"\0" * 63)


def test_precedence_is_normalised_to_the_enum() -> None:
    assert Note(2, 0, "x").precedence is Precedence.PRIORITY  # type: ignore[arg-type]


def test_texts_never_appear_in_repr() -> None:
    secret = "the carrier group turns back at dawn"
    for body in (
        Note(Precedence.FLASH, 0, secret),
        Hold(ID, 1, secret),
        Clarify(ID, b"\0" * 32, secret),
        Answer(ID, secret),
        RedLine(ID, 1, secret, secret),
        AgendaPropose(1, secret, secret),
        AgendaDecline(1, ID, secret),
        RecordPropose(ID, 1, Statement.single(secret, secret), 0, b"\0" * 64),
    ):
        assert secret not in repr(body)


def test_body_layouts_are_fixed() -> None:
    assert Note(Precedence.FLASH, 600_000, "hi").encode() == bytes.fromhex(
        "0300000000000927c000026869"
    )
    assert Ack(ID).encode() == ID
    assert Hold(ID, 5, "").encode() == ID + bytes.fromhex("00000000000000050000")
    assert RedLineAck(ID, 2).encode() == ID + b"\x00\x00\x00\x02"
    assert LineTest().encode() == b""
    assert [f.name for f in dataclasses.fields(Clarify)] == [
        "target_id", "target_hash", "question", "languages"
    ]  # fmt: skip

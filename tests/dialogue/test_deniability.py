"""Everything but an agreed record is deniable: no other body carries a signature, and the
fold never signs."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable

import pytest

from backchannel.dialogue import Body, Dialogue, RecordPropose, RecordSign
from backchannel.dialogue.bodies import Note
from backchannel.protocol.e2e.keys import IdentityKeyPair
from tests.dialogue.conftest import Channel
from tests.dialogue.test_board import play_a_round

BODIES: tuple[type, ...] = typing.get_args(Body)


def test_every_kind_has_a_body_class() -> None:
    from backchannel.dialogue import DialogueKind

    assert {cls.KIND for cls in BODIES} == {int(k) for k in DialogueKind} | {Note.KIND}


def test_only_record_bodies_have_a_signature_field() -> None:
    signed = {
        cls for cls in BODIES if any("sig" in f.name.lower() for f in dataclasses.fields(cls))
    }
    assert signed == {RecordPropose, RecordSign}
    # Nor a field that could smuggle one: every bytes field of the others is an id or a hash.
    for cls in set(BODIES) - signed:
        for f in dataclasses.fields(cls):
            if f.type in ("bytes", bytes):
                assert f.name.endswith(("_id", "_hash")), f"{cls.__name__}.{f.name}"


def _counting_sign(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count IdentityKeyPair.sign calls, with the name of the function that asked."""
    callers: list[str] = []
    original: Callable[[IdentityKeyPair, bytes], bytes] = IdentityKeyPair.sign

    def sign(self: IdentityKeyPair, data: bytes) -> bytes:
        callers.append(inspect.stack()[1].function)
        return original(self, data)

    monkeypatch.setattr(IdentityKeyPair, "sign", sign)
    return callers


def test_a_conversation_signs_only_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    callers = _counting_sign(monkeypatch)
    channel = Channel()
    play_a_round(channel)
    # One proposal and one co-signature, each made by the record builders and nothing else.
    assert callers == ["propose", "cosign"]


def test_folding_and_reading_a_conversation_never_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    channel = Channel()
    play_a_round(channel)
    callers = _counting_sign(monkeypatch)
    for who in ("alice", "bob"):
        live = channel.dialogues[who]
        again = Dialogue.fold(live.ours, live.theirs, channel.logs[who])
        again.board(channel.now_ms).to_dict()
        again.escalations(channel.now_ms, set())
    assert callers == []


def test_the_fold_holds_no_secret() -> None:
    channel = Channel()
    play_a_round(channel)
    for dialogue in channel.dialogues.values():
        assert not any(
            isinstance(getattr(dialogue, slot, None), IdentityKeyPair)
            for slot in Dialogue.__slots__
        )

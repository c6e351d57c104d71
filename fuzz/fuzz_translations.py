"""Invariant: any bytes, read as a note of the other side (its text and language block) and
then as a TRANSLATION of ours naming that note, either decode canonically or raise
RemoteProtocolError; every language tag that decodes is well-formed BCP 47 (check_bcp47
accepts it); every text and attribution that decodes obeys the text policy; and the fold
records an anomaly or a state change, never raises.

Run: python fuzz/fuzz_translations.py [corpus dir] (atheris, libFuzzer flags accepted).
The first two bytes of an input are the length of the note; the rest is the note, then the
translation's tail (what follows the target id and hash).
"""

from __future__ import annotations

import sys

from backchannel.dialogue import (
    Attribution,
    AttributionKind,
    Dialogue,
    DialogueEvent,
    DialogueKind,
    Languages,
    Note,
    Precedence,
    Side,
    Translate,
    Translation,
    check_bcp47,
    decode_body,
)
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.message import MessageKind
from backchannel.protocol.text import first_refused
from backchannel.testing import SeededRng

_RNG = SeededRng("fuzz translations")
_OURS, _THEIRS = IdentityKeyPair.generate(_RNG), IdentityKeyPair.generate(_RNG)
_NOTE_ID, _HASH = b"\x01" * 16, b"\x00" * 32
_LI_WEI = Attribution(AttributionKind.TRANSLATOR, "Li Wei")
_NOTE = Note(
    Precedence.FLASH,
    600_000,
    "Please confirm receipt.",
    Languages("en", (Translation("zh-Hans", _LI_WEI, "请确认收到。"),), 0),
)
_MINE = Translation("ru", Attribution(AttributionKind.MACHINE, "argos"), "Прошу подтвердить.")


def _seed(note: bytes, tail: bytes) -> bytes:
    return len(note).to_bytes(2, "big") + note + tail


def _tail(translation: Translation) -> bytes:
    return Translate(_NOTE_ID, _HASH, translation).encode()[48:]


SEEDS = [
    _seed(_NOTE.encode(), _tail(_MINE)),
    _seed(Note(Precedence.ROUTINE, 0, "x").encode(), _tail(_MINE)),
    _seed(Note(Precedence.ROUTINE, 0, "x", Languages("sr-Latn-RS")).encode(),
          _tail(Translation("x-priv", Attribution(AttributionKind.STAFF), "y"))),
]  # fmt: skip


def _check_translation(t: Translation) -> None:
    assert check_bcp47(t.language) == t.language
    for text in (t.text, t.title, t.by.name):
        assert first_refused(text, multiline=True, joiners=True) is None, repr(text)


def test_one_input(data: bytes) -> None:
    size = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
    note, tail = data[2 : 2 + size], data[2 + size :]
    translate = _NOTE_ID + _HASH + tail
    for kind, body in ((MessageKind.NOTE, note), (DialogueKind.TRANSLATION, translate)):
        try:
            decoded = decode_body(kind, body)
        except RemoteProtocolError:
            continue
        assert decoded is not None and decoded.encode() == body
        if isinstance(decoded, Note) and decoded.languages is not None:
            assert check_bcp47(decoded.languages.original) == decoded.languages.original
            for t in decoded.languages.translations:
                _check_translation(t)
        if isinstance(decoded, Translate):
            _check_translation(decoded.translation)
    dialogue = Dialogue(_OURS.public, _THEIRS.public)
    dialogue.apply(DialogueEvent(_NOTE_ID, _HASH, Side.THEIRS, 1, 1, MessageKind.NOTE, note))
    event = DialogueEvent(b"\x02" * 16, _HASH, Side.OURS, 2, 2, DialogueKind.TRANSLATION, translate)
    anomaly = dialogue.apply(event)
    assert (anomaly is None) == bool(dialogue.translations(_NOTE_ID))
    dialogue.board(3).to_dict()


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""Invariant: any bytes, read as a codebook entry proposed by the other side and then as a
codebook message of theirs naming it, either decode canonically or raise
RemoteProtocolError; the fold records an anomaly or a state change, never raises; and
whatever text a message accepted by the fold renders to, in any of its languages, obeys
the text policy (protocol/text.py), so a peer cannot smuggle a refused character into what
a principal reads through parameter values.

Run: python fuzz/fuzz_codebook.py [corpus dir] (atheris, libFuzzer flags accepted).
The first two bytes of an input are the length of the entry; the rest is the entry, then
the message.
"""

from __future__ import annotations

import sys

from backchannel.dialogue import (
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodeText,
    Dialogue,
    DialogueEvent,
    DialogueKind,
    Precedence,
    Side,
    decode_body,
)
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.text import first_refused
from backchannel.testing import SeededRng

_ID = b"\x42" * 16
_RNG = SeededRng("fuzz codebook")
_OURS, _THEIRS = IdentityKeyPair.generate(_RNG), IdentityKeyPair.generate(_RNG)
_ENTRY = CodebookPropose(
    _ID,
    1,
    7,
    "BLUE HARBOR",
    (CodeText("en", "Launch at {time} from {place}."), CodeText("ru", "Пуск в {time} из {place}.")),
    ("time", "place"),
    Precedence.FLASH,
    600_000,
)
_SEND = CodebookSend(_ID, 1, ("06:00Z", "Plesetsk"))


def _seed(entry: bytes, message: bytes) -> bytes:
    return len(entry).to_bytes(2, "big") + entry + message


SEEDS = [
    _seed(_ENTRY.encode(), _SEND.encode()),
    _seed(CodebookPropose(_ID, 1, 1, "W", (CodeText("en", "x"),)).encode(), _SEND.encode()),
]


def _event(n: int, kind: int, body: bytes, side: Side = Side.THEIRS) -> DialogueEvent:
    return DialogueEvent(bytes([n]) * 16, bytes(32), side, n, n, kind, body)


def test_one_input(data: bytes) -> None:
    size = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
    entry, message = data[2 : 2 + size], data[2 + size :]
    for kind, body in (
        (DialogueKind.CODEBOOK_PROPOSE, entry),
        (DialogueKind.CODEBOOK_SEND, message),
    ):
        try:
            decoded = decode_body(kind, body)
        except RemoteProtocolError:
            continue
        assert decoded is not None and decoded.encode() == body
    dialogue = Dialogue(_OURS.public, _THEIRS.public)
    first = dialogue.apply(_event(1, DialogueKind.CODEBOOK_PROPOSE, entry))
    if first is None:
        proposed = decode_body(DialogueKind.CODEBOOK_PROPOSE, entry)
        assert isinstance(proposed, CodebookPropose)
        accept = CodebookAccept(proposed.entry_id, proposed.version)
        assert dialogue.apply(_event(2, accept.KIND, accept.encode(), Side.OURS)) is None
    anomaly = dialogue.apply(_event(3, DialogueKind.CODEBOOK_SEND, message))
    shown = dialogue.code_message(bytes([3]) * 16)
    assert (anomaly is None) == (shown is not None)
    if shown is not None:
        for text in shown.entry.texts:
            _, rendered = shown.render(text.language)
            assert first_refused(rendered, multiline=True, joiners=True) is None, repr(rendered)
    dialogue.board(4).to_dict()


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

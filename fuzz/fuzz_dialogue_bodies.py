"""Invariant: any bytes, under any dialogue kind, decode to a body that re-encodes to the same
bytes, or raise RemoteProtocolError; a decoded body's strings never contain a character the
text policy refuses (controls but line feed and tab, format characters but the two joiners,
separators; protocol/text.py); and a Dialogue folding them as the other side's message
records an anomaly or a state change, never raises.

Run: python fuzz/fuzz_dialogue_bodies.py [corpus dir] (atheris, libFuzzer flags accepted).
The first two bytes of an input choose the kind; the rest is the body.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator

from backchannel.dialogue import (
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Attribution,
    AttributionKind,
    Clarify,
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeText,
    Dialogue,
    DialogueEvent,
    DialogueKind,
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
    Side,
    Statement,
    Translate,
    Translation,
    decode_body,
)
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.message import MessageKind
from backchannel.protocol.text import first_refused
from backchannel.testing import SeededRng

_KINDS = [int(MessageKind.NOTE), *(int(k) for k in DialogueKind)]
_ID = bytes(range(16))
_RNG = SeededRng("fuzz dialogue")
_OURS, _THEIRS = IdentityKeyPair.generate(_RNG), IdentityKeyPair.generate(_RNG)
_STATEMENT = Statement(
    "Readout",
    (LanguageVersion("en", "Candid talks.", True), LanguageVersion("zh-Hans", "坦诚的会谈。")),
)
_BODIES = [
    Note(Precedence.FLASH, 600_000, "Are your forces moving?"),
    Ack(_ID),
    Hold(_ID, 1_700_000_600_000, "Consulting."),
    Clarify(_ID, bytes(32), "What does that mean?"),
    Answer(_ID, "It means no."),
    RedLine(_ID, 1, "Taiwan", "The first red line that must not be crossed."),
    RedLineAck(_ID, 1),
    AgendaPropose(4, "Taiwan", "Beijing, August"),
    AgendaAccept(4, _ID),
    AgendaDecline(4, _ID, "Not now."),
    RecordPropose(_ID, 1, _STATEMENT, 1_700_000_000_000, bytes(64)),
    RecordSign(_ID, 1, bytes(32), 1_700_000_000_000, bytes(64)),
    LineTest(),
    LineTestReply(_ID),
    CodebookPropose(_ID, 1, 7, "BLUE", (CodeText("en", "At {time}."),), ("time",)),
    CodebookAccept(_ID, 1),
    CodebookWithdraw(_ID),
    CodebookSend(_ID, 1, ("06:00Z",)),
    Note(Precedence.ROUTINE, 0, "Confirm.", Languages("en", (
        Translation("zh-Hans", Attribution(AttributionKind.TRANSLATOR, "Li Wei"), "确认。"),), 1)),
    Translate(_ID, bytes(32), Translation("ru", Attribution(AttributionKind.STAFF), "Да.")),
    DutyPropose(_ID, 1, DutyRule.BEFORE, 86_400_000, "Missile test", "Any launch."),
    DutyAccept(_ID, 1),
    Notify(_ID, 1, 1_700_000_000_000, "Launch at dawn.", bytes(16)),
    NotifyRequest(_ID, 1, 1_700_000_000_000, "Collision?"),
]
SEEDS = [body.KIND.to_bytes(2, "big") + body.encode() for body in _BODIES]
# A note whose text carries ESC[2J and an override, written past the checks: the decoder
# must refuse it (the fuzzer mutates it towards every other refused character).
SEEDS.append(
    int(MessageKind.NOTE).to_bytes(2, "big") + bytes([1]) + bytes(8)
    + len("a\x1b[2J\u202e1".encode()).to_bytes(2, "big") + "a\x1b[2J\u202e1".encode()
)


def _dialogue() -> Dialogue:
    dialogue = Dialogue(_OURS.public, _THEIRS.public)
    # Something for references to hit: our note (id _ID) and our red line and proposal.
    for n, body in enumerate((_BODIES[0], _BODIES[5])):
        message_id = _ID if n == 0 else bytes([n]) * 16
        dialogue.apply(
            DialogueEvent(message_id, bytes(32), Side.OURS, 1, 1, body.KIND, body.encode())
        )
    return dialogue


def _strings(value: object) -> Iterator[str]:
    """Every string inside a decoded body (statements and their versions included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _strings(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))


def test_one_input(data: bytes) -> None:
    kind = _KINDS[int.from_bytes(data[:2], "big") % len(_KINDS)] if len(data) >= 2 else 1
    body = data[2:]
    try:
        decoded = decode_body(kind, body)
    except RemoteProtocolError:
        decoded = None
    else:
        assert decoded is not None and decoded.encode() == body
        for text in _strings(decoded):
            assert first_refused(text, multiline=True, joiners=True) is None, repr(text)
    dialogue = _dialogue()
    event = DialogueEvent(b"\xee" * 16, bytes(32), Side.THEIRS, 2, 2, kind, body)
    anomaly = dialogue.apply(event)
    assert (anomaly is None) or (anomaly.message_id == event.message_id)
    if decoded is None:
        assert anomaly is not None
    dialogue.board(3).to_dict()


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""A scripted dialogue with every act kind, between two real principals over a relay,
for the history tests of the client and the CLI.

Washington and Beijing share one `FixedClock`; the script runs in two phases a day
apart (`PHASE_GAP_MS`), so `since` can select the second one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from backchannel.client.engine import Principal
from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import LanguageVersion, Precedence
from backchannel.testing import FixedClock

from .conftest import FAST_KDF, pair

PHASE_GAP_MS: Final = 24 * 3600 * 1000


@dataclass
class Script:
    """What the script did, each act with its message id, in order, seen from Washington
    ("out" for Washington's, "in" for Beijing's); `first` is where the script's own acts
    start (before them: the line tests of the pairing's first syncs)."""

    acts: list[tuple[str, str, str]] = field(default_factory=list)  # (act, direction, id)
    second_phase_ms: int = 0
    first: int = 0

    def ids(self, act: str) -> list[str]:
        return [i for a, _, i in self.acts if a == act]


def principals(home: Path, clock: FixedClock) -> tuple[Principal, Principal]:
    w = Principal.create(home / "washington", "washington", "pw", kdf=FAST_KDF, clock=clock)
    b = Principal.create(home / "beijing", "beijing", "pw", kdf=FAST_KDF, clock=clock)
    return w, b


async def run_script(w: Principal, b: Principal, relay: str, clock: FixedClock) -> Script:
    """Pair `w` and `b` on `relay`, then one of every act, each delivered both ways."""
    await pair(w, b, [relay])
    ws, bs = StrategicChannel(w, "beijing"), StrategicChannel(b, "washington")
    # Only the script's own line test: none sent when due while the clock jumps a day.
    ws.configure_line_test(0)
    bs.configure_line_test(0)

    async def exchange() -> None:
        for _ in range(2):
            await w.sync()
            await b.sync()

    script = Script()
    await exchange()
    # Pairing's first syncs tested the line already: those come first, as stored.
    names = {0x010B: "linetest", 0x010C: "linetest_reply"}
    for m in w.messages("beijing"):
        if m.kind in names:
            script.acts.append((names[m.kind], m.direction, m.message_id))
    script.first = len(script.acts)

    async def did(act: str, direction: str, message_id: str) -> str:
        script.acts.append((act, direction, message_id))
        await exchange()
        return message_id

    note = await did("note", "out", (await ws.note(
        "Incident at sea: confirm.", Precedence.FLASH, ack_within_ms=600_000)).message_id)
    await b.read("washington")
    await did("hold", "in", (await bs.hold(note, clock.now_ms + 7_200_000,
                                           "Consulting the capital.")).message_id)
    await did("ack", "in", (await bs.ack(note)).message_id)
    theirs = await did("note", "in", (await bs.note("Our policy has not changed.")).message_id)
    request = await did("clarify", "out", (await ws.clarify(
        theirs, "Does this include arms sales?")).message_id)
    await did("answer", "in", (await bs.answer(request, "It does not.")).message_id)

    clock.advance(PHASE_GAP_MS)
    script.second_phase_ms = clock.now_ms
    await did("redline", "in", (await bs.declare_red_line(
        "Taiwan", "The first red line that must not be crossed.")).message_id)
    (line,) = ws.dialogue().red_lines()
    await did("redline_ack", "out",
              (await ws.acknowledge_red_line(line.redline_id.hex())).message_id)
    item = await did("agenda_propose", "out", (await ws.propose_agenda_item(
        2, "Maritime incidents", "A hotline for ships.")).message_id)
    await did("agenda_accept", "in", (await bs.decide_agenda_item(item, True)).message_id)
    versions = [LanguageVersion("en", "Both sides keep the channel open.", authoritative=True)]
    await did("record_propose", "out",
              (await ws.propose_record("Joint readout", versions)).message_id)
    (record,) = bs.dialogue().records()
    await did("record_sign", "in", (await bs.sign_record(record.record_id.hex())).message_id)
    test = await did("linetest", "out", (await ws.test_line()).message_id)
    *_, reply = (m for m in w.messages("beijing") if m.direction == "in" and m.kind == 0x010C)
    script.acts.append(("linetest_reply", "in", reply.message_id))
    assert test
    return script

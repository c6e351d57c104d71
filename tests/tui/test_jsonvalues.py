"""The console's values as JSON and back (what an agent sends a console that is its
client): every view type round-trips, and every act's parameters and result have a
JSON form by their type hints."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from pathlib import Path

import pytest

from backchannel.tui.app import ConsoleSource
from backchannel.tui.jsonvalues import ValueShapeError, decode, encode
from backchannel.tui.live import ACTS, ConsoleData, act_hints
from backchannel.tui.served import act_params
from backchannel.tui.views import BoardView, ChannelRow, ConversationLine, Pending, Snapshot

from .test_snapshots import FIXED

PENDING = Pending("3d4e5f60", ours=False, precedence="FLASH", remaining_ms=-5,
                  overdue=True, held=True, escalated=True)
EVERY_VIEW = Snapshot(
    channels=(ChannelRow("b", "b", "UP", 3, True, verified=False, relays=2, relays_up=1,
                         relays_lost=1, identity_changed=True),),
    selected="b",
    conversation=(ConversationLine("0a1b2c3d", "in", "note", "ni hao \\x1b", "FLASH", "read",
                                   message_id="0a" * 16, subject_id="1b" * 16, version=2,
                                   translations=("[en, theirs] hello",)),),
    earlier=4, board=BoardView(pending=(PENDING,), clarifications=("c",), red_lines=("r",),
                               agenda=("a",), records=("x",), line="line UP",
                               codebook=("1 ALPHA v1",)),
    flash=PENDING, total=9, later=1,
)


@pytest.mark.parametrize("value", [
    EVERY_VIEW, FIXED, Snapshot(), BoardView(), PENDING, EVERY_VIEW.channels[0],
    EVERY_VIEW.conversation[0]], ids=lambda v: type(v).__name__)
def test_every_view_round_trips_through_json(value: object) -> None:
    data = json.loads(json.dumps(encode(value)))
    assert decode(type(value), data) == value


def test_paths_and_dates_have_explicit_json(tmp_path: Path) -> None:
    assert encode(Path("record.txt")) == str(Path.cwd() / "record.txt")
    assert decode(Path, encode(tmp_path)) == tmp_path
    assert decode(dt.date, encode(dt.date(2026, 12, 2))) == dt.date(2026, 12, 2)
    params = act_params("meet", {"channel": "b", "round_number": 2, "between": ["Oslo"],
                                 "after": "2026-12-09"})
    assert params["after"] == dt.date(2026, 12, 9)
    for bad in ({"channel": 5}, {"chanel": "b"}, {"after": "ninth"}):
        with pytest.raises(ValueShapeError):
            act_params("meet", bad)
    with pytest.raises(ValueShapeError):
        decode(Snapshot, {"channels": "none"})
    with pytest.raises(ValueShapeError):
        decode(int, True)


def test_every_act_is_registered_and_has_a_json_form() -> None:
    """A new act of `ConsoleData` must be in `ACTS` (else an agent's console cannot do
    it); every act's hints resolve (what crosses the wire is decided by them)."""
    public = {name for name, _ in inspect.getmembers(ConsoleData, inspect.isfunction)
              if not name.startswith("_")} - {"refresh", "read", "changes"}
    assert public == set(ACTS)
    for name in ACTS:
        assert "return" in act_hints(name), name
    wanted = {name for name in dir(ConsoleSource) if not name.startswith("_")}
    assert wanted - set(ACTS) == {"refresh", "changes"}

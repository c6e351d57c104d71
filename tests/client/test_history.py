"""`Principal.history`: both ways, every dialogue act in place, receipts on ours, gaps and
forks where they are, and `since` / `limit` / `before` selecting the right entries."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client.errors import ClientError
from backchannel.client.forks import ForkReason, ForkRecord
from backchannel.client.history import HistoryEntry, HistoryFork, HistoryGap, build_history
from backchannel.client.records import MessageRecord
from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import Note, Precedence
from backchannel.testing import FixedClock

from .conftest import running_relay
from .dialogue_script import principals, run_script


async def test_every_act_in_order_with_receipts_and_bindings(tmp_path: Path) -> None:
    clock = FixedClock()
    w, b = principals(tmp_path, clock)
    async with running_relay(tmp_path / "relay.db") as relay:
        script = await run_script(w, b, relay.url, clock)
    page = w.history("beijing")
    assert (page.total, page.earlier, page.later) == (len(script.acts), 0, 0)
    assert [(e.act, e.direction, e.message_id) for e in page.entries] == script.acts
    by_id = {e.message_id: e for e in page.entries}
    assert script.first < len(script.acts)
    note = by_id[script.ids("note")[0]]
    assert (note.precedence, note.ack_within_ms) == (3, 600_000)
    assert note.text == "Incident at sea: confirm."
    # Receipts per sent message, and the acknowledgement from the fold.
    assert note.delivered_at_ms and note.read_at_ms and note.acknowledged_at_ms
    assert all(e.delivered_at_ms for e in page.entries if e.direction == "out")
    hold = by_id[script.ids("hold")[0]]
    assert hold.target_id == note.message_id and hold.text == "Consulting the capital."
    clarify = by_id[script.ids("clarify")[0]]
    assert clarify.target_id == script.ids("note")[1]
    assert by_id[script.ids("answer")[0]].target_id == clarify.message_id
    redline = by_id[script.ids("redline")[0]]
    assert by_id[script.ids("redline_ack")[0]].subject_id == redline.subject_id
    assert (redline.title, redline.version) == ("Taiwan", 1)
    item = script.ids("agenda_propose")[0]
    assert by_id[script.ids("agenda_accept")[0]].target_id == item
    assert by_id[item].round == 2
    assert by_id[script.ids("linetest_reply")[-1]].target_id == script.ids("linetest")[-1]
    assert not any(e.anomaly for e in page.entries)
    # Beijing's history is the same conversation seen from the other side.
    theirs = b.history("washington").entries
    flip = {"out": "in", "in": "out"}
    assert {(e.act, flip[e.direction], e.message_id) for e in theirs} == set(script.acts)
    w.close()
    b.close()


async def test_since_limit_and_before_select_the_right_entries(tmp_path: Path) -> None:
    clock = FixedClock()
    w, b = principals(tmp_path, clock)
    async with running_relay(tmp_path / "relay.db") as relay:
        script = await run_script(w, b, relay.url, clock)
    ids = [i for _, _, i in script.acts]
    later = w.history("beijing", since_ms=script.second_phase_ms)
    assert later.entries[0].act == "redline"
    assert [e.message_id for e in later.entries] == ids[script.first + 6:]
    latest = w.history("beijing", limit=4)
    assert [e.message_id for e in latest.entries] == ids[-4:]
    assert (latest.earlier, latest.later) == (len(ids) - 4, 0)
    before = w.history("beijing", limit=4, before=ids[-4][:8])
    assert [e.message_id for e in before.entries] == ids[-8:-4]
    assert (before.earlier, before.later) == (len(ids) - 8, 4)
    first = w.history("beijing", limit=100, before=ids[2])
    assert [e.message_id for e in first.entries] == ids[:2] and first.earlier == 0
    with pytest.raises(ClientError):
        w.history("beijing", before="ffffffff")
    with pytest.raises(ClientError):
        w.history("beijing", limit=0)
    w.close()
    b.close()


def _record(seq: int, direction: str = "in", message_id: str = "") -> MessageRecord:
    body = Note(Precedence.ROUTINE, 0, "hi").encode()
    return MessageRecord(message_id or f"{seq:032x}", direction, seq, 1, 1000 + seq, body.hex(),
                         received_at_ms=2000 + seq, message_hash="00" * 32)


async def test_gaps_and_forks_are_shown_where_they_are(tmp_path: Path) -> None:
    clock = FixedClock()
    w, b = principals(tmp_path, clock)
    async with running_relay(tmp_path / "relay.db") as relay:
        await run_script(w, b, relay.url, clock)
    channel = w.channel("beijing")
    messages = [_record(1), _record(2), _record(5), _record(6)]
    forks = [ForkRecord("theirs", ForkReason.POSITION, 6, 3000, messages[3].message_id),
             # Reported by the counterpart: no message of ours to put it by, so by time.
             ForkRecord("ours", ForkReason.REPLAY, 9, 2003)]
    items = build_history(w.identity, channel, messages, forks).items
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["HistoryEntry", "HistoryEntry", "HistoryGap", "HistoryFork",
                     "HistoryEntry", "HistoryFork", "HistoryEntry"], items
    ours = items[3]
    assert isinstance(ours, HistoryFork) and (ours.side, ours.seq) == ("ours", 9)
    gap = items[2]
    assert isinstance(gap, HistoryGap) and (gap.first_seq, gap.last_seq) == (3, 4)
    fork = items[5]
    assert isinstance(fork, HistoryFork) and fork.reason == ForkReason.POSITION.label
    assert all(isinstance(i, HistoryEntry) and i.text == "hi" for i in (items[0], items[6]))
    w.close()
    b.close()


def _groups_of(items: tuple[object, ...]) -> list[tuple[object, ...]]:
    """The whole history's items cut into groups: each entry with the marks before it,
    and the marks after the last entry as a group of their own."""
    groups: list[tuple[object, ...]] = []
    marks: list[object] = []
    for item in items:
        marks.append(item)
        if isinstance(item, HistoryEntry):
            groups.append(tuple(marks))
            marks = []
    if marks:
        groups.append(tuple(marks))
    return groups


async def test_a_page_is_exactly_its_window_of_the_whole_history(tmp_path: Path) -> None:
    # Pages are built from their window only; each must equal the same window cut from
    # the whole history (entries, answers of line tests, marks, counts), with line tests
    # or without, and with the fold given by the caller or made by the builder.
    from backchannel.client.duties import dialogue_of

    clock = FixedClock()
    w, b = principals(tmp_path, clock)
    async with running_relay(tmp_path / "relay.db") as relay:
        await run_script(w, b, relay.url, clock)
    channel = w.channel("beijing")
    messages = w.messages("beijing")
    forks = [ForkRecord("ours", ForkReason.REPLAY, 9, messages[3].sent_at_ms)]
    folded = dialogue_of(w.identity, channel, messages)
    for line_tests in (True, False):
        whole = build_history(w.identity, channel, messages, forks, line_tests=line_tests)
        groups = _groups_of(whole.items)
        entries = [g for g in groups if isinstance(g[-1], HistoryEntry)]
        assert len(entries) == whole.total > 10
        ids = [g[-1].message_id for g in entries]  # type: ignore[attr-defined]
        for before in (None, *ids[::3]):
            end = len(groups) if before is None else next(
                i for i, g in enumerate(groups)
                if isinstance(g[-1], HistoryEntry) and g[-1].message_id == before)
            for limit in (1, 2, 5, len(ids)):
                page = build_history(w.identity, channel, messages, forks, limit=limit,
                                     before=before, line_tests=line_tests,
                                     dialogue=folded)
                start, taken = end, 0
                while start > 0 and taken < limit:
                    start -= 1
                    taken += isinstance(groups[start][-1], HistoryEntry)
                expected = [i for g in groups[start:end] for i in g]
                assert list(page.items) == expected
                assert page.total == whole.total
                assert page.earlier + len(page.entries) + page.later == whole.total
        # `first`: from the k-th entry on, each entry with its marks, to the end.
        starts = [i for i, g in enumerate(groups) if isinstance(g[-1], HistoryEntry)]
        for k in (0, 1, len(ids) // 2, len(ids) - 1):
            page = build_history(w.identity, channel, messages, forks, first=k,
                                 line_tests=line_tests)
            assert list(page.items) == [i for g in groups[starts[k]:] for i in g]
            assert page.earlier == k
            # `first` and `limit`: a window of `limit` entries from the k-th.
            for size in (1, 3):
                window = build_history(w.identity, channel, messages, forks, first=k,
                                       limit=size, line_tests=line_tests)
                stop = starts[k + size] if k + size < len(starts) else len(groups)
                assert list(window.items) == [i for g in groups[starts[k]:stop] for i in g]
                assert (window.earlier, len(window.entries)) == (k, min(size, len(ids) - k))
                assert window.later == len(ids) - k - len(window.entries)
        beyond = build_history(w.identity, channel, messages, forks, first=len(ids),
                               line_tests=line_tests)
        assert beyond.entries == () and beyond.earlier == len(ids)
    answered = [e for e in build_history(w.identity, channel, messages).entries
                if e.act == "linetest"]
    assert answered and all(e.answered_at_ms for e in answered[:-1])
    w.close()
    b.close()


async def test_the_kept_fold_gives_the_history_a_fresh_fold_gives(tmp_path: Path) -> None:
    """`history` uses the principal's kept dialogue fold (`client.folds`), extended by what
    was stored since it was last read; the page must be the one a fold from scratch
    gives."""
    clock = FixedClock()
    w, b = principals(tmp_path, clock)
    async with running_relay(tmp_path / "relay.db") as relay:
        await run_script(w, b, relay.url, clock)
        w.history("beijing")  # the fold is kept from here on
        sent = await b.send("washington", "A question of timing.", ack_within_ms=600_000)
        await w.sync()
        await StrategicChannel(w, "beijing").ack(sent.message_id)
        await b.sync()
        await w.sync()
    kept = w.history("beijing")
    cid = w.channel("beijing").channel_id
    fresh = build_history(w.identity, w.channel("beijing"),
                          w._state.messages.in_stored_order(cid), w.forks(cid))
    assert kept == fresh
    last = next(e for e in kept.entries if e.message_id == sent.message_id)
    assert last.acknowledged_at_ms  # the act after the kept fold is in the page
    w.close()
    b.close()

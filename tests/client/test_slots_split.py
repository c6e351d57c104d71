"""A note larger than a slot's envelope crosses in pieces (client/fragments.py): the relay
sees one envelope size, at the slot rate, while it crosses; the recipient gets the note
once, whole, and keeps nothing of its pieces."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.client.fragments import (
    KIND_FRAGMENT,
    MAX_PIECES,
    PIECE_SIZE,
    Piece,
    fragment_id,
    split,
)
from backchannel.client.slotpolicy import SLOT_BUCKET
from backchannel.dialogue.kinds import Precedence
from backchannel.protocol.envelope import BUCKETS, ENVELOPE_HEADER_SIZE, bucket_for_payload
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.message import MessageKind
from tests.client.conftest import MakePrincipal, pair
from tests.client.observer import Record, observed_relay, sends_between
from tests.client.test_slots import slotted, until, watching
from tests.protocol.conftest import make_pair

INTERVAL = 0.1


@pytest.mark.parametrize("pq", [False, True])
def test_the_largest_piece_fills_one_slot_bucket(pq: bool) -> None:
    session = make_pair(pq=pq).alice
    envelope = bytes(range(256)) * (BUCKETS[-1] // 256)
    largest = max(split(envelope), key=lambda p: len(p.encode()))
    assert len(largest.data) == PIECE_SIZE
    sealed = session.seal(KIND_FRAGMENT, largest.encode(), 1, make_pair(pq=pq).rng)
    assert bucket_for_payload(len(sealed.payload)) == SLOT_BUCKET
    assert len(sealed.payload) + ENVELOPE_HEADER_SIZE == SLOT_BUCKET


def test_pieces_round_trip_and_bounds() -> None:
    envelope = b"x" * BUCKETS[1]
    pieces = split(envelope)
    assert len(pieces) == 6 and b"".join(p.data for p in pieces) == envelope
    assert {p.fragment_id for p in pieces} == {fragment_id(envelope)}
    assert [Piece.decode(p.encode()) for p in pieces] == pieces
    assert len(split(b"y" * BUCKETS[-1])) == MAX_PIECES == 86
    with pytest.raises(ValueError):
        split(b"z" * PIECE_SIZE)
    ident = fragment_id(envelope)
    for bad in (Piece(ident, 2, 2, b"a"), Piece(ident, 0, 1, b"a"), Piece(ident, 0, 2, b""),
                Piece(ident, 0, MAX_PIECES + 1, b"a")):
        with pytest.raises(RemoteProtocolError):
            Piece.decode(bad.encode())


@given(st.binary(max_size=PIECE_SIZE + 40))
def test_any_body_is_a_piece_or_refused(body: bytes) -> None:
    try:
        piece = Piece.decode(body)
    except RemoteProtocolError:
        return
    assert 0 <= piece.index < piece.count <= MAX_PIECES and 0 < len(piece.data) <= PIECE_SIZE


async def test_a_large_note_crosses_in_pieces_at_the_slot_rate(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    record = Record()
    a, b = make_principal("a"), make_principal("b")
    long_text = "a long note, " * 400  # 5,200 bytes: a 16 KiB envelope, 22 pieces
    async with observed_relay(tmp_path / "r.db", record) as relay:
        await pair(a, b, [relay.url])
        slotted(a, b, interval=INTERVAL)
        peer = a.channels()[0].name
        outbound = a.channels()[0].links[0].outbound
        assert outbound is not None
        async with watching(a, b) as reports:
            await asyncio.sleep(INTERVAL * 3)
            message_id = a.queue(peer, long_text)
            t0 = time.monotonic()
            await until(lambda: any(e.text == long_text for e in b.inbox()), rounds=800)
            t1 = time.monotonic()
            await until(lambda: a.status(peer)[0].queued == 0)
            await until(lambda: any(m.delivered_at_ms for m in a.messages(peer)
                                    if m.message_id == message_id), rounds=800)
        a_report, b_report = reports
    writes = [e for e in sends_between(record, t0, t1) if e.mailbox == outbound.mailbox_id]
    # Every write to b's mailbox while the note crossed was one slot envelope, at the
    # slot rate: the 22 pieces took 22 slots (with the jitter of a shared event loop).
    assert len({e.size for e in writes}) == 1 and writes[0].size < BUCKETS[1]
    assert 22 <= len(writes) <= 22 + 4
    duration = t1 - t0
    assert len(writes) <= duration / INTERVAL + 2
    # b got the note once and whole, and its pieces were not kept.
    assert [e.text for e in b.inbox()].count(long_text) == 1
    assert b_report.fragments == 22
    notes = [m for m in b.messages(b.channels()[0].name)
             if m.direction == "in" and m.kind == MessageKind.NOTE]
    assert len(notes) == 1
    assert KIND_FRAGMENT not in {m.kind for m in b.messages(b.channels()[0].name)}
    assert b._state.fragments.pending() == 0
    assert a_report.sent >= 1


def test_pieces_are_kept_once_and_an_envelope_made_whole_once(
    make_principal: MakePrincipal,
) -> None:
    state = make_principal("r")._state  # the repository on a real (encrypted) store
    envelope = bytes(range(256)) * (BUCKETS[1] // 256)
    first, *rest = split(envelope)
    channel = "ab" * 16
    with state.store.transaction():
        assert state.fragments.add(channel, first, 1) is None
        assert state.fragments.add(channel, first, 2) is None  # sent again: kept once
        for piece in rest[:-1]:
            assert state.fragments.add(channel, piece, 3) is None
        assert state.fragments.pending() == 1
        assert state.fragments.add(channel, rest[-1], 4) == envelope
        assert state.fragments.pending() == 0
        # A piece of an envelope that never completes is forgotten after its time.
        state.fragments.add(channel, first, 10)
        state.fragments.forget_before(10)
        assert state.fragments.pending() == 1
        state.fragments.forget_before(11)
        assert state.fragments.pending() == 0


async def test_a_flash_note_goes_ahead_of_a_split_and_the_rest_waits_behind_it(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    long_text = "a long note, " * 400  # 22 pieces
    async with observed_relay(tmp_path / "r.db", Record()) as relay:
        await pair(a, b, [relay.url])
        slotted(a, b, interval=INTERVAL)
        peer = a.channels()[0].name
        async with watching(a, b):
            await asyncio.sleep(INTERVAL * 3)
            a.queue(peer, long_text)
            a.queue(peer, "routine, queued after the long note")
            await asyncio.sleep(INTERVAL * 5)  # a few pieces are out
            a.queue(peer, "flash", precedence=Precedence.FLASH)
            await until(lambda: len([e for e in b.inbox() if e.text]) >= 3, rounds=800)
    order = [e.text for e in sorted(b.inbox(), key=lambda e: e.received_at_ms) if e.text]
    assert order == ["flash", long_text, "routine, queued after the long note"]

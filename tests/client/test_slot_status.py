"""`status` shows what the slots and routing of a watch last reported (`state.slotstatus`):
rows a relay refused and that are held back, a direction whose slot loop failed, and the
routing lines. `status` runs as another command, so it reads them from the state: these
tests let a watch run, close the principal, and run `backchannel status` on its home.
Real relays on 127.0.0.1, real SQLite."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from backchannel.cli.main import app
from backchannel.client.engine import Principal
from backchannel.client.routing import FORWARDING_SETTING
from backchannel.client.state.slotstatus import MAX_LINE, DirectionStatus, decode_direction
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.relay.limits import RelayLimits
from tests.client.conftest import MakePrincipal, pair, running_relay
from tests.client.observer import Record, observed_relay
from tests.client.test_slots import INTERVAL, slotted, until, watching
from tests.client.test_slots_faults import damage_outbox, repair_outbox


def status(home: Path, *args: str) -> str:
    """`backchannel --home HOME status ARGS` in-process, as a person would run it."""
    env = {"BACKCHANNEL_PASSPHRASE": "passphrase", "BACKCHANNEL_HOME": None,
           "COLUMNS": "400", "BACKCHANNEL_CONFIG": "/dev/null"}
    result = CliRunner().invoke(app, ["--home", str(home), "status", *args], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def status_json(home: Path) -> dict[str, Any]:
    (channel,) = json.loads(status(home, "--json"))["channels"]
    assert isinstance(channel, dict)
    return channel


async def test_status_shows_rows_held_after_a_refusal_and_clears_them(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    limits = RelayLimits(mailbox_max_envelopes=3)
    a, b = make_principal("a"), make_principal("b")
    async with observed_relay(tmp_path / "r.db", Record(), limits) as relay:
        await pair(a, b, [relay.url])
        slotted(a, b)
        cid, peer = a.channels()[0].channel_id, a.channels()[0].name
        async with watching(a):
            await asyncio.sleep(INTERVAL * 6)  # b does not read: cover fills its mailbox
            a.queue(peer, "waits for room")
            await until(lambda: bool(a.slot_status(cid)[0]))
        a.close()
        shown = status_json(a.home)["slots"]["directions"]
        assert [(d["relay"], d["held"]) for d in shown] == [(relay.url, 1)]
        assert shown[0]["held_until_ms"] > 0 and shown[0]["last_failure"] is None
        text = status(a.home)
        assert "held: 1 message(s) to " + relay.url in text
        # b reads, a's next watch sends the row: nothing held any more.
        await b.sync()
        a = Principal.open(a.home, "passphrase")
        try:
            async with watching(a):
                # The new watch offers the row at once; refused again while cover
                # refills the mailbox, so b keeps reading until it is stored.
                for _ in range(200):
                    await b.sync()
                    if any(e.text == "waits for room" for e in b.inbox()):
                        break
                    await asyncio.sleep(INTERVAL)
                await until(lambda: a.status(peer)[0].queued == 0)
                await until(lambda: not a.slot_status(cid)[0])
        finally:
            a.close()
    assert any(e.text == "waits for room" for e in b.inbox())
    assert status_json(a.home)["slots"]["directions"] == []
    assert "held:" not in status(a.home)


async def test_status_shows_a_slot_loop_that_failed(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    a, b = make_principal("a"), make_principal("b")
    async with running_relay(tmp_path / "r.db") as relay:
        await pair(a, b, [relay.url])
        slotted(a, b)
        cid = a.channels()[0].channel_id
        damaged = damage_outbox(a, relay.url)
        async with watching(a):
            await until(lambda: bool(a.slot_status(cid)[0]))
            repair_outbox(a, damaged)
        a.close()
    (direction,) = status_json(a.home)["slots"]["directions"]
    assert direction["relay"] == relay.url and direction["held"] == 0
    assert "failed (RemoteProtocolError" in direction["last_failure"]
    assert direction["failed_at_ms"] > 0
    assert "none leaves outside a slot" in status(a.home)


async def test_status_shows_the_routing_lines(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with observed_relay(tmp_path / "r.db", Record(), forwarding=True) as relay:
        await pair(w, b, [relay.url])
        await w.send(w.channels()[0].name, "direct: no other relay to forward through")
        w.set_setting(FORWARDING_SETTING, "require")
        await w.send(w.channels()[0].name, "held: forwarding is required")
        w.close()
    routing = status_json(w.home)["routing"]
    assert list(routing) == [relay.url]
    assert "forwarding is required" in routing[relay.url]
    assert "Routing" in status(w.home) and "forwarding is required" in status(w.home)


# Channel ids are 32 hex digits (the record allows 64 bytes); any text for the rest.
@given(st.binary(min_size=16, max_size=16).map(bytes.hex), st.text(max_size=80),
       st.integers(0, 2**32 - 1),
       st.integers(0, 2**64 - 1), st.text(max_size=200), st.integers(0, 2**64 - 1))
def test_direction_records_round_trip(channel_id: str, url: str, held: int, until: int,
                                      failure: str, at: int) -> None:
    record = DirectionStatus(channel_id, url, held, until, failure, at)
    assert decode_direction(record.encode()) == record


@given(st.binary(max_size=300))
def test_any_bytes_give_a_record_or_a_typed_error(raw: bytes) -> None:
    try:
        record = decode_direction(raw)
    except RemoteProtocolError:
        return
    assert record.encode() == raw
    assert len(record.failure.encode()) <= MAX_LINE

"""The strategic channel end to end: two principals, a real relay, every dialogue kind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.errors import ClientError
from backchannel.client.strategic import StrategicChannel, perform_duties
from backchannel.dialogue import (
    LanguageVersion,
    LineState,
    MissingCosignature,
    Precedence,
    RecordFileError,
    Side,
    verify_record_file,
)
from backchannel.testing import FixedClock

from .conftest import FAST_KDF, pair, running_relay


class Clocked:
    """Two principals sharing one fixed clock, so deadlines are under the test's control."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = FixedClock()
        self.w = Principal.create(
            tmp_path / "w", "washington", "pw", kdf=FAST_KDF, clock=self.clock
        )
        self.b = Principal.create(tmp_path / "b", "beijing", "pw", kdf=FAST_KDF, clock=self.clock)

    def sides(self) -> tuple[StrategicChannel, StrategicChannel]:
        return StrategicChannel(self.w, "beijing"), StrategicChannel(self.b, "washington")

    async def exchange(self) -> None:
        for _ in range(2):
            await self.w.sync()
            await self.b.sync()


@pytest.fixture
def parties(tmp_path: Path) -> Clocked:
    return Clocked(tmp_path)


async def test_red_line_declared_understood_and_versioned(tmp_path: Path, parties: Clocked) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        await b.declare_red_line("Taiwan", "Taiwan is the first red line that must not be crossed.")
        await parties.exchange()
        (line,) = w.dialogue().red_lines(Side.THEIRS)
        assert line.latest.version == 1 and line.awaiting_acknowledgement
        await w.acknowledge_red_line(line.redline_id.hex()[:8])
        await parties.exchange()
        assert not b.dialogue().red_line(line.redline_id).awaiting_acknowledgement  # type: ignore[union-attr]
        # A new version needs a new acknowledgement.
        await b.declare_red_line("Taiwan", "Revised wording.", ref=line.redline_id.hex())
        await parties.exchange()
        view = w.dialogue().red_line(line.redline_id)
        assert view is not None and view.latest.version == 2 and view.awaiting_acknowledgement
        with pytest.raises(ClientError):
            await w.acknowledge_red_line("zz")  # not an id


async def test_flash_note_hold_then_ack_before_deadline(tmp_path: Path, parties: Clocked) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        sent = await w.note("Incident at sea: please confirm receipt.", Precedence.FLASH, 600_000)
        await parties.exchange()
        (pending,) = b.dialogue().pending_acks(parties.clock(), Side.THEIRS)
        assert pending.precedence is Precedence.FLASH and not pending.overdue
        await b.hold(
            sent.message_id, parties.clock() + 1_200_000, "Consulting; answer within 20 min"
        )
        await parties.exchange()
        (waiting,) = w.dialogue().pending_acks(parties.clock(), Side.OURS)
        assert waiting.hold is not None
        await b.ack(sent.message_id[:6])
        await parties.exchange()
        assert w.dialogue().pending_acks(parties.clock(), Side.OURS) == ()
        with pytest.raises(ClientError, match="already"):
            await b.ack(sent.message_id)
        with pytest.raises(ClientError):
            await w.ack(sent.message_id)  # one's own note


async def test_missed_deadline_escalates_once_resends_and_runs_the_command(
    tmp_path: Path, parties: Clocked
) -> None:
    marker = tmp_path / "paged"
    script = tmp_path / "page.py"
    script.write_text(
        "import os, pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text(os.environ['BACKCHANNEL_PRECEDENCE'])\n"
    )
    parties.w.set_setting("escalation_command", f"{sys.executable} {script}")
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, _b = parties.sides()
        sent = await w.note("Please acknowledge.", Precedence.PRIORITY, 60_000)
        await parties.exchange()
        parties.clock.advance(61_000)
        report = await parties.w.sync()
        assert report.escalated == 1
        assert marker.read_text() == "PRIORITY"
        (overdue,) = w.dialogue().overdue(parties.clock(), Side.OURS)
        assert overdue.message_id.hex() == sent.message_id
        assert (await parties.w.sync()).escalated == 0  # once only
        # The resent copy reaches the counterpart and is recognised, not shown twice.
        report_b = await parties.b.sync()
        assert report_b.duplicates >= 1
        assert [e.text for e in parties.b.inbox()] == ["Please acknowledge."]


async def test_clarification_bound_to_a_message_then_answered(
    tmp_path: Path, parties: Clocked
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        sent = await b.note("We will respond proportionately.")
        await parties.exchange()
        request = await w.clarify(sent.message_id[:8], "What does 'proportionately' cover?")
        await parties.exchange()
        (open_request,) = b.dialogue().clarifications(open_only=True)
        assert open_request.target_id.hex() == sent.message_id
        await b.answer(request.message_id, "Diplomatic and economic measures only.")
        await parties.exchange()
        assert w.dialogue().clarifications(open_only=True) == ()
        with pytest.raises(ClientError):
            await b.answer(request.message_id, "again")


async def test_agenda_for_the_next_round(tmp_path: Path, parties: Clocked) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        first = await w.propose_agenda_item(5, "Military-to-military communication", "Vienna")
        second = await w.propose_agenda_item(5, "Export controls")
        await parties.exchange()
        await b.decide_agenda_item(first.message_id, accept=True)
        await b.decide_agenda_item(second.message_id, accept=False, reason="Not this round")
        await parties.exchange()
        agreed = w.dialogue().agenda(5).agreed
        assert [item.title for item in agreed] == ["Military-to-military communication"]
        with pytest.raises(ClientError):
            await w.decide_agenda_item(first.message_id, accept=True)  # our own item


async def test_agreed_record_cosigned_exported_and_verified_offline(
    tmp_path: Path, parties: Clocked
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        versions = [
            LanguageVersion("en", "Both sides will maintain open channels.", authoritative=True),
            LanguageVersion("zh", "双方将保持沟通渠道畅通。"),
        ]
        await w.propose_record("Joint readout", versions)
        await parties.exchange()
        (record,) = b.dialogue().records()
        with pytest.raises(ClientError):
            w.export_record(record.record_id.hex())  # not yet co-signed
        await b.sign_record(record.record_id.hex()[:8])
        await parties.exchange()
        data = w.export_record(record.record_id.hex())
    verified = verify_record_file(data)
    assert verified.statement.authoritative.language == "en"
    assert verified.proposer.identity == parties.w.identity
    assert verified.cosigner.identity == parties.b.identity
    altered = bytearray(data)
    altered[len(data) // 2] ^= 0x01
    with pytest.raises(RecordFileError):
        verify_record_file(bytes(altered))


async def test_line_tests_are_answered_automatically(tmp_path: Path, parties: Clocked) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        b.configure_line_test(0)  # only washington tests the line
        await parties.exchange()  # w sends its first test; b answers it on its next sync
        await parties.exchange()
        line = w.dialogue().line_status(parties.clock(), 3_600_000, 600_000)
        assert line.state is LineState.UP
        # An hour later the next test goes out; unanswered past the grace, the line is down.
        parties.clock.advance(3_600_000)
        await parties.w.sync()
        parties.clock.advance(700_000)
        assert w.board().line.state is LineState.DOWN
        await parties.b.sync()
        await parties.w.sync()
        assert w.board().line.state is LineState.UP
        duties = perform_duties(parties.b)
        assert duties.line_tests_answered == 0


async def test_no_message_but_a_record_carries_a_signature(
    tmp_path: Path, parties: Clocked
) -> None:
    signed: list[bytes] = []
    original = type(parties.w.identity_keypair).sign

    def spy(self: object, data: bytes) -> bytes:
        signed.append(data)
        return original(self, data)  # type: ignore[arg-type]

    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        type(parties.w.identity_keypair).sign = spy
        try:
            await w.note("candid", Precedence.FLASH, 1000)
            await b.declare_red_line("t", "x")
            await parties.exchange()
            await w.acknowledge_red_line(b.dialogue().red_lines()[0].redline_id.hex())
            await w.propose_agenda_item(1, "item")
            await w.test_line()
            await parties.exchange()
            assert signed == []
            await w.propose_record("on the record", [LanguageVersion("en", "x", True)])
            assert len(signed) == 1
        finally:
            type(parties.w.identity_keypair).sign = original


async def test_a_proposal_without_its_cosignature_does_not_verify(
    tmp_path: Path, parties: Clocked
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, _ = parties.sides()
        await w.propose_record("draft", [LanguageVersion("en", "x", True)])
        (record,) = w.dialogue().records()
        draft = w.draft_record(record.record_id.hex())
    with pytest.raises(MissingCosignature):
        verify_record_file(draft)
    with pytest.raises(RecordFileError):
        verify_record_file(b"not a record file")


async def test_meeting_proposed_from_the_venue_planner_and_agreed(
    tmp_path: Path, parties: Clocked
) -> None:
    import datetime as dt

    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        sent, best = await w.propose_meeting(4, ["Washington", "Beijing"], dt.date(2023, 5, 1))
        assert best.venue.name == "Vienna"
        await parties.exchange()
        await b.decide_agenda_item(sent.message_id, accept=True)
        await parties.exchange()
        (item,) = w.dialogue().agenda(4).agreed
        assert "Vienna" in item.title and item.detail
        with pytest.raises(ClientError):
            await w.propose_meeting(5, ["Xqzzyville", "Beijing"], dt.date(2023, 5, 1))


async def test_signing_a_version_that_is_no_longer_the_latest_is_refused(
    tmp_path: Path, parties: Clocked
) -> None:
    async with running_relay(tmp_path / "relay.db") as relay:
        await pair(parties.w, parties.b, [relay.url])
        w, b = parties.sides()
        await w.propose_record("draft", [LanguageVersion("en", "first wording", True)])
        await parties.exchange()
        (record,) = b.dialogue().records()
        ref = record.record_id.hex()
        await w.propose_record("draft", [LanguageVersion("en", "changed", True)], ref=ref)
        await parties.exchange()
        with pytest.raises(ClientError, match="changed after version 1"):
            await b.sign_record(ref, version=1)
        await b.sign_record(ref, version=2)

"""Agreed records in the fold: proposals signed by the proposer, co-signed by the other side."""

from __future__ import annotations

import dataclasses

import pytest

from backchannel.dialogue import (
    Dialogue,
    DialogueKind,
    IllegalTransition,
    LanguageVersion,
    RecordPropose,
    RecordSign,
    RecordStatus,
    Side,
    Statement,
    statement_hash,
)
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.errors import LocalProtocolError
from backchannel.testing import SeededRng
from tests.dialogue.conftest import MINUTE, Channel, assert_refused

RECORD = b"\x5e" * 16
STATEMENT = Statement(
    "Joint readout, Vienna",
    (
        LanguageVersion("en", "Both sides held candid, substantive talks.", authoritative=True),
        LanguageVersion("zh-Hans", "双方进行了坦诚、实质性的会谈。"),
    ),
)
REVISED = Statement.single("Joint readout, Vienna", "Both sides held candid talks.")


def propose(
    channel: Channel, sender: str = "alice", statement: Statement = STATEMENT
) -> RecordPropose:
    body = channel.dialogues[sender].propose_record(
        channel.keys[sender], RECORD, statement, channel.now_ms
    )
    channel.send(sender, body)
    return body


def cosign(
    channel: Channel, signer: str = "bob", version: int = 1, deliver: bool = True
) -> RecordSign:
    dialogue = channel.dialogues[signer]
    view = dialogue.record(RECORD)
    assert view is not None
    digest = view.versions[version - 1].statement_hash
    body = dialogue.cosign_record(channel.keys[signer], RECORD, version, digest, channel.now_ms)
    channel.send(signer, body, deliver=deliver)
    return body


def test_a_proposal_co_signed_is_agreed_on_both_sides(channel: Channel) -> None:
    proposal = propose(channel)
    for dialogue in (channel.alice, channel.bob):
        view = dialogue.record(RECORD)
        assert view is not None and view.latest.status is RecordStatus.PROPOSED
        assert view.latest.statement == STATEMENT
        assert view.latest.statement_hash == statement_hash(STATEMENT)
    assert channel.alice.record(RECORD).owner is Side.OURS  # type: ignore[union-attr]
    channel.advance(MINUTE)
    cosign(channel)
    for dialogue in (channel.alice, channel.bob):
        view = dialogue.record(RECORD)
        assert view is not None and view.latest.status is RecordStatus.AGREED
        record = dialogue.agreed_record(RECORD)
        assert record.version == 1 and record.statement == STATEMENT
        assert record.proposal.signer == channel.keys["alice"].public
        assert record.proposal.signed_at_ms == proposal.signed_at_ms
        assert record.cosignature.signer == channel.keys["bob"].public
        assert record.cosignature.signed_at_ms == channel.now_ms


def test_a_revision_supersedes_the_proposal(channel: Channel) -> None:
    propose(channel)
    assert channel.alice.next_record_version(RECORD) == 2
    propose(channel, statement=REVISED)
    view = channel.bob.record(RECORD)
    assert view is not None
    assert [v.status for v in view.versions] == [RecordStatus.SUPERSEDED, RecordStatus.PROPOSED]
    cosign(channel, version=2)
    assert channel.alice.agreed_record(RECORD).statement == REVISED
    with pytest.raises(LocalProtocolError, match="no agreed version 1"):
        channel.alice.agreed_record(RECORD, 1)


def test_a_co_signature_racing_a_revision_agrees_the_version_it_signed(channel: Channel) -> None:
    propose(channel)
    cosign(channel, deliver=False)  # Bob signs v1 while Alice is revising
    propose(channel, statement=REVISED)
    assert channel.deliver("alice") == []
    for dialogue in (channel.alice, channel.bob):
        view = dialogue.record(RECORD)
        assert view is not None
        assert [v.status for v in view.versions] == [RecordStatus.AGREED, RecordStatus.PROPOSED]
        assert dialogue.agreed_record(RECORD).version == 1


def test_an_agreed_record_can_be_amended_and_agreed_again(channel: Channel) -> None:
    propose(channel)
    cosign(channel)
    propose(channel, statement=REVISED)
    cosign(channel, version=2)
    assert channel.bob.agreed_record(RECORD).version == 2
    assert channel.bob.agreed_record(RECORD, 1).statement == STATEMENT
    view = channel.bob.record(RECORD)
    assert view is not None and [v.version for v in view.agreed] == [1, 2]


# -- illegal transitions: this side's intents ------------------------------------------------


def test_signing_a_record_changed_after_it_was_proposed_is_refused(channel: Channel) -> None:
    propose(channel)
    old_hash = statement_hash(STATEMENT)
    propose(channel, statement=REVISED)
    with pytest.raises(IllegalTransition, match="changed after it was proposed"):
        channel.bob.check_record_sign(RECORD, 1)
    with pytest.raises(IllegalTransition, match="changed after it was proposed"):
        channel.bob.cosign_record(channel.keys["bob"], RECORD, 1, old_hash, channel.now_ms)
    with pytest.raises(IllegalTransition, match="statement hash differs"):
        channel.bob.check_record_sign(RECORD, 2, old_hash)
    channel.bob.check_record_sign(RECORD, 2, statement_hash(REVISED))


def test_signing_twice_or_ones_own_proposal_is_refused(channel: Channel) -> None:
    propose(channel)
    with pytest.raises(IllegalTransition, match="its proposer signed it"):
        channel.alice.check_record_sign(RECORD, 1)
    cosign(channel)
    with pytest.raises(IllegalTransition, match="already co-signed"):
        channel.bob.check_record_sign(RECORD, 1)


def test_signing_an_unknown_record_or_version_is_refused(channel: Channel) -> None:
    with pytest.raises(IllegalTransition, match="unknown record"):
        channel.bob.check_record_sign(RECORD, 1)
    propose(channel)
    with pytest.raises(IllegalTransition, match="latest version is 1"):
        channel.bob.check_record_sign(RECORD, 2)


def test_revising_the_other_side_s_record_or_skipping_a_version_is_refused(
    channel: Channel,
) -> None:
    propose(channel)
    with pytest.raises(IllegalTransition, match="belongs to the other side"):
        channel.bob.propose_record(channel.keys["bob"], RECORD, REVISED, channel.now_ms)
    with pytest.raises(IllegalTransition, match="next version is 2"):
        channel.alice.check_record_propose(RECORD, 3)


def test_signing_with_someone_else_s_identity_is_refused(channel: Channel) -> None:
    stranger = IdentityKeyPair.generate(SeededRng("stranger"))
    with pytest.raises(LocalProtocolError, match="not the one"):
        channel.alice.propose_record(stranger, RECORD, STATEMENT, channel.now_ms)
    propose(channel)
    with pytest.raises(LocalProtocolError, match="not the one"):
        channel.bob.cosign_record(
            channel.keys["alice"], RECORD, 1, statement_hash(STATEMENT), channel.now_ms
        )


def test_check_verifies_a_hand_built_record_body(channel: Channel) -> None:
    good = channel.alice.propose_record(channel.keys["alice"], RECORD, STATEMENT, channel.now_ms)
    channel.alice.check(good, channel.now_ms)
    forged = dataclasses.replace(good, signature=bytes(64))
    with pytest.raises(IllegalTransition, match="does not verify"):
        channel.alice.check(forged, channel.now_ms)
    channel.send("alice", good)
    sign = channel.bob.cosign_record(
        channel.keys["bob"], RECORD, 1, statement_hash(STATEMENT), channel.now_ms
    )
    channel.bob.check(sign, channel.now_ms)
    with pytest.raises(IllegalTransition, match="does not verify"):
        channel.bob.check(dataclasses.replace(sign, signed_at_ms=sign.signed_at_ms + 1), 0)


# -- illegal transitions: the other side's messages -----------------------------------------


def _their_proposal(channel: Channel, statement: Statement = STATEMENT) -> RecordPropose:
    """Bob's proposal, built on Bob's side but not sent."""
    return channel.bob.propose_record(channel.keys["bob"], RECORD, statement, channel.now_ms)


def test_their_proposal_with_a_bad_signature_is_an_anomaly(channel: Channel) -> None:
    good = _their_proposal(channel)
    kind = DialogueKind.RECORD_PROPOSE
    for bad in (
        dataclasses.replace(good, signature=bytes(64)),
        dataclasses.replace(good, statement=REVISED),  # the statement changed after signing
        dataclasses.replace(good, signed_at_ms=good.signed_at_ms + 1),
        dataclasses.replace(
            good,
            signature=channel.keys["alice"].sign(b"anything"),
        ),
    ):
        assert_refused(channel, "alice", kind, bad.encode(), "signature does not verify")


def test_their_proposal_signed_by_a_third_key_is_an_anomaly(channel: Channel) -> None:
    stranger = IdentityKeyPair.generate(SeededRng("stranger"))
    forged = Dialogue(stranger.public, channel.keys["alice"].public).propose_record(
        stranger, RECORD, STATEMENT, channel.now_ms
    )
    kind = DialogueKind.RECORD_PROPOSE
    assert_refused(channel, "alice", kind, forged.encode(), "signature does not verify")


def test_their_out_of_sequence_proposal_is_an_anomaly(channel: Channel) -> None:
    good = _their_proposal(channel)
    kind = DialogueKind.RECORD_PROPOSE
    body = dataclasses.replace(good, version=2).encode()
    assert_refused(channel, "alice", kind, body, "next version is 1")
    propose(channel)  # Alice owns RECORD now
    assert_refused(channel, "alice", kind, good.encode(), "belongs to the other side")


def test_their_bad_co_signatures_are_anomalies(channel: Channel) -> None:
    propose(channel)
    good = channel.bob.cosign_record(
        channel.keys["bob"], RECORD, 1, statement_hash(STATEMENT), channel.now_ms
    )
    kind = DialogueKind.RECORD_SIGN
    body = dataclasses.replace(good, signature=bytes(64)).encode()
    assert_refused(channel, "alice", kind, body, "does not verify")
    body = dataclasses.replace(good, statement_hash=bytes(32)).encode()
    assert_refused(channel, "alice", kind, body, "statement hash differs")
    body = dataclasses.replace(good, version=2).encode()
    assert_refused(channel, "alice", kind, body, "latest version is 1")
    body = dataclasses.replace(good, record_id=bytes(16)).encode()
    assert_refused(channel, "alice", kind, body, "unknown record")
    channel.send("bob", good)
    assert_refused(channel, "alice", kind, good.encode(), "already co-signed")


def test_their_co_signature_of_their_own_proposal_is_an_anomaly(channel: Channel) -> None:
    proposal = _their_proposal(channel)
    channel.send("bob", proposal)
    body = RecordSign(RECORD, 1, statement_hash(STATEMENT), channel.now_ms, bytes(64)).encode()
    assert_refused(channel, "alice", DialogueKind.RECORD_SIGN, body, "its proposer signed it")

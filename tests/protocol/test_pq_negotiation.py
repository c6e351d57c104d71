"""Turning the PQ ratchet on in a classical channel, and never off (docs/protocol.md §13.8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.pqratchet import PqRatchet
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.session import (
    PAYLOAD_PQ_RATCHET,
    PAYLOAD_RATCHET,
    DowngradeRefused,
    Session,
)
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.protocol.wire import Writer
from backchannel.testing import SeededRng
from tests.protocol.conftest import make_pair

STATE_V1 = Path(__file__).resolve().parent.parent / "vectors" / "state_v1.json"


def _classical_pair(seed: str) -> tuple[Session, Session, SeededRng]:
    made = make_pair(seed)
    return made.alice, made.bob, made.rng


def _reload(session: Session) -> Session:
    again = Session.decode(session.encode())
    assert again.encode() == session.encode()
    return again


def _upgrade(announcer: Session, other: Session, rng: SeededRng) -> tuple[Session, Session]:
    """The announcer offers; the other hears the announcement and starts; then both run."""
    announcer.offer_post_quantum()
    announcer = _reload(announcer)
    assert announcer.post_quantum is None and announcer.post_quantum_offered
    # (the announcement itself is a message of the client's; the other side starts on it)
    other.open(announcer.seal(1, b"capabilities", 3, rng).payload, rng)
    other.start_post_quantum(rng)
    other = _reload(other)
    assert other.post_quantum is not None and not other.post_quantum_locked
    first_pq = other.seal(1, b"first with PQ", 4, rng).payload
    assert first_pq[0] == PAYLOAD_PQ_RATCHET
    assert announcer.open(first_pq, rng).body == b"first with PQ"
    assert announcer.post_quantum_locked
    reply = announcer.seal(1, b"and back", 5, rng).payload
    assert reply[0] == PAYLOAD_PQ_RATCHET
    assert other.open(reply, rng).body == b"and back"
    assert other.post_quantum_locked
    return _reload(announcer), _reload(other)


@pytest.mark.parametrize("announcer_is_initiator", [True, False])
def test_a_classical_session_upgrades_in_place_and_completes_epochs(
    announcer_is_initiator: bool,
) -> None:
    alice, bob, rng = _classical_pair(f"upgrade {announcer_is_initiator}")
    if announcer_is_initiator:
        alice, bob = _upgrade(alice, bob, rng)
    else:
        bob, alice = _upgrade(bob, alice, rng)
    for i in range(10):
        alice.open(bob.seal(1, b"n" * 200, i, rng).payload, rng)
        bob.open(alice.seal(1, b"n" * 200, i, rng).payload, rng)
    alice_pq, bob_pq = alice.post_quantum, bob.post_quantum
    assert alice_pq is not None and bob_pq is not None
    assert min(alice_pq.latest, bob_pq.latest) >= 2
    assert alice_pq.key_for(2) == bob_pq.key_for(2)


def test_a_0_1_channel_is_upgraded_in_place() -> None:
    fixture = json.loads(STATE_V1.read_text())
    rng = SeededRng("0.1 upgrade")
    alice = Session.decode(bytes.fromhex(fixture["alice_state"]))
    bob = Session.decode(bytes.fromhex(fixture["bob_state"]))
    assert alice.post_quantum is None and not alice.post_quantum_offered
    # The messages in flight from 0.1 still open, then the channel upgrades.
    bob.open(bytes.fromhex(fixture["to_bob"]["payload"]), rng)
    alice.open(bytes.fromhex(fixture["to_alice"]["payload"]), rng)
    bob, alice = _upgrade(bob, alice, rng)
    for i in range(8):
        alice.open(bob.seal(1, b"n" * 200, i, rng).payload, rng)
        bob.open(alice.seal(1, b"n" * 200, i, rng).payload, rng)
    alice_pq = alice.post_quantum
    assert alice_pq is not None and alice_pq.latest >= 2


def test_classical_messages_in_flight_during_the_upgrade_still_open() -> None:
    alice, bob, rng = _classical_pair("in flight")
    bob.offer_post_quantum()
    alice.open(bob.seal(1, b"announce", 3, rng).payload, rng)
    late = bob.seal(1, b"sent before bob saw any PQ payload", 4, rng).payload
    assert late[0] == PAYLOAD_RATCHET
    alice.start_post_quantum(rng)
    # Alice runs the ratchet but has seen no PQ payload of Bob's: his classical one opens.
    assert alice.open(late, rng).body == b"sent before bob saw any PQ payload"
    assert not alice.post_quantum_locked


def test_after_both_run_it_a_genuine_classical_payload_is_a_refused_downgrade() -> None:
    alice, bob, rng = _classical_pair("downgrade")
    alice.offer_post_quantum()
    bob.open(alice.seal(1, b"capabilities", 3, rng).payload, rng)
    bob_before = bob.encode()  # Bob on his new chain, still classical
    bob.start_post_quantum(rng)
    first_pq = bob.seal(1, b"first with PQ", 4, rng).payload
    assert alice.open(first_pq, rng).body == b"first with PQ"
    assert alice.post_quantum_locked
    # A classical copy of Bob seals at the same seqs: the first sits where the PQ payload
    # sat (a repeat); the second is authentic classically, at a seq Bob sealed with PQ.
    stale = Session.decode(bob_before)
    repeat = stale.seal(1, b"again", 8, rng).payload
    classical = stale.seal(1, b"strip it", 9, rng).payload
    assert classical[0] == PAYLOAD_RATCHET
    before = alice.encode()
    with pytest.raises((DecryptionFailed, RemoteProtocolError)):
        alice.open(repeat, rng)
    assert alice.encode() == before
    with pytest.raises(DowngradeRefused):
        alice.open(classical, rng)
    assert alice.encode() == before
    # A PQ payload with its type byte rewritten to the classical one does not authenticate.
    genuine = bob.seal(1, b"x", 10, rng).payload
    with pytest.raises(DecryptionFailed):
        alice.open(bytes([PAYLOAD_RATCHET]) + genuine[1:], rng)
    assert alice.encode() == before
    assert alice.open(genuine, rng).body == b"x"


def test_a_session_locked_from_its_start_decrypts_no_classical_payload() -> None:
    made = make_pair("strict", pq=True)
    alice, bob, rng = _reload(made.alice), made.bob, made.rng
    assert alice.post_quantum_locked and bob.post_quantum_locked
    # No PQ seq of the peer's marks a switch: a payload typed classical is refused before
    # any decryption, state unchanged.
    typed_classical = bytes([PAYLOAD_RATCHET]) + bob.seal(1, b"y", 1, rng).payload[1:]
    before = alice.encode()
    with pytest.raises(DowngradeRefused):
        alice.open(typed_classical, rng)
    assert alice.encode() == before


def test_a_classical_payload_overtaken_by_the_first_pq_one_still_opens() -> None:
    alice, bob, rng = _classical_pair("overtaken")
    alice.offer_post_quantum()
    bob.open(alice.seal(1, b"capabilities", 3, rng).payload, rng)
    late = bob.seal(1, b"sealed before bob switched", 4, rng).payload
    bob.start_post_quantum(rng)
    first_pq = bob.seal(1, b"first with PQ", 5, rng).payload
    assert late[0] == PAYLOAD_RATCHET and first_pq[0] == PAYLOAD_PQ_RATCHET
    assert alice.open(first_pq, rng).body == b"first with PQ"
    assert alice.post_quantum_locked
    # Its seq is below the first PQ message's: sealed before the switch, so it opens, also
    # from a state stored and loaded in between (the seq of the switch is kept).
    alice = _reload(alice)
    assert alice.open(late, rng).body == b"sealed before bob switched"
    assert alice.post_quantum_locked


def test_a_pq_payload_in_a_session_that_never_offered_it_is_refused() -> None:
    alice, bob, rng = _classical_pair("not offered")
    bob.start_post_quantum(rng)
    payload = bob.seal(1, b"pq", 3, rng).payload
    before = alice.encode()
    with pytest.raises(RemoteProtocolError, match="without it"):
        alice.open(payload, rng)
    assert alice.encode() == before
    alice.offer_post_quantum()
    assert alice.open(payload, rng).body == b"pq"


def test_a_forged_first_pq_payload_starts_nothing() -> None:
    alice, bob, rng = _classical_pair("forged start")
    alice.offer_post_quantum()
    bob.start_post_quantum(rng)
    payload = bytearray(bob.seal(1, b"pq", 3, rng).payload)
    payload[100] ^= 1
    before = alice.encode()
    with pytest.raises(DecryptionFailed):
        alice.open(bytes(payload), rng)
    assert alice.encode() == before and alice.post_quantum is None


def test_state_pq_byte_values_and_bad_ones() -> None:
    alice, _bob, _rng = _classical_pair("flags")
    encoded = alice.encode()
    assert encoded[0] == 2 and encoded[-1] == 0  # version 2, classical (as main wrote it)
    alice.offer_post_quantum()
    assert alice.encode()[-1] == 2
    for bad in (5, 0xFF):
        with pytest.raises(RemoteProtocolError, match="PQ flag"):
            Session.decode(encoded[:-1] + bytes([bad]))
    with pytest.raises(RemoteProtocolError):  # 4 (locked, with the switch's seq): truncated
        Session.decode(encoded[:-1] + bytes([4]))


def _pq_state_v1(pq: PqRatchet, cursor: int) -> bytes:
    """The PQ ratchet state as its version 1 wrote it: one cursor over all objects."""
    w = Writer().u8(1).u8(1 if pq.is_initiator else 0).u32(len(pq.keys))
    for epoch, key in pq.keys.items():
        w.u32(epoch).fixed(key, 32)
    w.u32(pq.send_epoch).u32(pq.own_epoch).bytes16(pq.own_seed).u8(len(pq.outgoing))
    for item in pq.outgoing:
        w.u8(item.kind).u32(item.epoch).bytes16(item.data)
    w.u32(cursor).u8(len(pq.partials))
    for (kind, epoch), partial in pq.partials.items():
        w.u8(kind).u32(epoch).bytes16(partial.data).fixed(partial.mask.to_bytes(10, "big"), 10)
    return w.getvalue()


def test_a_version_1_pq_ratchet_state_loads_with_its_cursor_placed() -> None:
    rng = SeededRng("pq state v1")
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob_id, 1).encode())
    alice = Session.initiate(alice_id, bundle, rng, pq=True)
    bob, _, _ = Session.respond(bob_id, prekeys, alice.seal(1, b"hi", 0, rng).payload, rng)
    pq = bob.post_quantum
    assert pq is not None and [item.kind for item in pq.outgoing] == [2, 1]  # CT_1, EK_2
    old = PqRatchet.decode(_pq_state_v1(pq, 68 + 10))  # ten units into EK_2
    assert [item.position for item in old.outgoing] == [0, 10]
    assert [item.data for item in old.outgoing] == [item.data for item in pq.outgoing]
    assert old.keys == pq.keys and old.partials == pq.partials
    assert PqRatchet.decode(old.encode()).encode() == old.encode()

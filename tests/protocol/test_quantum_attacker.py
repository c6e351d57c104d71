"""Post-compromise security against a quantum attacker (docs/protocol.md §13.6).

The attacker copies one side's whole session state once, records every payload on the
wire, and is then handed every X25519 private key either side ever uses (X25519 is
"broken"). It is built from those three things only: `Session.decode` of the copy, the
payloads, and the X25519 secrets. What it does not get: the ML-KEM seeds drawn after the
copy and the randomness of encapsulations made after it.

The test is honest both ways: messages sealed under a PQ epoch the attacker can still derive
open for it (so the classical layer really is broken), and from the first epoch whose KEM
secret was drawn after the copy no message opens, while a control shows that the epoch key
is the only thing the attacker lacks.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import pytest

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.pqratchet import PqRatchet
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import KEY_SIZE, body_decrypt, header_decrypt, hmac_sha256
from backchannel.protocol.e2e.ratchet import PQ_SEALED_HEADER_SIZE, BodyVersion, _kdf_ck
from backchannel.protocol.e2e.session import PAYLOAD_PQ_RATCHET, Session
from backchannel.protocol.errors import DecryptionFailed
from backchannel.testing import SeededRng


class _Recording:
    """A victim's random source for `open`: remembers its 32-byte draws (the X25519
    ratchet keys: the only 32-byte draw on the receiving path) apart from the rest."""

    def __init__(self, seed: str) -> None:
        self._rng = SeededRng(seed)
        self.x25519: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = self._rng(n)
        if n == KEY_SIZE:
            self.x25519.append(out)
        return out


class QuantumAttacker:
    """Reads the messages to the side whose state it copied (`read`) and from it
    (`read_outgoing`).

    Its random source gives the victim's X25519 ratchet keys, in the order the victim drew
    them, and fresh OS randomness for anything else (its own ML-KEM seeds, which are not
    the victim's: the attacker cannot know those).
    """

    def __init__(self, copied_state: bytes, x25519_secrets: Callable[[], list[bytes]]) -> None:
        self.session = Session.decode(copied_state)
        self._secrets = x25519_secrets
        self._used = 0

    def _rng(self, n: int) -> bytes:
        if n != KEY_SIZE:
            return os.urandom(n)
        secret = self._secrets()[self._used]
        self._used += 1
        return secret

    @property
    def pq(self) -> PqRatchet:
        state = self.session.post_quantum
        assert state is not None
        return state

    def read(self, payload: bytes) -> bytes | None:
        """The body of `payload` if the attacker can open it, else None."""
        used = self._used
        try:
            return self.session.open(payload, self._rng).body
        except DecryptionFailed:
            self._used = used  # nothing was committed, so no key was consumed
            return None

    def read_outgoing(
        self, payload: bytes, epoch_key: Callable[[int], bytes | None] | None = None
    ) -> bytes | None:
        """The plaintext of a message *from* the copied side, if the attacker can open it.

        The copied side's sending chain is in the attacker's ratchet (it steps as the
        victim's does, on the same X25519 keys): header key HKs, chain key CKs at the
        chain's start. With `epoch_key` it is the control again (the victim's epoch key).
        """
        assert payload[0] == PAYLOAD_PQ_RATCHET
        ratchet, ad = self.session._ratchet, self.session.associated_data
        sealed, body = payload[1 : 1 + PQ_SEALED_HEADER_SIZE], payload[1 + PQ_SEALED_HEADER_SIZE :]
        header = header_decrypt(ratchet.hks, sealed, ad)
        assert header is not None, "the classical layer is broken: every header opens"
        _dh, _pn, n, epoch = struct.unpack(">32sIII", header)
        chain = ratchet.cks
        for _ in range(n + 1):
            chain, message_key = _kdf_ck(chain)
        key = (epoch_key or self.pq.key_for)(epoch)
        if key is None:
            return None
        body_key = hmac_sha256(key, labels.PQ_MESSAGE_KEY_INPUT + message_key)
        try:
            return body_decrypt(body_key, body, ad + sealed)
        except DecryptionFailed:
            return None

    def classical_control(self, payload: bytes, epoch_key: Callable[[int], bytes | None]) -> bytes:
        """Open `payload` with the attacker's classical ratchet and a PQ key it lacks.

        This is the control, not the attack: it proves the attacker's header keys, chain
        keys and X25519 state are all right, so the PQ epoch key alone keeps it out. The
        ratchet advances as the victim's does (the attacker could do this with the X25519
        secrets alone; the body is the only thing it needs the epoch key for), and nothing
        of the plaintext reaches the attacker's PQ state.
        """
        assert payload[0] == PAYLOAD_PQ_RATCHET
        ratchet = self.session._ratchet
        pending = ratchet.prepare_decrypt(
            payload[1:],
            self.session.associated_data,
            self._rng,
            BodyVersion.GCM_SIV_RANDOM_NONCE,
            pq_keys=epoch_key,
        )
        pending.commit()
        return pending.plaintext


def _conversation(seed: str) -> tuple[Session, Session, SeededRng, _Recording, _Recording]:
    rng = SeededRng(seed)
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    bundle = PrekeyBundle.decode(prekeys.bundle(bob_id, 1).encode())
    alice = Session.initiate(alice_id, bundle, rng, pq=True)
    bob, _, _ = Session.respond(bob_id, prekeys, alice.seal(1, b"hi", 1, rng).payload, rng)
    return alice, bob, rng, _Recording(seed + " alice"), _Recording(seed + " bob")


@pytest.mark.parametrize("victim_name", ["alice", "bob"])
@pytest.mark.parametrize("copy_at", [1, 2, 3])
def test_state_copy_plus_broken_x25519_reads_until_the_next_pq_epoch_only(
    victim_name: str, copy_at: int
) -> None:
    alice, bob, rng, alice_open_rng, bob_open_rng = _conversation(f"quantum {copy_at}")
    victim, peer = (alice, bob) if victim_name == "alice" else (bob, alice)
    victim_rng = alice_open_rng if victim_name == "alice" else bob_open_rng
    peer_rng = bob_open_rng if victim_name == "alice" else alice_open_rng
    attacker: QuantumAttacker | None = None
    latest_at_copy = 0
    readable: list[int] = []  # epochs of the messages the attacker opened
    sealed_out: list[int] = []  # epochs of those it could not
    first_locked_out: int | None = None
    outgoing_read: list[int] = []  # the copied side's messages the attacker opened
    outgoing_sealed: list[int] = []
    for turn in range(14):
        note = f"turn {turn} ".encode() * 20  # about 200 bytes: a 1 KiB envelope
        if turn == copy_at:
            # The compromise: one copy of the whole state, nothing more.
            state = victim.post_quantum
            assert state is not None
            latest_at_copy = state.latest
            recorded_from = len(victim_rng.x25519)
            attacker = QuantumAttacker(
                victim.encode(), lambda start=recorded_from: victim_rng.x25519[start:]
            )
        to_victim = peer.seal(1, note, turn, rng).payload
        victim.open(to_victim, victim_rng)
        if attacker is not None:
            victim_pq = victim.post_quantum
            assert victim_pq is not None
            body = attacker.read(to_victim)
            if body is not None:
                assert body == note
                readable.append(turn)
            else:
                first_locked_out = turn if first_locked_out is None else first_locked_out
                # The control: with the victim's epoch key the attacker's classical state
                # opens it, so that key is all it lacks.
                plain = attacker.classical_control(to_victim, victim_pq.key_for)
                assert note in plain
                sealed_out.append(turn)
        from_victim = victim.seal(1, note, turn, rng).payload
        peer.open(from_victim, peer_rng)
        if attacker is not None:
            victim_pq = victim.post_quantum
            assert victim_pq is not None
            plain = attacker.read_outgoing(from_victim)
            if plain is not None:
                assert note in plain
                outgoing_read.append(turn)
            else:
                # The control: the victim's epoch key opens it with the attacker's chain.
                control = attacker.read_outgoing(from_victim, victim_pq.key_for)
                assert control is not None and note in control
                outgoing_sealed.append(turn)
    assert attacker is not None and first_locked_out is not None
    # The copied side's own messages: read at first, then never again.
    assert outgoing_read and outgoing_read[0] == copy_at and outgoing_sealed
    assert outgoing_sealed == list(range(outgoing_sealed[0], 14))
    assert outgoing_read == list(range(copy_at, outgoing_sealed[0]))
    # Honest: the attacker did read new messages after the copy ...
    assert readable and readable[0] == copy_at
    # ... and once locked out it stays out: healing is not undone by later messages.
    assert all(turn < first_locked_out for turn in readable)
    assert sealed_out == list(range(first_locked_out, 14))
    # Healing comes within the epochs the copy had not yet started: the first epoch whose
    # KEM secret nobody in the copy held (at most two past the newest key at the copy).
    victim_pq, peer_pq = victim.post_quantum, peer.post_quantum
    assert victim_pq is not None and peer_pq is not None
    healed = next(
        e
        for e in range(latest_at_copy + 1, victim_pq.latest + 1)
        if attacker.pq.key_for(e) != victim_pq.key_for(e)
    )
    assert healed <= latest_at_copy + 2
    # Every epoch from the healed one on is beyond the attacker (it holds no key or a
    # wrong one), and both honest sides agree on them and went on to later epochs.
    for e in range(healed, victim_pq.latest + 1):
        assert attacker.pq.key_for(e) != victim_pq.key_for(e)
        if peer_pq.key_for(e) is not None:
            assert peer_pq.key_for(e) == victim_pq.key_for(e)
    assert victim_pq.latest >= healed + 1
    # Before the heal the attacker's keys are the victim's (it could read, for real).
    for e in range(0, healed):
        if victim_pq.key_for(e) is not None:
            assert attacker.pq.key_for(e) == victim_pq.key_for(e)

"""The PQ ratchet negotiated at pairing, and a classical channel upgraded in place, between
two real principals over a real relay (docs/protocol.md §13.8)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.errors import InviteRefused
from backchannel.client.invite import (
    CAPABILITY_PQ_RATCHET,
    INVITE_PREFIX,
    Hello,
    Invite,
    RelayAddress,
)
from backchannel.protocol.e2e.session import Session

from .conftest import MakePrincipal, running_relay


def _session(principal: Principal, name: str) -> Session:
    state = principal._state
    return state.session(state.channel(name))


def _raw(code: str) -> bytes:
    body = code[len(INVITE_PREFIX) :]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _code(raw: bytes) -> str:
    return INVITE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def _talk(a: Principal, b: Principal, a_name: str, b_name: str, rounds: int) -> None:
    for i in range(rounds):
        await a.send(b_name, f"from {a.name} {i} " * 10)
        await b.sync()
        await b.send(a_name, f"from {b.name} {i} " * 10)
        await a.sync()


async def test_a_new_channel_runs_the_pq_ratchet_on_both_sides(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        code = await w.invite([relay.url])
        invite = Invite.from_code(code, now_ms=0)
        assert invite.post_quantum and _raw(code)[3] == 2  # a version 2 invite
        await b.accept(code)
        await w.sync()
        await b.sync()
        await _talk(w, b, "w", "b", 4)
        for session in (_session(w, "b"), _session(b, "w")):
            assert session.post_quantum_locked
            pq = session.post_quantum
            assert pq is not None and pq.latest >= 1
        assert [e.text for e in b.inbox("w")][-1].startswith("from w 3")


async def test_a_channel_paired_by_a_version_1_invite_is_upgraded_in_place(
    tmp_path: Path, make_principal: MakePrincipal
) -> None:
    w, b = make_principal("w"), make_principal("b")
    async with running_relay(tmp_path / "relay.db") as relay:
        # What an inviter without the PQ ratchet (0.1) hands out: the same invite as
        # version 1, signed by the inviter.
        invite = Invite.from_code(await w.invite([relay.url]), now_ms=0)
        old = Invite(
            invite.invite_id, invite.expires_at_ms, invite.name, invite.relays, invite.bundle
        ).signed(w.identity_keypair)
        old_code = old.to_code()
        assert _raw(old_code)[3] == 1
        await b.accept(old_code)
        assert _session(b, "w").post_quantum is None  # paired classically
        await w.sync()  # takes the hello up, announces the capability
        assert _session(w, "b").post_quantum is None
        assert _session(w, "b").post_quantum_offered
        await b.sync()  # hears it: b runs the PQ ratchet from now on
        assert _session(b, "w").post_quantum is not None
        await _talk(w, b, "w", "b", 4)
        for session in (_session(w, "b"), _session(b, "w")):
            assert session.post_quantum_locked
            pq = session.post_quantum
            assert pq is not None and pq.latest >= 1
        texts = [e.text for e in b.inbox("w")]
        assert [t.split()[2] for t in texts] == ["0", "1", "2", "3"]  # nothing lost


def test_a_version_1_invite_is_byte_for_byte_what_0_1_wrote(
    make_principal: MakePrincipal,
) -> None:
    w = make_principal("w")
    relays = (RelayAddress("wss://relay.example/", b"\x01" * 16, b"\x02" * 32),)
    from backchannel.protocol.e2e.prekeys import PrekeySecrets
    from backchannel.testing import SeededRng

    bundle = PrekeySecrets.generate(SeededRng("b"), one_time_count=1).bundle(w.identity_keypair, 1)
    v1 = Invite(b"\x07" * 16, 2**62, "w", relays, bundle).signed(w.identity_keypair)
    v2 = Invite(b"\x07" * 16, 2**62, "w", relays, bundle, b"", CAPABILITY_PQ_RATCHET)
    v2 = v2.signed(w.identity_keypair)
    raw1, raw2 = _raw(v1.to_code()), _raw(v2.to_code())
    # Version 2 is version 1 with one more byte under the signature, before it.
    assert raw1[3] == 1 and raw2[3] == 2
    assert raw2[4:-65] == raw1[4:-64] and raw2[-65] == CAPABILITY_PQ_RATCHET
    assert Invite.from_code(v2.to_code(), now_ms=0).post_quantum
    assert not Invite.from_code(v1.to_code(), now_ms=0).post_quantum
    # Stripping the capability (back to version 1, the byte removed) breaks the signature.
    stripped = raw2[:3] + b"\x01" + raw2[4:-65] + raw2[-64:]
    with pytest.raises(InviteRefused, match="signature"):
        Invite.from_code(_code(stripped), now_ms=0)
    flipped = raw2[:-65] + b"\x03" + raw2[-64:]
    with pytest.raises(InviteRefused, match="signature"):
        Invite.from_code(_code(flipped), now_ms=0)


def test_hello_capabilities_round_trip_and_the_0_1_hello_still_parses() -> None:
    relays = (RelayAddress("wss://relay.example/", b"\x01" * 16, b"\x02" * 32),)
    old = Hello("b", relays)
    assert Hello.decode(old.encode()) == old and not old.post_quantum
    new = Hello("b", relays, CAPABILITY_PQ_RATCHET)
    assert Hello.decode(new.encode()) == new and new.post_quantum
    assert new.encode() == old.encode() + bytes([CAPABILITY_PQ_RATCHET])


@pytest.mark.parametrize(
    ("session_pq", "capabilities", "accepted"),
    [(False, CAPABILITY_PQ_RATCHET, False), (True, 0, False), (True, CAPABILITY_PQ_RATCHET, True)],
    ids=["claims PQ over classical", "denies PQ over PQ", "consistent (control)"],
)
async def test_a_hello_contradicting_its_session_is_refused_and_nothing_is_stored(
    tmp_path: Path,
    make_principal: MakePrincipal,
    session_pq: bool,
    capabilities: int,
    accepted: bool,
) -> None:
    # A joiner that is not this client, answering a version 2 invite by hand.
    from backchannel.client.invite import KIND_HELLO
    from backchannel.client.transport import RelayClient
    from backchannel.protocol.e2e.keys import IdentityKeyPair
    from backchannel.protocol.envelope import Envelope
    from backchannel.testing import SeededRng

    w = make_principal("w")
    async with running_relay(tmp_path / "relay.db") as relay:
        invite = Invite.from_code(await w.invite([relay.url]), now_ms=0)
        rng = SeededRng(f"odd joiner {session_pq} {capabilities}")
        session = Session.initiate(IdentityKeyPair.generate(rng), invite.bundle, rng, session_pq)
        hello = Hello("odd", invite.relays, capabilities)
        payload = session.seal(KIND_HELLO, hello.encode(), 0, rng).payload
        (address,) = invite.relays
        envelope = Envelope(address.mailbox_id, payload).encode()
        async with await RelayClient.connect(relay.url) as client:
            await client.send(address.mailbox_id, address.send_token, envelope)
        report = await w.sync()
        if accepted:
            assert report.rejected == 0 and report.new_channels == ["odd"]
        else:
            assert report.rejected == 1 and report.new_channels == []
            assert w.channels() == []

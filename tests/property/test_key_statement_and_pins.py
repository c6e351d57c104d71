"""Relay key statements (protocol/keystatement.py) and invites with identity pins
(version 4, client/invite.py): they round-trip, are signed over what they carry, and
invites of versions 1 to 3 still decode."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.client.errors import InviteRefused
from backchannel.client.invite import CAPABILITY_PQ_RATCHET, Invite, RelayAddress
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair
from backchannel.protocol.keystatement import (
    MAX_STATEMENT_KEYS,
    PIN_SIZE,
    KeyStatement,
    RelayIdentity,
    StatementRefused,
)
from backchannel.testing import SeededRng

_RNG = SeededRng("invite pins")
_ID = IdentityKeyPair.generate(_RNG)
_BUNDLE = PrekeySecrets.generate(_RNG, one_time_count=1).bundle(_ID, 1)
_KEYS = [RelayKeyPair(bytes([i]) * KEY_SEED_SIZE).public for i in range(MAX_STATEMENT_KEYS)]
_RELAY = RelayIdentity(b"\x07" * 32)


def _relays(n: int) -> tuple[RelayAddress, ...]:
    return tuple(
        RelayAddress(f"ws://127.0.0.1:{8470 + i}/", bytes([i]) * 16, bytes([i]) * 32)
        for i in range(n)
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(1, MAX_STATEMENT_KEYS), st.integers(0, 2**64 - 1),
       st.lists(st.integers(1, 2**64 - 1), min_size=MAX_STATEMENT_KEYS,
                max_size=MAX_STATEMENT_KEYS))
def test_statements_round_trip(count: int, issued_at: int, untils: list[int]) -> None:
    keys = [(_KEYS[0], 0), *((k, u) for k, u in zip(_KEYS[1:count], untils, strict=False))]
    made = _RELAY.sign(keys, issued_at)
    back = KeyStatement.from_text(made.to_text(), _RELAY.public)
    assert back == made and back.keys == tuple(keys) and back.issued_at == issued_at


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_are_a_statement_or_refused(data: bytes) -> None:
    try:
        statement = KeyStatement.from_bytes(data)
    except StatementRefused:
        return
    assert statement.raw == data  # pragma: no cover - a forged signature would be news


pins = st.lists(st.one_of(st.none(), st.binary(min_size=PIN_SIZE, max_size=PIN_SIZE)),
                min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(pins, st.sampled_from([0, CAPABILITY_PQ_RATCHET]))
def test_pins_round_trip(relay_pins: list[bytes | None], capabilities: int) -> None:
    invite = Invite(b"\x03" * 16, 2**62, "w", _relays(len(relay_pins)), _BUNDLE,
                    capabilities=capabilities, relay_pins=tuple(relay_pins)).signed(_ID)
    back = Invite.from_code(invite.to_code(), 0)
    assert back.relays == invite.relays and back.relay_keys == ()
    assert back.relay_pins == (tuple(relay_pins) if any(relay_pins) else ())
    for relay, pin in zip(invite.relays, relay_pins, strict=True):
        assert back.pin_of(relay.url) == pin
    if any(relay_pins):
        assert Invite._body(invite)[3] == 4


def test_a_pin_swapped_in_transit_is_refused() -> None:
    invite = Invite(b"\x05" * 16, 2**62, "w", _relays(1), _BUNDLE,
                    relay_pins=(b"\x01" * 32,)).signed(_ID)
    forged = Invite(invite.invite_id, invite.expires_at_ms, invite.name, invite.relays,
                    invite.bundle, invite.signature, relay_pins=(b"\x02" * 32,))
    with pytest.raises(InviteRefused, match="signature"):
        Invite.from_code(forged.to_code(), 0)


def test_a_pin_mask_past_the_relays_or_empty_is_damage() -> None:
    invite = Invite(b"\x06" * 16, 2**62, "w", _relays(1), _BUNDLE,
                    relay_pins=(b"\x01" * 32,)).signed(_ID)
    raw = bytearray(Invite._body(invite))
    mask_at = len(raw) - PIN_SIZE - 1
    assert raw[mask_at] == 1
    for mask in (0, 2, 3):
        raw[mask_at] = mask
        code = "BC1-" + base64.urlsafe_b64encode(bytes(raw) + invite.signature).decode()
        with pytest.raises(InviteRefused, match="damaged"):
            Invite.from_code(code.rstrip("="), 0)


def test_an_invite_carries_keys_or_pins_never_both() -> None:
    with pytest.raises(LocalProtocolError):
        Invite(b"\x06" * 16, 2**62, "w", _relays(2), _BUNDLE,
               relay_keys=(_KEYS[0], None), relay_pins=(None, b"\x01" * 32))
    with pytest.raises(LocalProtocolError):
        Invite(b"\x06" * 16, 2**62, "w", _relays(1), _BUNDLE, relay_pins=(b"\x01" * 31,))


def test_a_pin_costs_about_1_590_characters_less_than_a_key() -> None:
    with_keys = Invite(b"\x07" * 16, 2**62, "w", _relays(2), _BUNDLE,
                       relay_keys=(_KEYS[0], _KEYS[1])).signed(_ID).to_code()
    with_pins = Invite(b"\x07" * 16, 2**62, "w", _relays(2), _BUNDLE,
                       relay_pins=(b"\x01" * 32, b"\x02" * 32)).signed(_ID).to_code()
    assert len(with_keys) - len(with_pins) > 2 * 1550
    assert len(with_pins) < 2953  # QR's largest binary symbol

"""Invites that carry the relays' forwarding keys (version 3, client/invite.py): they
round-trip, are signed over the keys, and invites of versions 1 and 2 still decode."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.client.errors import InviteRefused
from backchannel.client.invite import CAPABILITY_PQ_RATCHET, Invite, RelayAddress
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair, RelayPublicKey
from backchannel.testing import SeededRng

_RNG = SeededRng("invite keys")
_ID = IdentityKeyPair.generate(_RNG)
_BUNDLE = PrekeySecrets.generate(_RNG, one_time_count=1).bundle(_ID, 1)
_KEYS = [RelayKeyPair(bytes([i]) * KEY_SEED_SIZE).public for i in range(3)]


def _relays(n: int) -> tuple[RelayAddress, ...]:
    return tuple(
        RelayAddress(f"ws://127.0.0.1:{8470 + i}/", bytes([i]) * 16, bytes([i]) * 32)
        for i in range(n)
    )


key_slots = st.lists(st.sampled_from([None, *_KEYS]), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(key_slots, st.sampled_from([0, CAPABILITY_PQ_RATCHET]))
def test_keys_round_trip(keys: list[RelayPublicKey | None], capabilities: int) -> None:
    invite = Invite(b"\x03" * 16, 2**62, "w", _relays(len(keys)), _BUNDLE,
                    capabilities=capabilities, relay_keys=tuple(keys)).signed(_ID)
    back = Invite.from_code(invite.to_code(), 0)
    assert back.capabilities == capabilities
    assert back.relays == invite.relays
    expected = tuple(keys) if any(keys) else ()
    assert back.relay_keys == expected
    for relay, key in zip(invite.relays, keys, strict=True):
        assert back.key_of(relay.url) == key


def test_versions_before_keys_still_decode() -> None:
    for capabilities, version in ((0, 1), (CAPABILITY_PQ_RATCHET, 2)):
        invite = Invite(b"\x04" * 16, 2**62, "w", _relays(2), _BUNDLE,
                        capabilities=capabilities).signed(_ID)
        code = invite.to_code()
        assert Invite._body(invite)[3] == version
        back = Invite.from_code(code, 0)
        assert back.relay_keys == () and back.key_of(invite.relays[0].url) is None


def test_a_key_swapped_in_transit_is_refused() -> None:
    invite = Invite(b"\x05" * 16, 2**62, "w", _relays(1), _BUNDLE,
                    relay_keys=(_KEYS[0],)).signed(_ID)
    forged = Invite(invite.invite_id, invite.expires_at_ms, invite.name, invite.relays,
                    invite.bundle, invite.signature, relay_keys=(_KEYS[1],))
    with pytest.raises(InviteRefused, match="signature"):
        Invite.from_code(forged.to_code(), 0)


def test_a_mask_past_the_relays_or_empty_is_damage() -> None:
    invite = Invite(b"\x06" * 16, 2**62, "w", _relays(1), _BUNDLE,
                    relay_keys=(_KEYS[0],)).signed(_ID)
    raw = bytearray(Invite._body(invite))
    mask_at = len(raw) - len(_KEYS[0].to_bytes()) - 1
    assert raw[mask_at] == 1
    for mask in (0, 2, 3):
        raw[mask_at] = mask
        code = "BC1-" + base64.urlsafe_b64encode(bytes(raw) + invite.signature).decode()
        with pytest.raises(InviteRefused, match="damaged"):
            Invite.from_code(code.rstrip("="), 0)

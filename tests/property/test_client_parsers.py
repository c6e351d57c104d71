"""Hypothesis: the client's parsers round-trip and refuse garbage with their typed error."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backchannel.client.errors import InviteRefused
from backchannel.client.invite import INVITE_PREFIX, Hello, Invite, Move, RelayAddress
from backchannel.client.receipts import receipt_body, receipt_ids, sequence_gaps
from backchannel.dialogue import RecordFileError, verify_record_file
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.text import REFUSED_CATEGORIES, first_refused
from backchannel.testing import SeededRng

_RNG = SeededRng("client parser properties")
_ID = IdentityKeyPair.generate(_RNG)
_BUNDLE = PrekeySecrets.generate(_RNG, one_time_count=1).bundle(_ID, 1)

relay_addresses = st.builds(
    RelayAddress,
    st.sampled_from(["ws://127.0.0.1:8470/", "wss://relay.example/"]),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=32, max_size=32),
)
relay_lists = st.lists(relay_addresses, min_size=1, max_size=8).map(tuple)
# Names the text policy lets through (protocol/text.py): no control, format or separator.
names = st.text(st.characters(blacklist_categories=tuple(REFUSED_CATEGORIES)), min_size=1,
                max_size=20)
# Lone surrogates cannot be written as UTF-8, so they never reach a decoder.
refused_chars = st.characters(categories=tuple(REFUSED_CATEGORIES - {"Cs"}))


@given(names, relay_lists)
def test_hello_round_trips(name: str, relays: tuple[RelayAddress, ...]) -> None:
    hello = Hello(name, relays)
    assert Hello.decode(hello.encode()) == hello


@given(names, refused_chars, names, relay_lists)
def test_a_name_with_a_refused_character_is_refused(
    before: str, bad: str, after: str, relays: tuple[RelayAddress, ...]
) -> None:
    name = (before + bad + after)[:20]
    if first_refused(name) is None:  # cut off by the bound
        return
    with pytest.raises(RemoteProtocolError, match=r"contains U\+[0-9A-F]{4}"):
        Hello.decode(Hello(name, relays).encode())
    code = Invite(b"\x07" * 16, 2**62, name, relays, _BUNDLE).signed(_ID).to_code()
    with pytest.raises(InviteRefused, match=r"invite code refused: the name in the invite"):
        Invite.from_code(code, now_ms=0)


@given(relay_lists)
def test_move_round_trips(relays: tuple[RelayAddress, ...]) -> None:
    assert Move.decode(Move(relays).encode()) == Move(relays)


@given(st.lists(st.binary(min_size=16, max_size=16).map(bytes.hex), max_size=50))
def test_receipts_round_trip(ids: list[str]) -> None:
    assert receipt_ids(receipt_body(ids)) == ids


@given(st.binary(max_size=400))
def test_body_parsers_refuse_garbage_with_remote_protocol_error_only(data: bytes) -> None:
    for parse in (Hello.decode, Move.decode, receipt_ids):
        with contextlib.suppress(RemoteProtocolError):
            parse(data)


@settings(max_examples=60, deadline=None)
@given(names, relay_lists, st.integers(0, 2000), st.integers(0, 255))
def test_invite_code_round_trips_and_any_changed_character_is_refused(
    name: str, relays: tuple[RelayAddress, ...], position: int, replacement: int
) -> None:
    code = Invite(b"\x07" * 16, 2**62, name, relays, _BUNDLE).signed(_ID).to_code()
    parsed = Invite.from_code(code, now_ms=0)
    assert (parsed.name, parsed.relays, parsed.bundle) == (name, relays, _BUNDLE)
    where = len(INVITE_PREFIX) + position % (len(code) - len(INVITE_PREFIX))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    new = alphabet[replacement % len(alphabet)]
    if new == code[where]:
        return
    changed = code[:where] + new + code[where + 1 :]
    try:
        again = Invite.from_code(changed, now_ms=0)
    except InviteRefused:
        return
    # base64 can carry slack bits in its last character; anything accepted must be the
    # very same invite, never a different one.
    assert again == parsed


@given(st.text(max_size=300))
def test_invite_parser_refuses_any_text_with_invite_refused_only(text: str) -> None:
    with pytest.raises(InviteRefused):
        Invite.from_code(text, now_ms=0)


@given(st.binary(max_size=600))
def test_record_file_parser_refuses_garbage_with_record_file_error_only(data: bytes) -> None:
    with pytest.raises(RecordFileError):
        verify_record_file(data)


@given(st.lists(st.integers(1, 200), max_size=60))
def test_sequence_gaps_are_exactly_the_missing_numbers(seqs: list[int]) -> None:
    gaps = sequence_gaps(seqs)
    missing = {n for start, end in gaps for n in range(start, end + 1)}
    top = max(seqs, default=0)
    assert missing == set(range(1, top + 1)) - set(seqs)

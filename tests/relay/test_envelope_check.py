"""The relay's header check of an envelope agrees with the full decoder, on any bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.protocol.envelope import (
    BUCKETS,
    ENVELOPE_VERSION,
    Envelope,
    envelope_mailbox_id,
)
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay.mailbox import envelope_refusal

_NEAR_BUCKETS = st.sampled_from([n + d for n in BUCKETS for d in (-1, 0, 1)] + [0, 1, 17])


@st.composite
def envelope_like(draw: st.DrawFn) -> bytes:
    """Bytes that are often, but not always, a well-formed envelope."""
    size = draw(_NEAR_BUCKETS)
    if size == 0:
        return b""
    version = draw(st.sampled_from([ENVELOPE_VERSION, 0, 2, 255]))
    return bytes([version]) + draw(st.binary(min_size=size - 1, max_size=size - 1))


@given(envelope_like())
def test_header_check_agrees_with_decode(data: bytes) -> None:
    try:
        decoded = Envelope.decode(data)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            envelope_mailbox_id(data)
        return
    assert envelope_mailbox_id(data) == decoded.mailbox_id


@given(envelope_like(), st.binary(min_size=16, max_size=16))
def test_refusal_follows_the_header(data: bytes, mailbox_id: bytes) -> None:
    try:
        addressed = Envelope.decode(data).mailbox_id
    except RemoteProtocolError:
        assert envelope_refusal(mailbox_id, data) is ErrorCode.BAD_ENVELOPE
        return
    expected = None if addressed == mailbox_id else ErrorCode.BAD_ENVELOPE
    assert envelope_refusal(addressed, data) is None
    assert envelope_refusal(mailbox_id, data) is expected

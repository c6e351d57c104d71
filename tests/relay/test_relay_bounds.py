"""Out-of-range numbers cost a relay nothing (review 2026-12 §2b): an ACK or FETCH with a
seq of 2^63 or more is refused with MALFORMED and its request id, and the relay goes on
storing and answering for everyone, on each backend."""

from __future__ import annotations

import pytest

from backchannel.client.transport import RelayClient
from backchannel.protocol.relayframes import (
    MAX_SEQ,
    Error,
    ErrorCode,
    FrameKind,
    decode_response,
)
from tests.relay.conftest import RelayFactory, envelope, number
from tests.relay.test_relay_abuse import raw_exchange

pytestmark = pytest.mark.timeout(60)


def _frame(kind: FrameKind, rid: int, mailbox_id: bytes, token: bytes, tail: bytes) -> bytes:
    return bytes((1, kind)) + rid.to_bytes(4, "big") + mailbox_id + token + tail


async def test_seqs_beyond_the_stores_integer_are_refused(db_url: str,
                                                          relay: RelayFactory) -> None:
    async with relay(db_url) as server, await RelayClient.connect(server.url) as client:
        caps = await client.create_mailbox()
        mid, tok = caps.mailbox_id, caps.receive_token
        await client.send(mid, caps.send_token, envelope(mid, 1))
        frames: list[bytes | str] = []
        for rid, value in enumerate((MAX_SEQ + 1, 2**64 - 1), start=10):
            frames.append(_frame(FrameKind.ACK, rid, mid, tok,
                                 (1).to_bytes(2, "big") + value.to_bytes(8, "big")))
            frames.append(_frame(FrameKind.FETCH, rid + 10, mid, tok,
                                 value.to_bytes(8, "big") + (1).to_bytes(2, "big")))
        answers, closed = await raw_exchange(server.url, frames)
        refusals = [decode_response(a) for a in answers]
        assert closed is None
        assert sorted((e.request_id, e.code) for e in refusals if isinstance(e, Error)) == [
            (10, ErrorCode.MALFORMED), (11, ErrorCode.MALFORMED),
            (20, ErrorCode.MALFORMED), (21, ErrorCode.MALFORMED)]
        # The relay still stores and answers.
        await client.send(mid, caps.send_token, envelope(mid, 2))
        items, more = await client.fetch(mid, tok, after_seq=MAX_SEQ - 1)
        assert items == () and not more
        items, _ = await client.fetch(mid, tok)
        assert [number(d.envelope) for d in items] == [1, 2]
        assert await client.ack(mid, tok, (MAX_SEQ, items[0].seq)) == 1

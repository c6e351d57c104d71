"""Receipts (delivered, read) and sequence gaps: small pure helpers of the client."""

from __future__ import annotations

from typing import Final

from backchannel.client.forks import KIND_FORK_NOTICE
from backchannel.client.invite import KIND_CAPABILITIES, KIND_MOVE
from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.message import MESSAGE_ID_SIZE, MessageKind
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "MAX_RECEIPT_IDS",
    "NO_RECEIPT_KINDS",
    "RECEIPT_KINDS",
    "receipt_body",
    "receipt_ids",
    "sequence_gaps",
]

RECEIPT_KINDS: Final = (MessageKind.RECEIPT_DELIVERED, MessageKind.RECEIPT_READ)
# The kinds that owe no delivered receipt (`Receiver.store_incoming`): receipts, a move, a
# fork notice, the capabilities. Every other message of ours is retained until receipted.
NO_RECEIPT_KINDS: Final = frozenset({*RECEIPT_KINDS, KIND_MOVE, KIND_FORK_NOTICE,
                                     KIND_CAPABILITIES})
# Receipts for at most this many messages travel in one receipt message (16 bytes each:
# 4,000 fit a 64 KiB envelope with room to spare).
MAX_RECEIPT_IDS: Final = 4000


def receipt_body(ids: list[str]) -> bytes:
    w = Writer().u16(len(ids))
    for message_id in ids:
        w.fixed(bytes.fromhex(message_id), MESSAGE_ID_SIZE)
    return w.getvalue()


def receipt_ids(body: bytes) -> list[str]:
    r = Reader(body, "receipt")
    count = r.u16()
    if count > MAX_RECEIPT_IDS:
        raise RemoteProtocolError("receipt names too many messages")
    ids = [r.fixed(MESSAGE_ID_SIZE).hex() for _ in range(count)]
    r.finish()
    return ids


def sequence_gaps(seqs: list[int]) -> tuple[tuple[int, int], ...]:
    """Missing ranges in 1..max(seqs)."""
    gaps, expected = [], 1
    for seq in sorted(set(seqs)):
        if seq > expected:
            gaps.append((expected, seq - 1))
        expected = seq + 1
    return tuple(gaps)

"""The relay protocol: frames exchanged between a client and a relay, sans I/O.

Each WebSocket binary message carries exactly one frame. Every frame starts with::

    version  u8   RELAY_PROTOCOL_VERSION
    kind     u8   FrameKind

Requests (client → relay) then carry a ``request_id u32`` chosen by the client; every
request is answered by a result frame carrying the same id or by an `Error` frame. `Stored`
answers several sends at once (one per group commit) and `Deliver` is pushed by the relay
without a request. The byte layout of every frame is in ``docs/relay.md`` ("Relay
protocol"); the layouts below are the normative summary.

Decoding is strict and bounded: every length is checked against a named maximum before
anything is sliced, every number against its range (sequence numbers below 2^63, counts
and limits within their batch bounds; see docs/relay.md "Field bounds"), trailing bytes
are refused, and any malformed input raises `FrameError` (a `RemoteProtocolError`) that
says which error code to answer with and, when it could be read, the request id. The
dataclasses check the same bounds when built, so what encodes also decodes. Tokens never
appear in ``repr``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from backchannel.protocol.envelope import MAILBOX_ID_SIZE, MAX_ENVELOPE_SIZE
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "FORWARD_KEY_ID_SIZE",
    "HPKE_ENC_SIZE",
    "HPKE_TAG_SIZE",
    "MAX_ACK_SEQS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_ITEMS",
    "MAX_DESTINATION_SIZE",
    "MAX_ERROR_CODE",
    "MAX_PENDING",
    "MAX_REASON_SIZE",
    "MAX_REQUEST_FRAME_SIZE",
    "MAX_REQUEST_ID",
    "MAX_RESPONSE_FRAME_SIZE",
    "MAX_SEALED_SEND_SIZE",
    "MAX_SEND_BATCH",
    "MAX_SEND_BATCH_BYTES",
    "MAX_SEQ",
    "RELAY_PROTOCOL_VERSION",
    "REPLY_KEY_SIZE",
    "REPLY_NONCE_SIZE",
    "SEALED_REPLY_SIZE",
    "TOKEN_HASH_SIZE",
    "TOKEN_SIZE",
    "Ack",
    "Acked",
    "BatchResult",
    "BatchStored",
    "Create",
    "Created",
    "Delete",
    "Deleted",
    "Deliver",
    "Delivery",
    "Error",
    "ErrorCode",
    "Fetch",
    "Fetched",
    "Forward",
    "FrameError",
    "FrameKind",
    "Ping",
    "Pong",
    "Request",
    "Response",
    "SealedResult",
    "SealedSend",
    "Send",
    "SendBatch",
    "Stored",
    "StoredItem",
    "Subscribe",
    "Subscribed",
    "decode_request",
    "decode_response",
    "encode",
    "token_hash",
]

RELAY_PROTOCOL_VERSION: Final = 1

# Capabilities are 256-bit random strings: unguessable, and their SHA-256 is as long.
TOKEN_SIZE: Final = 32
TOKEN_HASH_SIZE: Final = 32
_TOKEN_HASH_LABEL: Final = b"backchannel relay capability v1\x00"

# One ack frame may settle at most one delivery batch; 256 keeps the work a single frame
# can cause on the relay small and fixed (one transaction, 256 index lookups).
MAX_ACK_SEQS: Final = 256
# A Deliver / Fetched / Stored frame holds at most this many items: the same bound as acks,
# so a receiver can always settle a whole batch with one Ack.
MAX_BATCH_ITEMS: Final = MAX_ACK_SEQS
# Envelope bytes in one Deliver / Fetched frame: four of the largest envelopes. Enough to
# amortise per-frame costs, small enough that a slow reader never holds much relay memory.
MAX_BATCH_BYTES: Final = 4 * MAX_ENVELOPE_SIZE
# Error reasons are one short human sentence; a bound keeps errors cheap to send and parse.
MAX_REASON_SIZE: Final = 256
# A SEND_BATCH carries at most this many envelopes for one mailbox, of at most
# MAX_SEND_BATCH_BYTES together (64 of the 1 KiB bucket): the largest batch frame is 1,184
# bytes below the largest request (a FORWARD), so the frame bound holds as before, and one
# frame never makes the relay do more than 64 deposits.
MAX_SEND_BATCH: Final = 64
MAX_SEND_BATCH_BYTES: Final = MAX_ENVELOPE_SIZE
# Sequence numbers travel as u64 but both stores keep them in a signed 64-bit integer
# (SQLite INTEGER, PostgreSQL bigint). A larger one must be refused at the door: one ACK of
# 2^63 once stopped an SQLite relay's writer thread (review 2026-12 §2b). No mailbox will
# ever hold 2^63 - 1 envelopes.
MAX_SEQ: Final = (1 << 63) - 1
# Request ids are the full u32 range; every value is valid on the wire (0 included).
MAX_REQUEST_ID: Final = 0xFFFF_FFFF
# `Subscribed.pending` is a u32 count; a relay caps larger counts at this value.
MAX_PENDING: Final = 0xFFFF_FFFF
# Error codes are u16; 0 is no code. Codes unknown to a client are kept as numbers (a relay
# newer than its client may send them) and treated as a refusal of the request.
MAX_ERROR_CODE: Final = 0xFFFF

# Private routing (docs/relay.md "Private routing"; `protocol/forwarding.py` seals).
# A relay's forwarding key is named by the first 8 bytes of its SHA-256: enough to tell a
# relay's keys apart (across a rotation), and a forward must fit beside a full envelope.
FORWARD_KEY_ID_SIZE: Final = 8
# HPKE with ML-KEM-768 + X25519: the encapsulation is 1,088 + 32 bytes; the AEAD tag 16.
HPKE_ENC_SIZE: Final = 1120
HPKE_TAG_SIZE: Final = 16
# The client's key for the destination's sealed answer (ChaCha20-Poly1305), and its nonce.
REPLY_KEY_SIZE: Final = 32
REPLY_NONCE_SIZE: Final = 12
# A sealed send: the encapsulation, then mailbox id, send token, reply key and a bytes32
# envelope, then the tag. Its largest carries the largest envelope.
MAX_SEALED_SEND_SIZE: Final = (HPKE_ENC_SIZE + MAILBOX_ID_SIZE + TOKEN_SIZE + REPLY_KEY_SIZE
                               + 4 + MAX_ENVELOPE_SIZE + HPKE_TAG_SIZE)
# The destination's sealed answer: nonce, code u16 and seq u64 encrypted, tag. Fixed size,
# so that a stored and a refused answer look the same to the forwarding relay.
SEALED_REPLY_SIZE: Final = REPLY_NONCE_SIZE + 2 + 8 + HPKE_TAG_SIZE
# A destination relay's URL in a FORWARD, UTF-8: a host name (at most 253) with a scheme,
# port and path fits; a longer one is no relay anyone publishes.
MAX_DESTINATION_SIZE: Final = 256

_HEADER: Final = 2  # version + kind
_REQUEST_ID: Final = 4
_SEND_FRAME_SIZE: Final = (
    _HEADER + _REQUEST_ID + MAILBOX_ID_SIZE + TOKEN_SIZE + 4 + MAX_ENVELOPE_SIZE
)
# A FORWARD of the largest sealed send, to the longest destination URL.
_FORWARD_FRAME_SIZE: Final = (_HEADER + _REQUEST_ID + FORWARD_KEY_ID_SIZE + 2
                              + MAX_DESTINATION_SIZE + 4 + MAX_SEALED_SEND_SIZE)
# The largest request is a FORWARD of the largest envelope (a SEND of it is 1,437 bytes
# smaller, a SEALED_SEND 258); acks of 256 seqs are smaller still.
MAX_REQUEST_FRAME_SIZE: Final = max(_SEND_FRAME_SIZE, _FORWARD_FRAME_SIZE)
# The largest response is a full delivery batch: per item a seq (8) and a length (4).
MAX_RESPONSE_FRAME_SIZE: Final = (
    _HEADER + _REQUEST_ID + MAILBOX_ID_SIZE + 2 + MAX_BATCH_ITEMS * 12 + MAX_BATCH_BYTES
)


def token_hash(token: bytes) -> bytes:
    """The value a relay stores for a capability token (domain-separated SHA-256).

    Args:
        token: a `TOKEN_SIZE`-byte random capability.

    Returns:
        `TOKEN_HASH_SIZE` bytes.

    Raises:
        LocalProtocolError: the token has the wrong length.
    """
    if len(token) != TOKEN_SIZE:
        raise LocalProtocolError(f"a capability token is {TOKEN_SIZE} bytes")
    return hashlib.sha256(_TOKEN_HASH_LABEL + token).digest()


class FrameKind(IntEnum):
    """The second byte of every frame."""

    CREATE = 0x01
    SEND = 0x02
    SUBSCRIBE = 0x03
    FETCH = 0x04
    ACK = 0x05
    DELETE = 0x06
    PING = 0x07
    FORWARD = 0x08
    SEALED_SEND = 0x09
    SEND_BATCH = 0x0A
    CREATED = 0x81
    STORED = 0x82
    SUBSCRIBED = 0x83
    FETCHED = 0x84
    ACKED = 0x85
    DELETED = 0x86
    PONG = 0x87
    SEALED_RESULT = 0x88
    BATCH_STORED = 0x89
    DELIVER = 0x90
    ERROR = 0xEE


class ErrorCode(IntEnum):
    """Numeric error codes of `Error` frames (see docs/relay.md for when each is sent)."""

    MALFORMED = 1
    UNKNOWN_COMMAND = 2
    UNSUPPORTED_VERSION = 3
    RATE_LIMITED = 4
    UNAUTHORIZED = 10  # no such mailbox *or* wrong token: deliberately indistinguishable
    MAILBOX_EXISTS = 11
    QUOTA_EXCEEDED = 12
    BAD_ENVELOPE = 13
    TOO_MANY_SUBSCRIPTIONS = 14
    STORE_FULL = 15  # the relay's store-wide byte quota is reached
    FORWARDING_DISABLED = 16  # this relay does not forward (its operator turned it off)
    BAD_DESTINATION = 17  # a forward to a URL refused, or to the forwarding relay itself
    UNKNOWN_KEY = 18  # a sealed send not sealed to (or not opening with) this relay's key
    TOO_MANY_FORWARDS = 19  # the forwarding relay's forwards in flight are at their limit
    DESTINATION_UNAVAILABLE = 22  # the forwarding relay could not reach the destination
    KEY_RETIRED = 23  # a sealed send to a key this relay rotated away (past its overlap)
    UNAVAILABLE = 20
    INTERNAL = 21


class FrameError(RemoteProtocolError):
    """A frame could not be decoded; says which error to answer with.

    Attributes:
        code: the `ErrorCode` a relay answers with.
        request_id: the request id, when the frame was readable that far.
    """

    def __init__(self, message: str, code: ErrorCode, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise LocalProtocolError(what)


def _check_id(mailbox_id: bytes) -> None:
    _check(len(mailbox_id) == MAILBOX_ID_SIZE, f"mailbox id must be {MAILBOX_ID_SIZE} bytes")


def _check_token(token: bytes) -> None:
    _check(len(token) == TOKEN_SIZE, f"a capability token is {TOKEN_SIZE} bytes")


def _check_request_id(request_id: int) -> None:
    _check(0 <= request_id <= MAX_REQUEST_ID, "request id must fit in 32 bits")


def _check_seq(seq: int) -> None:
    _check(1 <= seq <= MAX_SEQ, f"sequence number must be 1..{MAX_SEQ}")


# --- requests ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """Create a mailbox: ``mailbox_id[16] send_hash[32] receive_hash[32]``."""

    request_id: int
    mailbox_id: bytes
    send_hash: bytes
    receive_hash: bytes

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check(len(self.send_hash) == TOKEN_HASH_SIZE, "bad send hash length")
        _check(len(self.receive_hash) == TOKEN_HASH_SIZE, "bad receive hash length")


@dataclass(frozen=True, slots=True)
class Send:
    """Deposit an envelope: ``mailbox_id[16] send_token[32] envelope:bytes32``."""

    request_id: int
    mailbox_id: bytes
    send_token: bytes = field(repr=False)
    envelope: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check_token(self.send_token)
        _check(len(self.envelope) <= MAX_ENVELOPE_SIZE, "envelope too large")


@dataclass(frozen=True, slots=True)
class SendBatch:
    """Deposit several envelopes into one mailbox:
    ``mailbox_id[16] send_token[32] count:u16 envelope:bytes32 × count``.

    1..`MAX_SEND_BATCH` envelopes of at most `MAX_SEND_BATCH_BYTES` together; answered by
    one `BatchStored` with an outcome per envelope, in order (or by one `Error` for the
    whole frame).
    """

    request_id: int
    mailbox_id: bytes
    send_token: bytes = field(repr=False)
    envelopes: tuple[bytes, ...] = field(repr=False, default=())

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check_token(self.send_token)
        _check(1 <= len(self.envelopes) <= MAX_SEND_BATCH,
               f"a batch carries 1..{MAX_SEND_BATCH} envelopes")
        _check(sum(len(e) for e in self.envelopes) <= MAX_SEND_BATCH_BYTES,
               f"a batch carries at most {MAX_SEND_BATCH_BYTES} envelope bytes")


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Receive pushes for a mailbox: ``mailbox_id[16] receive_token[32]``."""

    request_id: int
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check_token(self.receive_token)


@dataclass(frozen=True, slots=True)
class Fetch:
    """Read stored envelopes: ``mailbox_id[16] receive_token[32] after_seq:u64 limit:u16``."""

    request_id: int
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)
    after_seq: int = 0
    limit: int = MAX_BATCH_ITEMS

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check_token(self.receive_token)
        _check(0 <= self.after_seq <= MAX_SEQ, f"after_seq must be 0..{MAX_SEQ}")
        _check(1 <= self.limit <= MAX_BATCH_ITEMS, f"limit must be 1..{MAX_BATCH_ITEMS}")


@dataclass(frozen=True, slots=True)
class Ack:
    """Settle envelopes: ``mailbox_id[16] receive_token[32] count:u16 seq:u64 × count``."""

    request_id: int
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)
    seqs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check_token(self.receive_token)
        _check(1 <= len(self.seqs) <= MAX_ACK_SEQS, f"ack 1..{MAX_ACK_SEQS} seqs")
        _check(all(1 <= s <= MAX_SEQ for s in self.seqs), f"seqs must be 1..{MAX_SEQ}")


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete a mailbox and everything in it: ``mailbox_id[16] receive_token[32]``."""

    request_id: int
    mailbox_id: bytes
    receive_token: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_id(self.mailbox_id)
        _check_token(self.receive_token)


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness check: no body."""

    request_id: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)


@dataclass(frozen=True, slots=True)
class Forward:
    """Ask this relay to carry a sealed send to another relay:
    ``key_id[8] destination:text16 sealed:bytes32``.

    ``destination`` is the other relay's URL; ``sealed`` is a `SealedSend`'s body, sealed
    to the key ``key_id`` names (`protocol.forwarding.seal_send`).
    """

    request_id: int
    key_id: bytes
    destination: str
    sealed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(len(self.key_id) == FORWARD_KEY_ID_SIZE, "bad key id length")
        _check(0 < len(self.destination.encode("utf-8")) <= MAX_DESTINATION_SIZE,
               f"destination must be 1..{MAX_DESTINATION_SIZE} bytes")
        _check(len(self.sealed) <= MAX_SEALED_SEND_SIZE, "sealed send too large")


@dataclass(frozen=True, slots=True)
class SealedSend:
    """A send sealed to this relay's key: ``key_id[8] sealed:bytes32``.

    What a forwarding relay sends the destination. Its inside is always a deposit, never
    another forward, so forwarding cannot loop.
    """

    request_id: int
    key_id: bytes
    sealed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(len(self.key_id) == FORWARD_KEY_ID_SIZE, "bad key id length")
        _check(len(self.sealed) <= MAX_SEALED_SEND_SIZE, "sealed send too large")


Request = (Create | Send | Subscribe | Fetch | Ack | Delete | Ping | Forward | SealedSend
           | SendBatch)

# --- responses ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Created:
    """The mailbox exists now."""

    request_id: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One committed send: its request id and the envelope's sequence number."""

    request_id: int
    seq: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_seq(self.seq)


@dataclass(frozen=True, slots=True)
class Stored:
    """Sends committed to storage: ``count:u16 (request_id:u32 seq:u64) × count``."""

    items: tuple[StoredItem, ...]

    def __post_init__(self) -> None:
        _check(1 <= len(self.items) <= MAX_BATCH_ITEMS, f"1..{MAX_BATCH_ITEMS} items")


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one envelope of a batch: stored as ``seq`` (``code`` 0), or refused
    with ``code`` (an `ErrorCode` value, ``seq`` 0)."""

    code: int
    seq: int

    def __post_init__(self) -> None:
        _check(0 <= self.code <= MAX_ERROR_CODE, f"code must be 0..{MAX_ERROR_CODE}")
        if self.code == 0:
            _check_seq(self.seq)
        else:
            _check(self.seq == 0, "a refused envelope has seq 0")

    @property
    def stored(self) -> bool:
        """Whether the envelope was stored (committed)."""
        return self.code == 0


@dataclass(frozen=True, slots=True)
class BatchStored:
    """Answer to SendBatch: ``count:u16 (code:u16 seq:u64) × count``, one per envelope in
    the order sent; an envelope stored is committed."""

    request_id: int
    results: tuple[BatchResult, ...]

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(1 <= len(self.results) <= MAX_SEND_BATCH, f"1..{MAX_SEND_BATCH} results")


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The subscription is live; ``pending:u32`` envelopes are waiting (capped)."""

    request_id: int
    pending: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(0 <= self.pending <= MAX_PENDING, f"pending must be 0..{MAX_PENDING}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored envelope and its per-mailbox sequence number."""

    seq: int
    envelope: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_seq(self.seq)
        _check(len(self.envelope) <= MAX_ENVELOPE_SIZE, "envelope too large")


def _check_batch(items: tuple[Delivery, ...], allow_empty: bool) -> None:
    _check((allow_empty or bool(items)) and len(items) <= MAX_BATCH_ITEMS, "bad batch item count")
    _check(sum(len(d.envelope) for d in items) <= MAX_BATCH_BYTES, "batch too large")


@dataclass(frozen=True, slots=True)
class Fetched:
    """Answer to Fetch: ``more:u8 count:u16 (seq:u64 envelope:bytes32) × count``."""

    request_id: int
    deliveries: tuple[Delivery, ...]
    more: bool

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check_batch(self.deliveries, allow_empty=True)


@dataclass(frozen=True, slots=True)
class Acked:
    """Answer to Ack: ``removed:u16`` envelopes were deleted (others were already gone)."""

    request_id: int
    removed: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        # One ack settles at most MAX_ACK_SEQS envelopes, so no answer can count more.
        _check(0 <= self.removed <= MAX_ACK_SEQS, f"removed must be 0..{MAX_ACK_SEQS}")


@dataclass(frozen=True, slots=True)
class Deleted:
    """The mailbox and its envelopes are gone."""

    request_id: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to Ping."""

    request_id: int

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)


@dataclass(frozen=True, slots=True)
class Deliver:
    """Pushed to a subscriber: ``mailbox_id[16] count:u16 (seq:u64 envelope:bytes32) × count``."""

    mailbox_id: bytes
    deliveries: tuple[Delivery, ...]

    def __post_init__(self) -> None:
        _check_id(self.mailbox_id)
        _check_batch(self.deliveries, allow_empty=False)


@dataclass(frozen=True, slots=True)
class Error:
    """A request failed: ``request_id:u32 code:u16 reason:text16``.

    ``request_id`` is 0 when the failed frame's id could not be read. ``code`` is an
    `ErrorCode` value, 1..`MAX_ERROR_CODE` (kept as a plain int so that a client survives
    codes added later).
    """

    request_id: int
    code: int
    reason: str

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(1 <= self.code <= MAX_ERROR_CODE, f"error code must be 1..{MAX_ERROR_CODE}")
        _check(len(self.reason.encode("utf-8")) <= MAX_REASON_SIZE, "reason too long")


@dataclass(frozen=True, slots=True)
class SealedResult:
    """Answer to SealedSend and Forward: ``request_id:u32 sealed[38]``, the destination's
    outcome sealed under the client's reply key (`protocol.forwarding.seal_reply`)."""

    request_id: int
    sealed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(len(self.sealed) == SEALED_REPLY_SIZE,
               f"a sealed result is {SEALED_REPLY_SIZE} bytes")


Response = (Created | Stored | Subscribed | Fetched | Acked | Deleted | Pong | Deliver | Error
            | SealedResult | BatchStored)

# --- encoding -----------------------------------------------------------------------------


def _start(kind: FrameKind) -> Writer:
    return Writer().u8(RELAY_PROTOCOL_VERSION).u8(kind)


def _deliveries(w: Writer, items: tuple[Delivery, ...]) -> Writer:
    w.u16(len(items))
    for d in items:
        w.u64(d.seq).bytes32(d.envelope)
    return w


def encode(frame: Request | Response) -> bytes:
    """Encode a frame to the bytes of one WebSocket binary message.

    Args:
        frame: any request or response frame.

    Returns:
        The frame's bytes.

    Raises:
        LocalProtocolError: a field is out of range (the dataclasses check this on creation).
    """
    match frame:
        case Create(rid, mid, sh, rh):
            w = _start(FrameKind.CREATE).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(sh, TOKEN_HASH_SIZE).fixed(rh, TOKEN_HASH_SIZE)
        case Send(rid, mid, tok, env):
            w = _start(FrameKind.SEND).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(tok, TOKEN_SIZE).bytes32(env)
        case SendBatch(rid, mid, tok, envelopes):
            w = _start(FrameKind.SEND_BATCH).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(tok, TOKEN_SIZE).u16(len(envelopes))
            for env in envelopes:
                w.bytes32(env)
        case BatchStored(rid, results):
            w = _start(FrameKind.BATCH_STORED).u32(rid).u16(len(results))
            for res in results:
                w.u16(res.code).u64(res.seq)
        case Subscribe(rid, mid, tok):
            w = _start(FrameKind.SUBSCRIBE).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(tok, TOKEN_SIZE)
        case Fetch(rid, mid, tok, after, limit):
            w = _start(FrameKind.FETCH).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(tok, TOKEN_SIZE).u64(after).u16(limit)
        case Ack(rid, mid, tok, seqs):
            w = _start(FrameKind.ACK).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(tok, TOKEN_SIZE).u16(len(seqs))
            for s in seqs:
                w.u64(s)
        case Delete(rid, mid, tok):
            w = _start(FrameKind.DELETE).u32(rid).fixed(mid, MAILBOX_ID_SIZE)
            w.fixed(tok, TOKEN_SIZE)
        case Ping(rid):
            w = _start(FrameKind.PING).u32(rid)
        case Forward(rid, key_id, destination, sealed):
            w = _start(FrameKind.FORWARD).u32(rid).fixed(key_id, FORWARD_KEY_ID_SIZE)
            w.text16(destination).bytes32(sealed)
        case SealedSend(rid, key_id, sealed):
            w = _start(FrameKind.SEALED_SEND).u32(rid).fixed(key_id, FORWARD_KEY_ID_SIZE)
            w.bytes32(sealed)
        case SealedResult(rid, sealed):
            w = _start(FrameKind.SEALED_RESULT).u32(rid).fixed(sealed, SEALED_REPLY_SIZE)
        case Created(rid):
            w = _start(FrameKind.CREATED).u32(rid)
        case Stored(items):
            w = _start(FrameKind.STORED).u16(len(items))
            for item in items:
                w.u32(item.request_id).u64(item.seq)
        case Subscribed(rid, pending):
            w = _start(FrameKind.SUBSCRIBED).u32(rid).u32(pending)
        case Fetched(rid, items, more):
            w = _deliveries(_start(FrameKind.FETCHED).u32(rid).u8(int(more)), items)
        case Acked(rid, removed):
            w = _start(FrameKind.ACKED).u32(rid).u16(removed)
        case Deleted(rid):
            w = _start(FrameKind.DELETED).u32(rid)
        case Pong(rid):
            w = _start(FrameKind.PONG).u32(rid)
        case Deliver(mid, items):
            w = _deliveries(_start(FrameKind.DELIVER).fixed(mid, MAILBOX_ID_SIZE), items)
        case Error(rid, code, reason):
            w = _start(FrameKind.ERROR).u32(rid).u16(code).text16(reason)
        case _:
            raise LocalProtocolError(f"not a relay frame: {type(frame).__name__}")
    return w.getvalue()


# --- decoding -----------------------------------------------------------------------------


def _header(data: bytes, limit: int, what: str) -> tuple[Reader, int]:
    if len(data) > limit:
        raise FrameError(f"{what} of {len(data)} bytes exceeds {limit}", ErrorCode.MALFORMED)
    if len(data) < _HEADER:
        raise FrameError(f"{what} is truncated", ErrorCode.MALFORMED)
    if data[0] != RELAY_PROTOCOL_VERSION:
        raise FrameError(f"unsupported relay protocol version {data[0]}",
                         ErrorCode.UNSUPPORTED_VERSION)
    r = Reader(data, what)
    r.u8()
    return r, r.u8()


def _read_deliveries(r: Reader) -> tuple[Delivery, ...]:
    count = r.u16()
    if count > MAX_BATCH_ITEMS:
        raise RemoteProtocolError(f"batch of {count} items exceeds {MAX_BATCH_ITEMS}")
    # Each Delivery checks its seq (1..MAX_SEQ) and envelope size as it is built; the
    # frame's dataclass checks the batch's byte total.
    return tuple(Delivery(r.u64(), r.bytes32(MAX_ENVELOPE_SIZE)) for _ in range(count))


def decode_request(data: bytes) -> Request:
    """Decode a frame a relay received from a client.

    Args:
        data: the bytes of one WebSocket binary message.

    Returns:
        The request frame.

    Raises:
        FrameError: the bytes are not a well-formed request (``code`` says which error to
            answer with, ``request_id`` is set when it could be read).
    """
    r, kind = _header(data, MAX_REQUEST_FRAME_SIZE, "relay request")
    request_id: int | None = None
    try:
        request_id = r.u32()
        frame: Request
        match kind:
            case FrameKind.CREATE:
                frame = Create(request_id, r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_HASH_SIZE),
                               r.fixed(TOKEN_HASH_SIZE))
            case FrameKind.SEND:
                frame = Send(request_id, r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE),
                             r.bytes32(MAX_ENVELOPE_SIZE))
            case FrameKind.SUBSCRIBE:
                frame = Subscribe(request_id, r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE))
            case FrameKind.SEND_BATCH:
                mid, tok, count = r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE), r.u16()
                # The count is checked before any envelope is read (at most
                # MAX_SEND_BATCH reads), and each length against what may remain.
                if not 1 <= count <= MAX_SEND_BATCH:
                    raise RemoteProtocolError(f"a batch carries 1..{MAX_SEND_BATCH} envelopes")
                frame = SendBatch(request_id, mid, tok,
                                  tuple(r.bytes32(MAX_SEND_BATCH_BYTES) for _ in range(count)))
            case FrameKind.FETCH:
                # Fetch checks after_seq (0..MAX_SEQ) and limit (1..MAX_BATCH_ITEMS).
                frame = Fetch(request_id, r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE),
                              r.u64(), r.u16())
            case FrameKind.ACK:
                mid, tok, count = r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE), r.u16()
                # The count is checked before the seqs are read, so a frame never makes
                # the decoder loop more than MAX_ACK_SEQS times.
                if not 1 <= count <= MAX_ACK_SEQS:
                    raise RemoteProtocolError(f"an ack carries 1..{MAX_ACK_SEQS} seqs")
                frame = Ack(request_id, mid, tok, tuple(r.u64() for _ in range(count)))
            case FrameKind.DELETE:
                frame = Delete(request_id, r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE))
            case FrameKind.PING:
                frame = Ping(request_id)
            case FrameKind.FORWARD:
                frame = Forward(request_id, r.fixed(FORWARD_KEY_ID_SIZE),
                                r.text16(MAX_DESTINATION_SIZE), r.bytes32(MAX_SEALED_SEND_SIZE))
            case FrameKind.SEALED_SEND:
                frame = SealedSend(request_id, r.fixed(FORWARD_KEY_ID_SIZE),
                                   r.bytes32(MAX_SEALED_SEND_SIZE))
            case _:
                raise FrameError(f"unknown command 0x{kind:02x}", ErrorCode.UNKNOWN_COMMAND,
                                 request_id)
        r.finish()
    except FrameError:
        raise
    except (RemoteProtocolError, LocalProtocolError) as exc:
        raise FrameError(str(exc), ErrorCode.MALFORMED, request_id) from None
    return frame


def decode_response(data: bytes) -> Response:
    """Decode a frame a client received from a relay.

    Args:
        data: the bytes of one WebSocket binary message.

    Returns:
        The response or push frame.

    Raises:
        FrameError: the bytes are not a well-formed response (``request_id`` is set when
            the frame carries one and it could be read).
    """
    r, kind = _header(data, MAX_RESPONSE_FRAME_SIZE, "relay response")
    request_id: int | None = None
    try:
        frame: Response
        match kind:
            case FrameKind.CREATED:
                frame = Created(request_id := r.u32())
            case FrameKind.STORED:
                count = r.u16()
                if not 1 <= count <= MAX_BATCH_ITEMS:
                    raise RemoteProtocolError(f"stored carries 1..{MAX_BATCH_ITEMS} items")
                frame = Stored(tuple(StoredItem(r.u32(), r.u64()) for _ in range(count)))
            case FrameKind.SUBSCRIBED:
                frame = Subscribed(request_id := r.u32(), r.u32())
            case FrameKind.FETCHED:
                request_id, more = r.u32(), r.u8()
                if more > 1:
                    raise RemoteProtocolError("'more' flag must be 0 or 1")
                frame = Fetched(request_id, _read_deliveries(r), bool(more))
            case FrameKind.ACKED:
                frame = Acked(request_id := r.u32(), r.u16())
            case FrameKind.DELETED:
                frame = Deleted(request_id := r.u32())
            case FrameKind.PONG:
                frame = Pong(request_id := r.u32())
            case FrameKind.SEALED_RESULT:
                frame = SealedResult(request_id := r.u32(), r.fixed(SEALED_REPLY_SIZE))
            case FrameKind.BATCH_STORED:
                request_id, count = r.u32(), r.u16()
                if not 1 <= count <= MAX_SEND_BATCH:
                    raise RemoteProtocolError(f"a batch answer carries 1..{MAX_SEND_BATCH}")
                frame = BatchStored(request_id,
                                    tuple(BatchResult(r.u16(), r.u64()) for _ in range(count)))
            case FrameKind.DELIVER:
                mid = r.fixed(MAILBOX_ID_SIZE)
                items = _read_deliveries(r)
                if not items:
                    raise RemoteProtocolError("a delivery carries at least one envelope")
                frame = Deliver(mid, items)
            case FrameKind.ERROR:
                frame = Error(request_id := r.u32(), r.u16(), r.text16(MAX_REASON_SIZE))
            case _:
                raise FrameError(f"unknown response 0x{kind:02x}", ErrorCode.UNKNOWN_COMMAND)
        r.finish()
    except FrameError:
        raise
    except (RemoteProtocolError, LocalProtocolError) as exc:
        raise FrameError(str(exc), ErrorCode.MALFORMED, request_id) from None
    return frame

"""Both ends of a relay connection, sans I/O, in the manner of h11 (design §4).

A `ClientConnection` and a `ServerConnection` take the bytes of one WebSocket binary
message at a time and return events; what they return to send is bytes. They never touch
a socket, a task or a clock, so the adapters (`client/transport.py`, `relay/server.py`)
only move bytes, and every rule below is tested without a network. The rules
(docs/relay.md "The connection"):

1. Request ids. A client numbers its requests 1..2^32-1 and wraps, never reusing an id
   whose request is still outstanding; it never sends 0, which the relay uses to answer a
   frame whose id it could not read. A relay refuses a request whose id is still
   outstanding on the connection (MALFORMED), since its answers could not be told apart.
2. Reply kinds. Each request has one result kind (`REPLY_KINDS`); an `Error` may answer
   any request. A reply of another kind, or for an id not outstanding, breaks the protocol.
3. Exactly once. A request is answered by exactly one result frame, one item of one
   `Stored` frame, or one `Error`; then its id is free again. A `SendBatch` is answered
   by one `BatchStored` holding exactly one outcome per envelope, in order.
4. Stored batching. Receipts of committed sends accumulate (`ServerConnection.stored`) and
   leave as `Stored` frames of at most `MAX_BATCH_ITEMS` receipts (`take_stored`).
5. Deliver splitting. Pushed envelopes leave as `Deliver` frames of at most
   `MAX_BATCH_ITEMS` envelopes and `MAX_BATCH_BYTES` envelope bytes, in the order given.
6. Ordering and window. A `Deliver` comes only for a mailbox whose Subscribe was answered
   `Subscribed` on this connection (and not `Deleted` since); within a subscription its
   seqs strictly increase; and at most the client's delivery window of envelopes are
   delivered and not yet acked (an Ack frees its seqs when it is sent, as the relay frees
   them when it reads it; a seq acked before its push arrived does not count when it
   does). A redelivery after a reconnect is a new connection and starts afresh. A
   `Fetched` answer holds at most the fetch's limit, in increasing seq order, all after
   its ``after_seq``; an `Acked` counts at most the seqs it answers.

Errors by blame: `RelayConnectionError` (a `RemoteProtocolError`) when the relay broke a
rule; `RelayConnectionMisuse` (a `LocalProtocolError`) when the code driving the
connection did. A client state changes only when a whole frame is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.relayframes import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    MAX_REQUEST_ID,
    Ack,
    Acked,
    BatchStored,
    Create,
    Created,
    Delete,
    Deleted,
    Deliver,
    Delivery,
    Error,
    ErrorCode,
    Fetch,
    Fetched,
    Forward,
    FrameError,
    Ping,
    Pong,
    Request,
    Response,
    SealedResult,
    SealedSend,
    Send,
    SendBatch,
    Stored,
    StoredItem,
    Subscribe,
    Subscribed,
    decode_request,
    decode_response,
    encode,
)

__all__ = [
    "DEFAULT_DELIVERY_WINDOW",
    "REPLY_KINDS",
    "Answer",
    "ClientConnection",
    "ClientEvent",
    "Delivered",
    "Malformed",
    "Refusal",
    "RelayConnectionError",
    "RelayConnectionMisuse",
    "Result",
    "ServerConnection",
    "StoredAnswer",
]

# Deliveries a client accepts in flight (delivered, not yet acked) per subscription. The
# relay's default window is 512 (relay/limits.py); four times that leaves an operator room
# to raise it, and still catches a relay that ignores acks before it fills the client's
# memory with up to 2,048 envelopes of 64 KiB per mailbox.
DEFAULT_DELIVERY_WINDOW: Final = 2048

# The result frames that answer one request each (Stored answers sends item by item).
Result = Created | Subscribed | Fetched | Acked | Deleted | Pong | SealedResult | BatchStored

# Rule 2: the one result kind of each request kind.
REPLY_KINDS: Final[Mapping[type[Request], type[Response]]] = {
    Create: Created,
    Send: Stored,
    # A batch of sends is answered whole, one outcome per envelope in order.
    SendBatch: BatchStored,
    Subscribe: Subscribed,
    Fetch: Fetched,
    Ack: Acked,
    Delete: Deleted,
    Ping: Pong,
    # Private routing: the destination's sealed answer, passed back unchanged by the
    # forwarding relay, answers both.
    Forward: SealedResult,
    SealedSend: SealedResult,
}


class RelayConnectionError(RemoteProtocolError):
    """The relay broke the relay protocol: undecodable bytes, a reply of the wrong kind or
    for no outstanding request, or a delivery out of order or beyond the window.

    Blame: the relay. Nothing of the offending frame was taken in; close the connection.
    """


class RelayConnectionMisuse(LocalProtocolError):
    """The code driving the connection broke a rule: it answered a request that is not
    outstanding or with the wrong kind, or asked for more ids than exist. Blame: us."""


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """The result frame that answers the outstanding request `request_id`."""

    request_id: int
    frame: Result


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """One receipt of a `Stored` frame: the send `request_id` is stored as `seq`."""

    request_id: int
    seq: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """The relay refused the outstanding request `request_id` with an `Error`.

    ``code`` stays a number: a relay newer than this client may send codes it does not
    know, which are refusals all the same (see `known`).
    """

    request_id: int
    code: int
    reason: str

    @property
    def known(self) -> ErrorCode | None:
        """The code as an `ErrorCode`, or None when this client does not know it."""
        try:
            return ErrorCode(self.code)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Delivered:
    """Envelopes pushed for a subscribed mailbox, in increasing seq order."""

    mailbox_id: bytes
    deliveries: tuple[Delivery, ...]


ClientEvent = Answer | StoredAnswer | Refusal | Delivered


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame the relay refuses without taking it as a request.

    Attributes:
        code: the error code answered (MALFORMED, UNKNOWN_COMMAND, UNSUPPORTED_VERSION).
        request_id: the id answered; 0 when the frame's id could not be read.
        reply: the `Error` frame's bytes, to send.
        count: frames refused on this connection so far, over its whole life.
    """

    code: ErrorCode
    request_id: int
    reply: bytes = field(repr=False)
    count: int


# --- client -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Subscription:
    """What a client knows of one subscription: the last seq delivered, the seqs
    delivered and not yet acked, and the seqs acked before their delivery arrived."""

    last_seq: int = 0
    in_flight: set[int] = field(default_factory=set)
    # A seq learned from a Fetch may be acked while its push is still on the way; when
    # that push arrives it is not in flight (the relay freed it on reading the ack), or
    # the client would count it forever and refuse an honest relay's later pushes.
    acked_ahead: set[int] = field(default_factory=set)

    def on_ack(self, seqs: tuple[int, ...]) -> None:
        for seq in seqs:
            if seq in self.in_flight:
                self.in_flight.discard(seq)
            elif seq > self.last_seq:
                self.acked_ahead.add(seq)

    def on_deliver(self, seqs: list[int]) -> None:
        for seq in seqs:
            if seq in self.acked_ahead:
                self.acked_ahead.discard(seq)
            else:
                self.in_flight.add(seq)
        self.last_seq = seqs[-1]
        if self.acked_ahead:  # seqs only increase: one at or below last_seq never comes
            self.acked_ahead = {seq for seq in self.acked_ahead if seq > self.last_seq}


class ClientConnection:
    """The client's end: numbers requests, correlates answers, checks deliveries.

    Args:
        delivery_window: most envelopes delivered and not yet acked per subscription.
    """

    __slots__ = ("_last_id", "_outstanding", "_subs", "delivery_window")

    def __init__(self, *, delivery_window: int = DEFAULT_DELIVERY_WINDOW) -> None:
        if delivery_window < 1:
            raise RelayConnectionMisuse("the delivery window must be positive")
        self.delivery_window = delivery_window
        self._last_id = 0
        self._outstanding: dict[int, Request] = {}
        self._subs: dict[bytes, _Subscription] = {}

    @property
    def outstanding(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._outstanding)

    def is_outstanding(self, request_id: int) -> bool:
        """Whether `request_id` was sent and is not yet answered."""
        return request_id in self._outstanding

    @property
    def subscriptions(self) -> frozenset[bytes]:
        """Mailbox ids whose Subscribe was answered `Subscribed` (and not deleted since)."""
        return frozenset(self._subs)

    def in_flight(self, mailbox_id: bytes) -> int:
        """Envelopes of `mailbox_id` delivered and not yet acked."""
        sub = self._subs.get(mailbox_id)
        return len(sub.in_flight) if sub is not None else 0

    def send_request(self, frame: Request) -> tuple[int, bytes]:
        """Number a request and encode it (rule 1).

        Args:
            frame: the request; its ``request_id`` is replaced (build it with 0).

        Returns:
            The request id given to it and the bytes to send.

        Raises:
            RelayConnectionMisuse: every request id is outstanding.
        """
        if len(self._outstanding) >= MAX_REQUEST_ID:
            raise RelayConnectionMisuse("every request id is outstanding")
        rid = self._last_id
        while True:
            rid = rid % MAX_REQUEST_ID + 1  # 1..MAX_REQUEST_ID, wrapping past 0
            if rid not in self._outstanding:
                break
        frame = replace(frame, request_id=rid)
        data = encode(frame)
        self._last_id = rid
        self._outstanding[rid] = frame
        if isinstance(frame, Ack) and (sub := self._subs.get(frame.mailbox_id)) is not None:
            # The relay frees the window when it reads the ack, before the ack commits.
            sub.on_ack(frame.seqs)
        return rid, data

    def receive(self, data: bytes) -> list[ClientEvent]:
        """Take in one frame from the relay.

        Args:
            data: the bytes of one WebSocket binary message.

        Returns:
            Its events: one `Answer` or `Refusal`, a `StoredAnswer` per receipt, or one
            `Delivered`.

        Raises:
            RelayConnectionError: the frame breaks the protocol; nothing of it was taken in.
        """
        try:
            frame = decode_response(data)
        except FrameError as exc:
            raise RelayConnectionError(f"undecodable relay frame: {exc}") from None
        match frame:
            case Stored(items):
                return self._on_stored(items)
            case Deliver(mailbox_id, deliveries):
                return [self._on_deliver(mailbox_id, deliveries)]
            case Error(rid, code, reason):
                if rid == 0:
                    # This client sends only well-formed frames, with ids from 1.
                    raise RelayConnectionError(f"the relay could not read a request ({code})")
                self._take(rid, Error)
                return [Refusal(rid, code, reason)]
            case _:
                return [self._on_result(frame)]

    def _take(self, rid: int, kind: type[Response]) -> Request:
        """The outstanding request `rid` answered by a `kind` frame, removed."""
        request = self._expect(rid, kind)
        del self._outstanding[rid]
        return request

    def _expect(self, rid: int, kind: type[Response]) -> Request:
        request = self._outstanding.get(rid)
        if request is None:
            raise RelayConnectionError(f"a {kind.__name__} for request {rid}, not outstanding")
        if kind is not Error and REPLY_KINDS[type(request)] is not kind:
            raise RelayConnectionError(
                f"a {type(request).__name__} request answered with {kind.__name__}")
        return request

    def _on_stored(self, items: tuple[StoredItem, ...]) -> list[ClientEvent]:
        rids = [item.request_id for item in items]
        if len(set(rids)) != len(rids):
            raise RelayConnectionError("a Stored frame answers one send twice")
        for rid in rids:  # check all before taking any: a frame is taken whole or not
            self._expect(rid, Stored)
        for rid in rids:
            del self._outstanding[rid]
        return [StoredAnswer(item.request_id, item.seq) for item in items]

    def _on_result(self, frame: Result) -> ClientEvent:
        request = self._expect(frame.request_id, type(frame))
        match frame, request:
            case Fetched(deliveries=items), Fetch(after_seq=after, limit=limit):
                seqs = [d.seq for d in items]
                if len(seqs) > limit or not _increasing(seqs, after):
                    raise RelayConnectionError("a Fetched answer beyond what was asked")
            case Acked(removed=removed), Ack(seqs=acked) if removed > len(acked):
                raise RelayConnectionError("an Acked answer counts more than was acked")
            case BatchStored(results=results), SendBatch(envelopes=envelopes) if (
                    len(results) != len(envelopes)):
                raise RelayConnectionError("a BatchStored answer of another length than "
                                           "its batch")
            case Subscribed(), Subscribe(mailbox_id=mid):
                self._subs.setdefault(mid, _Subscription())
            case Deleted(), Delete(mailbox_id=mid):
                self._subs.pop(mid, None)
        del self._outstanding[frame.request_id]
        return Answer(frame.request_id, frame)

    def _on_deliver(self, mailbox_id: bytes, items: tuple[Delivery, ...]) -> Delivered:
        sub = self._subs.get(mailbox_id)
        if sub is None:
            raise RelayConnectionError("a delivery for a mailbox not subscribed")
        seqs = [d.seq for d in items]
        if not _increasing(seqs, sub.last_seq):
            raise RelayConnectionError("a delivery out of order")
        new = sum(1 for seq in seqs if seq not in sub.acked_ahead)
        if len(sub.in_flight) + new > self.delivery_window:
            raise RelayConnectionError("a delivery beyond the delivery window")
        sub.on_deliver(seqs)
        return Delivered(mailbox_id, items)


def _increasing(seqs: Sequence[int], after: int) -> bool:
    """Whether `seqs` strictly increase, all above `after`."""
    previous = after
    for seq in seqs:
        if seq <= previous:
            return False
        previous = seq
    return True


# --- server -------------------------------------------------------------------------------


class ServerConnection:
    """The relay's end: decodes requests, and checks that each is answered exactly once.

    Args:
        reasons: the fixed sentence sent with each error code (codes missing get their
            name); never client input, so an error cannot echo a token.
    """

    __slots__ = ("_malformed", "_outstanding", "_reasons", "_stored")

    def __init__(self, reasons: Mapping[ErrorCode, str] | None = None) -> None:
        self._reasons: Mapping[ErrorCode, str] = reasons if reasons is not None else {}
        self._outstanding: dict[int, type[Request]] = {}
        self._stored: list[StoredItem] = []
        self._malformed = 0

    @property
    def outstanding(self) -> int:
        """Requests received and not yet answered (receipts waiting in `stored` count as
        answered)."""
        return len(self._outstanding)

    @property
    def malformed(self) -> int:
        """Frames refused as malformed on this connection, over its whole life."""
        return self._malformed

    @property
    def pending_stored(self) -> list[StoredItem]:
        """Receipts waiting for `take_stored`. A caller abandoning the connection may clear
        this list to drop them; nothing else may change it."""
        return self._stored

    def reason(self, code: ErrorCode) -> str:
        """The sentence sent with `code`."""
        return self._reasons.get(code, code.name.lower().replace("_", " "))

    def receive(self, data: bytes) -> Request | Malformed:
        """Take in one frame from a client.

        Args:
            data: the bytes of one WebSocket binary message.

        Returns:
            The request, now outstanding; or `Malformed` with the error to send.
        """
        try:
            frame = decode_request(data)
        except FrameError as exc:
            return self._refuse(exc.code, exc.request_id or 0)
        if frame.request_id in self._outstanding:
            # Rule 1: two outstanding requests with one id could not be told apart.
            return self._refuse(ErrorCode.MALFORMED, frame.request_id)
        self._outstanding[frame.request_id] = type(frame)
        return frame

    def _refuse(self, code: ErrorCode, rid: int) -> Malformed:
        self._malformed += 1
        reply = encode(Error(rid, code, self.reason(code)))
        return Malformed(code, rid, reply, self._malformed)

    def refuse_unread(self, data: bytes, code: ErrorCode) -> bytes:
        """An `Error` for a frame refused before it was decoded (e.g. rate limited).

        Args:
            data: the frame's bytes; its request id is read where a request has it.
            code: the error code.

        Returns:
            The error frame's bytes. No request becomes outstanding.
        """
        rid = int.from_bytes(data[2:6], "big") if len(data) >= 6 else 0
        return encode(Error(rid, code, self.reason(code)))

    def reply(self, frame: Result | Error) -> bytes:
        """Answer an outstanding request (rule 3) with its result or an `Error`.

        Args:
            frame: the answer; sends are answered with `stored` instead.

        Returns:
            The frame's bytes, to send.

        Raises:
            RelayConnectionMisuse: the request is not outstanding, or its answer is of
                another kind.
        """
        if isinstance(frame, Stored | Deliver):
            raise RelayConnectionMisuse("Stored and Deliver frames come from stored/deliver")
        rid = frame.request_id
        kind = self._outstanding.get(rid)
        if kind is None:
            raise RelayConnectionMisuse(f"request {rid} is not outstanding")
        if not isinstance(frame, Error) and type(frame) is not REPLY_KINDS[kind]:
            raise RelayConnectionMisuse(
                f"a {kind.__name__} request answered with {type(frame).__name__}")
        data = encode(frame)
        del self._outstanding[rid]
        return data

    def error(self, request_id: int, code: ErrorCode) -> bytes:
        """Refuse an outstanding request with `code` and its fixed reason (see `reply`)."""
        return self.reply(Error(request_id, code, self.reason(code)))

    def stored(self, request_id: int, seq: int) -> None:
        """Answer an outstanding send: its envelope is stored as `seq` (rule 4).

        Raises:
            RelayConnectionMisuse: the request is not an outstanding send.
        """
        item = StoredItem(request_id, seq)
        if self._outstanding.get(request_id) is not Send:
            raise RelayConnectionMisuse(f"request {request_id} is not an outstanding send")
        del self._outstanding[request_id]
        self._stored.append(item)

    def take_stored(self) -> list[bytes]:
        """The receipts gathered since the last call, as `Stored` frames' bytes."""
        items = self._stored[:]
        self._stored.clear()  # in place: `pending_stored` is the same list
        return [encode(Stored(tuple(items[i : i + MAX_BATCH_ITEMS])))
                for i in range(0, len(items), MAX_BATCH_ITEMS)]

    def deliver(self, mailbox_id: bytes, items: Sequence[Delivery]) -> list[bytes]:
        """Envelopes to push to a subscriber, as `Deliver` frames' bytes (rule 5).

        Args:
            mailbox_id: the subscribed mailbox.
            items: its envelopes, in increasing seq order.

        Returns:
            Frames of at most `MAX_BATCH_ITEMS` envelopes and `MAX_BATCH_BYTES` bytes.

        Raises:
            RelayConnectionMisuse: the seqs do not increase.
        """
        if not _increasing([d.seq for d in items], 0):
            raise RelayConnectionMisuse("deliveries must be in increasing seq order")
        frames: list[bytes] = []
        batch: list[Delivery] = []
        size = 0
        for item in items:
            if batch and (len(batch) == MAX_BATCH_ITEMS
                          or size + len(item.envelope) > MAX_BATCH_BYTES):
                frames.append(encode(Deliver(mailbox_id, tuple(batch))))
                batch, size = [], 0
            batch.append(item)
            size += len(item.envelope)
        if batch:
            frames.append(encode(Deliver(mailbox_id, tuple(batch))))
        return frames

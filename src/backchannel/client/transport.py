"""An async client for the relay protocol over WebSockets.

One `RelayClient` is one connection to one relay. Requests are pipelined: each gets a fresh
request id and a future that the reader task resolves when the relay answers, so many
sends may be in flight at once. Deliveries pushed by the relay are queued for `receive`.
Request ids, the correlation of answers, reply kinds and the delivery window are the
sans-I/O `ClientConnection`'s (`protocol/relayconn.py`); this adapter only moves bytes
and futures. The client imports only `backchannel.protocol`; it knows nothing of the
relay's insides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Final, TypeVar

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from backchannel.protocol.envelope import MAILBOX_ID_SIZE
from backchannel.protocol.errors import BackchannelError, RemoteProtocolError
from backchannel.protocol.relayconn import (
    Answer,
    ClientConnection,
    Delivered,
    Refusal,
    StoredAnswer,
)
from backchannel.protocol.relayframes import (
    MAX_BATCH_ITEMS,
    MAX_RESPONSE_FRAME_SIZE,
    MAX_SEND_BATCH,
    MAX_SEND_BATCH_BYTES,
    TOKEN_SIZE,
    Ack,
    Acked,
    BatchResult,
    BatchStored,
    Create,
    Created,
    Delete,
    Deleted,
    Delivery,
    ErrorCode,
    Fetch,
    Fetched,
    Ping,
    Pong,
    Request,
    Send,
    SendBatch,
    Subscribe,
    Subscribed,
    token_hash,
)
from backchannel.protocol.text import escaped

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "KEEPALIVE_INTERVAL",
    "KEEPALIVE_TIMEOUT",
    "RELAY_ERROR_TEXT",
    "MailboxCaps",
    "RelayBrokeProtocol",
    "RelayClient",
    "RelayClosed",
    "RelayRequestError",
    "RelayTimeout",
    "relay_error_text",
]

# Seconds to wait for the WebSocket opening handshake.
DEFAULT_OPEN_TIMEOUT: Final = 10.0
# Seconds a relay has to answer one request. A relay answers after one group commit (an
# fsync, tens of milliseconds) even across an ocean; five seconds tells a relay that has
# stopped answering from a slow one, and leaves room inside a sync's 10-second deadline.
DEFAULT_REQUEST_TIMEOUT: Final = 5.0
# WebSocket keepalive: a ping every 20 s, and the connection is dropped when its pong has
# not come 20 s later. A connection through NAT or a proxy that silently died is noticed
# within 40 s, even by a `watch` that has nothing to send (the websockets defaults).
KEEPALIVE_INTERVAL: Final = 20.0
KEEPALIVE_TIMEOUT: Final = 20.0
# Seconds to wait for the relay's half of the closing handshake before dropping the TCP
# connection: a relay that stopped answering requests may not answer a close either.
_CLOSE_TIMEOUT: Final = 1.0

_Answer = TypeVar("_Answer")


# What the client says for each relay error code (docs/relay.md, "Error codes"). A relay's
# own reason string is free text from a party we do not trust: it never reaches a message,
# a log or the terminal; the code, which the relay cannot make say anything else, does.
RELAY_ERROR_TEXT: Final[Mapping[ErrorCode, str]] = MappingProxyType({
    ErrorCode.MALFORMED: "the relay could not read the request",
    ErrorCode.UNKNOWN_COMMAND: "the relay does not know this request",
    ErrorCode.UNSUPPORTED_VERSION: "the relay does not speak this protocol version",
    ErrorCode.RATE_LIMITED: "the relay is limiting requests from this address; try later",
    ErrorCode.UNAUTHORIZED: "the relay has no such mailbox, or the token does not open it",
    ErrorCode.MAILBOX_EXISTS: "a mailbox with this id already exists on the relay",
    ErrorCode.QUOTA_EXCEEDED: "the mailbox on the relay is full until its owner fetches",
    ErrorCode.BAD_ENVELOPE: "the relay refused the envelope for this mailbox",
    ErrorCode.TOO_MANY_SUBSCRIPTIONS: "too many subscriptions on one relay connection",
    ErrorCode.STORE_FULL: "the relay is full; the message stays queued for it",
    ErrorCode.UNAVAILABLE: "the relay is unavailable for now; try later",
    ErrorCode.INTERNAL: "the relay failed (an error inside the relay)",
    ErrorCode.FORWARDING_DISABLED: "the relay does not forward to other relays",
    ErrorCode.BAD_DESTINATION: "the relay does not forward to that relay",
    ErrorCode.UNKNOWN_KEY: "the relay's key is not the one the send was sealed to",
    ErrorCode.TOO_MANY_FORWARDS: "the relay is forwarding too much at once; try later",
    ErrorCode.DESTINATION_UNAVAILABLE: "the relay could not reach the other relay; try later",
    ErrorCode.KEY_RETIRED: "the send was sealed to a key the relay retired (rotated); "
    "fetch its current key",
})


def relay_error_text(code: int) -> str:
    """The client's own words for a relay error code (``error 12: the mailbox ...``)."""
    try:
        text = RELAY_ERROR_TEXT[ErrorCode(code)]
    except (ValueError, KeyError):  # a code this client does not know
        text = "the relay refused the request"
    return f"relay error {code}: {text}"


class RelayRequestError(BackchannelError):
    """The relay refused a request; ``code`` is its `ErrorCode` value.

    The message is the client's own text for the code (`relay_error_text`). The relay's
    reason is kept, escaped (`protocol.text.escaped`), in ``relay_reason`` for debugging
    only: it is free text from the relay, and is never shown.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(relay_error_text(code))
        self.code = code
        self.relay_reason = escaped(reason)


class RelayClosed(BackchannelError):
    """The connection to the relay is closed (by us, by the relay, or by the network)."""


class RelayTimeout(RelayClosed):
    """The relay did not answer a request in time. Blame: the relay or the network between.

    The connection is closed: whatever the relay was doing, we stop waiting for it, and the
    request may or may not have taken effect (a send is sent again; receivers deduplicate).
    """


class RelayBrokeProtocol(RelayClosed, RemoteProtocolError):
    """The relay broke the relay protocol: a frame that does not decode, an answer of the
    wrong kind or to no request, a delivery out of order or beyond the window. Blame: the
    relay.

    The connection is closed; the relay is treated as down for the operation.
    """


@dataclass(frozen=True, slots=True)
class MailboxCaps:
    """A mailbox id and its two capabilities. Keep the tokens secret; never log them."""

    mailbox_id: bytes
    send_token: bytes = field(repr=False)
    receive_token: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> MailboxCaps:
        """Fresh random id and tokens from the operating system's CSPRNG."""
        return cls(os.urandom(MAILBOX_ID_SIZE), os.urandom(TOKEN_SIZE), os.urandom(TOKEN_SIZE))


class RelayClient:
    """A connection to a relay. Use `connect`, then ``async with`` or `close`.

    Every request waits at most the request timeout for its answer. Besides the errors each
    request names, every request may raise `RelayTimeout` (no answer in time) or
    `RelayBrokeProtocol` (an answer of the wrong kind); both are `RelayClosed`, and the
    connection is closed after either.
    """

    def __init__(
        self, ws: WebSocket, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> None:
        self._ws = ws
        self._request_timeout = request_timeout
        self._conn = ClientConnection()
        self._pending: dict[int, asyncio.Future[Answer | StoredAnswer]] = {}
        self._deliveries: asyncio.Queue[tuple[bytes, Delivery] | None] = asyncio.Queue()
        self._closed: BaseException | None = None
        self._batches = True  # whether the relay may know SEND_BATCH (`send_many`)
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> RelayClient:
        """Open a connection to the relay at `url` (``ws://`` or ``wss://``).

        Args:
            open_timeout: seconds for the WebSocket opening handshake.
            request_timeout: seconds the relay has to answer each request; after that the
                request fails with `RelayTimeout` and the connection is closed.

        Raises:
            OSError: the relay cannot be reached.
            websockets.exceptions.InvalidHandshake: the relay refused the connection.
        """
        ws = await connect(
            url,
            compression=None,
            max_size=MAX_RESPONSE_FRAME_SIZE,
            open_timeout=open_timeout,
            ping_interval=KEEPALIVE_INTERVAL,
            ping_timeout=KEEPALIVE_TIMEOUT,
            close_timeout=_CLOSE_TIMEOUT,
        )
        return cls(ws, request_timeout=request_timeout)

    async def __aenter__(self) -> RelayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """True once the connection is closed, for whatever reason."""
        return self._closed is not None

    async def close(self) -> None:
        """Close the connection and fail every request still waiting."""
        await self._ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    async def _abandon(self, reason: RelayClosed) -> None:
        """Close the connection because of `reason`, which every waiting request gets."""
        if self._closed is None:
            self._closed = reason
        await self.close()

    # --- requests ----------------------------------------------------------------------

    async def _call(self, expect: type[_Answer], build: type[Request], *args: object) -> _Answer:
        """Send one request and wait, at most the request timeout, for its answer.

        Raises:
            RelayRequestError: the relay refused the request.
            RelayTimeout: no answer in time (the connection is then closed).
            RelayBrokeProtocol: the relay broke the protocol, e.g. an answer of the wrong
                kind (the connection is then closed).
            RelayClosed: the connection closed first.
        """
        if self._closed is not None:
            raise RelayClosed("the relay connection is closed")
        # The id is the connection's to give; 0 stands in until it does.
        rid, data = self._conn.send_request(build(0, *args))  # type: ignore[arg-type]
        future: asyncio.Future[Answer | StoredAnswer] = (
            asyncio.get_running_loop().create_future())
        self._pending[rid] = future
        try:
            await self._ws.send(data)
        except ConnectionClosed:
            self._pending.pop(rid, None)
            raise RelayClosed("the relay connection is closed") from None
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation
            # that comes as the answer does, and the cancelled task runs on (a watch whose
            # readers never stop).
            async with asyncio.timeout(self._request_timeout):
                answer = await future
        except TimeoutError:
            self._pending.pop(rid, None)
            timeout = RelayTimeout(
                f"the relay did not answer within {self._request_timeout:g} s"
            )
            await self._abandon(timeout)
            raise timeout from None
        result = answer.frame if isinstance(answer, Answer) else answer
        if not isinstance(result, expect):
            # The connection checks every reply's kind against its request's before it
            # gets here; this only narrows the type, and would fail closed.
            broke = RelayBrokeProtocol(
                f"the relay answered a {build.__name__} request with {type(result).__name__}")
            await self._abandon(broke)
            raise broke
        return result

    async def create_mailbox(self, caps: MailboxCaps | None = None) -> MailboxCaps:
        """Create a mailbox on the relay (fresh random capabilities unless given).

        Returns:
            The capabilities: share the send token with the sender, keep the receive token.

        Raises:
            RelayRequestError: refused (rate limited, id taken).
            RelayClosed: the connection closed first.
        """
        caps = caps if caps is not None else MailboxCaps.generate()
        await self._call(
            Created,
            Create,
            caps.mailbox_id,
            token_hash(caps.send_token),
            token_hash(caps.receive_token),
        )
        return caps

    async def send(self, mailbox_id: bytes, send_token: bytes, envelope: bytes) -> int:
        """Deposit an envelope; returns its sequence number once the relay committed it.

        Raises:
            RelayRequestError: refused (wrong token, quota, not an envelope for the mailbox).
            RelayClosed: the connection closed before the receipt (the envelope may or may
                not be stored: send it again; receivers deduplicate).
        """
        answer = await self._call(StoredAnswer, Send, mailbox_id, send_token, envelope)
        return answer.seq

    async def send_batch(self, mailbox_id: bytes, send_token: bytes,
                         envelopes: tuple[bytes, ...]) -> tuple[BatchResult, ...]:
        """Deposit several envelopes in one frame (`SendBatch`: 1..`MAX_SEND_BATCH`, at
        most `MAX_SEND_BATCH_BYTES` together); returns one outcome per envelope, in order,
        once the relay committed or refused each (``result.stored``, ``result.seq``,
        else ``result.code``).

        Raises:
            RelayRequestError: the whole frame was refused (rate limited, or a relay that
                does not know SEND_BATCH: UNKNOWN_COMMAND; send them one by one then).
            RelayClosed: the connection closed before the answer (any of them may or may
                not be stored: send them again; receivers deduplicate).
        """
        answer = await self._call(BatchStored, SendBatch, mailbox_id, send_token,
                                  tuple(envelopes))
        return answer.results

    async def send_many(self, mailbox_id: bytes, send_token: bytes,
                        envelopes: list[bytes]) -> list[int | RelayRequestError]:
        """Deposit envelopes into one mailbox in as few frames as the relay allows.

        In SEND_BATCH frames of at most `MAX_SEND_BATCH` envelopes and
        `MAX_SEND_BATCH_BYTES`, pipelined; one envelope alone goes as a SEND, and so does
        everything after a relay answered UNKNOWN_COMMAND to a batch (one that predates
        SEND_BATCH). Returns, per envelope in order, its seq once committed or the
        `RelayRequestError` that refused it (for a refused frame, every envelope of it).

        Raises:
            RelayClosed: the connection closed first (any of them may or may not be
                stored: send them again; receivers deduplicate).
        """
        chunks: list[list[bytes]] = []
        size = 0
        for envelope in envelopes:
            if (not chunks or len(chunks[-1]) == MAX_SEND_BATCH
                    or size + len(envelope) > MAX_SEND_BATCH_BYTES):
                chunks.append([])
                size = 0
            chunks[-1].append(envelope)
            size += len(envelope)
        answers = await asyncio.gather(*(self._send_chunk(mailbox_id, send_token, chunk)
                                         for chunk in chunks), return_exceptions=True)
        results: list[int | RelayRequestError] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            results.extend(answer)
        return results

    async def _send_chunk(self, mailbox_id: bytes, send_token: bytes,
                          chunk: list[bytes]) -> list[int | RelayRequestError]:
        if len(chunk) > 1 and self._batches:
            try:
                outcomes = await self.send_batch(mailbox_id, send_token, tuple(chunk))
            except RelayRequestError as refused:
                if refused.code != ErrorCode.UNKNOWN_COMMAND:
                    return [refused] * len(chunk)
                self._batches = False  # an older relay: one SEND each from now on
            else:
                return [r.seq if r.stored else RelayRequestError(r.code, "")
                        for r in outcomes]
        answers = await asyncio.gather(*(self.send(mailbox_id, send_token, envelope)
                                         for envelope in chunk), return_exceptions=True)
        results: list[int | RelayRequestError] = []
        for answer in answers:
            if isinstance(answer, RelayRequestError | int):
                results.append(answer)
            else:
                raise answer
        return results

    async def subscribe(self, mailbox_id: bytes, receive_token: bytes) -> int:
        """Ask the relay to push this mailbox's envelopes; returns how many are pending."""
        answer = await self._call(Subscribed, Subscribe, mailbox_id, receive_token)
        return answer.pending

    async def receive(self, timeout: float | None = None) -> tuple[bytes, Delivery]:
        """The next pushed delivery: ``(mailbox_id, Delivery)``, in order per mailbox.

        Raises:
            TimeoutError: nothing arrived within `timeout` seconds.
            RelayClosed: the connection closed.
        """
        if self._closed is not None and self._deliveries.empty():
            raise RelayClosed("the relay connection is closed")
        async with asyncio.timeout(timeout):  # not wait_for: see `_call`
            item = await self._deliveries.get()
        if item is None:
            self._deliveries.put_nowait(None)
            raise RelayClosed("the relay connection is closed")
        return item

    async def fetch(
        self,
        mailbox_id: bytes,
        receive_token: bytes,
        after_seq: int = 0,
        limit: int = MAX_BATCH_ITEMS,
    ) -> tuple[tuple[Delivery, ...], bool]:
        """Read stored envelopes after `after_seq`; returns them and whether more remain."""
        answer = await self._call(Fetched, Fetch, mailbox_id, receive_token, after_seq, limit)
        return answer.deliveries, answer.more

    async def ack(self, mailbox_id: bytes, receive_token: bytes, seqs: tuple[int, ...]) -> int:
        """Settle envelopes (the relay deletes them); returns how many were still stored."""
        answer = await self._call(Acked, Ack, mailbox_id, receive_token, tuple(seqs))
        return answer.removed

    async def delete(self, mailbox_id: bytes, receive_token: bytes) -> None:
        """Delete the mailbox and everything in it."""
        await self._call(Deleted, Delete, mailbox_id, receive_token)

    async def ping(self) -> None:
        """Round trip to the relay."""
        await self._call(Pong, Ping)

    # --- reader ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason: BaseException = RelayClosed("the relay connection is closed")
        try:
            async for message in self._ws:
                if isinstance(message, str):
                    raise RemoteProtocolError("the relay sent a text frame")
                self._dispatch(self._conn.receive(message))
        except ConnectionClosed:
            pass
        except RemoteProtocolError as exc:
            reason = RelayBrokeProtocol(f"the relay broke the protocol: {exc}")
            await self._ws.close(1002, "protocol error")
        finally:
            # A timeout or a wrong answer that closed the connection is the reason every
            # other waiting request gets too, with its type (its blame).
            if self._closed is None:
                self._closed = reason
            closed = self._closed
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(type(closed)(str(closed)))
            self._pending.clear()
            self._deliveries.put_nowait(None)

    def _dispatch(self, events: list[Answer | StoredAnswer | Refusal | Delivered]) -> None:
        for event in events:
            match event:
                case Delivered(mailbox_id, items):
                    for item in items:
                        self._deliveries.put_nowait((mailbox_id, item))
                case Refusal(rid, code, reason):
                    future = self._pending.pop(rid, None)
                    if future is not None and not future.done():
                        future.set_exception(RelayRequestError(code, reason))
                case Answer(rid) | StoredAnswer(rid):
                    # A request whose wait timed out is no longer pending: its answer
                    # is dropped here (the connection is closing anyway).
                    future = self._pending.pop(rid, None)
                    if future is not None and not future.done():
                        future.set_result(event)

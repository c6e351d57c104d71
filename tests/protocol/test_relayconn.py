"""The sans-I/O relay connection: both ends, their rules, and a model of the two talking.

The model (`ConnectionPair`) drives a real `ClientConnection` and a real
`ServerConnection` joined by two in-order byte queues, as a WebSocket is: the client sends
random requests, the relay answers them in any order (results, refusals, receipts batched
into `Stored`) and pushes deliveries to what is subscribed. Every request must get exactly
one answer event, and no event may name a request never sent.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from backchannel.protocol import relayconn as rc
from backchannel.protocol import relayframes as rf
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.protocol.relayconn import (
    Answer,
    ClientConnection,
    Delivered,
    Malformed,
    Refusal,
    RelayConnectionError,
    RelayConnectionMisuse,
    ServerConnection,
    StoredAnswer,
)
from backchannel.protocol.relayframes import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ITEMS,
    MAX_REQUEST_ID,
    Ack,
    Acked,
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
    Ping,
    Pong,
    Send,
    Stored,
    StoredItem,
    Subscribe,
    Subscribed,
    decode_response,
    encode,
)

MID = b"\x01" * 16
OTHER = b"\x02" * 16
TOK = b"\x03" * 32


def subscribed(client: ClientConnection, mailbox_id: bytes = MID) -> None:
    rid, _ = client.send_request(Subscribe(0, mailbox_id, TOK))
    client.receive(encode(Subscribed(rid, 0)))


def deliver(*seqs: int, mailbox_id: bytes = MID) -> bytes:
    return encode(Deliver(mailbox_id, tuple(Delivery(s, b"e") for s in seqs)))


# --- client: request ids ------------------------------------------------------------------


def test_request_ids_count_from_one_and_replace_the_placeholder() -> None:
    client = ClientConnection()
    rid, data = client.send_request(Ping(0))
    assert rid == 1 and rf.decode_request(data) == Ping(1)
    assert client.send_request(Ping(0))[0] == 2
    assert client.outstanding == 2 and client.is_outstanding(1)


def test_request_ids_wrap_past_zero_and_skip_outstanding_ones() -> None:
    client = ClientConnection()
    first, _ = client.send_request(Ping(0))  # id 1 stays outstanding
    client._last_id = MAX_REQUEST_ID - 1  # as if 2^32 - 2 requests had come and gone
    assert client.send_request(Ping(0))[0] == MAX_REQUEST_ID
    assert client.send_request(Ping(0))[0] == 2  # 0 is never used, 1 is still outstanding
    assert first == 1


# --- client: answers ------------------------------------------------------------------------


def test_each_reply_kind_answers_its_request() -> None:
    client = ClientConnection()
    cases = [
        (Create(0, MID, TOK, TOK), lambda r: Created(r)),
        (Subscribe(0, MID, TOK), lambda r: Subscribed(r, 3)),
        (Fetch(0, MID, TOK, 0, 2), lambda r: Fetched(r, (Delivery(1, b"x"),), False)),
        (Ack(0, MID, TOK, (1,)), lambda r: Acked(r, 1)),
        (Delete(0, MID, TOK), lambda r: Deleted(r)),
        (Ping(0), lambda r: Pong(r)),
    ]
    for request, answer in cases:
        rid, _ = client.send_request(request)
        frame = answer(rid)
        assert client.receive(encode(frame)) == [Answer(rid, frame)]
    assert client.outstanding == 0


def test_a_reply_of_the_wrong_kind_is_the_relays_fault_and_changes_nothing() -> None:
    client = ClientConnection()
    rid, _ = client.send_request(Send(0, MID, TOK, b"env"))
    with pytest.raises(RelayConnectionError):
        client.receive(encode(Acked(rid, 0)))
    assert client.is_outstanding(rid)
    assert client.receive(encode(Stored((StoredItem(rid, 9),)))) == [StoredAnswer(rid, 9)]
    with pytest.raises(RelayConnectionError):  # a duplicate answer
        client.receive(encode(Stored((StoredItem(rid, 9),))))
    with pytest.raises(RelayConnectionError):  # an answer to an id never sent
        client.receive(encode(Pong(77)))


def test_a_stored_frame_is_taken_whole_or_not_at_all() -> None:
    client = ClientConnection()
    a, _ = client.send_request(Send(0, MID, TOK, b"1"))
    b, _ = client.send_request(Send(0, MID, TOK, b"2"))
    ping, _ = client.send_request(Ping(0))
    for items in ((StoredItem(a, 1), StoredItem(ping, 2)), (StoredItem(a, 1), StoredItem(a, 2)),
                  (StoredItem(a, 1), StoredItem(999, 2))):
        with pytest.raises(RelayConnectionError):
            client.receive(encode(Stored(items)))
        assert client.outstanding == 3
    events = client.receive(encode(Stored((StoredItem(b, 5), StoredItem(a, 6)))))
    assert events == [StoredAnswer(b, 5), StoredAnswer(a, 6)]


def test_errors_are_refusals_of_their_request_and_id_zero_breaks_the_connection() -> None:
    client = ClientConnection()
    rid, _ = client.send_request(Ping(0))
    with pytest.raises(RelayConnectionError):
        client.receive(encode(Error(0, ErrorCode.MALFORMED, "malformed frame")))
    [refusal] = client.receive(encode(Error(rid, 0xABCD, "from a newer relay")))
    assert isinstance(refusal, Refusal) and refusal.known is None and client.outstanding == 0
    rid, _ = client.send_request(Ping(0))
    [refusal] = client.receive(encode(Error(rid, ErrorCode.UNAUTHORIZED, "no")))
    assert isinstance(refusal, Refusal) and refusal.known is ErrorCode.UNAUTHORIZED


def test_fetched_and_acked_answers_stay_within_what_was_asked() -> None:
    client = ClientConnection()
    rid, _ = client.send_request(Fetch(0, MID, TOK, 5, 2))
    for bad in ((Delivery(6, b""), Delivery(7, b""), Delivery(8, b"")),  # over the limit
                (Delivery(5, b""),),  # not after after_seq
                (Delivery(7, b""), Delivery(6, b""))):  # out of order
        with pytest.raises(RelayConnectionError):
            client.receive(encode(Fetched(rid, bad, False)))
    assert client.receive(encode(Fetched(rid, (), False))) == [Answer(rid, Fetched(rid, (),
                                                                                 False))]
    rid, _ = client.send_request(Ack(0, MID, TOK, (1, 2)))
    with pytest.raises(RelayConnectionError):
        client.receive(encode(Acked(rid, 3)))


def test_undecodable_bytes_are_a_connection_error() -> None:
    client = ClientConnection()
    for data in (b"", b"\x01", b"\x02\x81\x00\x00\x00\x01", b"\x01\x55", b"\x01\x81\x00"):
        with pytest.raises(RelayConnectionError):
            client.receive(data)
    assert issubclass(RelayConnectionError, RemoteProtocolError)
    assert issubclass(RelayConnectionMisuse, LocalProtocolError)


# --- client: deliveries ---------------------------------------------------------------------


def test_deliveries_need_a_subscription_and_increase() -> None:
    client = ClientConnection()
    with pytest.raises(RelayConnectionError):
        client.receive(deliver(1))
    subscribed(client)
    assert client.subscriptions == {MID}
    [event] = client.receive(deliver(1, 2))
    assert isinstance(event, Delivered) and [d.seq for d in event.deliveries] == [1, 2]
    for stale in (deliver(2), deliver(1), deliver(4, 3), deliver(5, 5)):
        with pytest.raises(RelayConnectionError):
            client.receive(stale)
    client.receive(deliver(9))  # gaps are fine: acked or expired envelopes are skipped
    with pytest.raises(RelayConnectionError):
        client.receive(deliver(10, mailbox_id=OTHER))


def test_the_delivery_window_opens_when_an_ack_is_sent() -> None:
    client = ClientConnection(delivery_window=3)
    subscribed(client)
    client.receive(deliver(1, 2, 3))
    with pytest.raises(RelayConnectionError):
        client.receive(deliver(4))
    assert client.in_flight(MID) == 3
    client.send_request(Ack(0, MID, TOK, (1, 2)))  # before its answer: the relay frees them
    client.receive(deliver(4, 5))
    assert client.in_flight(MID) == 3
    with pytest.raises(RelayConnectionMisuse):
        ClientConnection(delivery_window=0)


def test_a_seq_acked_before_its_push_arrives_is_not_in_flight() -> None:
    client = ClientConnection(delivery_window=2)
    subscribed(client)
    client.send_request(Ack(0, MID, TOK, (1, 2)))  # learned from a fetch; pushes on the way
    client.receive(deliver(1, 2))
    assert client.in_flight(MID) == 0
    client.receive(deliver(3, 4))
    assert client.in_flight(MID) == 2
    client.send_request(Ack(0, MID, TOK, (2,)))  # delivered and acked already: nothing
    with pytest.raises(RelayConnectionError):
        client.receive(deliver(5))


def test_a_deleted_mailbox_is_no_longer_subscribed_and_a_new_subscription_starts_afresh() -> None:
    client = ClientConnection()
    subscribed(client)
    client.receive(deliver(7))
    rid, _ = client.send_request(Delete(0, MID, TOK))
    client.receive(encode(Deleted(rid)))
    with pytest.raises(RelayConnectionError):
        client.receive(deliver(8))
    subscribed(client)
    client.receive(deliver(1))
    subscribed(client)  # subscribing again keeps the subscription and its order
    with pytest.raises(RelayConnectionError):
        client.receive(deliver(1))


# --- server ---------------------------------------------------------------------------------


def test_server_answers_each_request_exactly_once() -> None:
    server = ServerConnection()
    request = server.receive(encode(Ping(5)))
    assert request == Ping(5) and server.outstanding == 1
    assert decode_response(server.reply(Pong(5))) == Pong(5)
    assert server.outstanding == 0
    with pytest.raises(RelayConnectionMisuse):
        server.reply(Pong(5))
    server.receive(encode(Send(6, MID, TOK, b"x")))
    with pytest.raises(RelayConnectionMisuse):
        server.reply(Created(6))  # the wrong kind
    with pytest.raises(RelayConnectionMisuse):
        server.reply(Stored((StoredItem(6, 1),)))  # type: ignore[arg-type]
    with pytest.raises(RelayConnectionMisuse):
        server.stored(7, 1)
    server.stored(6, 1)
    with pytest.raises(RelayConnectionMisuse):
        server.stored(6, 1)
    with pytest.raises(RelayConnectionMisuse):
        server.error(6, ErrorCode.INTERNAL)
    assert server.outstanding == 0


def test_server_refuses_malformed_frames_and_counts_them() -> None:
    server = ServerConnection({ErrorCode.MALFORMED: "malformed frame"})
    bad = server.receive(b"\x01\x04\x00\x00\x00\x09" + b"\x00" * 48 + b"\x80" + b"\x00" * 9)
    assert isinstance(bad, Malformed) and (bad.code, bad.request_id, bad.count) == (
        ErrorCode.MALFORMED, 9, 1)
    assert decode_response(bad.reply) == Error(9, ErrorCode.MALFORMED, "malformed frame")
    version = server.receive(b"\x02\x07\x00\x00\x00\x01")
    assert isinstance(version, Malformed) and version.request_id == 0 and version.count == 2
    assert decode_response(version.reply) == Error(0, ErrorCode.UNSUPPORTED_VERSION,
                                                   "unsupported version")
    assert server.outstanding == 0 and server.malformed == 2


def test_server_refuses_an_id_still_outstanding() -> None:
    server = ServerConnection()
    server.receive(encode(Send(3, MID, TOK, b"x")))
    again = server.receive(encode(Ping(3)))
    assert isinstance(again, Malformed) and again.request_id == 3
    assert server.outstanding == 1
    server.stored(3, 1)
    assert server.receive(encode(Ping(3))) == Ping(3)


def test_server_refusals_of_unread_frames_carry_the_id_where_there_is_one() -> None:
    server = ServerConnection()
    assert decode_response(server.refuse_unread(encode(Ping(0x10203)),
                                                ErrorCode.RATE_LIMITED)).request_id == 0x10203
    assert decode_response(server.refuse_unread(b"\x01", ErrorCode.RATE_LIMITED)).request_id == 0
    assert server.outstanding == 0


def test_receipts_leave_in_stored_frames_of_at_most_a_batch() -> None:
    server = ServerConnection()
    for rid in range(1, 601):
        server.receive(encode(Send(rid, MID, TOK, b"x")))
        server.stored(rid, rid)
    assert len(server.pending_stored) == 600
    frames = [decode_response(data) for data in server.take_stored()]
    assert [len(f.items) for f in frames if isinstance(f, Stored)] == [256, 256, 88]
    assert server.take_stored() == [] and server.pending_stored == []


def test_deliveries_are_split_by_count_and_by_bytes() -> None:
    server = ServerConnection()
    small = [Delivery(i, b"x") for i in range(1, MAX_BATCH_ITEMS + 3)]
    assert [len(f.deliveries) for f in map(decode_response, server.deliver(MID, small))
            if isinstance(f, Deliver)] == [MAX_BATCH_ITEMS, 2]
    big = [Delivery(i, b"\x00" * 65_536) for i in range(1, 7)]
    frames = [decode_response(data) for data in server.deliver(MID, big)]
    sizes = [sum(len(d.envelope) for d in f.deliveries) for f in frames
             if isinstance(f, Deliver)]
    assert sizes == [MAX_BATCH_BYTES, 2 * 65_536]
    assert server.deliver(MID, []) == []
    with pytest.raises(RelayConnectionMisuse):
        server.deliver(MID, [Delivery(2, b""), Delivery(1, b"")])


def test_public_names_are_pinned() -> None:
    assert sorted(rc.__all__) == sorted([
        "DEFAULT_DELIVERY_WINDOW", "REPLY_KINDS", "Answer", "ClientConnection", "ClientEvent",
        "Delivered", "Malformed", "Refusal", "RelayConnectionError", "RelayConnectionMisuse",
        "Result", "ServerConnection", "StoredAnswer"])
    assert all(hasattr(rc, name) for name in rc.__all__)


# --- the two ends talking -----------------------------------------------------------------

WINDOW = 4
MAILBOXES = (MID, OTHER)


class ConnectionPair(RuleBasedStateMachine):
    """A client and a relay end exchanging random requests over two in-order queues."""

    def __init__(self) -> None:
        super().__init__()
        self.client = ClientConnection(delivery_window=WINDOW)
        self.server = ServerConnection()
        self.up: deque[bytes] = deque()  # client -> relay
        self.down: deque[bytes] = deque()  # relay -> client
        self.sent: set[int] = set()
        self.answered: set[int] = set()
        self.work: list[rf.Request] = []  # requests the relay has read and not answered
        self.seq = 0
        # The relay's side of each subscription: last seq pushed, seqs pushed and not acked.
        self.subs: dict[bytes, tuple[int, set[int]]] = {}
        self.delivered: dict[bytes, set[int]] = {mid: set() for mid in MAILBOXES}

    @initialize()
    def subscribe_first(self) -> None:
        # Start subscribed to one mailbox, so that pushes are common from the first step.
        self.client_sends("subscribe", MID, 1)
        self.relay_reads()
        self.relay_answers(0, False, 0)
        self.client_reads()
        assert self.client.subscriptions == {MID}

    @rule(kind=st.sampled_from(["create", "send", "subscribe", "fetch", "ack", "delete",
                                "ping"]),
          mid=st.sampled_from(MAILBOXES), n=st.integers(1, 3),
          # Seqs a client may ack before their push arrives (learned from a fetch).
          ahead=st.lists(st.integers(1, 16), max_size=2))
    def client_sends(self, kind: str, mid: bytes, n: int, ahead: list[int] | None = None) -> None:
        acks = (*sorted(self.delivered[mid])[:n], *(ahead or ()))
        requests: dict[str, rf.Request] = {
            "create": Create(0, mid, TOK, TOK), "send": Send(0, mid, TOK, b"e"),
            "subscribe": Subscribe(0, mid, TOK), "fetch": Fetch(0, mid, TOK, 2, n),
            "ack": Ack(0, mid, TOK, acks or (1,)),
            "delete": Delete(0, mid, TOK), "ping": Ping(0)}
        rid, data = self.client.send_request(requests[kind])
        assert rid not in self.sent - self.answered
        self.sent.add(rid)
        self.up.append(data)

    @precondition(lambda self: self.up)
    @rule()
    def relay_reads(self) -> None:
        request = self.server.receive(self.up.popleft())
        assert not isinstance(request, Malformed)
        if isinstance(request, Ack) and request.mailbox_id in self.subs:
            self.subs[request.mailbox_id][1].difference_update(request.seqs)
        self.work.append(request)

    @precondition(lambda self: self.work)
    @rule(pick=st.integers(0, 50), refuse=st.booleans(), n=st.integers(0, 3))
    def relay_answers(self, pick: int, refuse: bool, n: int) -> None:
        request = self.work.pop(pick % len(self.work))
        rid = request.request_id
        if refuse:
            self.down.append(self.server.error(rid, ErrorCode.UNAVAILABLE))
            return
        match request:
            case Send():
                self.seq += 1
                self.server.stored(rid, self.seq)
            case Subscribe(mailbox_id=mid):
                self.subs.setdefault(mid, (0, set()))
                self.down.append(self.server.reply(Subscribed(rid, n)))
            case Fetch(after_seq=after, limit=limit):
                items = tuple(Delivery(after + 1 + i, b"f") for i in range(min(n, limit)))
                self.down.append(self.server.reply(Fetched(rid, items, False)))
            case Ack(seqs=seqs):
                self.down.append(self.server.reply(Acked(rid, min(n, len(seqs)))))
            case Delete(mailbox_id=mid):
                self.subs.pop(mid, None)
                self.down.append(self.server.reply(Deleted(rid)))
            case Create():
                self.down.append(self.server.reply(Created(rid)))
            case Ping():
                self.down.append(self.server.reply(Pong(rid)))

    @rule()
    def relay_flushes_receipts(self) -> None:
        self.down.extend(self.server.take_stored())

    @rule(mid=st.sampled_from(MAILBOXES), n=st.integers(1, 3), gap=st.integers(0, 2))
    def relay_pushes(self, mid: bytes, n: int, gap: int) -> None:
        if mid not in self.subs:
            return
        last, in_flight = self.subs[mid]
        n = min(n, WINDOW - len(in_flight))
        if n <= 0:
            return
        seqs = [last + gap + 1 + i for i in range(n)]
        in_flight.update(seqs)
        self.subs[mid] = (seqs[-1], in_flight)
        self.down.extend(self.server.deliver(mid, [Delivery(s, b"d") for s in seqs]))

    @precondition(lambda self: self.down)
    @rule()
    def client_reads(self) -> None:
        for event in self.client.receive(self.down.popleft()):
            match event:
                case Answer(rid) | StoredAnswer(rid) | Refusal(rid):
                    assert rid in self.sent and rid not in self.answered
                    self.answered.add(rid)
                case Delivered(mid, items):
                    self.delivered[mid].update(d.seq for d in items)

    @invariant()
    def counts_agree(self) -> None:
        assert self.client.outstanding == len(self.sent - self.answered) >= 0
        assert self.server.outstanding == len(self.work) >= 0

    def teardown(self) -> None:
        # Let everything in flight arrive and be answered: every request, exactly once.
        while self.up:
            self.relay_reads()
        while self.work:
            self.relay_answers(0, False, 1)
        self.relay_flushes_receipts()
        while self.down:
            self.client_reads()
        assert self.answered == self.sent
        assert self.client.outstanding == 0 and self.server.outstanding == 0


ConnectionPair.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                            deadline=None)
TestConnectionPair = ConnectionPair.TestCase

"""Invariant: any sequence of frames fed to a ClientConnection gives events or raises
RelayConnectionError, and fed to a ServerConnection gives requests or Malformed events and
raises nothing; a frame refused changes no state, the outstanding count never goes
negative and falls by exactly the answers given, no answer names a request never sent or
already answered, deliveries come only for subscribed mailboxes in increasing order, and
every request the relay end took can be answered exactly once.

Input: frames, each a u16 length then that many bytes (a short tail is one last frame).
Run: python fuzz/fuzz_relayconn.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import sys

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
    Ack,
    Acked,
    BatchResult,
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
    Ping,
    Pong,
    Request,
    Send,
    SendBatch,
    Stored,
    StoredItem,
    Subscribe,
    Subscribed,
    decode_response,
    encode,
)

_ID = b"\x07" * 16
_TOKEN = b"\x09" * 32
# The requests the client end has outstanding before the fuzzed frames arrive: ids 1..10.
_REQUESTS: list[Request] = [
    Create(0, _ID, _TOKEN, _TOKEN), Send(0, _ID, _TOKEN, b"a"), Send(0, _ID, _TOKEN, b"b"),
    Subscribe(0, _ID, _TOKEN), Fetch(0, _ID, _TOKEN, 3, 4), Ack(0, _ID, _TOKEN, (1, 2)),
    Delete(0, _ID, _TOKEN), Ping(0), Subscribe(0, b"\x08" * 16, _TOKEN),
    SendBatch(0, _ID, _TOKEN, (b"c", b"d")),
]
_WINDOW = 6


def _frames(data: bytes) -> list[bytes]:
    frames: list[bytes] = []
    while len(data) >= 2:
        length = int.from_bytes(data[:2], "big")
        frames.append(data[2 : 2 + length])
        data = data[2 + length :]
    if data:
        frames.append(data)
    return frames


def _pack(*frames: bytes) -> bytes:
    return b"".join(len(f).to_bytes(2, "big") + f for f in frames)


SEEDS = [
    _pack(encode(Subscribed(4, 2)), encode(Deliver(_ID, (Delivery(1, b"x"), Delivery(3, b"y")))),
          encode(Stored((StoredItem(2, 1), StoredItem(3, 2)))), encode(Acked(6, 2))),
    _pack(encode(Created(1)), encode(Fetched(5, (Delivery(4, b"z"),), True)),
          encode(Deleted(7)), encode(Pong(8)), encode(Error(9, 10, "no"))),
    _pack(encode(Subscribed(4, 0)), encode(Deliver(_ID, tuple(Delivery(i, b"") for i in
                                                              range(1, 8)))),
          encode(Deleted(7)), encode(Deliver(_ID, (Delivery(9, b""),)))),
    _pack(encode(Ping(1)), encode(Send(2, _ID, _TOKEN, b"e")), encode(Ack(3, _ID, _TOKEN, (1,))),
          encode(Fetch(4, _ID, _TOKEN, 0, 9)), encode(Ping(1)), b"\x01\x05\x00"),
    # A batch answered whole, short, and again; a batch request for the relay end.
    _pack(encode(BatchStored(10, (BatchResult(0, 3), BatchResult(12, 0)))),
          encode(BatchStored(10, (BatchResult(0, 4),))),
          encode(SendBatch(11, _ID, _TOKEN, (b"f", b"g", b"h")))),
]


def _client(frames: list[bytes]) -> None:
    client = ClientConnection(delivery_window=_WINDOW)
    for request in _REQUESTS:
        client.send_request(request)
    open_ids = {rid for rid in range(1, len(_REQUESTS) + 1)}
    last: dict[bytes, int] = {}
    for data in frames:
        before = (client.outstanding, client.subscriptions,
                  {mid: client.in_flight(mid) for mid in client.subscriptions})
        try:
            events = client.receive(data)
        except RelayConnectionError:
            after = (client.outstanding, client.subscriptions,
                     {mid: client.in_flight(mid) for mid in client.subscriptions})
            assert after == before, "a refused frame changed the state"
            continue
        answers = 0
        for event in events:
            match event:
                case Answer(rid, BatchStored(results=results)):
                    assert rid in open_ids, f"an answer to {rid}, not outstanding"
                    batch = _REQUESTS[rid - 1]
                    assert isinstance(batch, SendBatch)
                    assert len(results) == len(batch.envelopes), "a batch answered in part"
                    open_ids.discard(rid)
                    answers += 1
                case Answer(rid) | StoredAnswer(rid) | Refusal(rid):
                    assert rid in open_ids, f"an answer to {rid}, not outstanding"
                    assert not client.is_outstanding(rid)
                    open_ids.discard(rid)
                    answers += 1
                case Delivered(mid, items):
                    assert mid in before[1], "a delivery for a mailbox not subscribed"
                    seqs = [d.seq for d in items]
                    assert seqs == sorted(set(seqs)) and seqs[0] > last.get(mid, 0)
                    assert client.in_flight(mid) <= _WINDOW
                    last[mid] = seqs[-1]
        assert client.outstanding == before[0] - answers >= 0
        for mid in set(last) - client.subscriptions:
            del last[mid]  # deleted: a new subscription starts afresh
    assert client.outstanding == len(open_ids)


def _server(frames: list[bytes]) -> None:
    server = ServerConnection()
    taken: list[Request] = []
    for data in frames:
        outstanding, malformed = server.outstanding, server.malformed
        event = server.receive(data)
        if isinstance(event, Malformed):
            assert server.outstanding == outstanding and event.count == malformed + 1
            reply = decode_response(event.reply)
            assert isinstance(reply, Error) and reply.request_id == event.request_id
            assert reply.code == event.code
            continue
        assert server.outstanding == outstanding + 1 and server.malformed == malformed
        taken.append(event)
    for request in taken:  # every request taken is answered exactly once
        if isinstance(request, Send):
            server.stored(request.request_id, 1)
        elif isinstance(request, SendBatch):
            results = tuple(BatchResult(0, i + 1) for i in range(len(request.envelopes)))
            answer = decode_response(server.reply(BatchStored(request.request_id, results)))
            assert answer == BatchStored(request.request_id, results)
        else:
            server.error(request.request_id, ErrorCode.UNAVAILABLE)
        try:
            server.error(request.request_id, ErrorCode.INTERNAL)
        except RelayConnectionMisuse:
            pass
        else:
            raise AssertionError("a request was answered twice")
    assert server.outstanding == 0
    for data in server.take_stored():
        assert isinstance(decode_response(data), Stored)


def test_one_input(data: bytes) -> None:
    frames = _frames(data)
    _client(frames)
    _server(frames)


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

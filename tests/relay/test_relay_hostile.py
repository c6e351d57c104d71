"""Hostile clients cannot cost an honest one an answer, on either backend.

Random interleavings of an honest client's requests with hostile frames from several other
connections (poison sequence numbers on mailboxes the attacker owns, so they reach the
store; garbage; wrong tokens; bad envelopes; mailbox-id collisions) are sent to a live relay.
Throughout, the honest client must get every answer exactly once, of the right kind, and
read back exactly what it stored. The poison frames land in the same group commits as the
honest ones, which is what once stopped an SQLite relay for everyone (an ACK with a seq of
2^63 killed its writer) and failed a PostgreSQL relay's whole batch of honest acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backchannel.client.transport import MailboxCaps, RelayClient
from backchannel.protocol.relayframes import (
    MAX_RESPONSE_FRAME_SIZE,
    RELAY_PROTOCOL_VERSION,
    Ack,
    Acked,
    Error,
    Fetch,
    Fetched,
    FrameKind,
    Ping,
    Pong,
    Send,
    Stored,
    decode_response,
    encode,
)
from tests.relay.conftest import PG_DSN, PG_REACHABLE, drop_schema, envelope, number
from tests.relay.test_relay_abuse import RelayThread

pytestmark = pytest.mark.timeout(300)

HOSTILE_CONNECTIONS = 3
# Sequence numbers a store's 64-bit signed integer cannot hold, and the edges around them.
POISON_SEQS = (2**63 - 1, 2**63, 2**64 - 1)


def _raw(kind: FrameKind, request_id: int, body: bytes) -> bytes:
    """A frame built by hand, so that it can carry values the encoder refuses."""
    return bytes([RELAY_PROTOCOL_VERSION, kind]) + struct.pack(">I", request_id) + body


def _poison_ack(caps: MailboxCaps, seq: int) -> bytes:
    body = caps.mailbox_id + caps.receive_token + struct.pack(">HQ", 1, seq)
    return _raw(FrameKind.ACK, 7, body)


def _poison_fetch(caps: MailboxCaps, after: int) -> bytes:
    body = caps.mailbox_id + caps.receive_token + struct.pack(">QH", after, 16)
    return _raw(FrameKind.FETCH, 8, body)


class Scene:
    """The live relay, the honest mailbox and the attacker's own mailbox."""

    def __init__(self, relay: RelayThread, honest: MailboxCaps, hostile: MailboxCaps) -> None:
        self.relay = relay
        self.honest = honest
        self.hostile = hostile
        self.sent = 0  # honest envelopes sent so far, over all examples (their numbers)


def _scene(url: str) -> Scene:
    relay = RelayThread(url)

    async def make() -> tuple[MailboxCaps, MailboxCaps]:
        async with await RelayClient.connect(relay.server.url) as client:
            return await client.create_mailbox(), await client.create_mailbox()

    honest, hostile = relay.call(make())  # type: ignore[misc]
    return Scene(relay, honest, hostile)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def scene(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'relay.db'}"
        schema = None
    else:
        if not PG_REACHABLE:
            pytest.skip(f"PostgreSQL unreachable at {PG_DSN}")
        schema = f"relay_test_{secrets.token_hex(6)}"
        url = f"{PG_DSN}?schema={schema}"
    built = _scene(url)
    yield built
    built.relay.stop()
    if schema is not None:
        asyncio.run(drop_schema(schema))


# One step of a script: ("send",), ("ping",), ("ack",),
# or ("hostile", connection, frame maker, salt).
def _hostile_frame(scene: Scene, which: int, salt: bytes) -> bytes:
    honest, own = scene.honest, scene.hostile
    stranger = MailboxCaps.generate()
    makers = (
        lambda: _poison_ack(own, POISON_SEQS[salt[0] % 3]),
        lambda: _poison_fetch(own, POISON_SEQS[salt[0] % 3]),
        lambda: _poison_ack(honest, POISON_SEQS[salt[0] % 3]),  # wrong token below
        lambda: salt,  # garbage
        lambda: encode(Send(9, honest.mailbox_id, stranger.send_token,
                            envelope(honest.mailbox_id, 0))),
        lambda: encode(Send(9, own.mailbox_id, own.send_token,
                            envelope(honest.mailbox_id, 0))),  # addressed to another mailbox
        lambda: _raw(FrameKind.CREATE, 9, honest.mailbox_id + b"\x00" * 64),  # id collision
        lambda: encode(Ack(9, own.mailbox_id, own.receive_token, (1, 2**62))),
    )
    frame = makers[which % len(makers)]()
    if which % len(makers) == 2:  # the honest mailbox, but the attacker has no token for it
        frame = frame[:22] + stranger.receive_token + frame[54:]
    return frame


step = st.one_of(
    st.just(("send",)),
    st.just(("ping",)),
    st.just(("ack",)),
    st.tuples(st.just("hostile"), st.integers(0, HOSTILE_CONNECTIONS - 1),
              st.integers(0, 7), st.binary(min_size=1, max_size=80)),
)


async def _drain(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def _play(scene: Scene, script: list[tuple[object, ...]]) -> None:
    url = scene.relay.server.url
    honest = scene.honest
    async with contextlib.AsyncExitStack() as stack:
        mine = await stack.enter_async_context(
            connect(url, compression=None, max_size=MAX_RESPONSE_FRAME_SIZE))
        others = [await stack.enter_async_context(
            connect(url, compression=None, max_size=MAX_RESPONSE_FRAME_SIZE))
            for _ in range(HOSTILE_CONNECTIONS)]
        drains = [asyncio.create_task(_drain(ws)) for ws in others]
        expected: dict[int, type] = {}
        numbers: dict[int, int] = {}
        rid = 100
        for action in script:
            if action[0] == "hostile":
                _, index, which, salt = action
                with contextlib.suppress(ConnectionClosed):  # closed for its misconduct
                    await others[index].send(  # type: ignore[index]
                        _hostile_frame(scene, which, salt))  # type: ignore[arg-type]
                continue
            rid += 1
            if action[0] == "send":
                scene.sent += 1
                numbers[rid] = scene.sent
                expected[rid] = Stored
                await mine.send(encode(Send(rid, honest.mailbox_id, honest.send_token,
                                            envelope(honest.mailbox_id, scene.sent))))
            elif action[0] == "ack":
                # A seq never stored: the answer is "0 removed", unless the batch failed.
                expected[rid] = Acked
                await mine.send(encode(Ack(rid, honest.mailbox_id, honest.receive_token,
                                           (2**62,))))
            else:
                expected[rid] = Pong
                await mine.send(encode(Ping(rid)))
        answers: dict[int, list[object]] = {r: [] for r in expected}
        stored: dict[int, int] = {}

        def note(request_id: int, what: object) -> None:
            assert request_id in answers, f"an answer to request {request_id}, never sent"
            answers[request_id].append(what)

        async def collect() -> None:
            while any(not got for got in answers.values()):
                frame = decode_response(await mine.recv())  # type: ignore[arg-type]
                match frame:
                    case Stored(items):
                        for item in items:
                            note(item.request_id, Stored)
                            stored[item.request_id] = item.seq
                    case Pong(request_id):
                        note(request_id, Pong)
                    case Acked(request_id, removed):
                        assert removed == 0
                        note(request_id, Acked)
                    case Error(request_id, code, _):
                        note(request_id, code)
                    case _:
                        raise AssertionError(f"unexpected answer {frame!r}")

        await asyncio.wait_for(collect(), 20)
        # Anything arriving a moment later would be a second answer to one request.
        with contextlib.suppress(TimeoutError):
            extra = await asyncio.wait_for(mine.recv(), 0.2)
            raise AssertionError(f"an extra answer: {decode_response(extra)!r}")  # type: ignore[arg-type]
        for request_id, kind in expected.items():
            assert answers[request_id] == [kind], (request_id, answers[request_id])
        seqs = [stored[r] for r in sorted(stored)]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # Read back exactly what was stored, then settle it so the quota never fills.
        if seqs:
            await mine.send(encode(Fetch(1, honest.mailbox_id, honest.receive_token,
                                         seqs[0] - 1, 256)))
            fetched = decode_response(await asyncio.wait_for(mine.recv(), 10))  # type: ignore[arg-type]
            assert isinstance(fetched, Fetched)
            got = [(d.seq, number(d.envelope)) for d in fetched.deliveries]
            assert got == [(stored[r], numbers[r]) for r in sorted(stored)]
            await mine.send(encode(Ack(2, honest.mailbox_id, honest.receive_token,
                                       tuple(seqs))))
            acked = decode_response(await asyncio.wait_for(mine.recv(), 10))  # type: ignore[arg-type]
            assert acked == Acked(2, len(seqs))
        for task in drains:
            task.cancel()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(script=st.lists(step, min_size=1, max_size=40))
def test_honest_client_gets_every_answer_exactly_once(scene: Scene,
                                                      script: list[tuple[object, ...]]) -> None:
    asyncio.run(_play(scene, script))
    # The relay is still whole: healthy, and storing for everyone.
    assert scene.relay.call(scene.relay.server.store.healthy()) is True


def test_a_poison_ack_among_honest_acks_fails_alone(scene: Scene) -> None:
    """The review's case: one ACK with seq 2^63 beside a batch of honest sends and acks."""
    script: list[tuple[object, ...]] = []
    for i in range(60):
        script.append(("send",))
        script.append(("ack",))
        if i % 10 == 0:
            script.append(("hostile", 0, 0, bytes([1])))  # seq 2^63 on the attacker's mailbox
    asyncio.run(_play(scene, script))
    assert scene.relay.call(scene.relay.server.store.healthy()) is True


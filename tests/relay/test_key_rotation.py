"""Rotating a relay's forwarding key (docs/relay.md "Key rotation"): the key file is
versioned and a version 1 file (the seed alone) still loads; after `relay key rotate` the
relay publishes and opens both keys for the overlap, and then refuses the old one with
KEY_RETIRED. Real relays on 127.0.0.1 (one forwarding, one destination) with a clock the
test moves; real key files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backchannel.cli.main import app
from backchannel.client.routing import ForwardRefused, fetch_relay_key, forward_send
from backchannel.client.transport import RelayClient, relay_error_text
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair, RelayPublicKey
from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay import RelayLimits, RelayServer, open_store
from backchannel.relay.relaykey import (
    DAY_SECONDS,
    MAX_RETIRED,
    BadKeyFile,
    RelayKeyRing,
    load_or_create_key,
    read_key,
    rotate_key,
)
from tests.relay.conftest import envelope

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000.0
OVERLAP = 2 * DAY_SECONDS


def test_a_version_1_key_file_still_loads_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    seed = os.urandom(KEY_SEED_SIZE)
    path.write_bytes(seed)  # what relays wrote before rotation
    path.chmod(0o600)
    old = read_key(path)
    assert old.public == RelayKeyPair(seed).public and old.previous is None
    ring = rotate_key(path, NOW, OVERLAP)
    assert path.stat().st_mode & 0o777 == 0o600
    assert not path.with_name("relay.key.new").exists()
    again = read_key(path)  # version 3 now
    assert again.public == ring.public != old.public
    assert again.previous is not None and again.previous.public == old.public
    assert again.previous_until == NOW + OVERLAP and again.retired == ()
    assert again.published(NOW + OVERLAP) == [ring.public, old.public]
    assert again.published(NOW + OVERLAP + 1) == [ring.public]
    # A second rotation drops the oldest seed; its id stays, to be refused precisely.
    third = rotate_key(path, NOW + 1, OVERLAP)
    assert read_key(path).retired == (old.public.key_id,)
    assert third.previous is not None and third.previous.public == ring.public
    for _ in range(MAX_RETIRED + 3):
        rotate_key(path, NOW + 2, OVERLAP)
    assert len(read_key(path).retired) == MAX_RETIRED
    # A fresh relay writes version 3 (with an identity of its own) from the start.
    made = load_or_create_key(tmp_path / "fresh.key")
    assert read_key(tmp_path / "fresh.key").public == made.public
    assert (tmp_path / "fresh.key").read_bytes().startswith(b"bcrlykey\x03")


def test_damaged_key_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    good = RelayKeyRing(RelayKeyPair(os.urandom(KEY_SEED_SIZE))).rotated(
        os.urandom(KEY_SEED_SIZE), NOW, OVERLAP).to_bytes()
    for bad in (b"", b"short", good[:-1], good + b"\0", b"bcrlykey\x04" + good[9:],
                b"notakey!" + good[8:], good[:137] + b"\x02" + good[138:]):
        path.write_bytes(bad)
        with pytest.raises(BadKeyFile):
            read_key(path)
    with pytest.raises(FileNotFoundError):
        rotate_key(tmp_path / "none.key", NOW)
    assert not (tmp_path / "none.key").exists()


async def _start(db: Path, key: RelayKeyRing | None, clock: list[float]) -> RelayServer:
    limits = RelayLimits()
    server = RelayServer(open_store(f"sqlite:///{db}", limits), limits, host="127.0.0.1",
                         port=0, forward_key=key, forward_to_local=True,
                         clock=lambda: clock[0])
    await server.start()
    return server


async def _published(url: str) -> list[RelayPublicKey]:
    """GET /relay-keys: one key per line."""
    port = int(url.rsplit(":", 1)[1].strip("/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /relay-keys HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    return [RelayPublicKey.from_text(line) for line in body.decode().split()]


async def test_the_previous_key_opens_during_the_overlap_and_is_retired_after(
    tmp_path: Path,
) -> None:
    clock = [NOW]
    path = tmp_path / "d.key"
    old = load_or_create_key(path)
    ring = rotate_key(path, NOW, OVERLAP)
    f = await _start(tmp_path / "f.db", RelayKeyRing(RelayKeyPair(os.urandom(KEY_SEED_SIZE))),
                     clock)
    d = await _start(tmp_path / "d.db", read_key(path), clock)
    try:
        async with await RelayClient.connect(d.url) as receiver:
            caps = await receiver.create_mailbox()

        async def forward(key: RelayPublicKey, n: int) -> int:
            return await forward_send(f.url, d.url, key, caps.mailbox_id, caps.send_token,
                                      envelope(caps.mailbox_id, n))

        # Published: the current key alone where clients fetch one, both at /relay-keys.
        assert await fetch_relay_key(d.url) == ring.public
        assert await _published(d.url) == [ring.public, old.public]
        # During the overlap a send sealed to either key is stored.
        assert await forward(old.public, 1) == 1
        assert await forward(ring.public, 2) == 2
        clock[0] = NOW + OVERLAP  # the overlap's last second
        assert await forward(old.public, 3) == 3
        # After it, the old key is refused as retired; a key never this relay's, as unknown.
        clock[0] = NOW + OVERLAP + 1
        with pytest.raises(ForwardRefused) as refused:
            await forward(old.public, 4)
        assert refused.value.code == ErrorCode.KEY_RETIRED
        assert "retired" in relay_error_text(refused.value.code)
        with pytest.raises(ForwardRefused) as refused:
            await forward(RelayKeyPair(os.urandom(KEY_SEED_SIZE)).public, 5)
        assert refused.value.code == ErrorCode.UNKNOWN_KEY
        assert await forward(ring.public, 6) == 4
        assert await _published(d.url) == [ring.public]
        # A forward sealed to the forwarding relay's own previous key would come back to
        # it: refused, as for its current key.
        f.forward_key = f.forward_key.rotated(os.urandom(KEY_SEED_SIZE), clock[0], OVERLAP)
        assert f.forward_key.previous is not None
        with pytest.raises(ForwardRefused) as refused:
            await forward_send(f.url, d.url, f.forward_key.previous.public, caps.mailbox_id,
                               caps.send_token, envelope(caps.mailbox_id, 7))
        assert refused.value.code == ErrorCode.BAD_DESTINATION
        async with await RelayClient.connect(d.url) as receiver:
            items, _ = await receiver.fetch(caps.mailbox_id, caps.receive_token)
        assert len(items) == 4
    finally:
        await f.stop()
        await d.stop()


def test_relay_key_rotate_and_show(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    first = load_or_create_key(path)

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, ["relay", "key", *args, "--key-file", str(path)])
        return result.exit_code, result.stdout, result.stderr

    code, out, _ = run("rotate", "--overlap-days", "3", "--json")
    assert code == 0
    rotated = json.loads(out)
    assert rotated["rotated"] and rotated["previous"]["key_id"] == first.public.key_id.hex()
    assert rotated["previous"]["open"] is True
    assert rotated["key_id"] == read_key(path).public.key_id.hex() != first.public.key_id.hex()
    code, out, _ = run()
    assert code == 0 and "previous     " + first.public.key_id.hex() in out
    assert "opens sealed sends until" in out
    code, _, err = run("spin")
    assert code == 2 and "show or rotate" in err
    code, _, err = run("rotate", "--overlap-days", "-1")
    assert code == 2


async def test_a_running_relay_takes_the_rotated_key_on_sighup(tmp_path: Path) -> None:
    from tests.relay.test_relay_process import RelayProcess

    relay = RelayProcess(f"sqlite:///{tmp_path / 'relay.db'}")
    try:
        first = await fetch_relay_key(relay.url)
        assert relay.lines[0]["key_id"] == first.key_id.hex()
        ring = rotate_key(tmp_path / "relay.key", NOW, OVERLAP)
        assert await fetch_relay_key(relay.url) == first  # not before it is told
        relay.proc.send_signal(signal.SIGHUP)
        assert relay.proc.stderr is not None
        reloaded = json.loads(await asyncio.to_thread(relay.proc.stderr.readline))
        assert reloaded["event"] == "key reloaded"
        assert reloaded["key_id"] == ring.public.key_id.hex()
        assert await fetch_relay_key(relay.url) == ring.public
    finally:
        assert relay.stop() == 0

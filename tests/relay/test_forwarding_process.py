"""Private routing between two `backchannel relay serve` processes: the key file made on
first start and kept, its id in the `listening` line, `--no-forwarding`."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client.routing import ForwardRefused, fetch_relay_key, forward_send
from backchannel.client.transport import RelayClient
from backchannel.protocol.relayframes import ErrorCode
from tests.relay.conftest import envelope
from tests.relay.test_relay_process import RelayProcess, processes  # noqa: F401 - fixture

pytestmark = pytest.mark.timeout(120)


async def test_forward_between_two_relay_processes(
        tmp_path: Path, processes: list[RelayProcess]) -> None:  # noqa: F811 - fixture
    d_db = tmp_path / "d" / "relay.db"
    d_db.parent.mkdir()
    d = RelayProcess(f"sqlite:///{d_db}")
    processes.append(d)
    key_file = tmp_path / "d" / "relay.key"  # beside the database, made on first start
    assert key_file.stat().st_mode & 0o777 == 0o600
    d_key = await fetch_relay_key(d.url)
    assert d.lines[0]["key_id"] == d_key.key_id.hex()
    assert d.lines[0]["key_fingerprint"] == d_key.fingerprint
    f = RelayProcess(f"sqlite:///{tmp_path / 'f.db'}", "--key-file",
                     str(tmp_path / "f-key"), "--forward-to-local")
    processes.append(f)
    assert (tmp_path / "f-key").exists() and f.lines[0]["key_id"] != d.lines[0]["key_id"]
    async with await RelayClient.connect(d.url) as receiver:
        caps = await receiver.create_mailbox()
        env = envelope(caps.mailbox_id, 3)
        assert await forward_send(f.url, d.url, d_key, caps.mailbox_id, caps.send_token,
                                  env) == 1
        items, _ = await receiver.fetch(caps.mailbox_id, caps.receive_token)
        assert [i.envelope for i in items] == [env]
    assert d.stop() == 0
    again = RelayProcess(f"sqlite:///{d_db}")  # the same key after a restart
    processes.append(again)
    assert again.lines[0]["key_id"] == d_key.key_id.hex()

    closed = RelayProcess(f"sqlite:///{tmp_path / 'c.db'}", "--no-forwarding")
    processes.append(closed)
    assert closed.lines[0]["forwarding"] is False
    with pytest.raises(ForwardRefused) as refused:
        await forward_send(closed.url, again.url, d_key, caps.mailbox_id, caps.send_token,
                           env)
    assert refused.value.code == ErrorCode.FORWARDING_DISABLED

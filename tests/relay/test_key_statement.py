"""The relay's identity and its signed key statement (protocol/keystatement.py,
relay/relaykey.py, GET /relay-key-statement): the statement verifies under the identity
alone, names the current and previous keys, survives rotation under the same identity,
and key files of versions 1 and 2 load with an identity that stays the same."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backchannel.cli.main import app
from backchannel.client.routing import fetch_key_statement, fetch_relay_key
from backchannel.client.transport import RelayClosed
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair
from backchannel.protocol.keystatement import (
    IDENTITY_SEED_SIZE,
    KeyStatement,
    RelayIdentity,
    StatementRefused,
)
from backchannel.relay import RelayLimits, RelayServer, open_store
from backchannel.relay.relaykey import (
    DAY_SECONDS,
    RelayKeyRing,
    load_or_create_key,
    read_key,
    rotate_key,
)

pytestmark = pytest.mark.timeout(60)

NOW = 1_800_000_000.0


def _ring() -> RelayKeyRing:
    return RelayKeyRing(RelayKeyPair(os.urandom(KEY_SEED_SIZE)),
                        identity_seed=os.urandom(IDENTITY_SEED_SIZE))


def test_the_statement_names_current_and_previous_and_verifies_under_the_pin() -> None:
    ring = _ring().rotated(os.urandom(KEY_SEED_SIZE), NOW, DAY_SECONDS)
    pin = ring.identity.public
    assert ring.previous is not None
    during = KeyStatement.from_bytes(ring.statement(NOW + 1).raw, pin)
    assert during.keys == ((ring.public, 0), (ring.previous.public, int(NOW + DAY_SECONDS)))
    assert during.current == ring.public and during.issued_at == int(NOW + 1)
    after = KeyStatement.from_text(ring.statement(NOW + DAY_SECONDS + 1).to_text(), pin)
    assert after.keys == ((ring.public, 0),)
    # Another relay's statement is refused against this pin, however well signed.
    other = _ring().statement(NOW)
    assert KeyStatement.from_bytes(other.raw).identity != pin
    with pytest.raises(StatementRefused, match="pin"):
        KeyStatement.from_bytes(other.raw, pin)


def test_every_changed_byte_of_a_statement_is_refused() -> None:
    ring = _ring()
    raw = ring.statement(NOW).raw
    for at in range(0, len(raw), 7):
        changed = bytearray(raw)
        changed[at] ^= 0x01
        with pytest.raises(StatementRefused):
            KeyStatement.from_bytes(bytes(changed), ring.identity.public)
    for bad in (raw[:-1], raw + b"\0", b"", raw[:40]):
        with pytest.raises(StatementRefused):
            KeyStatement.from_bytes(bad)


def test_a_statement_is_signed_with_its_current_key_first() -> None:
    ring = _ring()
    key = ring.public
    for keys in ([], [(key, 5)], [(key, 0), (key, 0)], [(key, 0)] * 5):
        with pytest.raises(LocalProtocolError):
            ring.identity.sign(keys, int(NOW))


def test_old_key_files_keep_one_identity_and_rotation_writes_it_out(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    seed = os.urandom(KEY_SEED_SIZE)
    path.write_bytes(seed)  # version 1
    first = read_key(path).identity.public
    assert read_key(path).identity.public == first  # the same at every start
    assert first == RelayIdentity.derived_from(seed).public
    rotated = rotate_key(path, NOW, DAY_SECONDS)
    assert path.read_bytes().startswith(b"bcrlykey\x03")
    assert rotated.identity.public == read_key(path).identity.public == first
    assert rotated.public != RelayKeyPair(seed).public
    # Version 2 (from a rotation before identities): its identity follows its current seed.
    v2 = RelayKeyRing(RelayKeyPair(seed)).rotated(os.urandom(KEY_SEED_SIZE), NOW, 0.0)
    old = bytearray(v2.to_bytes())
    old[8] = 2
    del old[9 : 9 + IDENTITY_SEED_SIZE]
    path.write_bytes(bytes(old))
    loaded = read_key(path)
    assert loaded.public == v2.public and loaded.previous is not None
    assert loaded.identity.public == RelayIdentity.derived_from(v2.current.seed).public
    # A fresh key file has an identity of its own, kept by every rotation.
    fresh = load_or_create_key(tmp_path / "fresh.key")
    assert fresh.identity.public != RelayIdentity.derived_from(fresh.current.seed).public
    again = rotate_key(tmp_path / "fresh.key", NOW, DAY_SECONDS)
    assert again.identity.public == fresh.identity.public


async def test_the_relay_serves_its_statement(tmp_path: Path) -> None:
    clock = [NOW]
    ring = _ring()
    limits = RelayLimits()
    relay = RelayServer(open_store(f"sqlite:///{tmp_path / 'r.db'}", limits), limits,
                        host="127.0.0.1", port=0, forward_key=ring, clock=lambda: clock[0])
    keyless = RelayServer(open_store(f"sqlite:///{tmp_path / 'k.db'}", limits), limits,
                          host="127.0.0.1", port=0)
    await relay.start()
    await keyless.start()
    try:
        statement = await fetch_key_statement(relay.url, ring.identity.public)
        assert statement.keys == ((await fetch_relay_key(relay.url), 0),)
        with pytest.raises(StatementRefused):
            await fetch_key_statement(relay.url, _ring().identity.public)
        with pytest.raises(RelayClosed):
            await fetch_key_statement(keyless.url, None)
        relay.forward_key = ring.rotated(os.urandom(KEY_SEED_SIZE), NOW, DAY_SECONDS)
        rotated = await fetch_key_statement(relay.url, ring.identity.public)
        assert [k for k, _ in rotated.keys] == [relay.forward_key.public, ring.public]
    finally:
        await relay.stop()
        await keyless.stop()


def test_relay_key_shows_an_identity_that_rotation_keeps(tmp_path: Path) -> None:
    path = tmp_path / "relay.key"
    made = load_or_create_key(path)

    def show(*args: str) -> dict[str, object]:
        result = CliRunner().invoke(app, ["relay", "key", *args, "--key-file", str(path),
                                          "--json"])
        assert result.exit_code == 0, result.stderr
        return dict(json.loads(result.stdout))

    before = show()
    assert before["identity"] == made.identity.public.hex()
    assert before["identity_fingerprint"] == made.identity.fingerprint
    after = show("rotate")
    assert after["identity"] == before["identity"] and after["key_id"] != before["key_id"]

"""What we know of each relay: its health (last reached, last error), on which
channels it lost our mailboxes (design §5: each relay on its own), its forwarding key (for
private routing: `client.routing`), and the pin of its identity with the last key statement
verified against it (`client.keypins`)."""

from __future__ import annotations

import json
from typing import Final

from backchannel.client.keystore import Keystore
from backchannel.client.reports import RelayHealth
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import RelayPublicKey
from backchannel.protocol.keystatement import PIN_SIZE, KeyStatement

__all__ = ["RelayRepository"]

_HEALTH: Final = "relay-health"
_LOST: Final = "relay-lost"
_ERROR: Final = "relay-error"
_KEY: Final = "relay-key"
_DOWN_SINCE: Final = "relay-down-since"
_PIN: Final = "relay-pin"
_STATEMENT: Final = "relay-key-statement"


class RelayRepository:
    """Relay health and lost-relay records (writes inside the caller's transaction)."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"RelayRepository({self._store!r})"

    def health(self, url: str) -> RelayHealth:
        raw = self._store.get(_HEALTH, url.encode())
        if raw is None:
            return RelayHealth(url, 0, "", 0)
        last_ok, error, error_ms = json.loads(raw)
        return RelayHealth(url, int(last_ok), str(error), int(error_ms))

    def record_health(self, up: list[str], down: dict[str, str], now_ms: int) -> None:
        """Relays reached now (`up`) and relays down now with why (read and written in the
        caller's transaction)."""
        for url in up:
            old = self.health(url)
            self._put_health(RelayHealth(url, now_ms, old.last_error, old.last_error_ms))
            self._store.delete(_DOWN_SINCE, url.encode())
        for url, reason in down.items():
            old = self.health(url)
            self._put_health(RelayHealth(url, old.last_ok_ms, reason, now_ms))
            if self._store.get(_DOWN_SINCE, url.encode()) is None:
                self._store.put(_DOWN_SINCE, url.encode(), str(now_ms).encode())

    def down_since(self, url: str) -> int | None:
        """When a pass first found the relay down since it was last reached (ms), or None
        if the last pass that tried it reached it."""
        raw = self._store.get(_DOWN_SINCE, url.encode())
        return None if raw is None else int(raw)

    def _put_health(self, health: RelayHealth) -> None:
        record = [health.last_ok_ms, health.last_error, health.last_error_ms]
        self._store.put(_HEALTH, health.url.encode(), json.dumps(record).encode())

    def put_key(self, url: str, key: RelayPublicKey) -> None:
        """Remember a relay's forwarding key (the latest one given wins)."""
        self._store.put(_KEY, url.encode(), key.to_bytes())

    def key(self, url: str) -> RelayPublicKey | None:
        """The relay's forwarding key as last given, or None (none known, or damaged)."""
        raw = self._store.get(_KEY, url.encode())
        if raw is None:
            return None
        try:
            return RelayPublicKey.from_bytes(raw)
        except BackchannelError:
            return None

    def forget_key(self, url: str) -> None:
        """No key of the relay is to be used any more (it changed its key and no new one
        verifies): forget ours."""
        self._store.delete(_KEY, url.encode())

    def put_pin(self, url: str, pin: bytes) -> None:
        """Pin the relay's identity (from an invite, or first seen). A pin that differs
        from the one held drops the key and statement verified under the old one."""
        if len(pin) != PIN_SIZE:
            raise ValueError(f"a relay pin is {PIN_SIZE} bytes")
        if self.pin(url) not in (None, pin):
            self._store.delete(_STATEMENT, url.encode())
            self.forget_key(url)
        self._store.put(_PIN, url.encode(), pin)

    def pin(self, url: str) -> bytes | None:
        """The relay's pinned identity, or None."""
        raw = self._store.get(_PIN, url.encode())
        return raw if raw is not None and len(raw) == PIN_SIZE else None

    def keep_statement(self, url: str, statement: KeyStatement) -> None:
        """Keep a statement verified against the relay's pin, and its current key as the
        key to seal to (the caller verified it)."""
        self._store.put(_STATEMENT, url.encode(), statement.raw)
        self.put_key(url, statement.current)

    def statement(self, url: str) -> KeyStatement | None:
        """The last key statement kept for the relay, verified again against its pin, or
        None (none kept, no pin, or it no longer verifies)."""
        raw, pin = self._store.get(_STATEMENT, url.encode()), self.pin(url)
        if raw is None or pin is None:
            return None
        try:
            return KeyStatement.from_bytes(raw, pin)
        except BackchannelError:
            return None

    def note_refusal(self, url: str, reason: str) -> None:
        """The last refusal for good of an outbox row by this relay."""
        self._store.put(_ERROR, url.encode(), reason.encode())

    def lost(self, channel_id: str, url: str) -> tuple[bool, bool]:
        """(inbound lost, outbound lost) for one relay of a channel."""
        raw = self._store.get(_LOST, bytes.fromhex(channel_id) + url.encode())
        if raw is None:
            return False, False
        data = json.loads(raw)
        return bool(data.get("inbound")), bool(data.get("outbound"))

    def set_lost(
        self,
        channel_id: str,
        url: str,
        now_ms: int,
        *,
        inbound: bool | None = None,
        outbound: bool | None = None,
    ) -> None:
        """Change what is lost on one relay of a channel (None: unchanged)."""
        key = bytes.fromhex(channel_id) + url.encode()
        was_in, was_out = self.lost(channel_id, url)
        now_in = was_in if inbound is None else inbound
        now_out = was_out if outbound is None else outbound
        if not (now_in or now_out):
            self._store.delete(_LOST, key)
        elif (now_in, now_out) != (was_in, was_out):
            record = {"inbound": now_in, "outbound": now_out, "changed_ms": now_ms}
            self._store.put(_LOST, key, json.dumps(record).encode())

"""What we know of each relay: its health (last reached, last error), on which
channels it lost our mailboxes (design §5: each relay on its own), and its forwarding key
(from an invite, for private routing: `client.routing`)."""

from __future__ import annotations

import json
from typing import Final

from backchannel.client.keystore import Keystore
from backchannel.client.reports import RelayHealth
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import RelayPublicKey

__all__ = ["RelayRepository"]

_HEALTH: Final = "relay-health"
_LOST: Final = "relay-lost"
_ERROR: Final = "relay-error"
_KEY: Final = "relay-key"
_DOWN_SINCE: Final = "relay-down-since"


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
        """The relay refused its key as unknown (it changed its key): forget ours."""
        self._store.delete(_KEY, url.encode())

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

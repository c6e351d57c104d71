"""The principal's settings (text by key), sealed like every record."""

from __future__ import annotations

from typing import Final

from backchannel.client.keystore import Keystore

__all__ = ["SettingsRepository"]

_KIND: Final = "setting"


class SettingsRepository:
    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"SettingsRepository({self._store!r})"

    def get(self, key: str) -> str:
        """The setting's value ("" when it was never set)."""
        raw = self._store.get(_KIND, key.encode())
        return "" if raw is None else raw.decode()

    def put(self, key: str, value: str) -> None:
        self._store.put(_KIND, key.encode(), value.encode())

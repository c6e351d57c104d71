"""Helpers for tests of code built on Backchannel; public and stable like the rest of the API.

- `SeededRng`: a deterministic random source, for reproducible tests and golden vectors.
- `FixedClock`: a clock that moves only when told to.
- `MemoryRelayStore`: an in-memory relay store with the rules and answers of the durable
  backends (the reference the SQLite and PostgreSQL stores are tested against).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backchannel.testing.relaystore import MemoryRelayStore

__all__ = ["FixedClock", "MemoryRelayStore", "SeededRng"]


def __getattr__(name: str) -> object:
    # Imported on first use: the relay store pulls in the relay package, which tests of
    # the client and the protocol should not pay for.
    if name == "MemoryRelayStore":
        from backchannel.testing.relaystore import MemoryRelayStore

        return MemoryRelayStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class SeededRng:
    """A deterministic byte stream: SHAKE-256(seed || counter), never for real keys."""

    __slots__ = ("_counter", "_seed")

    def __init__(self, seed: bytes | str) -> None:
        self._seed = seed.encode() if isinstance(seed, str) else bytes(seed)
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        self._counter += 1
        block = self._seed + self._counter.to_bytes(8, "big")
        return hashlib.shake_256(block).digest(n)


@dataclass(slots=True)
class FixedClock:
    """Milliseconds since the epoch, advanced explicitly."""

    now_ms: int = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms

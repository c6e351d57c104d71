"""Connections to a channel's relays for the length of one operation.

A relay that cannot be reached is remembered as down for that operation (so it is not
retried a dozen times) and reported; work for it stays in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Final

from websockets.exceptions import InvalidHandshake, InvalidURI

from backchannel.client.transport import RelayClient

__all__ = ["CONNECT_TIMEOUT", "RelayPool"]

# A relay on the same continent answers in well under a second; three seconds tells "down"
# from "slow" without making a principal wait long when one relay of several is out.
CONNECT_TIMEOUT: Final = 3.0


@dataclass(slots=True)
class RelayPool:
    connect_timeout: float = CONNECT_TIMEOUT
    clients: dict[str, RelayClient] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    async def get(self, url: str) -> RelayClient | None:
        """A live connection to `url`, or None if it cannot be reached (reason recorded)."""
        if url in self.clients:
            return self.clients[url]
        if url in self.failures:
            return None
        try:
            client = await asyncio.wait_for(
                RelayClient.connect(url, open_timeout=self.connect_timeout),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as error:
            self.failures[url] = _describe(error)
            return None
        self.clients[url] = client
        return client

    async def mark_down(self, url: str, reason: str) -> None:
        client = self.clients.pop(url, None)
        self.failures[url] = reason
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        self.clients.clear()


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    return str(error) or type(error).__name__

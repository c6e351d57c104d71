"""An asyncio client of a running agent, for a client that lives in an event loop (the
console): requests answered in order, one at a time, and the event stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from backchannel.client.agent.client import AgentUnavailable
from backchannel.client.agent.paths import socket_path
from backchannel.client.agent.wire import MAX_LINE, WireError, decode_line, encode_line

__all__ = ["AgentAnswerError", "AsyncAgentConnection", "connect_async"]

# Seconds to wait for the agent to accept; a live agent on this machine answers at once.
_CONNECT_TIMEOUT = 2.0


class AgentAnswerError(Exception):
    """The agent answered a request with an error: its `code`, `message` and, for a
    command that failed, the CLI's `exit` code."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.code = str(error.get("code", "failed"))
        self.message = str(error.get("message", "failed"))
        exit_code = error.get("exit")
        self.exit_code = exit_code if isinstance(exit_code, int) else None
        super().__init__(self.message)


class AsyncAgentConnection:
    """One connection to the agent. `call` waits for the call before it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._one_call = asyncio.Lock()

    def __repr__(self) -> str:
        return "AsyncAgentConnection()"

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read(self) -> dict[str, Any]:
        try:
            line = await self._reader.readline()
        except (OSError, ValueError) as error:
            raise AgentUnavailable(f"the agent connection broke: {error}") from None
        if not line:
            raise AgentUnavailable("the agent closed the connection")
        try:
            return decode_line(line)
        except WireError as error:
            raise AgentUnavailable(f"the agent answered something else: {error}") from None

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return its result.

        Raises:
            AgentUnavailable: the agent went away.
            AgentAnswerError: it answered with an error.
        """
        async with self._one_call:
            try:
                self._writer.write(encode_line(
                    {"id": next(self._ids), "method": method, "params": params or {}}))
                await self._writer.drain()
            except OSError as error:
                raise AgentUnavailable(f"the agent connection broke: {error}") from None
            answer = await self._read()
        if "error" in answer:
            raise AgentAnswerError(answer["error"] or {})
        result: dict[str, Any] = answer.get("result") or {}
        return result

    async def subscribe(self, *, requests: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Subscribe (with `requests`, to the `request` events too); then the events
        (``{"event": {...}, "text": "..."}``), each as it comes.

        Raises:
            AgentUnavailable: the agent went away (also while the events are read).
        """
        await self.call("subscribe", {"requests": requests})
        return self._events()

    async def _events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self._read()


async def connect_async(home: Path, timeout: float = _CONNECT_TIMEOUT) -> AsyncAgentConnection:
    """Connect to the agent of `home`.

    Raises:
        AgentUnavailable: no agent listens there.
    """
    try:
        # Not wait_for, which on Python 3.11 can drop a cancellation (`transport`).
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(
                str(socket_path(home)), limit=MAX_LINE + 1)
    except (OSError, TimeoutError) as error:
        reason = getattr(error, "strerror", None) or error or "timed out"
        raise AgentUnavailable(f"no agent for {home}: {reason}") from None
    return AsyncAgentConnection(reader, writer)

"""A blocking client of a running agent. Standard library only, so that a command served
by the agent starts in tens of milliseconds (no Typer, Rich or cryptography import)."""

from __future__ import annotations

import contextlib
import itertools
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backchannel.client.agent.paths import socket_path
from backchannel.client.agent.wire import MAX_LINE, WireError, decode_line, encode_line

__all__ = ["AgentConnection", "AgentUnavailable", "connect"]

# Seconds to wait for the agent to accept; a live agent on this machine answers at once.
_CONNECT_TIMEOUT = 2.0


class AgentUnavailable(OSError):
    """No agent answers for this home (none runs, or it died and left its socket)."""


class AgentConnection:
    """One connection to the agent; requests are answered in order."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._ids = itertools.count(1)

    def __repr__(self) -> str:
        return "AgentConnection()"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> AgentConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline(MAX_LINE + 1)
        if not line:
            raise AgentUnavailable("the agent closed the connection")
        try:
            return decode_line(line)
        except WireError as error:
            raise AgentUnavailable(f"the agent answered something else: {error}") from None

    def answer(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return its answer as it is (`result` or `error`).

        Raises:
            AgentUnavailable: the agent went away.
        """
        rid = next(self._ids)
        self._sock.sendall(encode_line({"id": rid, "method": method, "params": params or {}}))
        return self._read()

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return its result.

        Raises:
            AgentUnavailable: the agent went away or answered with an error.
        """
        answer = self.answer(method, params)
        if "error" in answer:
            error = answer["error"] or {}
            raise AgentUnavailable(f"agent: {error.get('message', 'error')}")
        result: dict[str, Any] = answer.get("result") or {}
        return result

    def events(self) -> Iterator[dict[str, Any]]:
        """Subscribe, then yield each event (``{"event": {...}, "text": "..."}``) until
        the agent stops."""
        self.call("subscribe")
        self._sock.settimeout(None)
        while True:
            try:
                yield self._read()
            except AgentUnavailable:
                return


def connect(home: Path, timeout: float = _CONNECT_TIMEOUT) -> AgentConnection:
    """Connect to the agent of `home`.

    Raises:
        AgentUnavailable: no agent listens there.
    """
    path = socket_path(home)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as error:
        sock.close()
        raise AgentUnavailable(f"no agent for {home}: {error.strerror or error}") from None
    # Commands may take as long as a sync (bounded by relay deadlines): no read timeout.
    sock.settimeout(None)
    return AgentConnection(sock)

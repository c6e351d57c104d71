"""The agent's local API server: a Unix socket in the home, for this user only.

The socket file is created mode 0600 in a 0700 home, and every connection's peer is
checked with `SO_PEERCRED`: a process of another user is refused even where file modes
would let it in. Requests run one at a time, each in a worker thread with its own handle
on the principal (`Principal.worker`), so the agent's loop keeps receiving meanwhile;
every read-modify-write is one transaction with compare-and-swap, so the two never fork
the state. Events (a message, a dialogue act, a fork, a relay down or back, an
escalation) go to every subscribed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from backchannel import __version__
from backchannel.client.agent.lock import socket_path
from backchannel.client.agent.wire import WireError, decode_line, encode_line
from backchannel.client.engine import Principal

__all__ = ["AgentServer", "CommandRunner", "MethodRefused", "WorkerMethod"]

# Runs one command line against a worker principal: (exit code, stdout, stderr).
CommandRunner = Callable[[Principal, list[str], dict[str, Any]], tuple[int, str, str]]
# The command line (with --json) of a typed intent, or None for an unknown method; raises
# ValueError for bad parameters.
IntentMapper = Callable[[str, dict[str, Any]], list[str] | None]
# A method run on a worker handle in a thread, one request at a time like a command:
# (worker, params, this connection's memory) -> its result. It refuses a request by
# raising `MethodRefused`.
WorkerMethod = Callable[[Principal, dict[str, Any], dict[str, Any]], dict[str, Any]]
# Events queued for a subscriber that does not read: past this it is dropped, so a stuck
# UI never grows the agent's memory.
_MAX_QUEUED_EVENTS: Final = 1000
_PEERCRED: Final = struct.Struct("3i")
_T = TypeVar("_T")


class MethodRefused(Exception):
    """A worker method's refusal, sent as the request's error: a code (`bad-params`,
    `unknown-act`, `failed`), the message, and for `failed` the CLI's exit code."""

    def __init__(self, code: str, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.exit_code is not None:
            error["exit"] = self.exit_code
        return error


class AgentServer:
    """Serves one principal's local API while the agent runs."""

    def __init__(
        self,
        principal: Principal,
        run_command: CommandRunner | None = None,
        on_stop: Callable[[], None] | None = None,
        intents: IntentMapper | None = None,
        methods: dict[str, WorkerMethod] | None = None,
        quiet: frozenset[str] = frozenset(),
    ) -> None:
        """`methods`: more methods by name, run on worker handles; those in `quiet`
        change nothing (reads), so no `request` event follows them."""
        self.principal = principal
        self.path = socket_path(principal.home)
        self._run_command = run_command
        self._intents = intents
        self._on_stop = on_stop
        self._methods = dict(methods or {})
        self._quiet = quiet
        self._server: asyncio.AbstractServer | None = None
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        # Those that asked for `request` events too (a console refreshing on them).
        self._want_requests: set[asyncio.Queue[bytes | None]] = set()
        # One request at a time: requests are a person's commands, and serialising them
        # keeps each command's view of the state its own.
        self._one_request = asyncio.Lock()
        self.requests_served = 0
        # The worker handle of the last request that ended normally, for the next one
        # (`_on_worker`); closed with the server.
        self._idle_worker: Principal | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"AgentServer({str(self.path)!r})"

    async def start(self) -> None:
        """Listen on the socket (replacing a stale one left by a dead agent: we hold the
        home's lock, so no live agent can own it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=8 * 1024 * 1024
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for queue in list(self._subscribers):
            queue.put_nowait(None)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        # Not under `_one_request`: a request still running is not waited for; its
        # handle is closed when it ends, as the server is closed by then.
        self._closed = True
        if self._idle_worker is not None:
            self._idle_worker.close()
            self._idle_worker = None

    def broadcast(self, event: dict[str, Any], text: str) -> None:
        """Send an event to every subscriber (dropping those that stopped reading)."""
        self._send_event(event, text, self._subscribers)

    def _send_event(self, event: dict[str, Any], text: str,
                    subscribers: set[asyncio.Queue[bytes | None]]) -> None:
        line = encode_line({"event": event, "text": text})
        for queue in list(subscribers):
            if queue.qsize() >= _MAX_QUEUED_EVENTS:
                self._subscribers.discard(queue)
                self._want_requests.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait(line)

    # -- one connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        memory: dict[str, Any] = {}  # what worker methods keep for this connection
        try:
            if not _same_user(writer):
                return
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, ConnectionError):
                    return  # over the line limit, or gone
                if not line:
                    return
                try:
                    request = decode_line(line)
                except WireError as error:
                    writer.write(encode_line({"id": None, "error": _error("bad-request", error)}))
                    await writer.drain()
                    return
                if request.get("method") == "subscribe":
                    await self._stream(request, writer)
                    return
                answer = await self._answer(request, memory)
                writer.write(encode_line(answer))
                await writer.drain()
        except ConnectionError:
            return
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _stream(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._subscribers.add(queue)
        params = request.get("params")
        if isinstance(params, dict) and params.get("requests") is True:
            self._want_requests.add(queue)
        try:
            writer.write(encode_line({"id": request.get("id"), "result": {"subscribed": True}}))
            await writer.drain()
            while (line := await queue.get()) is not None:
                writer.write(line)
                await writer.drain()
        finally:
            self._subscribers.discard(queue)
            self._want_requests.discard(queue)

    async def _answer(self, request: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
        rid = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            return {"id": rid, "error": _error("bad-request", "params must be an object")}
        if method == "hello":
            return {"id": rid, "result": self._hello()}
        if method == "stop":
            if self._on_stop is not None:
                self._on_stop()
            return {"id": rid, "result": {"stopping": True}}
        if method == "cli":
            argv = params.get("argv")
            done = await self._cli(params)
            if "result" in done and isinstance(argv, list):
                self._served("cli", _command_of(argv), done["result"]["code"])
            return {"id": rid, **done}
        if isinstance(method, str) and method in self._methods:
            return {"id": rid, **await self._method(method, params, memory)}
        if isinstance(method, str) and self._intents is not None:
            try:
                argv = self._intents(method, params)
            except ValueError as error:
                return {"id": rid, "error": _error("bad-params", error)}
            if argv is not None:
                done = await self._intent(argv)
                self._served(method, argv[0], done.get("error", {}).get("exit", 0))
                return {"id": rid, **done}
        return {"id": rid, "error": _error("unknown-method", f"no method {method!r}")}

    async def _intent(self, argv: list[str]) -> dict[str, Any]:
        """Run a typed intent as its `--json` command; the answer is that JSON."""
        done = await self._cli({"argv": argv})
        if "error" in done:
            return done
        result = done["result"]
        try:
            # A command that printed its result answers with it, whatever its exit code:
            # `send` queued for want of a relay (6) and `sync` that saw a fork (7) say so
            # in that JSON (`queued`, `forks`, `relays_down`).
            return {"result": json.loads(result["stdout"])}
        except ValueError:
            if result["code"] == 0:
                return {"error": _error("failed", "the command printed no JSON")}
        message = _error_message(result["stderr"])
        return {"error": {"code": "failed", "message": message, "exit": result["code"]}}

    async def _method(self, name: str, params: dict[str, Any],
                      memory: dict[str, Any]) -> dict[str, Any]:
        method = self._methods[name]
        try:
            result = await self._on_worker(lambda worker: method(worker, params, memory))
        except MethodRefused as refused:
            if name not in self._quiet:
                self._served(name, str(params.get("name", "")), refused.exit_code or 1)
            return {"error": refused.error()}
        if name not in self._quiet:
            self._served(name, str(params.get("name", "")), 0)
        return {"result": result}

    def _served(self, method: str, what: str, code: object) -> None:
        """A `request` event for the subscribers that asked: a request that may have
        changed the state was served (a console refreshes on it)."""
        self._send_event({"event": "request", "method": method, "command": what,
                          "exit": code},
                         f"served {method} {what} (exit {code})", self._want_requests)

    def _hello(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "name": self.principal.name,
            "home": str(self.principal.home),
            "requests_served": self.requests_served,
        }

    async def _cli(self, params: dict[str, Any]) -> dict[str, Any]:
        argv = params.get("argv")
        if self._run_command is None:
            return {"error": _error("unsupported", "this agent runs no commands")}
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            return {"error": _error("bad-request", "argv must be a list of strings")}
        run = self._run_command
        code, out, err = await self._on_worker(lambda worker: run(worker, argv, params))
        return {"result": {"code": code, "stdout": out, "stderr": err}}

    async def _on_worker(self, job: Callable[[Principal], _T]) -> _T:
        """Run `job` on a worker handle in a thread, after the request before it.

        The handle of the last request that ended normally serves the next: opening one
        and filling its caches again (channels, sessions, folded dialogues) was a fifth
        of a `send` request's time. Every cache checks what it kept against the bytes
        stored now, so the agent's own writes in between are seen (`Principal.worker`),
        and what a handle reports of its own life starts empty again (`next_request`).
        A request that failed or was stopped leaves its handle closed (a stopped one's
        thread may still be using it), and the next request opens a new one.
        """
        async with self._one_request:
            worker, self._idle_worker = self._idle_worker, None
            if worker is None:
                worker = self.principal.worker()
            else:
                worker.next_request()
            try:
                result = await asyncio.to_thread(job, worker)
            except BaseException:
                worker.close()
                raise
            finally:
                self.requests_served += 1
            if self._closed:
                worker.close()
            else:
                self._idle_worker = worker
            return result


def _command_of(argv: list[str]) -> str:
    """The command of a forwarded command line (its first word that is no option)."""
    words = iter(argv)
    for word in words:
        if word == "--home":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def _same_user(writer: asyncio.StreamWriter) -> bool:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return False
    _pid, uid, _gid = _PEERCRED.unpack(raw)
    return bool(uid == os.getuid())


def _error_message(stderr: str) -> str:
    """The reason a `--json` command gave on stderr: its error object's `message` (the
    CLI's `exitcodes.print_error`), else its `error:` line."""
    lines = stderr.strip().splitlines()
    try:
        error = json.loads(lines[-1])["error"]
        return str(error["message"])
    except (IndexError, ValueError, KeyError, TypeError):
        return stderr.strip().removeprefix("error: ") or "failed"


def _error(code: str, message: object) -> dict[str, str]:
    return {"code": code, "message": str(message)}


def agent_socket(home: Path) -> Path:
    """Where the agent of `home` listens (see `lock.socket_path`)."""
    return socket_path(home)

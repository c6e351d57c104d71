"""The console's two sources over an agent, behind the interface of `live.ConsoleData`.

- `AgentSource`: an agent already runs for the home. The console never opens the home
  (no passphrase): it reads through the agent's `console.read` and acts through
  `console.act` (`tui/served.py`), so a read is the same `Snapshot` and a refusal the
  CLI's own message.
- `EmbeddedSource` (`embedded_agent`): no agent runs. The console holds the home and runs
  the agent in its own process for its lifetime (`cli/watching.serve_as_agent`: the
  socket, the receive loop and the duties), and reads and acts on a worker handle as the
  agent's requests do; a command typed in another terminal is served by it.

In both, the agent's event stream (`subscribe`, with its `request` events) drives the
refresh (`changes`): an event refreshes at once, and the timer only moves countdowns.
A lost agent connection is a `Lost` change (the console says so) and is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from backchannel.client.agent.asyncclient import (
    AgentAnswerError,
    AsyncAgentConnection,
    connect_async,
)
from backchannel.client.agent.client import AgentUnavailable, connect
from backchannel.client.errors import ClientError
from backchannel.tui.jsonvalues import decode, encode
from backchannel.tui.live import ACTS, ConsoleData, act_hints
from backchannel.tui.views import Snapshot

if TYPE_CHECKING:
    from backchannel.client.engine import Principal

__all__ = ["EVENT_REFRESH_S", "RETRY_S", "AgentSource", "Back", "Changed", "ConsoleRefused",
           "EmbeddedSource", "Lost", "embedded_agent"]

# With events driving the refresh, the timer only moves the countdowns on the board.
EVENT_REFRESH_S: Final = 5.0
# Seconds between two tries to reach an agent that was lost.
RETRY_S: Final = 1.0
# How long the console waits for its own agent's socket before it shows anything.
_AGENT_START_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Changed:
    """Something the console shows may have changed: refresh now."""


@dataclass(frozen=True, slots=True)
class Lost:
    """The agent's connection is lost (`reason`); the console retries."""

    reason: str


@dataclass(frozen=True, slots=True)
class Back:
    """The agent answers again."""


Change = Changed | Lost | Back


class ConsoleRefused(ClientError):
    """The agent refused a console's read or act: `code` says how (`failed`: the act's
    own refusal, in the CLI's words; `unknown-act`, `bad-params`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Events:
    """The agent's events as changes: each burst of events is one `Changed` (a refresh
    reads everything anyway), a lost connection one `Lost`, its return a `Back`."""

    def __init__(self, home: Path) -> None:
        self.home = home

    async def changes(self) -> AsyncIterator[Change]:
        pending: list[Change] = []
        ready = asyncio.Event()

        def put(change: Change) -> None:
            if not (isinstance(change, Changed) and Changed() in pending):
                pending.append(change)
            ready.set()

        follow = asyncio.create_task(self._follow(put))
        try:
            while True:
                await ready.wait()
                ready.clear()
                taken, pending[:] = list(pending), []
                for change in taken:
                    yield change
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow

    async def _follow(self, put: Callable[[Change], None]) -> None:
        lost = False
        while True:
            try:
                connection = await connect_async(self.home)
            except AgentUnavailable as error:
                lost = _lost(put, lost, error)
                await asyncio.sleep(RETRY_S)
                continue
            try:
                events = await connection.subscribe(requests=True)
                if lost:
                    put(Back())
                    lost = False
                put(Changed())  # what happened while it was not followed
                async for _event in events:
                    put(Changed())
            except (AgentUnavailable, AgentAnswerError) as error:
                lost = _lost(put, lost, error)
            finally:
                await connection.close()
            await asyncio.sleep(RETRY_S)


def _lost(put: Callable[[Change], None], lost: bool, error: Exception) -> bool:
    """Say once that the agent was lost; True from then on."""
    if not lost:
        put(Lost(str(error)))
    return True


class AgentSource:
    """The console's source when an agent already runs for `home`: every read and act
    is a request to it; the home is never opened here."""

    refresh_every_s: float = EVENT_REFRESH_S

    def __init__(self, home: Path) -> None:
        self.home = home
        self._connection: AsyncAgentConnection | None = None
        self._events = _Events(home)
        # Read with each snapshot: what the console asks without awaiting.
        self._relays: list[str] = []
        self._safety: dict[str, tuple[str, tuple[str, ...], bool]] = {}

    def __repr__(self) -> str:
        return f"AgentSource({str(self.home)!r})"

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One request; a lost connection is opened again by the next one.

        Raises:
            AgentUnavailable: no agent answers.
            ConsoleRefused: it refused the request.
        """
        if self._connection is None:
            self._connection = await connect_async(self.home)
        try:
            return await self._connection.call(method, params)
        except AgentUnavailable:
            await self.close()
            raise
        except AgentAnswerError as error:
            raise ConsoleRefused(error.code, error.message) from None

    def changes(self) -> AsyncIterator[Change]:
        return self._events.changes()

    async def refresh(self, selected: str | None, *, sync: bool = True,
                      first: int | None = None) -> Snapshot:
        """The agent's snapshot (it syncs and runs the duties itself: `sync` is moot)."""
        read = await self._call("console.read", {"selected": selected, "first": first})
        snapshot: Snapshot = decode(Snapshot, read.get("snapshot"))
        self._relays = decode(list[str], read.get("relays", []))
        if snapshot.selected is not None and read.get("safety") is not None:
            self._safety[snapshot.selected] = decode(act_hints("safety_number")["return"],
                                                     read["safety"])
        return snapshot

    def relays(self) -> list[str]:
        return list(self._relays)

    def safety_number(self, channel: str) -> tuple[str, tuple[str, ...], bool]:
        known = self._safety.get(channel)
        if known is not None:
            return known
        value: tuple[str, tuple[str, ...], bool] = self._act_now("safety_number",
                                                                 {"channel": channel})
        return value

    def _act_now(self, name: str, params: dict[str, Any]) -> Any:
        """An act that is no coroutine (the console does not await it), asked on a
        connection of its own, waiting for the answer."""
        with connect(self.home) as connection:
            answer = connection.answer("console.act", {"name": name, "params": params})
        if "error" in answer:
            error = answer["error"] or {}
            raise ConsoleRefused(str(error.get("code")), str(error.get("message")))
        return decode(act_hints(name)["return"], (answer.get("result") or {}).get("value"))

    async def act(self, name: str, params: dict[str, Any]) -> Any:
        """Run the act `name` in the agent (`console.act`); its result.

        Raises:
            ConsoleRefused: the act was refused (in the CLI's words) or is unknown.
            AgentUnavailable: no agent answers.
        """
        done = await self._call("console.act", {"name": name, "params": params})
        return decode(act_hints(name).get("return", Any), done.get("value"))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        """Each act of `live.ACTS` as `ConsoleData` has it (same parameters), done by the
        agent: a new act needs nothing here."""
        if name not in ACTS:
            raise AttributeError(name)
        method = getattr(ConsoleData, name)
        signature = inspect.signature(method)

        def params_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = signature.bind(None, *args, **kwargs).arguments
            return {key: encode(value) for key, value in bound.items() if key != "self"}

        if inspect.iscoroutinefunction(method):
            async def forwarded(*args: Any, **kwargs: Any) -> Any:
                return await self.act(name, params_of(args, kwargs))
            return forwarded

        def forwarded_now(*args: Any, **kwargs: Any) -> Any:
            return self._act_now(name, params_of(args, kwargs))
        return forwarded_now


class EmbeddedSource(ConsoleData):
    """The console's source while it runs the agent itself: `ConsoleData` on a worker
    handle (as the agent's requests have), refreshed by the agent's events; the agent's
    loop does the syncing and the duties."""

    refresh_every_s: float = EVENT_REFRESH_S

    def __init__(self, worker: Principal) -> None:
        super().__init__(worker)
        self._events = _Events(worker.home)

    def changes(self) -> AsyncIterator[Change]:
        return self._events.changes()

    async def refresh(self, selected: str | None, *, sync: bool = True,
                      first: int | None = None) -> Snapshot:
        return await super().refresh(selected, sync=False, first=first)


@contextlib.asynccontextmanager
async def embedded_agent(principal: Principal,
                         on_end: Callable[[], None] | None = None,
                         ) -> AsyncIterator[EmbeddedSource]:
    """Run the agent of `principal` (open, under its lock) in this event loop for the
    body's length, and yield the console's source beside it. `on_end` is called if the
    agent ends first (a `stop` request, SIGTERM): the console then quits. On leaving,
    the agent stops after the work in hand and its socket is removed.

    Raises:
        Exception: whatever ended the agent with an error, once the body is left.
    """
    from backchannel.cli.watching import serve_as_agent

    stop = asyncio.Event()
    agent = asyncio.create_task(serve_as_agent(principal, _quiet, stop))
    if on_end is not None:
        agent.add_done_callback(lambda _task: on_end())
    worker: Principal | None = None
    try:
        await _until_listening(principal.home, agent)
        worker = principal.worker()
        yield EmbeddedSource(worker)
    finally:
        if worker is not None:
            worker.close()
        stop.set()
        await agent  # raises what ended it, if anything


def _quiet(event: dict[str, Any], line: str) -> None:
    """The embedded agent prints nothing (the console owns the terminal); its events
    reach the console through the socket like any subscriber's."""


async def _until_listening(home: Path, agent: asyncio.Task[Any]) -> None:
    """Wait until the agent answers on its socket (or ended: then raise its error)."""
    deadline = asyncio.get_running_loop().time() + _AGENT_START_S
    while not agent.done():
        try:
            connection = await connect_async(home, timeout=0.5)
        except AgentUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise ClientError(f"the console's agent did not answer within "
                                  f"{_AGENT_START_S:g} s") from None
            await asyncio.sleep(0.02)
            continue
        await connection.close()
        return
    agent.result()
    raise ClientError("the console's agent ended before it answered")

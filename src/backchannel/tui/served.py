"""The agent's console methods: `console.read` and `console.act`, for a console that is a
client of the agent (`tui/source.py`).

Each runs on the request's worker handle, in the agent's worker thread, with the same
`ConsoleData` code an in-process console runs: a read is the same `Snapshot`, an act the
same method, so what is refused is refused with the CLI's own message. Values cross as
JSON by their type hints (`jsonvalues`). No Textual here: the agent never imports it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Final

import typer

from backchannel.client.agent.server import MethodRefused, WorkerMethod
from backchannel.tui.jsonvalues import ValueShapeError, decode, encode
from backchannel.tui.live import ACTS, ConsoleData, ReadMemory, act_hints

if TYPE_CHECKING:
    from backchannel.client.engine import Principal

__all__ = ["CONSOLE_METHODS", "QUIET_METHODS", "act_params", "read_params"]

# The connection's memory key for its console's `ReadMemory`.
_MEMORY: Final = "console"


def read_params(params: dict[str, Any]) -> tuple[str | None, int | None]:
    """`selected` (a channel name or null) and `first` (an entry index or null).

    Raises:
        ValueShapeError: either is of another type.
    """
    return (decode(str | None, params.get("selected")),
            decode(int | None, params.get("first")))


def act_params(name: str, params: Any) -> dict[str, Any]:
    """The act's keyword arguments from their JSON, each by its type hint.

    Raises:
        ValueShapeError: a parameter is unknown, missing or of another type.
    """
    if not isinstance(params, dict):
        raise ValueShapeError("'params' must be an object")
    hints = act_hints(name)
    signature = inspect.signature(getattr(ConsoleData, name))
    unknown = set(params) - (set(signature.parameters) - {"self"})
    if unknown:
        raise ValueShapeError(f"no parameter {sorted(unknown)[0]!r} of {name}")
    return {key: decode(hints[key], value) for key, value in params.items()}


def _read(worker: Principal, params: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    try:
        selected, first = read_params(params)
    except ValueShapeError as error:
        raise MethodRefused("bad-params", str(error)) from None
    data = ConsoleData(worker, memory.setdefault(_MEMORY, ReadMemory()))
    snapshot = data.read(selected, first)
    # What the console asks without waiting (its `relays` and `safety_number` are not
    # coroutines), read with the snapshot.
    safety = (encode(data.safety_number(snapshot.selected))
              if snapshot.selected is not None else None)
    return {"snapshot": encode(snapshot), "relays": data.relays(), "safety": safety}


def _act(worker: Principal, params: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    from backchannel.cli.context import _message_of, exit_code_of

    name = params.get("name")
    if name not in ACTS:
        raise MethodRefused("unknown-act", f"no console act {name!r}")
    try:
        kwargs = act_params(name, params.get("params") or {})
    except ValueShapeError as error:
        raise MethodRefused("bad-params", str(error)) from None
    method = getattr(ConsoleData(worker), name)
    try:
        result = method(**kwargs)
        if inspect.iscoroutine(result):
            # This worker thread's own loop, as a command run by the agent has.
            result = asyncio.run(result)
    except typer.BadParameter as error:  # a value the CLI's parsers refuse, as Click says it
        raise MethodRefused("failed", error.format_message(), int(exit_code_of(error))) from None
    except Exception as error:  # every refusal of the act, in the CLI's words
        raise MethodRefused("failed", _message_of(error), int(exit_code_of(error))) from None
    return {"value": encode(result)}


# Served by every agent (`cli/watching.serve_as_agent`); reads change nothing, so no
# `request` event follows them.
CONSOLE_METHODS: Final[dict[str, WorkerMethod]] = {"console.read": _read, "console.act": _act}
QUIET_METHODS: Final = frozenset({"console.read"})

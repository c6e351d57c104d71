"""The console's values as JSON and back, by their type hints: the one place where what
the agent sends a console (a `Snapshot`, an act's parameters and result) is converted.

`encode` turns a value into JSON-able data; `decode(kind, data)` rebuilds a value of the
type `kind` (a dataclass of `views`, a `Suggestion`, `Path`, `date`, a tuple...) from
it. What JSON has no type for is written explicitly: a `Path` as its absolute path (the
agent has another working directory than the console that names a file), a date and a
datetime in ISO 8601, an enum by its value, a dataclass as an object of its fields.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
from pathlib import Path
from typing import Any

__all__ = ["ValueShapeError", "decode", "encode"]


class ValueShapeError(ValueError):
    """Data that is not the JSON of a value of the type asked for."""


def encode(value: object) -> Any:
    """`value` as JSON-able data (see the module's docstring for what becomes what)."""
    match value:
        case None | bool() | int() | float() | str():
            return value
        case Path():
            return str(value.absolute())
        case dt.datetime() | dt.date():
            return value.isoformat()
        case enum.Enum():
            return encode(value.value)
        case _ if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        case tuple() | list():
            return [encode(item) for item in value]
        case frozenset() | set():
            return sorted(encode(item) for item in value)
        case dict():
            return {str(key): encode(item) for key, item in value.items()}
    raise TypeError(f"no JSON for a {type(value).__name__}")


def decode(kind: Any, data: Any) -> Any:
    """The value of type `kind` whose JSON is `data`.

    Raises:
        ValueShapeError: `data` is not such a value's JSON.
    """
    if kind is Any:
        return data
    if kind is None or kind is type(None):
        return _checked(data is None, data, "null")
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin is typing.Union or origin is types.UnionType:
        if data is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return decode(option, data)
            except ValueShapeError:
                continue
        raise ValueShapeError(f"{data!r} is none of {kind}")
    if origin in (tuple, list, frozenset, set):
        if not isinstance(data, list):
            raise ValueShapeError(f"{data!r} is not a list")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise ValueShapeError(f"{data!r} is not {len(args)} values")
            return tuple(decode(a, d) for a, d in zip(args, data, strict=True))
        item = args[0] if args else Any
        return origin(decode(item, d) for d in data)
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueShapeError(f"{data!r} is not an object")
        key, item = args or (Any, Any)
        return {decode(key, k): decode(item, v) for k, v in data.items()}
    return _simple(kind, data)


def _simple(kind: Any, data: Any) -> Any:
    if kind is bool:
        return _checked(isinstance(data, bool), data, "a boolean")
    if kind is int:
        return _checked(isinstance(data, int) and not isinstance(data, bool), data, "an integer")
    if kind is float:
        ok = isinstance(data, int | float) and not isinstance(data, bool)
        return float(_checked(ok, data, "a number"))
    if kind is str:
        return _checked(isinstance(data, str), data, "a string")
    if kind is Path:
        return Path(_checked(isinstance(data, str), data, "a path"))
    if kind in (dt.datetime, dt.date):
        try:
            return kind.fromisoformat(_checked(isinstance(data, str), data, "a date"))
        except ValueError:
            raise ValueShapeError(f"{data!r} is not an ISO 8601 {kind.__name__}") from None
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        try:
            return kind(data)
        except ValueError:
            raise ValueShapeError(f"{data!r} is no {kind.__name__}") from None
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ValueShapeError(f"{data!r} is not an object")
        hints = typing.get_type_hints(kind)
        fields = {f.name for f in dataclasses.fields(kind) if f.init}
        try:
            return kind(**{name: decode(hints[name], data[name])
                           for name in fields if name in data})
        except TypeError as error:  # a field missing
            raise ValueShapeError(f"not a {kind.__name__}: {error}") from None
    raise ValueShapeError(f"no JSON decoding for {kind}")


def _checked(ok: bool, data: Any, what: str) -> Any:
    if not ok:
        raise ValueShapeError(f"{data!r} is not {what}")
    return data

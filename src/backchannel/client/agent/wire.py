"""The agent's local API on the wire: JSON lines, versioned (docs/client.md, "The agent").

Every line is one JSON object with ``"v": 1``. A client sends requests::

    {"v": 1, "id": 7, "method": "hello" | "cli" | "status" | "subscribe" | "stop",
     "params": {...}}

and reads, for each, one answer with the same id, ``{"v": 1, "id": 7, "result": ...}`` or
``{"v": 1, "id": 7, "error": {"code": "...", "message": "..."}}``. After ``subscribe``
the connection also carries events, ``{"v": 1, "event": {...}, "text": "..."}``, until
it closes. This module is standard library only: the command line's fast path imports
it before anything else.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["API_VERSION", "MAX_LINE", "WireError", "decode_line", "encode_line"]

API_VERSION: Final = 1
# A request carries a command line and at most one piped input (an agreed record file
# is at most 1 MiB, hex-free, as JSON text); an answer carries a command's output.
MAX_LINE: Final = 8 * 1024 * 1024


class WireError(ValueError):
    """A line that is not a version-1 JSON object of the agent's API."""


def encode_line(message: dict[str, Any]) -> bytes:
    return json.dumps({"v": API_VERSION, **message}, ensure_ascii=False).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, Any]:
    """Raises WireError: too long, not JSON, not an object, or another version."""
    if len(line) > MAX_LINE:
        raise WireError("line too long")
    try:
        message = json.loads(line)
    except ValueError:
        raise WireError("not JSON") from None
    if not isinstance(message, dict):
        raise WireError("not a JSON object")
    if message.get("v") != API_VERSION:
        raise WireError(f"unsupported API version {message.get('v')!r}")
    return message

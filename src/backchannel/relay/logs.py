"""Structured relay logs: one JSON object per line.

Log calls pass their fields in ``extra={"fields": {...}}``. Callers never put tokens,
envelope bytes or (unless the operator asked) client addresses into a field; the
formatter does not stringify exceptions either, only their type, so that no error text
can carry user data into the log (libsignal's rule).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

__all__ = ["JsonFormatter", "configure_logging"]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record is logged, not when the handler
    was made: a relay started by a harness that swaps stderr (and closes its stand-in
    afterwards) must not be left writing to a closed stream."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always sys.stderr


class JsonFormatter(logging.Formatter):
    """Formats a record as ``{"ts": ..., "level": ..., "logger": ..., "event": ..., ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"), default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send relay logs to stderr as JSON lines; keep the WebSocket library quiet.

    Args:
        level: the relay's log level.
    """
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The WebSocket library logs handshake failures with details of the peer's request;
    # only warnings and worse are kept, still through the JSON formatter.
    logging.getLogger("websockets").setLevel(logging.WARNING)

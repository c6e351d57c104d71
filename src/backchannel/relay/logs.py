"""Structured relay logs: one JSON object per line.

Log calls pass their fields in ``extra={"fields": {...}}``. Callers never put tokens,
envelope bytes or (unless the operator asked) client addresses into a field; the
formatter does not stringify exceptions either, only their type, so that no error text
can carry user data into the log (libsignal's rule).
"""

from __future__ import annotations

import json
import logging
import time

__all__ = ["JsonFormatter", "configure_logging"]


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
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The WebSocket library logs handshake failures with details of the peer's request;
    # only warnings and worse are kept, still through the JSON formatter.
    logging.getLogger("websockets").setLevel(logging.WARNING)

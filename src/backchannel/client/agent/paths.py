"""Where a home's agent listens. Standard library only: the command line's fast path
computes it before importing anything else."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LOCK_TIMEOUT_ENV",
    "SOCKET_FILE",
    "lock_timeout_from_env",
    "socket_path",
]

SOCKET_FILE = "agent.sock"
LOCK_TIMEOUT_ENV = "BACKCHANNEL_LOCK_TIMEOUT"
# Long enough for another command's sync (bounded by its relay deadline, 10 s) to finish,
# short enough that a script stuck behind a forgotten foreground process hears of it.
DEFAULT_LOCK_TIMEOUT = 30.0
# sun_path holds 108 bytes on Linux (104 on BSDs) including the terminating NUL.
_MAX_SOCKET_PATH = 100


def socket_path(home: Path) -> Path:
    """Where the agent of `home` listens: inside the home when the path fits a socket
    address, else in a private per-user folder under /tmp, named by a digest of the
    home's absolute path (the same for every process that computes it)."""
    home = Path(os.path.abspath(home))
    inside = home / SOCKET_FILE
    if len(os.fsencode(inside)) <= _MAX_SOCKET_PATH:
        return inside
    digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:24]
    return Path("/tmp") / f"backchannel-{os.getuid()}" / f"{digest}.sock"


def lock_timeout_from_env() -> float:
    """`BACKCHANNEL_LOCK_TIMEOUT` seconds, or the default when unset, negative or not a
    number."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT
    return value if value >= 0 else DEFAULT_LOCK_TIMEOUT

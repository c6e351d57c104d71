"""One owner per home: an exclusive `flock` on a lock file, and where the agent listens.

Whoever opens a principal's state holds this lock for as long as it has it open: the agent
for its whole life, a command run without an agent for its own length. A second process
waits (and says for whom) or gives up after a timeout; it never opens the state beside the
first, which is what used to fork the ratchet. `flock` locks belong to an open file, so two
opens in one process exclude each other too, and the kernel drops the lock when the holder
dies (a SIGKILL never leaves a home locked).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from backchannel.client.agent.paths import (
    DEFAULT_LOCK_TIMEOUT,
    LOCK_TIMEOUT_ENV,
    lock_timeout_from_env,
    socket_path,
)
from backchannel.client.errors import AgentTookOver, HomeBusy

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LOCK_FILE",
    "LOCK_TIMEOUT_ENV",
    "HomeLock",
    "LockHolder",
    "lock_timeout_from_env",
    "socket_path",
]

LOCK_FILE: Final = "lock"
# How often a waiting process looks again; a lock is usually held for tens of ms.
_POLL: Final = 0.02


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a home: its process id and what it is ("agent" or "command")."""

    pid: int
    role: str


class HomeLock:
    """The exclusive lock on one home. `acquire`, then `release` (or use ``with``)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"HomeLock({str(self.home)!r}, held={self._fd is not None})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> LockHolder | None:
        """Who wrote the lock file last (the holder, while it is held)."""
        try:
            text = self.path.read_text(encoding="ascii", errors="replace").split()
        except OSError:
            return None
        if len(text) != 2 or not text[0].isdigit():
            return None
        return LockHolder(int(text[0]), text[1])

    def acquire(
        self,
        *,
        role: str = "command",
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        on_wait: Callable[[LockHolder | None], None] | None = None,
        give_up: Callable[[LockHolder | None], bool] | None = None,
    ) -> None:
        """Take the lock, waiting up to `timeout` seconds for its holder to let go.

        Args:
            role: written beside our pid for whoever waits on us ("agent", "command").
            timeout: seconds to wait; 0 to fail at once.
            on_wait: called once, with the holder, when we have to wait.
            give_up: asked with the holder at each look while waiting; True stops the
                wait (an agent took the home, and will not let go: ask it instead).

        Raises:
            AgentTookOver: `give_up` said so.
            HomeBusy: still held by another process (or open file) after `timeout`.
        """
        if self._fd is not None:
            return
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self.holder()
                    if time.monotonic() >= deadline:
                        raise HomeBusy(_busy_message(self.home, holder, timeout)) from None
                    if not told and on_wait is not None:
                        on_wait(holder)
                        told = True
                    if give_up is not None and give_up(holder):
                        raise AgentTookOver(f"an agent took {self.home} while we waited") from None
                    time.sleep(_POLL)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {role}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go (closing the file drops the lock); safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> HomeLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _busy_message(home: Path, holder: LockHolder | None, timeout: float) -> str:
    who = "another backchannel process"
    if holder is not None:
        who = (
            f"the agent (pid {holder.pid})"
            if holder.role == "agent"
            else f"another backchannel process (pid {holder.pid})"
        )
    return (
        f"{home} is in use by {who}; gave up after {timeout:g} s "
        f"(wait longer with {LOCK_TIMEOUT_ENV}=SECONDS)"
    )

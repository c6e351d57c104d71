"""A read-only home (review §4 row 6): which commands may read it, and what they say.

A home the process cannot write (a mounted backup, a locked-down audit copy) is opened
read-only by the client (`Principal.open`). Commands that only look are run, after one
notice on stderr; every other command is refused as soon as the home is open, before it
reaches a relay or asks anything: a command that wrote only after the network (`channels
remove` deletes mailboxes on the relays first) would otherwise do half its work. A read
command that writes after all (`verify --confirm`) is refused at its first write by the
keystore, with the same error, and nothing changes.
"""

from __future__ import annotations

import shlex
from typing import Final

from backchannel.client.errors import HomeReadOnly

__all__ = ["READ_ONLY_COMMANDS", "check_read_only", "read_only_notice"]

#: Commands (as typed after `backchannel`) that only read the home.
READ_ONLY_COMMANDS: Final = frozenset({
    "status", "inbox", "channels", "history", "transcript", "verify", "whoami",
    "record show", "record export", "redline list", "agenda show", "escalation show",
    "codebook list",
})


def read_only_notice(home: object, reason: str) -> str:
    """The one line a read command prints on stderr before its output."""
    return f"note: the home {home} is read-only ({reason}): shown as it is, nothing changes"


def check_read_only(home: object, reason: str, command: str) -> None:
    """Refuse a command that is not known to only read a read-only home.

    Args:
        command: the command as typed after `backchannel` ("record show"); "" when it is
            not known (a library caller), which is let through: the keystore still
            refuses every write.

    Raises:
        HomeReadOnly: the command would change the home.
    """
    if command and command not in READ_ONLY_COMMANDS:
        raise HomeReadOnly(home, reason, f"`backchannel {shlex.join(command.split())}` changes it")

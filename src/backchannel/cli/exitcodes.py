"""The exit codes of `backchannel`, in one place (the table in docs/cli.md is this one).

A script tells failures apart by these numbers, or under `--json` by the `code` word of
the error object on stderr (`ExitCode.word`), never by parsing the English. Standard
library only: the launcher uses them before it knows whether it imports anything else.
Numbers are kept once published; new ones are only ever added.
"""

from __future__ import annotations

import sys
from enum import IntEnum

__all__ = ["ExitCode", "print_error", "wants_json"]


class ExitCode(IntEnum):
    """Why a command ended; the process exit status."""

    #: Done.
    OK = 0
    #: A failure the principal can act on that no code below names (a damaged state
    #: file, a refused invite, a dialogue act the rules forbid, a busy home, ...).
    FAILURE = 1
    #: The command line is wrong: unknown option, missing argument, a value out of range
    #: (as Click reports it, or as the command checks it before doing anything).
    USAGE = 2
    #: What the command names does not exist: the home folder or its principal, a
    #: channel, a message, red line or record id.
    NOT_FOUND = 3
    #: The passphrase does not unlock the state file (nothing was changed).
    WRONG_PASSPHRASE = 4
    #: No relay could be reached, so nothing was done (`invite`, `accept`).
    RELAY_UNREACHABLE = 5
    #: No relay stored what was to be sent: it is kept in the outbox and the next
    #: `sync` sends it (`send` with every relay down, `sync` with every relay down).
    NOT_DELIVERED = 6
    #: A fork was seen: a copy of a state sent beside the original (see `status`).
    FORK_DETECTED = 7
    #: The home cannot be written (a read-only file, folder or file system): a command
    #: that would change it was refused; commands that only read it still work.
    HOME_READ_ONLY = 8
    #: Stopped by Ctrl-C (128 + SIGINT, as shells report it).
    INTERRUPTED = 130

    @property
    def word(self) -> str:
        """The code as `--json` errors name it: ``"relay_unreachable"``."""
        return self.name.lower()


def wants_json(argv: list[str]) -> bool:
    """True when the command line asks for JSON (`--json` before or after the command)."""
    words = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in words


def print_error(code: ExitCode, message: str, *, as_json: bool) -> None:
    """Say why a command failed, on stderr: one `error: ...` line, or under `--json` one
    object ``{"error": {"code": "relay_unreachable", "exit": 5, "message": "..."}}``.

    The one place an error is worded for its reader; `context.reports_errors` and the
    root group's `main` decide the code.
    """
    # The message may quote a name or a URL from the other side: escaped, on one line.
    from backchannel.protocol.text import escaped, json_escaped

    if as_json:
        import json

        error = {"code": code.word, "exit": int(code), "message": message}
        sys.stderr.write(json_escaped(json.dumps({"error": error}, ensure_ascii=False)) + "\n")
    else:
        sys.stderr.write(f"error: {escaped(message)}\n")
    sys.stderr.flush()

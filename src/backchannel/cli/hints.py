"""The commands a command suggests next, built in one place so that each can be pasted as
it is (review §4 row 7): the program's name, `--home` when the home in use is not the
default one, and every word quoted for a POSIX shell (`shlex.quote`), so that a channel
named "New York" or a home under "My Documents" survives the paste.

A hint names only what is still owed (a note already acknowledged is not suggested for
acknowledgement again); placeholders the principal must fill in (TEXT, URL) are for the
help texts, never for these.
"""

from __future__ import annotations

import shlex

from backchannel.cli.context import CliContext, default_home

__all__ = ["command_hint"]

PROGRAM = "backchannel"


def command_hint(state: CliContext, *words: str) -> str:
    """A complete `backchannel` command line, ready to paste.

    Args:
        state: the invocation's context; its home is named unless it is the default
            one (as typed, so a relative `--home` stays relative to where it was typed).
        words: the command and its arguments, unquoted.

    Returns:
        The line, each word quoted where the shell needs it.
    """
    prefix = [PROGRAM]
    if state.home != default_home():
        prefix += ["--home", str(state.home)]
    return shlex.join([*prefix, *words])

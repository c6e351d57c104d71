"""The commands a command suggests next, built in one place so that each can be pasted as
it is (review §4 row 7): the program's name, `--home` when the home in use is not the
default one, and every word quoted for a POSIX shell (`shlex.quote`), so that a channel
named "New York" or a home under "My Documents" survives the paste.

A hint names only what is still owed (a note already acknowledged is not suggested for
acknowledgement again); where only the principal can write the rest (an answer's text), the
line ends with the command up to that text, after words that say what to add, so that
what is pasted is still the start of the right command and nothing is sent by mistake.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from backchannel.cli.context import CliContext, default_home

__all__ = ["Hint", "command_hint", "command_line", "hint_for_home"]

PROGRAM = "backchannel"

# Builds a hint from the command's words (for code that has a home but no `CliContext`,
# such as the agent's narration in `watch`).
Hint = Callable[..., str]


def command_line(*words: str, home: Path | None = None) -> str:
    """`backchannel [--home HOME] WORDS...`, each word quoted where the shell needs it."""
    prefix = [PROGRAM] if home is None else [PROGRAM, "--home", str(home)]
    return shlex.join([*prefix, *words])


def hint_for_home(home: Path) -> Hint:
    """A hint builder for `home`: `--home` is named only when it is not the default."""
    named = None if home == default_home() else home

    def hint(*words: str) -> str:
        return command_line(*words, home=named)

    return hint


def command_hint(state: CliContext, *words: str) -> str:
    """A complete `backchannel` command line, ready to paste.

    Args:
        state: the invocation's context; its home is named unless it is the default
            one (as typed, so a relative `--home` stays relative to where it was typed).
        words: the command and its arguments, unquoted.

    Returns:
        The line, each word quoted where the shell needs it.
    """
    return hint_for_home(state.home)(*words)

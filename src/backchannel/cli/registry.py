"""Every `backchannel` command by name: where it lives, and its line in the root help.

Standard library only. The root `--help` and `--version` are answered from here (by the
launcher, before Typer, Rich or the client are imported: each of those costs more than
the whole interpreter start), and the root group loads a command's module only when that
command runs (`main.LazyRoot`). A test checks that each summary is the first line of the
command's own help, so the two cannot drift apart.
"""

from __future__ import annotations

import textwrap
from typing import Final, NamedTuple

__all__ = [
    "COMMANDS",
    "HELP_FLAGS",
    "ROOT_OPTIONS",
    "VERSION_FLAGS",
    "CommandEntry",
    "entry",
    "help_width",
    "root_help",
    "version",
]

HELP_FLAGS: Final = frozenset({"--help", "-h"})
VERSION_FLAGS: Final = frozenset({"--version", "-V"})


class CommandEntry(NamedTuple):
    """One command of the root group (a NamedTuple: `dataclasses` would cost the
    launcher 10 ms of imports).

    Attributes:
        name: what is typed (`send`, `relay`).
        module: the module that defines it, imported when the command runs.
        attribute: in `module`, either a Typer group (`relay_app`) or a
            `register(app)` function that adds the command (and its neighbours) to an app.
        summary: its line in the root help: the first line of its own help.
    """

    name: str
    module: str
    attribute: str
    summary: str


def _commands(module: str, attribute: str, *pairs: tuple[str, str]) -> list[CommandEntry]:
    return [CommandEntry(name, f"backchannel.cli.{module}", attribute, summary)
            for name, summary in pairs]


# In the order the root help lists them: pairing, using a channel, the dialogue, the
# long-running ones, then the groups.
COMMANDS: Final[tuple[CommandEntry, ...]] = (
    *_commands(
        "pairing", "register",
        ("init", "Create a principal (a fresh identity key) in the home folder."),
        ("accept", "Join the channel an invite code offers (PQXDH) and send the first "
                   "message."),
        ("verify", "Show a channel's safety number (12 groups of 5 digits and 12 words)."),
        ("whoami", "Show this principal's name and identity fingerprint and public keys."),
    ),
    *_commands(
        "messaging", "register",
        ("send", "Send a message: kept in the outbox first, then stored on every relay of "
                 "the channel."),
        ("sync", "Send everything queued, fetch and process everything waiting, send "
                 "receipts, answer line tests, send ours when due, escalate missed "
                 "deadlines, exit."),
        ("inbox", "List the messages you received, in order; `read` opens them."),
        ("read", "Open received messages, mark them read and send read receipts."),
    ),
    *_commands(
        "history", "register",
        ("history", "Show the conversation both ways, with every dialogue act in its place."),
        ("transcript", "The same as `history`."),
    ),
    *_commands(
        "board", "register",
        ("status", "Show each channel's board: what awaits whom, red lines, agenda, "
                   "records, the line."),
    ),
    *_commands(
        "dialogue", "register",
        ("ack", "Acknowledge a note: your explicit act, distinct from the automatic "
                "receipts."),
        ("hold", 'Send a holding reply: "received, cannot answer yet; expect an answer by '
                 'WHEN".'),
        ("clarify", "Ask what exactly one of their messages means."),
        ("answer", "Answer a clarification request; the answer closes it."),
    ),
    *_commands(
        "watch", "register",
        ("watch", "Stay connected and keep the channel's duties; Ctrl-C or SIGTERM stops "
                  "it cleanly."),
        ("linetest", "Show the line test's state, set how often this side tests the line, "
                     "or test it now."),
        ("slots", "Show or set the channel's constant-rate slots, and what they cost."),
    ),
    *_commands(
        "tui", "register",
        ("tui", "The principal's console: channels, conversation, board; every act a key "
                "away."),
    ),
    *_commands(
        "agent", "register",
        ("agent", "Run the principal's agent: the one process that owns its state and "
                  "relays."),
    ),
    *_commands(
        "pairing", "invite_app",
        ("invite", "Create a one-time invite code for a new channel; give it to your "
                   "counterpart."),
    ),
    *_commands(
        "messaging", "channels_app",
        ("channels", "List your channels and your invites not yet used (waiting, or "
                     "expired)."),
    ),
    *_commands(
        "account", "passphrase_app",
        ("passphrase", "The passphrase that encrypts this principal's state."),
    ),
    *_commands(
        "main", "register_demo",
        ("demo", "Play the scripted demonstration: a local relay, two principals, a "
                 "strategic round."),
    ),
    *_commands("relay", "relay_app", ("relay", "Run a neutral, blind relay.")),
    *_commands(
        "config_command", "config_app",
        ("config", "The configuration file: where it is, and the settings in force."),
    ),
    *_commands("meet", "meet_app", ("meet", "Suggest discreet venues and dates for a meeting.")),
    *_commands(
        "redlines", "redline_app",
        ("redline", "Red lines: declare them, list both sides' and their state, "
                    "acknowledge theirs."),
    ),
    *_commands(
        "agenda", "agenda_app",
        ("agenda", "Meeting agendas: propose items for a round, accept or decline theirs, "
                   "show them."),
    ),
    *_commands(
        "codebook", "codebook_app",
        ("codebook", "The shared codebook: propose numbered entries, accept theirs, send them "
                     "by number."),
    ),
    *_commands(
        "translations", "translate_app",
        ("translate", "Translations: share yours of their message, propose one with your "
                      "translation command, show texts side by side."),
    ),
    *_commands(
        "notifications", "duty_app",
        ("duty", "Notification duties: agreed categories with a time rule, notifications, "
                 "and whether each came in time."),
    ),
    *_commands(
        "review", "register",
        ("review", "Review a period of the channel: what was sent, acknowledged, late, "
                   "clarified and agreed, and how notification duties were kept."),
    ),
    *_commands(
        "records", "record_app",
        ("record", "Agreed records: propose a statement, co-sign theirs, show, export, "
                   "verify a file."),
    ),
    *_commands(
        "watch", "escalation_app",
        ("escalation", "The command run when a note's acknowledgement deadline passes (to "
                       "page a deputy)."),
    ),
)

_BY_NAME: Final = {command.name: command for command in COMMANDS}


def entry(name: str) -> CommandEntry | None:
    """The command called `name`, if there is one."""
    return _BY_NAME.get(name)


# The root callback's options (`main._root`), as the root help shows them; a test checks
# that every option the callback declares is here.
ROOT_OPTIONS: Final[tuple[tuple[str, str], ...]] = (
    ("--home DIR", "The principal's folder [default: the configuration file's home, else "
                   "your data folder; env var: BACKCHANNEL_HOME]."),
    ("--json/--no-json", "Print JSON on stdout instead of tables, and errors as one JSON "
                         "object on stderr (see docs/cli.md); also accepted after the "
                         "command. --no-json: tables, whatever the configuration file "
                         "says."),
    ("--show-completion [SHELL]", "Print the completion script for bash, zsh or fish "
                                  "[default: this shell]."),
    ("--install-completion [SHELL]", "Install that script in the shell's start-up files."),
    ("-V, --version", "Print the version and exit."),
    ("-h, --help", "Show this message and exit."),
)

_ROOT_TEXT: Final = """\
A confidential, candid and dependable strategic channel between two principals.

The passphrase that encrypts a principal's state is asked for on the terminal, or taken \
from BACKCHANNEL_PASSPHRASE. Exit codes: 0 done, 2 usage, 3 not found, 4 wrong \
passphrase, 5 relay unreachable, 6 not delivered (queued), 7 fork detected, 130 \
interrupted, 1 any other failure (docs/cli.md).

Defaults (the home, invite's relays, JSON) may be set in a configuration file: \
`backchannel config path` says where, `backchannel config show` what is in force.

Example: backchannel --home ~/bc/washington status"""

# Past this the help stays this wide: long lines are hard to read, even on a wide screen.
_MAX_HELP_WIDTH: Final = 100


def _definitions(rows: list[tuple[str, str]], width: int) -> list[str]:
    """Rows of `term  text`, the text wrapped in a column (as Click writes them)."""
    term_width = min(max(len(term) for term, _ in rows), 16) + 2
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(text, max(width - term_width - 2, 20)) or [""]
        if len(term) + 2 > term_width:
            lines.append(f"  {term}")
            lines += [" " * (term_width + 2) + line for line in wrapped]
            continue
        lines.append(f"  {term.ljust(term_width)}{wrapped[0]}")
        lines += [" " * (term_width + 2) + line for line in wrapped[1:]]
    return lines


def help_width() -> int:
    """The width help is written for: the terminal's, else `COLUMNS`, else 80 (the same
    in the launcher and in Typer, so that both print the same root help)."""
    import os
    import sys

    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        raw = os.environ.get("COLUMNS", "")
        return int(raw) if raw.isdigit() and int(raw) > 0 else 80


def root_help(width: int = 80) -> str:
    """The root `--help`, as plain text without trailing spaces (the same in a terminal,
    a pipe or through the agent).

    Args:
        width: the terminal's columns; the text is wrapped to at most 100.
    """
    width = max(40, min(width, _MAX_HELP_WIDTH))
    lines = ["Usage: backchannel [OPTIONS] COMMAND [ARGS]...", ""]
    for paragraph in _ROOT_TEXT.split("\n\n"):
        lines += ["  " + line for line in textwrap.wrap(paragraph, width - 2)]
        lines.append("")
    lines.append("Options:")
    lines += _definitions(list(ROOT_OPTIONS), width)
    lines += ["", "Commands:"]
    lines += _definitions([(c.name, c.summary) for c in COMMANDS], width)
    return "\n".join(lines) + "\n"


def version() -> str:
    """The installed package's version, from its metadata, else the source tree's.

    The metadata file is read directly: `importlib.metadata` costs 20 to 35 ms of imports
    (email, zipfile, csv), three times what the rest of `--version` costs. A test checks
    that both give the same answer.
    """
    import os
    import sys

    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("backchannel-") and name.endswith(".dist-info"):
                found = _metadata_version(os.path.join(folder or ".", name, "METADATA"))
                if found:
                    return found
    from backchannel import __version__  # run from a source tree never installed

    return __version__


def _metadata_version(path: str) -> str | None:
    """The `Version:` header of a core-metadata file (it comes before the first blank
    line, in the file's first few lines)."""
    try:
        with open(path, encoding="utf-8") as metadata:
            for line in metadata:
                if not line.strip():
                    return None
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        return None
    return None

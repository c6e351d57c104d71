"""The configuration file: a default home, default relays for `invite`, JSON output.

``config.toml`` in the platform's config folder (`platformdirs.user_config_dir`, e.g.
``~/.config/backchannel/config.toml``), or the file `BACKCHANNEL_CONFIG` names::

    home = "~/bc/washington"
    relays = ["wss://relay.example.org", "wss://relay2.example.net"]
    json = false

Precedence, for every setting: the command line, then the environment, then this file,
then the built-in default (docs/cli.md, "The configuration file").

Standard library only (and `platformdirs`, which the launcher already uses): the launcher
reads the file to know which home's agent to ask, before it knows whether it will import
Typer or the client. It is never read for `--help` or `--version`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Final, NamedTuple

from backchannel.protocol.errors import LocalProtocolError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "KEYS",
    "Config",
    "ConfigError",
    "config_path",
    "load_config",
]

CONFIG_ENV: Final = "BACKCHANNEL_CONFIG"
CONFIG_FILE: Final = "config.toml"
# Every key the file may hold, with what it is for (as `config show` and errors name
# them). A key not here is an error, not ignored: a typo (`relay =`) would otherwise
# silently leave the built-in default in force.
KEYS: Final = {
    "home": "the principal's folder when neither --home nor BACKCHANNEL_HOME is given",
    "relays": "the relays `invite` uses when no --relay is given",
    "json": "print JSON as --json does (--no-json turns it off for one command)",
    "language": "your language (a BCP 47 tag such as en or zh-Hans) when `translate "
                "language` has not set one",
}
# Far more than three keys need; a file this large is not a configuration file.
_MAX_FILE_BYTES: Final = 64 * 1024

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class ConfigError(LocalProtocolError):
    """The configuration file cannot be used: unreadable, not TOML, an unknown key or a
    value of the wrong kind. The message names the file, the line where known, and the
    key; nothing was done."""


class Config(NamedTuple):
    """The settings the configuration file gives (a NamedTuple: `dataclasses` would cost
    the launcher 10 ms of imports).

    Attributes:
        path: the file in use, or None when there is none (the default file is absent).
        home: `home`, with `~` expanded; None when the file does not set it.
        relays: `relays`, each checked as `--relay` is; empty when not set.
        json: `json`; None when not set.
        language: `language`, a BCP 47 tag; None when not set.
    """

    path: Path | None = None
    home: Path | None = None
    relays: tuple[str, ...] = ()
    json: bool | None = None
    language: str | None = None


def config_path() -> tuple[Path, bool]:
    """The configuration file to read, and whether it was named by `BACKCHANNEL_CONFIG`
    (then it must exist: a mistyped name is an error, not "no configuration")."""
    named = os.environ.get(CONFIG_ENV, "")
    if named:
        return Path(named).expanduser(), True
    import platformdirs

    return Path(platformdirs.user_config_dir("backchannel")) / CONFIG_FILE, False


def load_config() -> Config:
    """Read and check the configuration file (see the module's docstring).

    Returns:
        The settings; `Config()` with `path` None when the default file does not exist.

    Raises:
        ConfigError: the file cannot be read, is not TOML, holds an unknown key or a
            value `check` refuses (an insecure relay URL, a relative home).
    """
    path, named = config_path()
    try:
        with open(path, "rb") as file:
            raw = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        if named:
            raise ConfigError(
                f"configuration file {path} (named by {CONFIG_ENV}) does not exist"
            ) from None
        return Config()
    except OSError as error:
        raise ConfigError(
            f"configuration file {path} cannot be read: {error.strerror or error}"
        ) from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"configuration file {path} is over {_MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {path} is not UTF-8 text") from None
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {path}{_toml_position(error)}: not valid TOML: "
                          f"{_toml_reason(error)}") from None
    return _checked(path, text, table)


def _toml_position(error: tomllib.TOMLDecodeError) -> str:
    """`, line 3` from a TOML error (an attribute from Python 3.14, before it only in the
    message), or nothing."""
    line = getattr(error, "lineno", None)
    if line is None and (found := _TOML_POSITION.search(str(error))):
        line = int(found.group(1))
    return f", line {line}" if line else ""


def _toml_reason(error: tomllib.TOMLDecodeError) -> str:
    reason = getattr(error, "msg", None) or _TOML_POSITION.sub("", str(error))
    return str(reason)[:1].lower() + str(reason)[1:]


def _checked(path: Path, text: str, table: dict[str, object]) -> Config:
    """The settings of a parsed file, each checked; the first problem is the error."""

    def refuse(key: str, why: str) -> ConfigError:
        line = _line_of(text, key)
        where = f", line {line}" if line else ""
        return ConfigError(f"configuration file {path}{where}: {why}")

    for key in table:
        if key not in KEYS:
            known = ", ".join(KEYS)
            raise refuse(key, f"unknown key {key!r} (the keys are {known})")
    home = table.get("home")
    if home is not None:
        if not isinstance(home, str) or not home:
            raise refuse("home", "'home' must be a folder name in quotes")
        home_path = Path(home).expanduser()
        if not home_path.is_absolute():
            # Relative to what: where the file is, or where a command is typed? Neither
            # is obvious, so neither is guessed.
            raise refuse("home", f"'home' must be an absolute folder or start with ~, "
                                 f"not {home!r}")
    relays = table.get("relays")
    if relays is not None:
        if not isinstance(relays, list) or not all(isinstance(r, str) for r in relays):
            raise refuse("relays", "'relays' must be a list of URLs in quotes: "
                                   'relays = ["wss://relay.example.org"]')
        from backchannel.protocol.text import check_relay_url

        for url in relays:
            try:
                check_relay_url(url)
            except LocalProtocolError as error:
                raise refuse("relays", f"'relays': {error}") from None
    as_json = table.get("json")
    if as_json is not None and not isinstance(as_json, bool):
        raise refuse("json", "'json' must be true or false")
    language = table.get("language")
    if language is not None:
        from backchannel.dialogue.translations import check_bcp47

        try:
            check_bcp47(language, "'language'")
        except LocalProtocolError as error:
            raise refuse("language", str(error)) from None
    return Config(
        path=path,
        home=Path(home).expanduser() if isinstance(home, str) else None,
        relays=tuple(relays) if isinstance(relays, list) else (),
        json=as_json,
        language=language if isinstance(language, str) else None,
    )


def _line_of(text: str, key: str) -> int | None:
    """The line that sets a top-level `key` (`key =`, `"key" =`, `key.sub =` or a
    `[key]` table), for the error; tomllib reports no position once a file parsed."""
    quoted = re.escape(key)
    pattern = re.compile(
        rf"""^\s*(?:(?:{quoted}|"{quoted}"|'{quoted}')\s*[=.]|\[+\s*(?:{quoted}|"{quoted}")\s*[\].])"""
    )
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None

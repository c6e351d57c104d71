"""The text policy: which characters may cross the channel or come from a relay, and how
any text is made harmless before it reaches a terminal (pure, no I/O).

Everything the other side or a relay writes is shown to a principal in a terminal and,
for agreed records, to a third party in whatever viewer they use. A character that is not
a glyph can change what is shown without changing the bytes that were signed:

- control characters (Unicode category Cc, including C1 such as U+009B, a one-byte CSI)
  start terminal escape sequences: clear the screen, move the cursor, set the clipboard
  (OSC 52), hide text, make links (OSC 8);
- format characters (Cf) reorder or hide text: bidi embeddings, overrides and isolates
  (U+202A..U+202E, U+2066..U+2069), marks (U+200E, U+200F, U+061C), zero-width spaces
  (U+200B), the BOM (U+FEFF), invisible tags (U+E0000..U+E007F). "0001" followed by an
  override can display as "1000";
- line and paragraph separators (Zl, Zp) break a line where a viewer would not expect it;
- lone surrogates (Cs) are not text at all.

So decoders *refuse* such text (`check_safe_text`, `check_relay_url`), naming the field and
the code point as ``U+XXXX`` (never the character itself), and output layers *escape* any
text once more (`escaped`), so that a gap in a decoder, or text stored before this policy,
still cannot reach a terminal as anything but visible characters.

Two exceptions, both where a multi-line body allows them: line feed and tab (in note
bodies, red line texts, statements), and the zero-width joiner and non-joiner (U+200D,
U+200C) in free text, which only shape glyphs (emoji sequences, Persian, the Indic
scripts) and cannot reorder or hide text. Names, titles and URLs allow neither.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from typing import Final
from urllib.parse import urlsplit

from backchannel.protocol.errors import InsecureRelayUrl, UnsafeText, describe_char

__all__ = [
    "JOINERS",
    "LOOPBACK_HOSTS",
    "MULTILINE_CONTROLS",
    "REFUSED_CATEGORIES",
    "check_relay_url",
    "check_safe_text",
    "code_point",
    "escaped",
    "first_refused",
    "is_loopback_host",
    "json_escaped",
]

# Unicode general categories no text from the other side may carry (see the module doc).
REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# The only controls a multi-line body may carry.
MULTILINE_CONTROLS: Final = frozenset("\n\t")
# Zero-width non-joiner and joiner: needed by emoji sequences and several scripts, and
# unable to reorder or hide text; allowed in free text only.
JOINERS: Final = frozenset("\u200c\u200d")
# A relay named by one of these is on this machine: ws:// to it is never on a network.
LOOPBACK_HOSTS: Final = frozenset({"localhost"})
# The ASCII characters of category Cc (C0 controls and DELETE): all that `_refused`
# refuses of ASCII, with and without the multi-line body's line feed and tab.
_ASCII_REFUSED: Final = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_REFUSED_MULTILINE: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# URLs carry no spaces of any kind: a space in a relay URL is a trick or a typo.
_URL_REFUSED_CATEGORIES: Final = REFUSED_CATEGORIES | {"Zs"}


def code_point(char: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE, a format character)``: a character named without
    printing it (the form `UnsafeText` messages use)."""
    return describe_char(char)


def _refused(char: str, *, multiline: bool, joiners: bool) -> bool:
    if unicodedata.category(char) not in REFUSED_CATEGORIES:
        return False
    if multiline and char in MULTILINE_CONTROLS:
        return False
    return not (joiners and char in JOINERS)


def first_refused(value: str, *, multiline: bool = False, joiners: bool = False) -> str | None:
    """The first character of `value` the policy refuses, or None.

    Args:
        value: the text.
        multiline: line feed and tab are allowed (a body, not a name or a title).
        joiners: U+200C and U+200D are allowed (free text, not a name, title or URL).
    """
    if value.isascii():
        # Of ASCII only the controls (Cc) are refused: one regular expression in C, where
        # a category lookup per character was a tenth of a `send`'s CLI time (its JSON).
        found = (_ASCII_REFUSED_MULTILINE if multiline else _ASCII_REFUSED).search(value)
        return None if found is None else found.group()
    for char in value:
        if _refused(char, multiline=multiline, joiners=joiners):
            return char
    return None


def check_safe_text(value: str, what: str, *, multiline: bool = False,
                    joiners: bool = False) -> None:
    """Refuse text with a character that could change what a terminal or viewer shows.

    Args:
        value: the text.
        what: the field's name, for the error message ("red line title").
        multiline: as in `first_refused`.
        joiners: as in `first_refused`.

    Raises:
        UnsafeText: the text has such a character; the error names it as ``U+XXXX``.
    """
    char = first_refused(value, multiline=multiline, joiners=joiners)
    if char is not None:
        raise UnsafeText(what, char)


def is_loopback_host(host: str) -> bool:
    """Whether `host` (as `urlsplit` gives it: no brackets, lower case) is this machine:
    ``localhost``, 127.0.0.0/8 or ::1."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_relay_url(url: str, what: str = "relay URL") -> None:
    """Refuse a relay URL that is unsafe to show or to connect to.

    A relay URL comes from the command line or from the other side's invite, hello or
    move. The capability tokens travel in the clear over ``ws://``, so it is allowed only
    to a relay on this machine (127.0.0.0/8, ::1, localhost); anything else is ``wss://``.

    Raises:
        UnsafeText: a control, format, separator or space character.
        InsecureRelayUrl: not ``wss://`` (nor ``ws://`` on loopback), or no host.
    """
    for char in url:
        if unicodedata.category(char) in _URL_REFUSED_CATEGORIES:
            raise UnsafeText(what, char)
    scheme, _, _ = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        raise InsecureRelayUrl(
            f"{what} {url} is a web address; a relay URL starts with wss:// "
            "(or ws:// for a relay on this machine)"
        )
    if scheme not in ("ws", "wss") or "://" not in url:
        raise InsecureRelayUrl(
            f"{what} {url} must start with wss:// (or ws:// for a relay on this machine)"
        )
    try:
        host = urlsplit(url).hostname
    except ValueError:
        raise InsecureRelayUrl(f"{what} {url} is not a valid URL") from None
    if not host:
        raise InsecureRelayUrl(f"{what} {url} names no host")
    if scheme == "ws" and not is_loopback_host(host):
        raise InsecureRelayUrl(
            f"{what} {url} is not encrypted: use wss:// (ws:// is only for a relay on this "
            "machine: 127.0.0.1, ::1 or localhost)"
        )


def _escape(char: str) -> str:
    # \x1b for the C0/C1 range a programmer recognises; <U+202E> for the rest, which
    # would otherwise need a table to read.
    if ord(char) < 0x100:
        return f"\\x{ord(char):02x}"
    return f"<U+{ord(char):04X}>"


def escaped(text: str, *, multiline: bool = False) -> str:
    """`text` with every character the policy refuses written as a visible escape.

    ESC becomes ``\\x1b``, U+009B ``\\x9b``, U+202E ``<U+202E>``, a lone surrogate
    ``<U+D800>``; the joiners U+200C and U+200D are kept (they only shape glyphs). The
    identity on ordinary printable text in any script, emoji included. Backslashes are
    left as they are: the escape is for showing, and is not meant to be read back.

    Args:
        text: anything, from anyone.
        multiline: keep line feeds and tabs (a body shown over several lines).
    """
    if first_refused(text, multiline=multiline, joiners=True) is None:
        return text
    return "".join(
        _escape(c) if _refused(c, multiline=multiline, joiners=True) else c for c in text
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code > 0xFFFF:  # JSON spells a character outside the BMP as a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def json_escaped(serialized: str) -> str:
    """JSON text (as `json.dumps(ensure_ascii=False)` writes it) with every character the
    policy refuses written as a ``\\uXXXX`` escape: the same JSON value once parsed, and
    nothing a terminal would act on.

    `json.dumps` escapes C0 controls itself but leaves C1 controls, format characters,
    separators and lone surrogates raw. Outside strings JSON has only spaces and the line
    feeds of an indent, which stay.
    """
    if first_refused(serialized, multiline=True) is None:
        return serialized
    return "".join(
        _json_escape(c) if c != "\n" and unicodedata.category(c) in REFUSED_CATEGORIES else c
        for c in serialized
    )

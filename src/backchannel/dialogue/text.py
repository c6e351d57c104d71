"""The rules every text field of a dialogue body obeys, and the strict decoding scope.

Text is shown to a principal, printed in a terminal and, for agreed records, to a third
party. So it must be valid UTF-8 within its bound, and it may not carry control characters
that could rewrite what a terminal shows (escape sequences, carriage returns). Multi-line
text may contain line feeds and tabs; titles, tags and one-line fields may not.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["check_id", "check_line", "check_text", "check_time", "decoding"]

# The only control characters multi-line text may carry.
_ALLOWED_CONTROLS: Final = frozenset("\n\t")


def _check_encodable(value: str, max_bytes: int, what: str, *, allow_empty: bool) -> None:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} is not valid Unicode text") from None
    if size > max_bytes:
        raise LocalProtocolError(f"{what} is {size} bytes, the limit is {max_bytes}")
    if not allow_empty and not value.strip():
        raise LocalProtocolError(f"{what} is empty")


def check_text(value: str, max_bytes: int, what: str, *, allow_empty: bool = False) -> None:
    """Check a multi-line text field.

    Args:
        value: the text.
        max_bytes: its bound in UTF-8 bytes.
        what: the field's name, for the error message.
        allow_empty: whether an empty (or blank) text is allowed.

    Raises:
        LocalProtocolError: too long, empty when it may not be, or with a control character
            other than line feed and tab.
    """
    _check_encodable(value, max_bytes, what, allow_empty=allow_empty)
    for char in value:
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) == "Cc":
            raise LocalProtocolError(f"{what} contains the control character U+{ord(char):04X}")


def check_line(value: str, max_bytes: int, what: str, *, allow_empty: bool = False) -> None:
    """Check a one-line text field (a title): like `check_text`, without line feeds or tabs.

    Raises:
        LocalProtocolError: as `check_text`, or the text has a line feed or a tab.
    """
    _check_encodable(value, max_bytes, what, allow_empty=allow_empty)
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise LocalProtocolError(f"{what} contains the control character U+{ord(char):04X}")


def check_id(value: bytes, size: int, what: str) -> None:
    """Check a fixed-size id or hash.

    Raises:
        LocalProtocolError: it is not `size` bytes.
    """
    if not isinstance(value, bytes) or len(value) != size:
        raise LocalProtocolError(f"{what} must be {size} bytes")


def check_time(value: int, maximum: int, what: str) -> None:
    """Check a non-negative integer (a time in ms, a duration, a counter) against its bound.

    Raises:
        LocalProtocolError: negative or above `maximum`.
    """
    if not 0 <= value <= maximum:
        raise LocalProtocolError(f"{what} must be between 0 and {maximum}, not {value}")


@contextmanager
def decoding(what: str) -> Iterator[None]:
    """Decode bytes from the network: a broken invariant is the peer's fault.

    The body dataclasses check their invariants on construction and raise
    `LocalProtocolError`, which is right when this side builds one; inside this scope the
    same failure becomes `RemoteProtocolError`, which is right when the peer sent it.
    """
    try:
        yield
    except LocalProtocolError as error:
        raise RemoteProtocolError(f"{what}: {error}") from None

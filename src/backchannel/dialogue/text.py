"""The rules every text field of a dialogue body obeys, and the strict decoding scope.

Text is shown to a principal, printed in a terminal and, for agreed records, to a third
party. So it must be valid UTF-8 within its bound, and it obeys the text policy
(`backchannel.protocol.text`): no control characters that could rewrite what a terminal
shows (escape sequences, carriage returns), no format characters that reorder or hide text
(bidi overrides and isolates, zero-width spaces), no line or paragraph separators.
Multi-line text may contain line feeds, tabs and the zero-width joiners (which only shape
glyphs: emoji, Persian, the Indic scripts); titles, tags and one-line fields may not. So a
statement both sides sign shows in every viewer in the order of its bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from backchannel.protocol.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    UnsafeRemoteText,
    UnsafeText,
)
from backchannel.protocol.text import check_safe_text

__all__ = ["check_id", "check_line", "check_text", "check_time", "decoding"]

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
        LocalProtocolError: too long, or empty when it may not be.
        UnsafeText: a character the text policy refuses in a body (a control other than
            line feed and tab, a format character, a separator); a `LocalProtocolError`.
    """
    _check_encodable(value, max_bytes, what, allow_empty=allow_empty)
    check_safe_text(value, what, multiline=True, joiners=True)


def check_line(value: str, max_bytes: int, what: str, *, allow_empty: bool = False) -> None:
    """Check a one-line text field (a title, a tag): like `check_text`, without line feeds,
    tabs or joiners.

    Raises:
        LocalProtocolError: as `check_text`.
        UnsafeText: as `check_text`, or the text has a line feed, a tab or a joiner.
    """
    _check_encodable(value, max_bytes, what, allow_empty=allow_empty)
    check_safe_text(value, what)


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
    same failure becomes `RemoteProtocolError`, which is right when the peer sent it
    (`UnsafeRemoteText` for text the policy refuses, with the field and the code point).
    """
    try:
        yield
    except UnsafeText as error:
        raise UnsafeRemoteText(f"{what}: {error}", error.field, error.code_point) from None
    except LocalProtocolError as error:
        raise RemoteProtocolError(f"{what}: {error}") from None

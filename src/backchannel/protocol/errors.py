"""The error hierarchy: one root, then errors by who is to blame.

- `LocalProtocolError`: the caller misused the API (our bug, or the user's input).
- `RemoteProtocolError`: the peer or the network sent something malformed;
  `UnsafeRemoteText` when it is text the policy refuses.
  `UnsafeText` and `InsecureRelayUrl` are its kinds for text that breaks the text policy
  (`protocol.text`) when this side builds it.
- `DecryptionFailed`: authentication failed. Deliberately opaque: it never says which
  check failed (bad tag, wrong key, truncated ciphertext), so an attacker learns nothing
  from the error itself.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "BackchannelError",
    "DecryptionFailed",
    "InsecureRelayUrl",
    "LocalProtocolError",
    "RemoteProtocolError",
    "UnsafeRemoteText",
    "UnsafeText",
    "describe_char",
]


class BackchannelError(Exception):
    """Root of every error Backchannel raises on purpose."""


class LocalProtocolError(BackchannelError):
    """You (the caller) asked for something the protocol does not allow."""


# What each refused category is, in words, for error messages.
_CATEGORY_WORDS = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
    "Zs": "a space",
}


def describe_char(char: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE, a format character)``: a character named without
    printing it, so that the description is safe in any message."""
    words = [w for w in (unicodedata.name(char, ""),
                         _CATEGORY_WORDS.get(unicodedata.category(char), "")) if w]
    return f"U+{ord(char):04X}" + (f" ({', '.join(words)})" if words else "")


class UnsafeText(LocalProtocolError):
    """Text with a character that could change what a terminal or a viewer shows.

    The message names the field and the code point (``U+202E RIGHT-TO-LEFT OVERRIDE``),
    never the character itself, so printing the error is safe.

    Attributes:
        field: what the text is ("red line title", "name in the invite").
        code_point: the offending character's code point.
    """

    def __init__(self, field: str, char: str) -> None:
        super().__init__(f"{field} contains {describe_char(char)}, which is not allowed there")
        self.field = field
        self.code_point = ord(char)


class InsecureRelayUrl(LocalProtocolError):
    """A relay URL that is not ``wss://`` (or ``ws://`` to this machine), or has no host."""


class RemoteProtocolError(BackchannelError):
    """The other side, or something on the network, sent bytes that break the protocol."""


class DecryptionFailed(BackchannelError):
    """A message could not be authenticated. Nothing about why is disclosed."""

    def __init__(self) -> None:
        super().__init__("message could not be decrypted")


class UnsafeRemoteText(RemoteProtocolError):
    """The other side sent text the text policy refuses (`UnsafeText`, blamed on them).

    Attributes:
        field: what the text is.
        code_point: the offending character's code point.
    """

    def __init__(self, message: str, field: str, code_point: int) -> None:
        super().__init__(message)
        self.field = field
        self.code_point = code_point

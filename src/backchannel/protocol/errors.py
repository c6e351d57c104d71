"""The error hierarchy: one root, then errors by who is to blame.

- `LocalProtocolError`: the caller misused the API (our bug, or the user's input).
- `RemoteProtocolError`: the peer or the network sent something malformed.
- `DecryptionFailed`: authentication failed. Deliberately opaque: it never says which
  check failed (bad tag, wrong key, truncated ciphertext), so an attacker learns nothing
  from the error itself.
"""

from __future__ import annotations

__all__ = [
    "BackchannelError",
    "DecryptionFailed",
    "LocalProtocolError",
    "RemoteProtocolError",
]


class BackchannelError(Exception):
    """Root of every error Backchannel raises on purpose."""


class LocalProtocolError(BackchannelError):
    """You (the caller) asked for something the protocol does not allow."""


class RemoteProtocolError(BackchannelError):
    """The other side, or something on the network, sent bytes that break the protocol."""


class DecryptionFailed(BackchannelError):
    """A message could not be authenticated. Nothing about why is disclosed."""

    def __init__(self) -> None:
        super().__init__("message could not be decrypted")

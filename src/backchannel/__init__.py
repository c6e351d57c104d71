"""Backchannel: a confidential, candid and dependable strategic channel."""

from backchannel.protocol.errors import (
    BackchannelError,
    DecryptionFailed,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "BackchannelError",
    "DecryptionFailed",
    "LocalProtocolError",
    "RemoteProtocolError",
    "__version__",
]

__version__ = "0.1.0"

"""The sans-I/O protocol core: bytes, `now` and a random source in; bytes and events out.

Nothing in this package opens a socket, reads a file or the clock.
"""

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
]

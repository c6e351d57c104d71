"""The Python API of a principal's client; the CLI and any other interface are thin
layers over it.

    principal = Principal.open(home, passphrase)
    code = await principal.invite(["wss://relay.example"])
    ...
    await principal.send("beijing", "text")
    report = await principal.sync()
    page = principal.history("beijing", limit=50)  # both ways, every act in place
"""

from backchannel.client.engine import (
    DEFAULT_INVITE_TTL_MS,
    ChannelStatus,
    InboxEntry,
    Principal,
    SendResult,
    SyncReport,
)
from backchannel.client.errors import (
    ChannelNotFound,
    ClientError,
    IdentityChanged,
    InviteRefused,
    NotInitialised,
    StateCorrupted,
    WrongPassphrase,
)
from backchannel.client.history import HistoryEntry, HistoryFork, HistoryGap, HistoryPage
from backchannel.client.keystore import KdfParameters
from backchannel.client.records import ChannelRecord

__all__ = [
    "DEFAULT_INVITE_TTL_MS",
    "ChannelNotFound",
    "ChannelRecord",
    "ChannelStatus",
    "ClientError",
    "HistoryEntry",
    "HistoryFork",
    "HistoryGap",
    "HistoryPage",
    "IdentityChanged",
    "InboxEntry",
    "InviteRefused",
    "KdfParameters",
    "NotInitialised",
    "Principal",
    "SendResult",
    "StateCorrupted",
    "SyncReport",
    "WrongPassphrase",
]

"""The Python API of a principal's client; the CLI and any other interface are thin
layers over it.

    principal = Principal.open(home, passphrase)
    code = await principal.invite(["wss://relay.example"])
    ...
    await principal.send("beijing", "text")
    report = await principal.sync()
    page = principal.history("beijing", limit=50)  # both ways, every act in place

Names, texts, relay URLs and errors in what it returns may come from the counterpart or a
relay: an interface shows each through `escaped` (the CLI's `output.shown`), so nothing in
them can act on a terminal or reorder what is shown (docs/threat-model.md).
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
from backchannel.protocol.text import escaped

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
    "escaped",
]

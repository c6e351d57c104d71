"""Errors of the client, each written for the principal who will read it."""

from __future__ import annotations

from backchannel.protocol.errors import BackchannelError, LocalProtocolError

__all__ = [
    "AgentTookOver",
    "ChannelNotFound",
    "ClientError",
    "HomeBusy",
    "HomeReadOnly",
    "IdentityChanged",
    "InviteRefused",
    "NotInitialised",
    "RelayUnreachable",
    "StaleRecord",
    "StateCorrupted",
    "UnknownReference",
    "WrongPassphrase",
]


class ClientError(BackchannelError):
    """Something the principal can act on; the message says what."""


class WrongPassphrase(ClientError):
    def __init__(self) -> None:
        super().__init__("wrong passphrase: the local state was not opened and nothing changed")


class StateCorrupted(ClientError):
    """The state file is damaged or not a Backchannel file. It is left as it is."""


class HomeReadOnly(ClientError):
    """The home cannot be written (a read-only file, folder or file system: a mounted
    backup, a locked-down audit copy). It was opened to be read; whatever would change it
    is refused before anything changes.

    Attributes:
        home: the folder; reason: why it is read-only ("state.db is not writable").
    """

    def __init__(self, home: object, reason: str, refused: str = "this would change it") -> None:
        self.home = home
        self.reason = reason
        super().__init__(
            f"the home {home} is read-only: {reason}; {refused} and was refused (nothing"
            " changed). Make changes in the principal's own home: a writable copy of this"
            " one would fork its channels (docs/client.md, \"Backups and copies\")"
        )


class NotInitialised(ClientError):
    """No principal lives in this home folder yet."""


class ChannelNotFound(ClientError, LocalProtocolError):
    """No channel of that name or id."""


class UnknownReference(ClientError):
    """No message, red line or record of the channel has an id starting so."""


class RelayUnreachable(ClientError):
    """No relay the operation needs could be reached, so nothing was done."""


class InviteRefused(ClientError):
    """An invite code was damaged, tampered with, expired, already used, or our own."""


class IdentityChanged(ClientError):
    """The counterpart's identity key changed; sending waits until it is looked at."""


class StaleRecord(ClientError):
    """A record changed between reading and writing it back: a bug in this program or a
    second writer. The write was refused, so the state did not fork; try again."""


class HomeBusy(ClientError):
    """Another backchannel process holds this principal's home (and did not let go in
    time)."""


class AgentTookOver(HomeBusy):
    """While this command waited for the home, an agent took it: ask the agent instead."""

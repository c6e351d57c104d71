"""What the client stores, as plain dataclasses with a JSON form (sealed by the keystore).

JSON because these records stay on this machine, change shape as features arrive, and
are read by a human debugging a state file after `backchannel export`; bytes are hex.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final

from backchannel.client.errors import StateCorrupted
from backchannel.protocol.message import Message

# The stored shape of a record's links: 1 (no `format` key stored) always had our inbound
# mailbox on every link; 2 may have links with only the peer's (`Link.inbound` None).
LINK_FORMAT: Final = 2

__all__ = [
    "LINK_FORMAT",
    "ChannelRecord",
    "InviteClaimRecord",
    "InviteRecord",
    "Link",
    "Mailbox",
    "MessageRecord",
    "copy_channel",
    "dump",
    "load",
    "message_record",
]


@dataclass(slots=True)
class Mailbox:
    """A mailbox on one relay. `receive_token` is empty for a mailbox we only send to."""

    mailbox_id: str
    send_token: str = field(repr=False)
    receive_token: str = field(default="", repr=False)


@dataclass(slots=True)
class Link:
    """One relay of a channel: our inbound mailbox there, the peer's, or both.

    With two relays or more a channel's directions live on different relays (`placement`),
    so a link holds one of the two; a channel over one relay, and a channel paired before
    the split (`LINK_FORMAT` 1), holds both on each relay. Invite and retiring links
    always have `inbound`.
    """

    url: str
    inbound: Mailbox | None
    outbound: Mailbox | None = None


@dataclass(slots=True)
class ChannelRecord:
    channel_id: str
    name: str
    peer_identity: str
    session: str = field(repr=False)
    links: list[Link]
    created_at_ms: int
    role: str  # "inviter" or "joiner"
    verified: bool = False
    last_heard_ms: int = 0
    rejected: int = 0
    # Set when this channel's counterpart key differs from an earlier channel of the same
    # name; sending waits until the safety number is confirmed.
    identity_changed: bool = False
    # The inviter's one-time invite mailboxes, still read until the joiner has moved to the
    # channel's private ones, then drained and deleted on their relays.
    retiring: list[Link] = field(default_factory=list)
    peer_moved: bool = False
    # Line tests: 0 means the default period (an hour), -1 means this side sends none.
    linetest_every_ms: int = 0
    linetest_grace_ms: int = 0
    # The shape its links were stored in (`LINK_FORMAT`); records from before have none.
    format: int = LINK_FORMAT
    # The stored version this copy was read at (compare-and-swap, `ChannelRepository`);
    # kept beside the sealed record, never inside it.
    version: int = field(default=0, compare=False)


@dataclass(slots=True)
class InviteRecord:
    invite_id: str
    name: str
    prekeys: str = field(repr=False)
    links: list[Link] = field(default_factory=list)
    created_at_ms: int = 0
    expires_at_ms: int = 0
    # The channel's own mailboxes, created with the invite and never shown in it: on
    # every relay in format 1, on the inviter's share of them (`placement`) in format 2.
    channel_links: list[Link] = field(default_factory=list)
    format: int = LINK_FORMAT


@dataclass(slots=True)
class InviteClaimRecord:
    """Someone else used one of our invites after its first joiner (review §4 row 4): a
    session-starting hello reached the invite's mailbox after the invite was spent.

    The claimer's name and identity travel sealed in that hello under the invite's
    one-time prekey, which the first joiner spent and which is gone (so that the first
    joiner's session keeps its forward secrecy): they cannot be shown.
    """

    channel_id: str  # the channel the invite became
    channel_name: str  # its name when the claim arrived
    relay: str  # where the claim was stored
    at_ms: int  # our clock when it was read

    def describe(self) -> str:
        """One line for `sync`, `status` and `watch` (times in UTC)."""
        when = datetime.fromtimestamp(self.at_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        return (
            f"someone other than '{self.channel_name}' also used the invite this channel"
            f" came from (read {when} on {self.relay}); they were told nothing and get no"
            " channel: if you gave the code to one person only, it leaked. Compare the"
            f" safety number: backchannel verify {self.channel_name}"
        )


@dataclass(slots=True)
class MessageRecord:
    message_id: str
    direction: str  # "in" or "out"
    seq: int
    kind: int
    sent_at_ms: int
    body: str = field(repr=False)  # hex
    received_at_ms: int = 0
    delivered_at_ms: int = 0
    read_at_ms: int = 0
    stored_on: list[str] = field(default_factory=list)
    # Message.hash: what a clarification request binds to, and the sender's hash chain.
    message_hash: str = ""
    # The message's own prev_hash (hex): checked against its predecessor (forks.py).
    prev_hash: str = ""


def message_record(message: Message, direction: str, received_at_ms: int = 0) -> MessageRecord:
    """The stored form of a message we sealed ("out") or received ("in")."""
    return MessageRecord(
        message.message_id.hex(),
        direction,
        message.seq,
        message.kind,
        message.sent_at_ms,
        message.body.hex(),
        received_at_ms=received_at_ms,
        message_hash=message.hash.hex(),
        prev_hash=message.prev_hash.hex(),
    )


def _mailbox_data(mailbox: Mailbox | None) -> dict[str, str] | None:
    if mailbox is None:
        return None
    return {
        "mailbox_id": mailbox.mailbox_id,
        "send_token": mailbox.send_token,
        "receive_token": mailbox.receive_token,
    }


def _link_data(link: Link) -> dict[str, Any]:
    return {
        "url": link.url,
        "inbound": _mailbox_data(link.inbound),
        "outbound": _mailbox_data(link.outbound),
    }


def _stored(value: Any) -> Any:
    """A field's JSON form: what `dataclasses.asdict` gives, written out for the only
    nested shapes records have (lists of links, lists of strings), since the recursive
    `asdict` cost more than anything else in storing a note (issue 15)."""
    if type(value) is list:
        return [_link_data(item) if type(item) is Link else item for item in value]
    return value


# Each record class's stored field names, in declaration order (read once, not per dump).
_FIELDS: Final[dict[type[Any], tuple[str, ...]]] = {
    kind: tuple(f.name for f in fields(kind))
    for kind in (ChannelRecord, InviteRecord, InviteClaimRecord, MessageRecord)
}


def _copied_link(link: Link) -> Link:
    inbound, outbound = link.inbound, link.outbound
    return Link(
        link.url,
        None if inbound is None else Mailbox(*_mailbox_fields(inbound)),
        None if outbound is None else Mailbox(*_mailbox_fields(outbound)),
    )


def _mailbox_fields(mailbox: Mailbox) -> tuple[str, str, str]:
    return mailbox.mailbox_id, mailbox.send_token, mailbox.receive_token


def copy_channel(record: ChannelRecord) -> ChannelRecord:
    """A copy of a channel record that shares nothing its holder may change (its lists of
    links and their mailboxes are copied; strings and numbers are immutable)."""
    copy = object.__new__(ChannelRecord)
    for name in _FIELDS[ChannelRecord]:
        value = getattr(record, name)
        setattr(copy, name, [_copied_link(lk) for lk in value] if type(value) is list else value)
    return copy


def dump(record: ChannelRecord | InviteRecord | InviteClaimRecord | MessageRecord) -> bytes:
    data = {name: _stored(getattr(record, name)) for name in _FIELDS[type(record)]}
    data.pop("version", None)  # the store keeps it (see ChannelRecord.version)
    if isinstance(record, ChannelRecord | InviteRecord):
        # Format 1 is written without the key, so that a record whose every link still has
        # our mailbox stays readable by a version from before the split.
        split = any(link.inbound is None for link in record.links)
        record.format = LINK_FORMAT if split else 1
        data["format"] = record.format
        if not split:
            del data["format"]
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def _link(data: dict[str, Any], fmt: int) -> Link:
    inbound, outbound = data.get("inbound"), data.get("outbound")
    if fmt < 2 and not inbound:
        raise ValueError("a format 1 link has our inbound mailbox")
    return Link(
        data["url"],
        Mailbox(**inbound) if inbound else None,
        Mailbox(**outbound) if outbound else None,
    )


def load(kind: type[Any], raw: bytes) -> Any:
    """Parse a stored record of the given class.

    Raises:
        StateCorrupted: the record does not have the expected shape.
    """
    try:
        data = json.loads(raw)
        if kind in (ChannelRecord, InviteRecord):
            # Stored before links were split: format 1, read as it was.
            fmt = data.setdefault("format", 1)
            if not isinstance(fmt, int) or not 1 <= fmt <= LINK_FORMAT:
                raise ValueError(f"link format {fmt!r}")
            for key in ("links", "retiring", "channel_links"):
                if key in data:
                    data[key] = [_link(link, fmt) for link in data[key]]
            for key in ("retiring", "channel_links"):
                if any(link.inbound is None for link in data.get(key, ())):
                    raise ValueError(f"a {key} link without our mailbox")
            if kind is InviteRecord and any(lk.inbound is None for lk in data.get("links", ())):
                raise ValueError("an invite link without its mailbox")
        data.pop("version", None)
        return kind(**data)
    except (ValueError, KeyError, TypeError):
        raise StateCorrupted(f"a stored {kind.__name__} is damaged") from None

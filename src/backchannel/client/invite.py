"""Invite codes and the joiner's hello: how two principals pair (pure, no I/O).

An invite carries everything the joiner needs to open a channel: the relays, a one-time
mailbox on each (its id and *send* token only), and the inviter's prekey bundle. It is
signed by the inviter's identity key over all of it, so a relay URL or a mailbox swapped in
transit is refused; swapping the identity too is what the safety-number comparison catches.
Names and relay URLs obey the text policy (`protocol.text`): a name with a control, format
or separator character, or a relay that is not wss:// (nor ws:// on loopback), is refused
when decoded, before anything is stored (docs/protocol.md §8).

Binary layout, then ``BC1-`` + base64url without padding::

    magic "BCI" | version u8 = 1, 2, 3 or 4 | invite_id 16 | expires_at_ms u64 | name text16
    relay_count u8 | relay_count x (url text16, mailbox_id 16, send_token 32)
    bundle bytes16 | (version 2 to 4) capabilities u8
    (version 3 only) key_mask u8 | for each bit i set, in order: relay i's key 1225
    (version 4 only) pin_mask u8 | for each bit i set, in order: relay i's pin 32
    signature 64 = Ed25519(IK, "Backchannel invite v1" || all above)

Version 2 adds the inviter's capabilities (bit 0: the post-quantum ratchet, protocol.md
§13.8) under the signature, so nobody on the way can strip them; an invite without any is
written as version 1, which Backchannel 0.1 reads. Version 3 adds the relays' forwarding
keys (`protocol.forwarding.RelayPublicKey`, its published form), so that the joiner can
send through another relay (private routing, docs/relay.md) without first asking the
destination relay for its key, which would itself show the relay the joiner's address; bit
i of the mask (nonzero) says relay i's key follows. An invite with no key is written as
version 2 (or 1), which earlier versions read. Version 4, what invites are now, carries
instead of each key the relay's 32-byte *pin*, the public key of its Ed25519 relay
identity (`protocol.keystatement`): two relays with keys no longer fit one QR code, two
with pins do. The joiner fetches the relay's signed key statement and keeps a key only if
it verifies under the pin (`client.keypins`), and fetches it again the same way after the
relay rotates its key. An invite carries pins or keys, never both. The joiner's hello
answers a version 2 invite with its own capabilities byte after the relays (the hello is
inside the first, authenticated message).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Final

from backchannel.client.errors import InviteRefused
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle
from backchannel.protocol.envelope import MAILBOX_ID_SIZE
from backchannel.protocol.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    UnsafeRemoteText,
    UnsafeText,
)
from backchannel.protocol.forwarding import PUBLISHED_KEY_SIZE, RelayPublicKey
from backchannel.protocol.keystatement import PIN_SIZE
from backchannel.protocol.relayframes import TOKEN_SIZE
from backchannel.protocol.text import check_relay_url, check_safe_text
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "CAPABILITY_PQ_RATCHET",
    "INVITE_PREFIX",
    "KIND_CAPABILITIES",
    "KIND_HELLO",
    "KIND_MOVE",
    "MAX_RELAYS",
    "Hello",
    "Invite",
    "Move",
    "RelayAddress",
    "decode_capabilities",
]

INVITE_PREFIX: Final = "BC1-"
# Message kind of the joiner's first message, a `Hello`.
KIND_HELLO: Final = 0x0004
# Message kind of the inviter's answer, a `Move`: the channel's own mailboxes, which
# replace the one-time invite mailboxes.
KIND_MOVE: Final = 0x0005
# Message kind of a capabilities announcement in an existing channel (body: capabilities
# u8), which upgrades a channel paired without the PQ ratchet in place (protocol.md §13.8).
KIND_CAPABILITIES: Final = 0x0007
# Capability bits, in the invite (version 2), the hello and the announcement.
CAPABILITY_PQ_RATCHET: Final = 0x01
_MAGIC: Final = b"BCI"
_VERSION: Final = 1
_VERSION_CAPABILITIES: Final = 2
_VERSION_KEYS: Final = 3
_VERSION_PINS: Final = 4
_VERSIONS: Final = (_VERSION, _VERSION_CAPABILITIES, _VERSION_KEYS, _VERSION_PINS)
_SIGNATURE_LABEL: Final = b"Backchannel invite v1"
# A channel over more than a handful of relays gains nothing and multiplies traffic.
MAX_RELAYS: Final = 8
MAX_URL_LENGTH: Final = 512
MAX_NAME_LENGTH: Final = 64
_MAX_BUNDLE: Final = 4096
# Eight relays with their keys (1,225 bytes each, version 3) are about 14,000 characters.
_MAX_CODE: Final = 24576


class _PolicyRefused(RemoteProtocolError):
    """Well-formed, but with text the text policy refuses (`protocol.text`): a name that
    would write to the terminal, a relay that is not wss://. Told apart from damage so the
    principal reads what is wrong with the code instead of "damaged"."""


class _UnsafeName(_PolicyRefused, UnsafeRemoteText):
    """A name with a character the text policy refuses."""


def _read_name(r: Reader, what: str) -> str:
    name = r.text16(MAX_NAME_LENGTH)
    try:
        check_safe_text(name, what)
    except UnsafeText as error:
        raise _UnsafeName(str(error), error.field, error.code_point) from None
    return name


@dataclass(frozen=True, slots=True)
class RelayAddress:
    """Where and how to deposit into one mailbox: a relay URL, a mailbox, its send token."""

    url: str
    mailbox_id: bytes
    send_token: bytes = field(repr=False)

    def write(self, w: Writer) -> None:
        w.text16(self.url).fixed(self.mailbox_id, MAILBOX_ID_SIZE)
        w.fixed(self.send_token, TOKEN_SIZE)

    @classmethod
    def read(cls, r: Reader) -> RelayAddress:
        url = r.text16(MAX_URL_LENGTH)
        try:
            # wss://, or ws:// to this machine only: the send token travels in it.
            check_relay_url(url)
        except LocalProtocolError as error:
            raise _PolicyRefused(str(error)) from None
        return cls(url, r.fixed(MAILBOX_ID_SIZE), r.fixed(TOKEN_SIZE))


def _write_relays(w: Writer, relays: tuple[RelayAddress, ...]) -> None:
    w.u8(len(relays))
    for relay in relays:
        relay.write(w)


def _read_relays(r: Reader) -> tuple[RelayAddress, ...]:
    count = r.u8()
    if not 1 <= count <= MAX_RELAYS:
        raise RemoteProtocolError(f"a channel needs 1 to {MAX_RELAYS} relays")
    return tuple(RelayAddress.read(r) for _ in range(count))


def _read_mask(r: Reader, count: int, what: str) -> int:
    mask = r.u8()
    if not mask or mask >> count:
        raise RemoteProtocolError(f"a version {what} invite's mask names no relay or too many")
    return mask


def _read_pins(r: Reader, count: int) -> tuple[bytes | None, ...]:
    """The pin mask and the pins it announces, one slot per relay.

    Raises:
        RemoteProtocolError: an empty mask or a bit past the last relay.
    """
    mask = _read_mask(r, count, "4")
    return tuple(r.fixed(PIN_SIZE) if mask >> i & 1 else None for i in range(count))


def _read_keys(r: Reader, count: int) -> tuple[RelayPublicKey | None, ...]:
    """The key mask and the keys it announces, one slot per relay.

    Raises:
        RemoteProtocolError: an empty mask, a bit past the last relay, or a key that is
            not a relay key.
    """
    mask = _read_mask(r, count, "3")
    return tuple(
        RelayPublicKey.from_bytes(r.fixed(PUBLISHED_KEY_SIZE)) if mask >> i & 1 else None
        for i in range(count)
    )


@dataclass(frozen=True, slots=True)
class Invite:
    invite_id: bytes
    expires_at_ms: int
    name: str
    relays: tuple[RelayAddress, ...]
    bundle: PrekeyBundle
    signature: bytes = field(default=b"", repr=False)
    capabilities: int = 0
    # Each relay's forwarding key, in the order of `relays` (None: not given); empty, or
    # all None, for an invite without keys.
    relay_keys: tuple[RelayPublicKey | None, ...] = ()
    # Each relay's identity pin (`protocol.keystatement.PIN_SIZE` bytes), in the order of
    # `relays` (None: not given); empty, or all None, for an invite without pins.
    relay_pins: tuple[bytes | None, ...] = ()

    def __post_init__(self) -> None:
        if len(self.relay_keys) > len(self.relays) or len(self.relay_pins) > len(self.relays):
            raise LocalProtocolError("more relay keys or pins than relays")
        if any(self.relay_keys) and any(self.relay_pins):
            raise LocalProtocolError("an invite carries the relays' keys or their pins, not both")
        if any(pin is not None and len(pin) != PIN_SIZE for pin in self.relay_pins):
            raise LocalProtocolError(f"a relay pin is {PIN_SIZE} bytes")

    @property
    def post_quantum(self) -> bool:
        return bool(self.capabilities & CAPABILITY_PQ_RATCHET)

    def key_of(self, url: str) -> RelayPublicKey | None:
        """The forwarding key the invite gives for the relay at `url`, if any."""
        found = (k for r, k in zip(self.relays, self.relay_keys, strict=False) if r.url == url)
        return next(found, None)

    def pin_of(self, url: str) -> bytes | None:
        """The identity pin the invite gives for the relay at `url`, if any."""
        found = (p for r, p in zip(self.relays, self.relay_pins, strict=False) if r.url == url)
        return next(found, None)

    def _body(self) -> bytes:
        mask = sum(1 << i for i, key in enumerate(self.relay_keys) if key is not None)
        pin_mask = sum(1 << i for i, pin in enumerate(self.relay_pins) if pin is not None)
        if pin_mask:
            version = _VERSION_PINS
        elif mask:
            version = _VERSION_KEYS
        else:
            version = _VERSION_CAPABILITIES if self.capabilities else _VERSION
        w = Writer().raw(_MAGIC).u8(version).fixed(self.invite_id, 16)
        w.u64(self.expires_at_ms).text16(self.name)
        _write_relays(w, self.relays)
        w.bytes16(self.bundle.encode())
        if version >= _VERSION_CAPABILITIES:
            w.u8(self.capabilities)
        if version == _VERSION_KEYS:
            w.u8(mask)
            for key in self.relay_keys:
                if key is not None:
                    w.fixed(key.to_bytes(), PUBLISHED_KEY_SIZE)
        if version == _VERSION_PINS:
            w.u8(pin_mask)
            for pin in self.relay_pins:
                if pin is not None:
                    w.fixed(pin, PIN_SIZE)
        return w.getvalue()

    def signed(self, identity: IdentityKeyPair) -> Invite:
        signature = identity.sign(_SIGNATURE_LABEL + self._body())
        return Invite(
            self.invite_id,
            self.expires_at_ms,
            self.name,
            self.relays,
            self.bundle,
            signature,
            self.capabilities,
            self.relay_keys,
            self.relay_pins,
        )

    def to_code(self) -> str:
        raw = self._body() + self.signature
        return INVITE_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_code(cls, code: str, now_ms: int) -> Invite:
        """Parse, verify and check the expiry of an invite code.

        Raises:
            InviteRefused: damaged, tampered with, expired, or with a name or relay URL the
                text policy refuses (`protocol.text`; the message says which).
        """
        text = "".join(code.split())
        if not text.startswith(INVITE_PREFIX):
            raise InviteRefused(f"not an invite code: it should start with {INVITE_PREFIX}")
        if len(text) > _MAX_CODE:
            raise InviteRefused("invite code is too long")
        body = text[len(INVITE_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise InviteRefused("invite code is damaged: it is not valid base64url") from None
        try:
            r = Reader(raw, "invite")
            magic, version = r.fixed(3), r.u8()
            if magic != _MAGIC or version not in _VERSIONS:
                raise RemoteProtocolError("unknown invite format")
            invite_id, expires = r.fixed(16), r.u64()
            name = _read_name(r, "the name in the invite")
            relays = _read_relays(r)
            bundle = PrekeyBundle.decode(r.bytes16(_MAX_BUNDLE))
            capabilities = r.u8() if version >= _VERSION_CAPABILITIES else 0
            if version == _VERSION_CAPABILITIES and not capabilities:
                raise RemoteProtocolError("a version 2 invite names no capability")
            keys = _read_keys(r, len(relays)) if version == _VERSION_KEYS else ()
            pins = _read_pins(r, len(relays)) if version == _VERSION_PINS else ()
            signature = r.fixed(64)
            r.finish()
        except _PolicyRefused as error:
            raise InviteRefused(f"invite code refused: {error}") from None
        except RemoteProtocolError as error:
            raise InviteRefused(f"invite code is damaged or tampered with ({error})") from None
        invite = cls(invite_id, expires, name, relays, bundle, signature, capabilities, keys,
                     pins)
        if not bundle.identity.verify(signature, _SIGNATURE_LABEL + invite._body()):
            raise InviteRefused("invite code was tampered with: its signature does not verify")
        if now_ms >= expires:
            raise InviteRefused("invite code has expired: ask for a new one")
        return invite


@dataclass(frozen=True, slots=True)
class Hello:
    """The joiner's first message: its name, where the inviter can reach it, and (in
    answer to a version 2 invite only) its capabilities."""

    name: str
    relays: tuple[RelayAddress, ...]
    capabilities: int | None = None

    @property
    def post_quantum(self) -> bool:
        return bool((self.capabilities or 0) & CAPABILITY_PQ_RATCHET)

    def encode(self) -> bytes:
        w = Writer().text16(self.name)
        _write_relays(w, self.relays)
        if self.capabilities is not None:
            w.u8(self.capabilities)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        """Parse a hello.

        Raises:
            RemoteProtocolError: malformed, or a name or relay URL the text policy refuses
                (nothing is stored: the inviter counts the hello as rejected).
        """
        r = Reader(data, "hello")
        name, relays = _read_name(r, "the name in the hello"), _read_relays(r)
        hello = cls(name, relays, r.u8() if r.remaining else None)
        r.finish()
        return hello


@dataclass(frozen=True, slots=True)
class Move:
    """The inviter's mailboxes for the channel, replacing those named in the invite code.

    Once the joiner sends there, the invite's mailboxes are drained and deleted, so a code
    that leaked or was used twice leads nowhere: the relay refuses it.
    """

    relays: tuple[RelayAddress, ...]

    def encode(self) -> bytes:
        w = Writer()
        _write_relays(w, self.relays)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Move:
        """Parse a move.

        Raises:
            RemoteProtocolError: malformed, or a relay URL the text policy refuses.
        """
        r = Reader(data, "move")
        move = cls(_read_relays(r))
        r.finish()
        return move


def decode_capabilities(body: bytes) -> int:
    """The capability bits of a `KIND_CAPABILITIES` message (unknown bits are kept).

    Raises:
        RemoteProtocolError: not exactly one byte.
    """
    r = Reader(body, "capabilities")
    capabilities = r.u8()
    r.finish()
    return capabilities

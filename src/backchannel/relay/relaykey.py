"""The relay's long-term forwarding key: made on first start, kept in a key file, rotated
by the operator (`relay key rotate`) with an overlap during which the previous key still
opens sealed sends (docs/relay.md "Private routing", "Key rotation").

The key file, mode 0600 beside the relay's data, is in one of three formats:

- version 1 (what relays wrote before rotation existed, still read): exactly
  `forwarding.KEY_SEED_SIZE` bytes, the seed of the one key;
- version 2: ``magic[8] version:u8 (2) current_seed[96] has_previous:u8
  [previous_seed[96] previous_until:u64] retired:u8 key_id[8]*retired``, where
  ``previous_until`` is the Unix time (seconds) after which the previous key opens
  nothing, and the retired key ids (at most `MAX_RETIRED`, newest last) name keys whose
  seeds are gone: a send sealed to one of them is refused as KEY_RETIRED rather than as
  an unknown key, so its client knows to fetch the current key;
- version 3 (what relays write now): ``magic[8] version:u8 (3) identity_seed[32]``, then
  the rest of version 2 from ``current_seed``. The seed is that of the relay's long-term
  Ed25519 identity (`protocol.keystatement.RelayIdentity`), which signs the statement of
  its forwarding keys that clients check against the pin an invite gave. A version 1 or 2
  file has none: its identity is derived from its current seed (so it is the same at every
  start), and the first rotation writes it out as version 3, where it stays.

A rotation's previous key that outlived its overlap is dropped from the file at the next
rotation (its id is kept among the retired); until then the relay refuses it by the clock.
The key pair follows from each seed (`forwarding.RelayKeyPair`). The current public key is
published at ``GET /relay-key``, current and previous at ``GET /relay-keys``, and both
signed by the identity at ``GET /relay-key-statement``; the current key's id and
fingerprint are in the ``listening`` log line.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from backchannel.protocol.errors import BackchannelError, RemoteProtocolError
from backchannel.protocol.forwarding import (
    KEY_SEED_SIZE,
    RelayKeyPair,
    RelayPublicKey,
    SealError,
)
from backchannel.protocol.keystatement import IDENTITY_SEED_SIZE, KeyStatement, RelayIdentity
from backchannel.protocol.relayframes import FORWARD_KEY_ID_SIZE, ErrorCode
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "DAY_SECONDS",
    "DEFAULT_OVERLAP",
    "MAX_RETIRED",
    "BadKeyFile",
    "RelayKeyRing",
    "load_or_create_key",
    "read_key",
    "rotate_key",
]

DAY_SECONDS: Final = 86_400.0
_MAGIC: Final = b"bcrlykey"
_VERSION_ROTATION: Final = 2
_VERSION: Final = 3
# Seconds the previous key keeps opening sealed sends after a rotation by default: a
# week, longer than a client's invites and cached keys usually go unrefreshed.
DEFAULT_OVERLAP: Final = 7 * DAY_SECONDS
# Key ids of retired keys kept, to refuse sends sealed to them precisely.
MAX_RETIRED: Final = 16


class BadKeyFile(BackchannelError):
    """The key file exists but is not a relay key (wrong size, format or version): the
    relay will not start with another key, which would strand every sealed send made for
    the old one."""


@dataclass(frozen=True, slots=True)
class RelayKeyRing:
    """The relay's forwarding keys: the current one, the previous one until its overlap
    ends, and the ids of retired ones.

    Attributes:
        current: the key sealed sends should use (published, in the ``listening`` line).
        previous: the key before the last rotation, or None.
        previous_until: Unix seconds after which `previous` opens nothing.
        retired: ids of older keys, whose seeds are gone (newest last).
        identity_seed: the seed of the relay's identity; empty for a ring from a file of
            version 1 or 2 (or a bare key pair), whose identity follows from `current`.
    """

    current: RelayKeyPair
    previous: RelayKeyPair | None = None
    previous_until: float = 0.0
    retired: tuple[bytes, ...] = ()
    identity_seed: bytes = b""

    @property
    def identity(self) -> RelayIdentity:
        """The relay's identity (it signs `statement`, nothing else)."""
        if self.identity_seed:
            return _identity(self.identity_seed)
        return RelayIdentity.derived_from(self.current.seed)

    def statement(self, now: float) -> KeyStatement:
        """The keys that open sealed sends at `now` (`published`), with until when,
        signed by the identity at `now`."""
        keys = [(self.current.public, 0)]
        if self.previous is not None and now <= self.previous_until:
            keys.append((self.previous.public, max(1, int(self.previous_until))))
        return self.identity.sign(keys, int(now))

    @property
    def public(self) -> RelayPublicKey:
        """The current public key."""
        return self.current.public

    def key_ids(self) -> frozenset[bytes]:
        """Every key id that names this relay (current, previous, retired): a forward
        sealed to one of them would come back here, so it is refused."""
        ids = {self.current.public.key_id, *self.retired}
        if self.previous is not None:
            ids.add(self.previous.public.key_id)
        return frozenset(ids)

    def published(self, now: float) -> list[RelayPublicKey]:
        """The keys that open sealed sends at `now`: current first, then the previous
        while its overlap lasts."""
        keys = [self.current.public]
        if self.previous is not None and now <= self.previous_until:
            keys.append(self.previous.public)
        return keys

    def opening(self, key_id: bytes, now: float) -> RelayKeyPair:
        """The key pair that opens a send sealed to `key_id` at `now`.

        Raises:
            SealError: KEY_RETIRED for the previous key after its overlap or a retired
                key; UNKNOWN_KEY for any other id.
        """
        if key_id == self.current.public.key_id:
            return self.current
        if self.previous is not None and key_id == self.previous.public.key_id:
            if now <= self.previous_until:
                return self.previous
            raise SealError("sealed to the relay's previous key, past its overlap",
                            ErrorCode.KEY_RETIRED)
        if key_id in self.retired:
            raise SealError("sealed to a key the relay retired", ErrorCode.KEY_RETIRED)
        raise SealError("sealed to another key", ErrorCode.UNKNOWN_KEY)

    def rotated(self, seed: bytes, now: float, overlap: float) -> RelayKeyRing:
        """A new ring: a fresh current key from `seed`, this ring's current as the
        previous until `now + overlap`, and this ring's previous among the retired."""
        retired = list(self.retired)
        if self.previous is not None:
            retired.append(self.previous.public.key_id)
        # The identity stays: the pins invites gave go on verifying the new key.
        return RelayKeyRing(RelayKeyPair(seed), self.current, now + overlap,
                            tuple(retired[-MAX_RETIRED:]), self.identity.seed)

    def to_bytes(self) -> bytes:
        """The version 3 key file."""
        w = Writer().fixed(_MAGIC, len(_MAGIC)).u8(_VERSION)
        w.fixed(self.identity.seed, IDENTITY_SEED_SIZE).fixed(self.current.seed, KEY_SEED_SIZE)
        if self.previous is None:
            w.u8(0)
        else:
            w.u8(1).fixed(self.previous.seed, KEY_SEED_SIZE).u64(int(self.previous_until))
        w.u8(len(self.retired))
        for key_id in self.retired:
            w.fixed(key_id, FORWARD_KEY_ID_SIZE)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RelayKeyRing:
        """Read a key file of any version (1, 2 or 3).

        Raises:
            RemoteProtocolError: neither a version 1 seed nor a version 2 or 3 file.
        """
        if len(data) == KEY_SEED_SIZE:  # version 1: the seed alone
            return cls(RelayKeyPair(data))
        r = Reader(data, "relay key file")
        if r.fixed(len(_MAGIC)) != _MAGIC:
            raise RemoteProtocolError("not a relay key file")
        version = r.u8()
        if version not in (_VERSION_ROTATION, _VERSION):
            raise RemoteProtocolError("a relay key file of an unknown version")
        identity_seed = r.fixed(IDENTITY_SEED_SIZE) if version == _VERSION else b""
        current = RelayKeyPair(r.fixed(KEY_SEED_SIZE))
        previous, until = None, 0.0
        flag = r.u8()
        if flag not in (0, 1):
            raise RemoteProtocolError("a relay key file with a damaged previous key")
        if flag:
            previous, until = RelayKeyPair(r.fixed(KEY_SEED_SIZE)), float(r.u64())
        count = r.u8()
        if count > MAX_RETIRED:
            raise RemoteProtocolError("a relay key file with too many retired keys")
        retired = tuple(r.fixed(FORWARD_KEY_ID_SIZE) for _ in range(count))
        r.finish()
        return cls(current, previous, until, retired, identity_seed)


def read_key(path: Path) -> RelayKeyRing:
    """The keys in `path`, which must exist (nothing is created).

    Raises:
        FileNotFoundError: there is no key file.
        BadKeyFile: the file is not a relay key file.
        OSError: it cannot be read.
    """
    return _parse(path, path.read_bytes())


def load_or_create_key(path: Path) -> RelayKeyRing:
    """The keys in `path`; a fresh key (from the OS's CSPRNG) is made and written there
    if the file is absent (in version 3, with a fresh identity).

    Raises:
        BadKeyFile: the file is not a relay key file.
        OSError: it cannot be read or written.
    """
    try:
        return read_key(path)
    except FileNotFoundError:
        ring = RelayKeyRing(RelayKeyPair(os.urandom(KEY_SEED_SIZE)),
                            identity_seed=os.urandom(IDENTITY_SEED_SIZE))
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two relays starting at once do not both write a key; the loser reads.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as out:
            out.write(ring.to_bytes())
            out.flush()
            os.fsync(out.fileno())
        return ring


def rotate_key(path: Path, now: float, overlap: float = DEFAULT_OVERLAP) -> RelayKeyRing:
    """Rotate the key in `path` (which must exist): a fresh current key, the old one
    kept as the previous until `now + overlap`. The file is replaced atomically (a new
    file, mode 0600, fsynced, renamed over the old), so a relay starting meanwhile reads
    one ring or the other. A running relay reads it on SIGHUP or its next start.

    Raises:
        FileNotFoundError: there is no key file (`relay serve` makes the first).
        BadKeyFile: the file is not a relay key file.
        ValueError: `overlap` is negative.
        OSError: it cannot be read or written.
    """
    if not overlap >= 0:
        raise ValueError("the overlap is a number of seconds, 0 or more")
    ring = read_key(path).rotated(os.urandom(KEY_SEED_SIZE), now, overlap)
    temporary = path.with_name(path.name + ".new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(ring.to_bytes())
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
    return ring


@functools.lru_cache(maxsize=16)
def _identity(seed: bytes) -> RelayIdentity:
    # Made once per seed: the statement endpoint asks at every request.
    return RelayIdentity(seed)


def _parse(path: Path, data: bytes) -> RelayKeyRing:
    try:
        return RelayKeyRing.from_bytes(data)
    except RemoteProtocolError as error:
        raise BadKeyFile(f"{path} is not a relay key file ({error})") from None

"""The post-quantum ratchet: ML-KEM-768 epochs carried in chunks (docs/protocol.md §13).

Structure after Signal's ML-KEM Braid, without its incremental KEM (no Python binding has
one): epochs 1, 2, 3, ... alternate sides. In epoch e the *ek-sender* (the initiator for
odd e, the responder for even e) draws a key pair and sends its encapsulation key EK_e;
the other side, once it holds all of EK_e and epoch e - 1 is complete, encapsulates to it,
giving (CT_e, ss_e), and sends CT_e; the ek-sender decapsulates. Each side then has

    key_e = HKDF-SHA256(salt=key_{e-1}, ikm=ss_e, info=PQ_EPOCH_INFO || u32 e)

and the encapsulating side becomes the ek-sender of e + 1 at once, while the decapsulating
side begins e + 2 at once (pipelining: both directions carry a KEM object, §13.5; 2.5
messages per epoch each way in 1 KiB envelopes with a 200-byte note, against 3.3 without
it). Ciphertexts are sent before keys, each object from its own send position (§13.4).
Messages are sealed under
the *send epoch*: the newest epoch this side knows both sides hold (the decapsulator knows
at once; the encapsulator when a message of the peer names that epoch or a later one).

Everything here is sans-I/O and copy-then-commit: a session works on `copy()` and keeps
the copy only once the message that changed it authenticated and parsed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.chunks import (
    CHUNK_HEADER_SIZE,
    CHUNK_UNIT,
    MIN_CHUNK_SIZE,
    Chunk,
    ChunkKind,
    encode_chunks,
    units_of,
)
from backchannel.protocol.e2e.primitives import (
    KEM_CIPHERTEXT_SIZE,
    KEM_PUBLIC_SIZE,
    KEM_SEED_SIZE,
    KEY_SIZE,
    Rng,
    hkdf,
    mlkem_private,
    mlkem_public,
)
from backchannel.protocol.errors import DecryptionFailed, RemoteProtocolError
from backchannel.protocol.wire import Reader, Writer

__all__ = [
    "MAX_EPOCH_KEYS",
    "MAX_OUTGOING_OBJECTS",
    "MAX_PARTIAL_OBJECTS",
    "Encapsulate",
    "PqRatchet",
    "cryptography_encapsulate",
]

# Epoch keys kept for messages still on their way. A sender seals under its send epoch,
# which lags the receiver's newest by at most one for a message sent now; one that waited
# in a relay may be sealed under an epoch completed long before. With an epoch every two to
# six messages, 512 epochs cover more than MAX_SKIP (1,000) messages of one chain; each key
# is 32 bytes (16 KB at worst). A message under a forgotten epoch is undecryptable, as one
# under a forgotten chain is.
MAX_EPOCH_KEYS: Final = 512
# What one side owes the peer at most: the ciphertext of the epoch it just encapsulated
# and the one encapsulation key it has begun (CT_e and EK_{e+1}, or, pipelined, EK_{e+1}
# begun on decapsulating e - 1); decapsulating drops both before it begins another.
MAX_OUTGOING_OBJECTS: Final = 2
# What it collects at most: CT of its own epoch and EK of the peer's next one. Only these
# two are ever kept, so a peer cannot make a receiver store more than ~2.3 KB of parts.
MAX_PARTIAL_OBJECTS: Final = 2
# Version 2 keeps a send position per KEM object (version 1 had one cursor over all).
_STATE_VERSION: Final = 2
_STATE_VERSION_ONE_CURSOR: Final = 1
_EPOCH: Final = struct.Struct(">I")
# The largest epoch number: the header field is a u32, and a session would need billions
# of messages to come near it; a side that reaches it stops starting epochs.
_MAX_EPOCH: Final = 0xFFFF_FFFF

Encapsulate = Callable[[bytes], tuple[bytes, bytes]]
"""ML-KEM-768 encapsulation to an encoded key: returns (shared secret, ciphertext)."""


def cryptography_encapsulate(encapsulation_key: bytes) -> tuple[bytes, bytes]:
    """Encapsulate with `cryptography` (OpenSSL's ML-KEM-768, its own randomness).

    Raises:
        RemoteProtocolError: the key fails FIPS 203's modulus check.
    """
    return mlkem_public(encapsulation_key).encapsulate()


def epoch_zero_key(associated_data: bytes) -> bytes:
    """key_0: no KEM secret yet; both sides derive it from the session AD."""
    return hkdf(associated_data, salt=None, info=labels.PQ_EPOCH0_INFO, length=KEY_SIZE)


def _next_key(previous: bytes, shared_secret: bytes, epoch: int) -> bytes:
    info = labels.PQ_EPOCH_INFO + _EPOCH.pack(epoch)
    return hkdf(shared_secret, salt=previous, info=info, length=KEY_SIZE)


@dataclass(frozen=True, slots=True)
class _Item:
    """One KEM object this side sends until the peer shows it has it."""

    kind: ChunkKind
    epoch: int
    data: bytes
    position: int = 0  # the unit the next message starts this object from


@dataclass(frozen=True, slots=True)
class _Partial:
    """A KEM object of the peer, some of whose units have arrived (bit i = unit i)."""

    data: bytes
    mask: int

    def complete(self, kind: ChunkKind) -> bool:
        return self.mask == (1 << units_of(kind)) - 1


class PqRatchet:
    """One side's post-quantum ratchet state."""

    __slots__ = (
        "encapsulate",
        "is_initiator",
        "keys",
        "outgoing",
        "own_epoch",
        "own_key",
        "own_seed",
        "partials",
        "send_epoch",
    )

    def __init__(self, is_initiator: bool, epoch_zero: bytes) -> None:
        self.is_initiator = is_initiator
        self.keys: dict[int, bytes] = {0: epoch_zero}  # epoch -> key_e, oldest first
        self.send_epoch = 0
        # The epoch this side is the ek-sender of, waiting for CT (0: none) and its seed.
        self.own_epoch = 0
        self.own_seed = b""
        # The private key expanded from own_seed, kept in memory only (one expansion per
        # epoch instead of two); None until needed after a load.
        self.own_key: MLKEM768PrivateKey | None = None
        self.outgoing: list[_Item] = []
        self.partials: dict[tuple[ChunkKind, int], _Partial] = {}
        self.encapsulate: Encapsulate = cryptography_encapsulate

    def __repr__(self) -> str:
        return (
            f"PqRatchet(latest={self.latest}, send_epoch={self.send_epoch}, "
            f"own_epoch={self.own_epoch}, outgoing={len(self.outgoing)})"
        )

    @classmethod
    def start(cls, is_initiator: bool, associated_data: bytes, rng: Rng) -> PqRatchet:
        """A fresh PQ ratchet; the initiator draws EK_1 at once (64 bytes from `rng`)."""
        pq = cls(is_initiator, epoch_zero_key(associated_data))
        if is_initiator:
            pq._begin_own_epoch(1, rng)
        return pq

    @property
    def latest(self) -> int:
        """The newest epoch whose key this side holds."""
        return next(reversed(self.keys))

    def copy(self) -> PqRatchet:
        """A copy to work on (every field is immutable but the two dicts and the list)."""
        other = PqRatchet(self.is_initiator, b"")
        other.keys = dict(self.keys)
        other.send_epoch, other.own_epoch, other.own_seed = (
            self.send_epoch,
            self.own_epoch,
            self.own_seed,
        )
        other.own_key = self.own_key
        other.outgoing = list(self.outgoing)
        other.partials = dict(self.partials)
        other.encapsulate = self.encapsulate
        return other

    def _is_ek_sender(self, epoch: int) -> bool:
        return (epoch % 2 == 1) == self.is_initiator

    # -- sending ------------------------------------------------------------------------

    def send_key(self) -> tuple[int, bytes]:
        """(send epoch, its key): what the next message is sealed under."""
        return self.send_epoch, self.keys[self.send_epoch]

    def fill(self, capacity: int) -> bytes:
        """Chunks for a message with `capacity` free bytes (at most that many bytes).

        Ciphertexts first (each completes an epoch; a key only lets the peer begin one),
        then encapsulation keys; each object from the unit where the previous message
        stopped, round-robin, each unit at most once per message (§13.4).
        """
        chunks: list[Chunk] = []
        budget = capacity
        order = sorted(
            range(len(self.outgoing)),
            key=lambda i: self.outgoing[i].kind is not ChunkKind.CIPHERTEXT,
        )
        for index in order:
            item = self.outgoing[index]
            units = units_of(item.kind)
            position, taken = item.position, 0
            while taken < units and budget >= MIN_CHUNK_SIZE:
                room = (budget - CHUNK_HEADER_SIZE) // CHUNK_UNIT
                count = min(units - position, units - taken, room)
                piece = item.data[position * CHUNK_UNIT : (position + count) * CHUNK_UNIT]
                chunks.append(Chunk(item.kind, item.epoch, position, piece))
                budget -= CHUNK_HEADER_SIZE + count * CHUNK_UNIT
                taken += count
                position = (position + count) % units
            self.outgoing[index] = replace(item, position=position)
        return encode_chunks(chunks)

    # -- receiving ----------------------------------------------------------------------

    def key_for(self, epoch: int) -> bytes | None:
        """The key of `epoch`, or None if this side does not hold it (any more)."""
        return self.keys.get(epoch)

    def receive(self, header_epoch: int, chunks: list[Chunk], rng: Rng) -> None:
        """Take in an authenticated message: its header's epoch and its chunks.

        Draws from `rng` only when a new own epoch starts (a 64-byte ML-KEM seed).

        Raises:
            RemoteProtocolError: a chunk that contradicts units already received, or a
                KEM object that is not a valid ML-KEM-768 key.
        """
        # The peer sealed under `header_epoch`, so it holds that epoch's key.
        if header_epoch > self.send_epoch:
            self.send_epoch = header_epoch
        self._drop_acknowledged()
        for chunk in chunks:
            self._take(chunk)
        self._progress(rng)

    def _expected(self, kind: ChunkKind, epoch: int) -> bool:
        if kind is ChunkKind.CIPHERTEXT:
            return self.own_epoch != 0 and epoch == self.own_epoch
        # The peer's next encapsulation key: of the next two epochs, the one it sends.
        latest = self.latest
        wanted = latest + 1 if not self._is_ek_sender(latest + 1) else latest + 2
        return epoch == wanted

    def _take(self, chunk: Chunk) -> None:
        if not self._expected(chunk.kind, chunk.epoch):
            return  # a copy of something finished, or of an epoch not begun: harmless
        key = (chunk.kind, chunk.epoch)
        size = units_of(chunk.kind) * CHUNK_UNIT
        partial = self.partials.get(key, _Partial(bytes(size), 0))
        span = ((1 << chunk.count) - 1) << chunk.first
        start, end = chunk.first * CHUNK_UNIT, (chunk.first + chunk.count) * CHUNK_UNIT
        if not partial.mask & span:  # all new: one copy (the common case)
            joined = partial.data[:start] + chunk.data + partial.data[end:]
            self.partials[key] = _Partial(joined, partial.mask | span)
            return
        data = bytearray(partial.data)
        mask = partial.mask
        for i in range(chunk.count):
            unit = chunk.first + i
            piece = chunk.data[i * CHUNK_UNIT : (i + 1) * CHUNK_UNIT]
            at = unit * CHUNK_UNIT
            if mask >> unit & 1:
                if data[at : at + CHUNK_UNIT] != piece:
                    raise RemoteProtocolError("PQ chunk contradicts one already received")
                continue
            data[at : at + CHUNK_UNIT] = piece
            mask |= 1 << unit
        self.partials[key] = _Partial(bytes(data), mask)

    def _progress(self, rng: Rng) -> None:
        """Finish whatever the chunks so far complete (decapsulate, then encapsulate).

        Pipelined (§13.5): the decapsulator of epoch e begins its EK_{e+2} at once, while
        the peer's EK_{e+1} is still on its way, so both directions carry KEM objects.
        """
        ct_key = (ChunkKind.CIPHERTEXT, self.own_epoch)
        ct = self.partials.get(ct_key)
        if (
            self.own_epoch == self.latest + 1
            and ct is not None
            and ct.complete(ChunkKind.CIPHERTEXT)
        ):
            epoch = self.own_epoch
            own_key = self.own_key or mlkem_private(self.own_seed)
            secret = own_key.decapsulate(ct.data)
            self._add_key(epoch, secret)
            del self.partials[ct_key]
            self.own_epoch, self.own_seed, self.own_key = 0, b"", None
            # We decapsulated, so the peer (who encapsulated) holds it too.
            self.send_epoch = epoch
            self._drop_acknowledged()
            if epoch + 2 <= _MAX_EPOCH:
                self._begin_own_epoch(epoch + 2, rng)
        epoch = self.latest + 1
        ek_key = (ChunkKind.ENCAPSULATION_KEY, epoch)
        ek = self.partials.get(ek_key)
        if (
            self.own_epoch in (0, epoch + 1)
            and ek is not None
            and ek.complete(ChunkKind.ENCAPSULATION_KEY)
        ):
            secret, ciphertext = self.encapsulate(ek.data)
            if len(ciphertext) != KEM_CIPHERTEXT_SIZE:  # pragma: no cover - library contract
                raise RemoteProtocolError("ML-KEM ciphertext of an unexpected size")
            self._add_key(epoch, secret)
            del self.partials[ek_key]
            self.outgoing.append(_Item(ChunkKind.CIPHERTEXT, epoch, ciphertext))
            if self.own_epoch == 0 and epoch < _MAX_EPOCH:
                self._begin_own_epoch(epoch + 1, rng)

    def _begin_own_epoch(self, epoch: int, rng: Rng) -> None:
        seed = rng(KEM_SEED_SIZE)
        key = mlkem_private(seed)
        public = key.public_key().public_bytes_raw()
        self.own_epoch, self.own_seed, self.own_key = epoch, seed, key
        self.outgoing.append(_Item(ChunkKind.ENCAPSULATION_KEY, epoch, public))

    def _add_key(self, epoch: int, secret: bytes) -> None:
        self.keys[epoch] = _next_key(self.keys[epoch - 1], secret, epoch)
        while len(self.keys) > MAX_EPOCH_KEYS:
            del self.keys[next(iter(self.keys))]

    def _drop_acknowledged(self) -> None:
        """Stop sending what the peer has shown it holds."""
        kept = [
            item
            for item in self.outgoing
            if not (item.kind is ChunkKind.CIPHERTEXT and item.epoch <= self.send_epoch)
            and not (item.kind is ChunkKind.ENCAPSULATION_KEY and item.epoch <= self.latest)
        ]
        self.outgoing = kept

    # -- storage ------------------------------------------------------------------------

    def encode(self) -> bytes:
        """Serialise the state (secret: it holds epoch keys and a KEM seed)."""
        w = Writer().u8(_STATE_VERSION).u8(1 if self.is_initiator else 0)
        w.u32(len(self.keys))
        for epoch, key in self.keys.items():
            w.u32(epoch).fixed(key, KEY_SIZE)
        w.u32(self.send_epoch).u32(self.own_epoch).bytes16(self.own_seed)
        w.u8(len(self.outgoing))
        for item in self.outgoing:
            w.u8(item.kind).u32(item.epoch).u8(item.position).bytes16(item.data)
        w.u8(len(self.partials))
        for (kind, epoch), partial in self.partials.items():
            w.u8(kind).u32(epoch).bytes16(partial.data).fixed(partial.mask.to_bytes(10, "big"), 10)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> PqRatchet:
        """Restore a stored PQ ratchet.

        Raises:
            RemoteProtocolError: not a PQ ratchet state of a known version, or fields out
                of their bounds.
        """
        r = Reader(data, "PQ ratchet state")
        version = r.u8()
        if version not in (_STATE_VERSION, _STATE_VERSION_ONE_CURSOR):
            raise RemoteProtocolError("unknown PQ ratchet state version")
        role = r.u8()
        if role not in (0, 1):
            raise RemoteProtocolError("PQ ratchet state has an unknown role")
        pq = cls(role == 1, b"")
        count = r.u32()
        if not 1 <= count <= MAX_EPOCH_KEYS:
            raise RemoteProtocolError("PQ ratchet state holds a bad number of epoch keys")
        pq.keys = {}
        previous = -1
        for _ in range(count):
            epoch = r.u32()
            if epoch <= previous:
                raise RemoteProtocolError("PQ ratchet state epochs are not increasing")
            pq.keys[epoch] = r.fixed(KEY_SIZE)
            previous = epoch
        pq.send_epoch, pq.own_epoch = r.u32(), r.u32()
        pq.own_seed = r.bytes16(KEM_SEED_SIZE)
        has_seed = len(pq.own_seed) == KEM_SEED_SIZE
        if pq.send_epoch not in pq.keys or has_seed != bool(pq.own_epoch):
            raise RemoteProtocolError("PQ ratchet state is inconsistent")
        outgoing = r.u8()
        if outgoing > MAX_OUTGOING_OBJECTS:
            raise RemoteProtocolError("PQ ratchet state owes too many KEM objects")
        for _ in range(outgoing):
            kind = _read_kind(r)
            epoch = r.u32()
            position = r.u8() if version == _STATE_VERSION else 0
            if position >= units_of(kind):
                raise RemoteProtocolError("PQ ratchet state has a send position past its object")
            pq.outgoing.append(_Item(kind, epoch, _read_object(r, kind), position))
        if version == _STATE_VERSION_ONE_CURSOR:
            _place_cursor(pq.outgoing, r.u32())
        partials = r.u8()
        if partials > MAX_PARTIAL_OBJECTS:
            raise RemoteProtocolError("PQ ratchet state holds too many partial KEM objects")
        for _ in range(partials):
            kind = _read_kind(r)
            epoch = r.u32()
            body = _read_object(r, kind)
            mask = int.from_bytes(r.fixed(10), "big")
            if mask >> units_of(kind):
                raise RemoteProtocolError("PQ ratchet state has a bad coverage mask")
            pq.partials[kind, epoch] = _Partial(body, mask)
        r.finish()
        return pq


def _place_cursor(outgoing: list[_Item], cursor: int) -> None:
    """Version 1's one cursor over all objects, as the position in the object it is in."""
    total = sum(units_of(item.kind) for item in outgoing)
    cursor = cursor % total if total else 0
    for index, item in enumerate(outgoing):
        units = units_of(item.kind)
        if cursor < units:
            outgoing[index] = replace(item, position=cursor)
            return
        cursor -= units


def _read_kind(r: Reader) -> ChunkKind:
    raw = r.u8()
    if raw not in (ChunkKind.ENCAPSULATION_KEY, ChunkKind.CIPHERTEXT):
        raise RemoteProtocolError("PQ ratchet state names an unknown KEM object")
    return ChunkKind(raw)


def _read_object(r: Reader, kind: ChunkKind) -> bytes:
    size = KEM_PUBLIC_SIZE if kind is ChunkKind.ENCAPSULATION_KEY else KEM_CIPHERTEXT_SIZE
    body = r.bytes16(size)
    if len(body) != size:
        raise RemoteProtocolError("PQ ratchet state holds a truncated KEM object")
    return body


# Re-exported for callers that catch it when an epoch key is gone.
__all__ += ["DecryptionFailed", "epoch_zero_key"]

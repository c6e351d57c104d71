"""A small strict binary codec: big-endian integers and length-prefixed byte strings.

Every read is bounded: a `Reader` never reads past its buffer and every variable-length
field is checked against a caller-supplied maximum *before* it is sliced. Anything
malformed raises `RemoteProtocolError`, never `IndexError` or `struct.error`, because the
bytes come from the network.
"""

from __future__ import annotations

import struct
from typing import Final

from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = ["Reader", "Writer"]

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


class Writer:
    """Builds a byte string field by field."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        if not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"u8 out of range: {value}")
        self._parts.append(bytes((value,)))
        return self

    def u16(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFF:
            raise LocalProtocolError(f"u16 out of range: {value}")
        self._parts.append(_U16.pack(value))
        return self

    def u32(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"u32 out of range: {value}")
        self._parts.append(_U32.pack(value))
        return self

    def u64(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFF_FFFF_FFFF_FFFF:
            raise LocalProtocolError(f"u64 out of range: {value}")
        self._parts.append(_U64.pack(value))
        return self

    def fixed(self, data: bytes, length: int) -> Writer:
        """A field whose length both sides know; no prefix is written."""
        if len(data) != length:
            raise LocalProtocolError(f"expected {length} bytes, got {len(data)}")
        self._parts.append(bytes(data))
        return self

    def bytes16(self, data: bytes) -> Writer:
        """A byte string with a 2-byte length prefix."""
        self.u16(len(data))
        self._parts.append(bytes(data))
        return self

    def bytes32(self, data: bytes) -> Writer:
        """A byte string with a 4-byte length prefix."""
        self.u32(len(data))
        self._parts.append(bytes(data))
        return self

    def text16(self, text: str) -> Writer:
        """UTF-8 text with a 2-byte length prefix."""
        return self.bytes16(text.encode("utf-8"))

    def raw(self, data: bytes) -> Writer:
        """Bytes appended as they are (the tail of a message)."""
        self._parts.append(bytes(data))
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Reads fields from a byte string, refusing to go past its end."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str = "message") -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> memoryview:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise RemoteProtocolError(f"{self._what} is truncated")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def u8(self) -> int:
        return self._take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self._take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self._take(4))[0]
        return value

    def u64(self) -> int:
        value: int = _U64.unpack(self._take(8))[0]
        return value

    def fixed(self, length: int) -> bytes:
        return bytes(self._take(length))

    def bytes16(self, max_length: int) -> bytes:
        length = self.u16()
        if length > max_length:
            raise RemoteProtocolError(f"{self._what}: field of {length} bytes exceeds {max_length}")
        return bytes(self._take(length))

    def bytes32(self, max_length: int) -> bytes:
        length = self.u32()
        if length > max_length:
            raise RemoteProtocolError(f"{self._what}: field of {length} bytes exceeds {max_length}")
        return bytes(self._take(length))

    def text16(self, max_length: int) -> str:
        raw = self.bytes16(max_length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{self._what}: text is not valid UTF-8") from None

    def rest(self) -> bytes:
        return bytes(self._take(self.remaining))

    def finish(self) -> None:
        """Refuse trailing bytes: a strict codec has exactly one encoding per value."""
        if self.remaining:
            raise RemoteProtocolError(f"{self._what} has {self.remaining} trailing bytes")

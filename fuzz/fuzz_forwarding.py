"""Invariant: any bytes given to the private-routing decoders either decode to a value
that re-encodes to the same bytes (FORWARD, SEALED_SEND, SEALED_RESULT frames; a
published relay key; a sealed send's inside) or raise their one typed error (FrameError,
RemoteProtocolError); opening them as a sealed send gives a deposit or raises SealError,
and as a sealed answer raises ForgedReply (no bytes open without the reply key).

Run: python fuzz/fuzz_forwarding.py [corpus dir] (atheris, libFuzzer flags accepted).
"""

from __future__ import annotations

import contextlib
import sys

from backchannel.protocol.errors import RemoteProtocolError
from backchannel.protocol.forwarding import (
    KEY_SEED_SIZE,
    ForgedReply,
    InnerSend,
    RelayKeyPair,
    RelayPublicKey,
    SealError,
    open_reply,
    open_send,
    seal_send,
)
from backchannel.protocol.relayframes import (
    SEALED_REPLY_SIZE,
    Forward,
    FrameError,
    SealedResult,
    SealedSend,
    decode_request,
    decode_response,
    encode,
)

_KEYS = RelayKeyPair(bytes(range(KEY_SEED_SIZE)))
_KID = _KEYS.public.key_id
_REPLY_KEY = b"\x07" * 32
_INNER = InnerSend(b"\x01" * 16, b"\x02" * 32, _REPLY_KEY, b"\x01" + b"\x01" * 16 + b"\x00" * 40)
SEEDS = [
    encode(Forward(1, _KID, "ws://127.0.0.1:8470/", b"\x00" * 40)),
    encode(SealedSend(2, _KID, b"\x00" * 40)),
    encode(SealedResult(3, b"\x00" * SEALED_REPLY_SIZE)),
    _INNER.to_bytes(),
    _KEYS.public.to_bytes(),
]


def test_one_input(data: bytes) -> None:
    for decode in (decode_request, decode_response):
        with contextlib.suppress(FrameError):
            assert encode(decode(data)) == data  # type: ignore[operator]
    with contextlib.suppress(RemoteProtocolError):
        assert RelayPublicKey.from_bytes(data).to_bytes() == data
    with contextlib.suppress(RemoteProtocolError):
        assert InnerSend.from_bytes(data).to_bytes() == data
    with contextlib.suppress(SealError):
        assert isinstance(open_send(_KEYS, _KID, data), InnerSend)
    with contextlib.suppress(ForgedReply):
        open_reply(_REPLY_KEY, data)
        raise AssertionError("bytes not sealed under the reply key opened")


# A real seal as a seed too, so that mutations start from one that opens.
SEEDS.append(seal_send(_KEYS.public, _INNER))


if __name__ == "__main__":
    import atheris

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()

"""The relay's long-term forwarding key: made on first start, kept in a key file.

The file holds the key's seed (`forwarding.KEY_SEED_SIZE` random bytes) and nothing else;
it is created with mode 0600 beside the relay's data, and the key follows from it
(`forwarding.RelayKeyPair`). The public half is published at ``GET /relay-key``; its key
id and fingerprint are in the ``listening`` log line for the operator to compare with
what invites carry.
"""

from __future__ import annotations

import os
from pathlib import Path

from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair

__all__ = ["BadKeyFile", "load_or_create_key", "read_key"]


class BadKeyFile(BackchannelError):
    """The key file exists but is not a relay key (wrong size): the relay will not start
    with another key, which would strand every sealed send made for the old one."""


def read_key(path: Path) -> RelayKeyPair:
    """The key pair in `path`, which must exist (nothing is created).

    Raises:
        FileNotFoundError: there is no key file.
        BadKeyFile: the file is not a relay key.
        OSError: it cannot be read.
    """
    return _from_seed(path, path.read_bytes())


def load_or_create_key(path: Path) -> RelayKeyPair:
    """The key pair in `path`, made (from the OS's CSPRNG) and written there if absent.

    Raises:
        BadKeyFile: the file is not a relay key.
        OSError: it cannot be read or written.
    """
    try:
        seed = path.read_bytes()
    except FileNotFoundError:
        seed = os.urandom(KEY_SEED_SIZE)
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two relays starting at once do not both write a key; the loser reads.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as out:
            out.write(seed)
            out.flush()
            os.fsync(out.fileno())
    return _from_seed(path, seed)


def _from_seed(path: Path, seed: bytes) -> RelayKeyPair:
    if len(seed) != KEY_SEED_SIZE:
        raise BadKeyFile(f"{path} is not a relay key ({KEY_SEED_SIZE} bytes expected)")
    return RelayKeyPair(seed)

"""Which address a client connects from, for per-address limits (never for logs by default).

Behind a reverse proxy (the usual way to terminate TLS in front of a relay) every client
seems to come from the proxy, and per-address limits would throttle them all together.
An operator names the proxies it trusts; for a connection from one of them, the client is
the right-most address in `X-Forwarded-For` that is not itself a trusted proxy. Headers
from anyone else are ignored, since a client could write any address there.
"""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = ["MAX_FORWARDED_HOPS", "client_address"]

# A real chain has a hop or two; a longer header is someone padding it, and only its
# right-most entries can matter anyway.
MAX_FORWARDED_HOPS: Final = 16


def _normal(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip().strip("[]")))
    except ValueError:
        return None


def client_address(peer: str, forwarded_for: str | None, trusted: frozenset[str]) -> str:
    """The address to account a connection to.

    Args:
        peer: the address the TCP connection comes from.
        forwarded_for: the `X-Forwarded-For` header, if any.
        trusted: the proxies whose header is believed (normalised IP strings).

    Returns:
        `peer`, unless it is a trusted proxy that named a client.
    """
    if peer not in trusted or not forwarded_for:
        return peer
    hops = [hop for hop in forwarded_for.split(",")][-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        address = _normal(hop)
        if address is None:
            return peer  # a malformed chain is not believed at all
        if address not in trusted:
            return address
    return peer

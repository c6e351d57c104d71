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

__all__ = ["IPV6_BUDGET_PREFIX", "MAX_FORWARDED_HOPS", "budget_key", "client_address"]

# A real chain has a hop or two; a longer header is someone padding it, and only its
# right-most entries can matter anyway.
MAX_FORWARDED_HOPS: Final = 16


# An IPv6 host is usually handed a whole /64 (RFC 6177, SLAAC) and can pick any address in
# it at will, so per-address limits count per /64: otherwise one host is 2^64 "addresses".
IPV6_BUDGET_PREFIX: Final = 64


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


def budget_key(address: str) -> str:
    """The key that per-address limits (connections, mailbox creations) count under.

    Args:
        address: a client address as `client_address` returns it.

    Returns:
        An IPv4 address as is (an IPv4-mapped IPv6 address as its IPv4 address); an IPv6
        address as its /64 network (``2001:db8:1:2::/64``); anything that is not an IP
        address (a Unix socket, "unknown") as is, so that such clients share one budget.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_BUDGET_PREFIX), strict=False))
    return str(ip)

"""Client addresses behind a trusted reverse proxy, for per-address limits."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from backchannel.relay.addresses import MAX_FORWARDED_HOPS, client_address
from backchannel.relay.limits import RelayLimits
from backchannel.relay.server import RelayServer
from backchannel.relay.store import open_store

PROXY = frozenset({"10.0.0.1", "10.0.0.2"})


def test_a_direct_client_is_its_own_address_whatever_it_claims() -> None:
    assert client_address("192.0.2.7", "203.0.113.9", PROXY) == "192.0.2.7"
    assert client_address("192.0.2.7", None, frozenset()) == "192.0.2.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    assert client_address("10.0.0.1", "203.0.113.9", PROXY) == "203.0.113.9"
    # A client can prepend anything; only what the trusted proxies appended counts.
    assert client_address("10.0.0.1", "1.2.3.4, 203.0.113.9, 10.0.0.2", PROXY) == "203.0.113.9"
    assert client_address("10.0.0.1", "2001:db8::1", PROXY) == "2001:db8::1"


def test_a_malformed_or_proxy_only_chain_falls_back_to_the_peer() -> None:
    assert client_address("10.0.0.1", "not-an-ip", PROXY) == "10.0.0.1"
    assert client_address("10.0.0.1", "10.0.0.2", PROXY) == "10.0.0.1"
    assert client_address("10.0.0.1", "", PROXY) == "10.0.0.1"


@given(st.text(max_size=300))
def test_any_header_gives_the_peer_or_a_valid_address_from_the_header(header: str) -> None:
    result = client_address("10.0.0.1", header, PROXY)
    tail = []
    for hop in header.split(",")[-MAX_FORWARDED_HOPS:]:
        with contextlib.suppress(ValueError):
            tail.append(str(ipaddress.ip_address(hop.strip().strip("[]"))))
    assert result == "10.0.0.1" or (result in tail and result not in PROXY)


async def _serve(tmp_path: Path, trusted: frozenset[str]) -> RelayServer:
    limits = RelayLimits(max_connections_per_address=1)
    server = RelayServer(open_store(f"sqlite:///{tmp_path / 'relay.db'}", limits), limits,
                         port=0, trusted_proxies=trusted)
    await server.start()
    return server


async def _refused(url: str, forwarded: str) -> bool:
    try:
        async with connect(url, additional_headers={"X-Forwarded-For": forwarded}):
            return False
    except InvalidStatus as error:
        assert error.response.status_code == 429
        return True


async def test_per_address_limit_counts_clients_behind_a_trusted_proxy(tmp_path: Path) -> None:
    server = await _serve(tmp_path, frozenset({"127.0.0.1"}))
    try:
        async with connect(server.url, additional_headers={"X-Forwarded-For": "192.0.2.1"}):
            assert await _refused(server.url, "192.0.2.1")  # the same client: over its limit
            assert not await _refused(server.url, "192.0.2.2")  # another client: welcome
    finally:
        await server.stop()


@pytest.mark.parametrize("trusted", [frozenset(), frozenset({"10.9.9.9"})])
async def test_the_header_is_ignored_unless_the_peer_is_trusted(
    tmp_path: Path, trusted: frozenset[str]
) -> None:
    server = await _serve(tmp_path, trusted)
    try:
        async with connect(server.url, additional_headers={"X-Forwarded-For": "192.0.2.1"}):
            assert await _refused(server.url, "192.0.2.2")  # both are 127.0.0.1 really
    finally:
        await server.stop()

"""The metrics listener's address: a default found taken degrades, an address asked for
must be served."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from backchannel.relay import RelayLimits, RelayServer, open_store


def _relay(tmp_path: Path, where: tuple[str, int], optional: bool) -> RelayServer:
    limits = RelayLimits()
    return RelayServer(open_store(f"sqlite:///{tmp_path / 'relay.db'}", limits), limits,
                       host="127.0.0.1", port=0, metrics_listen=where,
                       metrics_optional=optional)


async def test_a_taken_default_metrics_address_is_said_and_the_relay_serves(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = ("127.0.0.1", taken.getsockname()[1])
        server = _relay(tmp_path, where, optional=True)
        with caplog.at_level(logging.WARNING, logger="backchannel.relay"):
            await server.start()
        try:
            assert server.metrics_port is None
            warned = [r for r in caplog.records if r.getMessage() == "metrics not served"]
            assert warned and warned[0].fields["listen"] == f"127.0.0.1:{where[1]}"  # type: ignore[attr-defined]
        finally:
            await server.stop()


async def test_a_taken_metrics_address_asked_for_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = _relay(tmp_path, ("127.0.0.1", taken.getsockname()[1]), optional=False)
        with pytest.raises(OSError):
            await server.start()

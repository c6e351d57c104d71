"""The TUI's tests reuse the CLI's real relay and paired principals; `opened` opens both
sides of the pair in this process (Washington on a clock the test moves), once per test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from backchannel.client.engine import Principal
from backchannel.testing import FixedClock
from tests.cli.conftest import PASSPHRASE, Pair, no_configuration_file, pair, relay

__all__ = ["Opened", "no_configuration_file", "opened", "pair", "relay"]


@dataclass
class Opened:
    """Both principals of `pair`, open: Washington runs the console, Beijing answers."""

    pair: Pair
    washington: Principal
    beijing: Principal
    clock: FixedClock  # Washington's


@pytest.fixture()
async def opened(pair: Pair) -> AsyncIterator[Opened]:
    clock = FixedClock(int(time.time() * 1000))
    w = await asyncio.to_thread(Principal.open, pair.washington, PASSPHRASE, clock=clock)
    b = await asyncio.to_thread(Principal.open, pair.beijing, PASSPHRASE)
    try:
        yield Opened(pair, w, b, clock)
    finally:
        w.close()
        b.close()

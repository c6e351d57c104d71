"""The neutral relay: blind, durable store-and-forward of opaque envelopes (design §4).

It depends on `backchannel.protocol` for framing only and never imports
`backchannel.protocol.e2e`: it cannot decrypt, by construction.
"""

from __future__ import annotations

from backchannel.relay.limits import RelayLimits
from backchannel.relay.metrics import RelayMetrics
from backchannel.relay.server import RelayServer
from backchannel.relay.store import open_store

__all__ = ["RelayLimits", "RelayMetrics", "RelayServer", "open_store"]

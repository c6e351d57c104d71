"""Private routing's cost: a forwarded deposit against a direct one, in the same run.

    python bench/forwarding.py [--count 200] [--size 1024]

Starts two relays in this process on 127.0.0.1 (SQLite files in a temporary folder): D
holds the mailbox, F forwards. It times `count` sequential deposits of `size`-byte
envelopes each way: direct (`RelayClient.send` on one open connection, the floor; then
over a new connection each) and forwarded (`client.routing.forward_send`, which opens a
connection to F per send, as a sender would, and F keeps its pooled connection to D).
It also times sealing and opening one send alone. Figures are medians and ratios to the
direct deposit of the same run; the machine's load average is printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from backchannel.client.routing import forward_send
from backchannel.client.transport import RelayClient
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.forwarding import (
    KEY_SEED_SIZE,
    InnerSend,
    RelayKeyPair,
    open_send,
    seal_send,
)
from backchannel.relay import RelayLimits, RelayServer, open_store


async def _run(count: int, size: int) -> None:
    d_key, f_key = RelayKeyPair(os.urandom(KEY_SEED_SIZE)), RelayKeyPair(os.urandom(KEY_SEED_SIZE))
    limits = RelayLimits(mailbox_max_envelopes=10 * count,
                         forward_burst_per_address=10.0 * count)
    with tempfile.TemporaryDirectory() as folder:
        servers = [RelayServer(open_store(f"sqlite:///{Path(folder) / name}", limits), limits,
                               host="127.0.0.1", port=0, forward_key=key)
                   for name, key in (("d.db", d_key), ("f.db", f_key))]
        d, f = servers
        for server in servers:
            await server.start()
        try:
            async with await RelayClient.connect(d.url) as client:
                caps = await client.create_mailbox()
                env = Envelope(caps.mailbox_id, b"\x00" * (size - 17)).encode()
                direct = []
                for _ in range(count):
                    start = time.perf_counter()
                    await client.send(caps.mailbox_id, caps.send_token, env)
                    direct.append(time.perf_counter() - start)
            fresh = []  # direct, over a new connection each, as forward_send does to F
            for _ in range(count):
                start = time.perf_counter()
                async with await RelayClient.connect(d.url) as client:
                    await client.send(caps.mailbox_id, caps.send_token, env)
                fresh.append(time.perf_counter() - start)
            forwarded = []
            for _ in range(count):
                start = time.perf_counter()
                await forward_send(f.url, d.url, d_key.public, caps.mailbox_id,
                                   caps.send_token, env)
                forwarded.append(time.perf_counter() - start)
        finally:
            for server in servers:
                await server.stop()
    inner = InnerSend(caps.mailbox_id, caps.send_token, os.urandom(32), env)
    seal, unseal = [], []
    for _ in range(count):
        start = time.perf_counter()
        sealed = seal_send(d_key.public, inner)
        seal.append(time.perf_counter() - start)
        start = time.perf_counter()
        open_send(d_key, d_key.public.key_id, sealed)
        unseal.append(time.perf_counter() - start)
    base = statistics.median(direct)
    print(f"load average {os.getloadavg()[0]:.2f}; {count} deposits of {size} bytes")
    for name, times in (("direct send", direct), ("direct, new conn", fresh),
                        ("forwarded send", forwarded),
                        ("seal one send", seal), ("open one send", unseal)):
        med = statistics.median(times)
        print(f"{name:16} median {med * 1000:7.2f} ms  ({med / base:5.2f}x direct)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    asyncio.run(_run(args.count, args.size))


if __name__ == "__main__":
    main()

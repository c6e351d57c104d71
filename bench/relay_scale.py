"""Does a relay's cost per message stay flat as its store fills up?

    python bench/relay_scale.py [--small 1000] [--large 1000000] [--messages 3000]

For each store size it prefills a fresh SQLite relay database with that many stored 1 KiB
envelopes (in mailboxes of 1,000, as real unacknowledged backlogs), starts
`backchannel relay serve` on it, and times a fixed workload over one connection: send
(8 in flight) -> stored, fetch, ack. Prints messages/s and the ratio large/small; the
target is within 15%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backchannel.client.transport import RelayClient
from backchannel.protocol.envelope import Envelope
from backchannel.protocol.relayframes import token_hash

PER_MAILBOX = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_relay(db: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from backchannel.cli.main import main; main()",
            "relay",
            "serve",
            "--no-metrics",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{db}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def connect(url: str) -> RelayClient:
    for _ in range(600):
        try:
            return await RelayClient.connect(url)
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("relay did not start")


def prefill(db: Path, count: int) -> None:
    """Add `count` stored envelopes in mailboxes of PER_MAILBOX, straight into SQLite."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA synchronous=OFF")
    body = os.urandom(1024)
    now = int(time.time())
    expires = now + 30 * 86400
    for start in range(0, count, PER_MAILBOX):
        mailbox = os.urandom(16)
        n = min(PER_MAILBOX, count - start)
        conn.execute(
            "INSERT INTO mailboxes VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                mailbox,
                token_hash(os.urandom(32)),
                token_hash(os.urandom(32)),
                n + 1,
                n,
                n * 1024,
                now,
            ),
        )
        conn.executemany(
            "INSERT INTO envelopes VALUES (?, ?, ?, ?)",
            ((mailbox, seq, expires, body) for seq in range(1, n + 1)),
        )
        if start % 100_000 == 0:
            conn.commit()
    conn.commit()
    conn.close()


async def workload(url: str, messages: int) -> float:
    client = await connect(url)
    caps = await client.create_mailbox()
    envelope = Envelope(caps.mailbox_id, os.urandom(1024 - 17)).encode()
    start = time.perf_counter()
    for _ in range(0, messages, 8):
        await asyncio.gather(
            *(client.send(caps.mailbox_id, caps.send_token, envelope) for _ in range(8))
        )
        deliveries, _ = await client.fetch(caps.mailbox_id, caps.receive_token, 0, 8)
        await client.ack(caps.mailbox_id, caps.receive_token, tuple(d.seq for d in deliveries))
    elapsed = time.perf_counter() - start
    await client.close()
    return messages / elapsed


async def measure(size: int, messages: int, folder: Path) -> float:
    db = folder / f"relay-{size}.db"
    port = free_port()
    relay = start_relay(db, port)  # creates the schema
    try:
        client = await connect(f"ws://127.0.0.1:{port}/")
        await client.close()
    finally:
        relay.terminate()
        relay.wait(10)
    started = time.perf_counter()
    prefill(db, size)
    print(f"  prefilled {size:,} envelopes in {time.perf_counter() - started:.1f} s", flush=True)
    relay = start_relay(db, port)
    try:
        await workload(f"ws://127.0.0.1:{port}/", 400)  # warm up
        return await workload(f"ws://127.0.0.1:{port}/", messages)
    finally:
        relay.terminate()
        relay.wait(10)
        db.unlink()


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-relay-scale-", dir=args.dir))
    small = await measure(args.small, args.messages, folder)
    print(f"store of {args.small:>9,}: {small:8.0f} msg/s (send -> stored, fetch, ack)")
    large = await measure(args.large, args.messages, folder)
    print(f"store of {args.large:>9,}: {large:8.0f} msg/s (send -> stored, fetch, ack)")
    print(f"ratio large/small: {large / small:.2f} (target: within 0.85..1.15)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--dir", default=None, help="where the temporary databases go")
    asyncio.run(main(parser.parse_args()))

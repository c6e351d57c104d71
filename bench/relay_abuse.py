"""An honest client's send latency on a relay under attack, as ratios of its latency alone.

    python bench/relay_abuse.py [--quick] [--seconds 8] [--only flood slowloris ...]

In one run this starts a relay (SQLite in a temporary folder, default `RelayLimits`, port
picked at random on 127.0.0.1, pinned to CPU 0) and measures an honest client from
127.0.0.1: it creates a mailbox and sends 1 KiB envelopes one at a time, timing each
send -> Stored, and every half second opens a fresh connection and pings (the handshake path
the slowloris attack aims at), creating a mailbox on every fourth (within its own budget).
First alone, then under each attack, run from a separate process pinned to CPU 1 whose
clients bind to 127.0.0.2 ... 127.0.0.40 (loopback only):

- flood: 16 connections each sending PINGs as fast as they can, reading and discarding
  what comes back, reconnecting when closed.
- slowloris: 2,000 sockets that trickle a request byte by byte and never finish it,
  reopened when the relay closes them.
- nonreader: 16 connections that upgrade, subscribe to a mailbox the attacker fills with
  64 KiB envelopes, and never read; reconnected when aborted.
- creation: 39 addresses creating mailboxes as fast as the relay answers; the honest
  client also creates a mailbox every half second and counts refusals.
- oversize: connections sending 1 MiB frames (closed with 1009), again and again.
- poison: ACKs and FETCHes with sequence number 2^63 (review 2026-12 §2b): until the store
  guards against it this may stop the SQLite writer; run last for that reason.

After a warm-up that is not measured, the honest client runs alone, under each attack, and
alone again (before the poison), so that an attack that leaves harm behind shows.

The table gives p50/p99 of send -> Stored, their ratio to the better of the two runs
alone, the relay's peak
RSS, the honest requests refused or failed, and what the relay's metrics say it refused
or closed. Target: p99 under attack <= 3x p99 alone, and no honest request refused. Every
loop is bounded by time; every process this starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
ATTACKS = ("flood", "slowloris", "nonreader", "creation", "oversize", "poison")
ATTACK_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 41)]
HONEST = "127.0.0.1"


def pin(cpu: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        if (os.cpu_count() or 1) > cpu:
            os.sched_setaffinity(0, {cpu})


def more_files() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the relay (child process) -------------------------------------------------------------


def run_relay(port: int, url: str) -> None:
    from backchannel.relay import RelayLimits, RelayServer, open_store

    async def main() -> None:
        limits = RelayLimits()  # the defaults are what is measured
        server = RelayServer(open_store(url, limits), limits, host="127.0.0.1", port=port,
                             metrics_listen=("127.0.0.1", 0))
        await server.start()
        print(f"ready {server.metrics_port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    more_files()
    pin(0)
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


# --- attacks (child process) -----------------------------------------------------------------


def _upgrade(port: int) -> bytes:
    return (f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()


def _frame(payload: bytes) -> bytes:
    """One masked (zero mask) binary client frame."""
    n = len(payload)
    if n < 126:
        head = bytes([0x82, 0x80 | n])
    elif n < 65536:
        head = bytes([0x82, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x82, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


async def _ws(url: str, source: str) -> Any:
    from websockets.asyncio.client import connect

    from backchannel.protocol import relayframes as rf

    return await connect(url, compression=None, max_size=rf.MAX_RESPONSE_FRAME_SIZE,
                         local_addr=(source, 0), open_timeout=5, ping_interval=None)


async def _drain(ws: Any) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def _forever(until: float, job: Any, *args: Any) -> None:
    """Run `job` again and again until `until`, whatever it raises (a closed connection)."""
    while time.monotonic() < until:
        try:
            await asyncio.wait_for(job(*args), max(0.1, until - time.monotonic()))
        except Exception:  # the relay closed or refused us: come back
            await asyncio.sleep(0.05)


async def attack_flood(url: str, port: int, until: float) -> None:
    from backchannel.protocol import relayframes as rf

    ping = rf.encode(rf.Ping(1))

    async def one(source: str) -> None:
        ws = await _ws(url, source)
        reader = asyncio.create_task(_drain(ws))
        try:
            while time.monotonic() < until:
                for _ in range(200):
                    await ws.send(ping)
                await asyncio.sleep(0)
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await ws.close()

    await asyncio.gather(*(_forever(until, one, a) for a in ATTACK_ADDRESSES[:16]))


async def attack_slowloris(url: str, port: int, until: float) -> None:
    loop = asyncio.get_running_loop()
    request = _upgrade(port)

    async def one(source: str) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            await loop.sock_connect(sock, ("127.0.0.1", port))
            for byte in request[:-2]:  # never the final CRLF
                await loop.sock_sendall(sock, bytes([byte]))
                await asyncio.sleep(0.5)
        finally:
            sock.close()

    jobs = [_forever(until, one, ATTACK_ADDRESSES[i % len(ATTACK_ADDRESSES)])
            for i in range(2000)]
    await asyncio.gather(*jobs)


async def attack_nonreader(url: str, port: int, until: float) -> None:
    from backchannel.client.transport import RelayClient
    from backchannel.protocol import relayframes as rf
    from backchannel.protocol.envelope import Envelope

    loop = asyncio.get_running_loop()
    feeder = await RelayClient.connect(url)
    caps = await feeder.create_mailbox()
    subscribe = _frame(rf.encode(rf.Subscribe(1, caps.mailbox_id, caps.receive_token)))

    async def one(source: str) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, _upgrade(port))
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 1)
                if not chunk:
                    return
                head += chunk
            await loop.sock_sendall(sock, subscribe)
            while time.monotonic() < until:  # never read again; notice an abort
                await asyncio.sleep(0.2)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    return
        finally:
            sock.close()

    async def feed() -> None:
        n = 0
        while time.monotonic() < until:
            env = Envelope(caps.mailbox_id, n.to_bytes(8, "big") + b"\x00" * (65536 - 25))
            try:
                await feeder.send(caps.mailbox_id, caps.send_token, env.encode())
            except Exception:  # the mailbox is full: the readers never ack
                await asyncio.sleep(0.1)
            n += 1

    await asyncio.gather(feed(), *(_forever(until, one, a) for a in ATTACK_ADDRESSES[:16]))
    await feeder.close()


async def attack_creation(url: str, port: int, until: float) -> None:
    from backchannel.protocol import relayframes as rf

    async def one(source: str) -> None:
        ws = await _ws(url, source)
        try:
            rid = 0
            while time.monotonic() < until:
                for _ in range(8):  # a few in flight
                    rid += 1
                    await ws.send(rf.encode(rf.Create(rid, os.urandom(16), os.urandom(32),
                                                      os.urandom(32))))
                for _ in range(8):
                    await ws.recv()
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    await asyncio.gather(*(_forever(until, one, a) for a in ATTACK_ADDRESSES))


async def attack_oversize(url: str, port: int, until: float) -> None:
    big = _frame(b"\x01\x02" + b"\x00" * (1 << 20))
    loop = asyncio.get_running_loop()

    async def one(source: str) -> None:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.bind((source, 0))
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, _upgrade(port))
            await loop.sock_recv(sock, 4096)
            await loop.sock_sendall(sock, big)
            await loop.sock_recv(sock, 4096)  # the close frame
        finally:
            sock.close()

    await asyncio.gather(*(_forever(until, one, a) for a in ATTACK_ADDRESSES[:16]))


async def attack_poison(url: str, port: int, until: float) -> None:
    from backchannel.client.transport import RelayClient

    setup = await RelayClient.connect(url)
    caps = await setup.create_mailbox()
    await setup.close()
    big = (1 << 63).to_bytes(8, "big")
    # Built by hand: the encoder may (rightly) refuse what the decoder lets through.
    ack = (b"\x01\x05" + (7).to_bytes(4, "big") + caps.mailbox_id + caps.receive_token
           + (1).to_bytes(2, "big") + big)
    fetch = (b"\x01\x04" + (8).to_bytes(4, "big") + caps.mailbox_id + caps.receive_token
             + big + (10).to_bytes(2, "big"))

    async def one(source: str) -> None:
        ws = await _ws(url, source)
        reader = asyncio.create_task(_drain(ws))
        try:
            while time.monotonic() < until:
                await ws.send(ack)
                await ws.send(fetch)
                await asyncio.sleep(0.01)
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await ws.close()

    await asyncio.gather(*(_forever(until, one, a) for a in ATTACK_ADDRESSES[:4]))


def run_attack(kind: str, port: int, seconds: float) -> None:
    more_files()
    pin(1)
    url = f"ws://127.0.0.1:{port}/"
    job = globals()[f"attack_{kind}"]

    async def main() -> None:
        until = time.monotonic() + seconds
        task = asyncio.create_task(job(url, port, until))
        await asyncio.sleep(0.5)  # let it get going before the honest client measures
        print("ready", flush=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, seconds + 5)

    asyncio.run(main())


# --- the honest client (orchestrator) ------------------------------------------------------


async def honest(url: str, seconds: float, creates: bool) -> dict[str, Any]:
    """Sends one at a time for `seconds`; returns latencies and every refusal or failure."""
    from backchannel.client.transport import RelayClient, RelayRequestError
    from backchannel.protocol.envelope import Envelope
    from backchannel.protocol.relayframes import ErrorCode

    latencies: list[float] = []
    refused: list[str] = []
    until = time.monotonic() + seconds

    async def sender() -> None:
        client = await RelayClient.connect(url)
        try:
            caps = await client.create_mailbox()
            n = 0
            while time.monotonic() < until:
                if n and n % 800 == 0:  # stay under the mailbox quota
                    caps = await client.create_mailbox()
                env = Envelope(caps.mailbox_id, n.to_bytes(8, "big") + b"\x00" * 999).encode()
                started = time.perf_counter()
                try:
                    await client.send(caps.mailbox_id, caps.send_token, env)
                except RelayRequestError as error:
                    refused.append(f"send: {ErrorCode(error.code).name}")
                latencies.append(time.perf_counter() - started)
                n += 1
                await asyncio.sleep(0.001)
        finally:
            await client.close()

    async def prober() -> None:
        probes = 0
        while time.monotonic() < until - 0.5:
            await asyncio.sleep(0.5)
            probes += 1
            try:
                async with await RelayClient.connect(url, open_timeout=5) as probe:
                    await probe.ping()
                    # One creation every 2 s: within the address's own budget (1/s).
                    if creates and probes % 4 == 0:
                        await probe.create_mailbox()
            except RelayRequestError as error:
                refused.append(f"create: {ErrorCode(error.code).name}")
            except Exception as error:  # refused at the handshake, or timed out
                refused.append(f"connect: {type(error).__name__}")

    results = await asyncio.gather(sender(), prober(), return_exceptions=True)
    refused.extend(f"failed: {type(r).__name__}" for r in results if isinstance(r, BaseException))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 \
            if latencies else float("nan")

    return {"sends": len(latencies), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "refused": refused}


# --- orchestration ---------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(port: int) -> dict[str, float]:
    """The relay's refusal and close counters, by series."""
    wanted = ("connections_refused_total", "connections_closed_total",
              "handshakes_abandoned_total", "errors_total")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    series: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if any(w in name for w in wanted):
            series[name.replace("backchannel_relay_", "")] = float(value)
    return series


def delta(before: dict[str, float], after: dict[str, float]) -> str:
    parts = []
    for name, value in sorted(after.items()):
        d = value - before.get(name, 0.0)
        if d:
            parts.append(f"{name.replace('_total', '')} {d:,.0f}")
    return "; ".join(parts) or "-"


def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"child did not start: {args}")
    return proc, line


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def sample_rss(pid: int, until: float, peak: list[float]) -> None:
    while time.monotonic() < until:
        with contextlib.suppress(OSError):
            peak[0] = max(peak[0], rss_mib(pid))
        await asyncio.sleep(0.1)


def scenario(kind: str, relay_pid: int, port: int, metrics_port: int,
             seconds: float) -> dict[str, Any]:
    before = scrape(metrics_port)
    attacker = None
    if not kind.startswith("alone"):
        attacker, _ = start(["_attack", kind, str(port), str(seconds + 1.0)])
    peak = [rss_mib(relay_pid)]

    async def measure() -> dict[str, Any]:
        sampler = asyncio.create_task(sample_rss(relay_pid, time.monotonic() + seconds, peak))
        result = await honest(f"ws://127.0.0.1:{port}/", seconds, creates=True)
        await sampler
        return result

    try:
        result = asyncio.run(measure())
    finally:
        if attacker is not None:
            stop(attacker)
    time.sleep(1.5)  # the relay reaps what the attack left before the next one
    try:
        result["relay"] = delta(before, scrape(metrics_port))
    except OSError:
        result["relay"] = "metrics unreachable"
    result["rss_mib"] = peak[0]
    result["attack"] = kind
    return result


def report(rows: list[dict[str, Any]]) -> None:
    # The baseline is the better of the two runs alone, so that a noisy neighbour during
    # one of them makes the ratios worse, never better.
    alone = [r for r in rows if r["attack"].startswith("alone") and r["sends"]]
    base = {"p50_ms": min(r["p50_ms"] for r in alone),
            "p99_ms": min(r["p99_ms"] for r in alone)}
    print("| attack | sends | p50 ms | x alone | p99 ms | x alone | relay RSS peak MiB "
          "| honest refused | relay refused / closed |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        refused = r["refused"]
        shown = "none" if not refused else (
            f"{len(refused)}: " + ", ".join(sorted(set(refused))))
        print(f"| {r['attack']} | {r['sends']:,} | {r['p50_ms']:.2f} "
              f"| {r['p50_ms'] / base['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {r['p99_ms'] / base['p99_ms']:.2f} | {r['rss_mib']:.0f} | {shown} "
              f"| {r['relay']} |".replace("nan", "-"))
    worst = max(r["p99_ms"] / base["p99_ms"] for r in rows if r["sends"])
    any_refused = any(r["refused"] for r in rows)
    print(f"\nworst p99 ratio {worst:.2f} (target <= 3); honest requests refused: "
          f"{'yes' if any_refused else 'none'}")


def orchestrate(opts: argparse.Namespace) -> None:
    more_files()
    tmp = Path(tempfile.mkdtemp(prefix="relay-abuse-"))
    port = free_port()
    relay, line = start(["_relay", str(port), f"sqlite:///{tmp / 'relay.db'}"])
    metrics_port = int(line.split()[1])
    rows: list[dict[str, Any]] = []
    chosen = [a for a in ATTACKS if a in opts.only]
    # The relay alone again after every attack but the poison (which may break it): the
    # attacks must leave nothing behind.
    order = ["alone", *[a for a in chosen if a != "poison"], "alone after",
             *[a for a in chosen if a == "poison"]]
    try:
        # Warm up (the first SQLite commits, the first handshakes): not measured.
        scenario("alone", relay.pid, port, metrics_port, 1.0)
        for kind in order:
            if relay.poll() is not None:
                print(f"the relay exited ({relay.returncode}) before {kind}", file=sys.stderr)
                break
            rows.append(scenario(kind, relay.pid, port, metrics_port, opts.seconds))
            print(json.dumps(rows[-1])[:400], file=sys.stderr, flush=True)
    finally:
        stop(relay)
    report(rows)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        role, rest = sys.argv[1], sys.argv[2:]
        if role == "_relay":
            run_relay(int(rest[0]), rest[1])
        elif role == "_attack":
            run_attack(rest[0], int(rest[1]), float(rest[2]))
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per scenario")
    parser.add_argument("--quick", action="store_true", help="3 s per scenario")
    parser.add_argument("--only", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    opts = parser.parse_args()
    if opts.quick:
        opts.seconds = 3.0
    orchestrate(opts)


if __name__ == "__main__":
    main()

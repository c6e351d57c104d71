"""Relay throughput, latency and idle memory, as ratios of a bare WebSocket echo floor.

    python bench/relay.py [--conns 1 10 100] [--windows 1 8] [--pg URL | --no-pg] [--idle 5000]
                          [--unpaced] [--profile FILE]

In one run this starts (a) a bare aiohttp + uvloop echo server, the fastest plain Python
WebSocket server measured on this kind of machine (the floor), (b) the relay on SQLite and
(c) the relay on PostgreSQL, each in its own process pinned to CPU 0, and drives each from a
separate client process pinned to CPU 1 with C connections of 1 KiB messages.

- Echo: each connection keeps W messages in flight; latency is the round trip.
- Relay: each connection creates a mailbox, subscribes to it and keeps W envelopes in flight
  through the full cycle send -> stored -> delivered -> acked (acks cover a whole delivery
  batch). Latencies are send->delivered and send->acked; throughput counts acked envelopes.

Every relay run also reports one group commit's own cost (the mean, from the relay's
`/metrics`: a batch's start to its COMMIT's end) and operations per commit, and the 1x1
row is checked against its target: p50 <= echo p50 + one group commit.
Every relay figure is reported with its ratio to the echo figure of the same C and W, and
every server's CPU microseconds per message beside it: on a machine others share, the
echo floor moves by 2x and more between runs, and CPU per message moves much less.
--profile writes cProfile summaries (cumulative, then self time) of the relay's event loop
and of its SQLite writer thread.
Idle memory: RSS growth of a relay (SQLite) holding N idle subscribed connections, per
connection. Every loop is bounded by a message count and a time limit (a run stops sending after
BUDGET seconds and drains, so a slow point is measured over fewer messages); every process this
starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
PAYLOAD = 1024
TIME_LIMIT = 60.0  # seconds per measured run, never reached in a healthy run
# Seconds after which a connection sends nothing new and drains what is in flight: a slow
# point (PostgreSQL at one connection, one in flight) is measured over fewer messages
# instead of running into TIME_LIMIT.
BUDGET = 20.0
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def pin(cpu: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        if (os.cpu_count() or 1) > cpu:
            os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- servers (child processes) -----------------------------------------------------------


def run_echo(port: int) -> None:
    import uvloop
    from aiohttp import WSMsgType, web

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def run_relay(port: int, url: str, metrics_port: int | None = None) -> None:
    import uvloop

    from backchannel.relay import RelayLimits, RelayServer, open_store

    # Load-test limits: one client address opens every connection and creates every
    # mailbox, and it sends far above a single principal's rate. The pace shared by
    # backlogged connections stays the default unless --unpaced (BENCH_RELAY_LIMITS).
    limits = RelayLimits(frames_per_second=1e9, frame_burst=1e9,
                         max_connections_per_address=1_000_000, creates_per_second=1e9,
                         create_burst=1e9, creates_per_second_per_address=1e9,
                         create_burst_per_address=1e9, mailbox_max_envelopes=1_000_000,
                         mailbox_max_bytes=1 << 40, max_connections=1_000_000,
                         **json.loads(os.environ.get("BENCH_RELAY_LIMITS", "{}")))

    async def main() -> None:
        metrics = None if metrics_port is None else ("127.0.0.1", metrics_port)
        server = RelayServer(open_store(url, limits), limits, host="127.0.0.1", port=port,
                             metrics_listen=metrics)
        await server.start()
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    out = os.environ.get("BENCH_PROFILE")
    if not out:
        uvloop.run(main())
        return
    # --profile: the event loop's thread under cProfile (the SQLite writer thread is
    # mostly in C, with the interpreter lock released: its share is the process CPU
    # minus this thread's), top functions by cumulative time, then by self time.
    # The SQLite writer thread gets a profile of its own (FILE.writer): its Python share
    # (deciding the batch, building rows) holds the interpreter lock the loop needs.
    import cProfile
    import pstats

    from backchannel.relay.store.sqlite import SqliteStore

    def dump(prof: cProfile.Profile, path: str) -> None:
        with open(path, "w") as fh:
            stats = pstats.Stats(prof, stream=fh)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(30)

    write_loop = SqliteStore._write_loop

    def profiled_write_loop(self: SqliteStore, db: Any) -> None:
        wprof = cProfile.Profile()
        wprof.enable()
        try:
            write_loop(self, db)
        finally:
            wprof.disable()
            dump(wprof, f"{out}.writer")

    SqliteStore._write_loop = profiled_write_loop  # type: ignore[method-assign]
    prof = cProfile.Profile()
    prof.enable()
    try:
        uvloop.run(main())
    finally:
        prof.disable()
        dump(prof, out)


# --- load client (child process) -------------------------------------------------------


async def echo_conn(session: Any, url: str, count: int, window: int,
                    lat: list[float], deadline: float = float("inf")) -> int:
    """Keep `window` messages in flight until `count` are back or `deadline` passed;
    returns how many came back."""
    ws = await session.ws_connect(url, compress=0, autoping=False, max_msg_size=1 << 20)
    payload = os.urandom(PAYLOAD)
    sent: list[float] = []
    received = 0
    for _ in range(min(window, count)):
        sent.append(time.perf_counter())
        await ws.send_bytes(payload)
    while received < count:
        msg = await ws.receive()
        now = time.perf_counter()
        assert len(msg.data) == PAYLOAD
        lat.append(now - sent[received])
        received += 1
        if len(sent) < count and now < deadline:
            sent.append(time.perf_counter())
            await ws.send_bytes(payload)
        elif now >= deadline:
            count = len(sent)
    await ws.close()
    return received


async def relay_conn(session: Any, url: str, count: int, window: int,
                     lat_deliver: list[float], lat_ack: list[float], batch: bool = False,
                     deadline: float = float("inf")) -> int:
    """Keep `window` envelopes in flight through send, stored, delivered and acked until
    `count` are acked or `deadline` passed; returns how many were acked."""
    from backchannel.protocol import relayframes as rf
    from backchannel.protocol.envelope import Envelope

    # autoping: the relay pings every 30 s and closes a connection that does not answer.
    ws = await session.ws_connect(url, compress=0, autoping=True,
                                  max_msg_size=rf.MAX_RESPONSE_FRAME_SIZE)
    mid, send_tok, recv_tok = os.urandom(16), os.urandom(32), os.urandom(32)
    await ws.send_bytes(rf.encode(rf.Create(1, mid, rf.token_hash(send_tok),
                                            rf.token_hash(recv_tok))))
    assert isinstance(rf.decode_response((await ws.receive()).data), rf.Created)
    await ws.send_bytes(rf.encode(rf.Subscribe(2, mid, recv_tok)))
    assert isinstance(rf.decode_response((await ws.receive()).data), rf.Subscribed)
    pad = b"\x00" * (PAYLOAD - 17 - 8)
    started: list[float] = []
    pending_acks: dict[int, list[int]] = {}
    acked = 0
    rid = 10

    async def send_next() -> None:
        n = len(started)
        started.append(time.perf_counter())
        env = Envelope(mid, n.to_bytes(8, "big") + pad).encode()
        await ws.send_bytes(rf.encode(rf.Send(100 + n, mid, send_tok, env)))

    async def send_some(k: int) -> None:
        """The next `k` envelopes: one SEND each, or with --batch one SEND_BATCH."""
        nonlocal count
        if time.perf_counter() >= deadline:
            count = len(started)  # drain what is in flight
        k = min(k, count - len(started))
        if k <= 0:
            return
        if not batch:
            for _ in range(k):
                await send_next()
            return
        now = time.perf_counter()
        first = len(started)
        started.extend([now] * k)
        envs = tuple(Envelope(mid, n.to_bytes(8, "big") + pad).encode()
                     for n in range(first, first + k))
        await ws.send_bytes(rf.encode(rf.SendBatch(100 + first, mid, send_tok, envs)))

    await send_some(window)
    while acked < count:
        frame = rf.decode_response((await ws.receive()).data)
        now = time.perf_counter()
        match frame:
            case rf.Stored():
                pass
            case rf.Deliver(_, items):
                ns = [int.from_bytes(d.envelope[17:25], "big") for d in items]
                lat_deliver.extend(now - started[n] for n in ns)
                rid += 1
                pending_acks[rid] = ns
                await ws.send_bytes(rf.encode(rf.Ack(rid, mid, recv_tok,
                                                     tuple(d.seq for d in items))))
            case rf.Acked(ack_rid, _):
                ns = pending_acks.pop(ack_rid)
                lat_ack.extend(now - started[n] for n in ns)
                acked += len(ns)
                await send_some(len(ns))
            case rf.Error(_, code, reason):
                raise RuntimeError(f"relay error {code}: {reason}")
            case rf.BatchStored(_, results):  # last: a relay without it never sends it
                assert all(r.stored for r in results)
    await ws.close()
    return acked


async def client_main(kind: str, url: str, conns: int, total: int, window: int,
                      batch: bool = False) -> dict[str, Any]:
    import aiohttp

    per_conn = max(1, total // conns)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        lat_a: list[float] = []
        lat_b: list[float] = []

        def jobs(count: int, deadline: float = float("inf")) -> list[Any]:
            if kind == "echo":
                return [echo_conn(session, url, count, window, lat_a, deadline)
                        for _ in range(conns)]
            return [relay_conn(session, url, count, window, lat_a, lat_b, batch, deadline)
                    for _ in range(conns)]

        warm = max(20, per_conn // 20)
        await asyncio.wait_for(asyncio.gather(*jobs(warm)), TIME_LIMIT)
        lat_a.clear()
        lat_b.clear()
        started = time.perf_counter()
        cpu = time.process_time()
        done = sum(await asyncio.wait_for(
            asyncio.gather(*jobs(per_conn, started + BUDGET)), TIME_LIMIT))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))] * 1e6

    result: dict[str, Any] = {"msgs": done, "seconds": elapsed, "rate": done / elapsed,
                              "p50_us": pct(lat_a, 0.5), "p99_us": pct(lat_a, 0.99),
                              "client_cpu": cpu / elapsed, "all_msgs": done + warm * conns}
    if lat_b:
        result["ack_p50_us"] = pct(lat_b, 0.5)
        result["ack_p99_us"] = pct(lat_b, 0.99)
    return result


async def idle_main(url: str, count: int, pid: int) -> dict[str, Any]:
    """Open `count` subscribed connections and report the relay's RSS growth."""
    from backchannel.client.transport import RelayClient

    def rss() -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    async def one() -> RelayClient:
        client = await RelayClient.connect(url)
        caps = await client.create_mailbox()
        await client.subscribe(caps.mailbox_id, caps.receive_token)
        return client

    warm = [await one() for _ in range(20)]
    for c in warm:
        await c.close()
    await asyncio.sleep(1.0)
    base = rss()
    clients: list[RelayClient] = []
    sem = asyncio.Semaphore(50)

    async def guarded() -> None:
        async with sem:
            clients.append(await one())

    await asyncio.wait_for(asyncio.gather(*(guarded() for _ in range(count))), 120)
    await asyncio.sleep(2.0)
    grown = rss()
    for c in clients:
        await c.close()
    return {"connections": count, "base_mib": base / 2**20, "rss_mib": grown / 2**20,
            "kib_per_conn": (grown - base) / count / 1024}


# --- orchestration ---------------------------------------------------------------------


def start(args: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(HERE), *args], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"server did not start: {args}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def client(args: list[str], server_pid: int | None = None) -> dict[str, Any]:
    before = time.perf_counter(), cpu_seconds(server_pid) if server_pid else 0.0
    out = subprocess.run([sys.executable, str(HERE), *args], stdout=subprocess.PIPE,
                         text=True, timeout=300, check=True)  # its stderr shows a failure
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if server_pid:
        # Whole client run (warm-up included): the server's average share of a core.
        wall = time.perf_counter() - before[0]
        used = cpu_seconds(server_pid) - before[1]
        result["server_cpu"] = used / wall
        # CPU per message (warm-up included): steadier than a rate when other work shares
        # the machine, since it does not count the time the server waited for a core.
        if "all_msgs" in result:
            result["server_us"] = used / result["all_msgs"] * 1e6
    return result


_COMMIT_METRICS = ("backchannel_relay_commit_seconds_sum",
                   "backchannel_relay_commit_seconds_count",
                   "backchannel_relay_commit_operations_total")


def commit_figures(metrics_port: int) -> dict[str, float]:
    """The relay's group-commit counters now (`/metrics`): seconds spent in commits (each
    from its batch's start to its COMMIT's end), commits, and operations committed."""
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = dict.fromkeys(_COMMIT_METRICS, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found


def pg_reachable(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return True
    except OSError:
        return False


def drop_schema(url: str, schema: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    asyncio.run(go())


def orchestrate(opts: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    backends: list[tuple[str, str]] = [("sqlite", f"sqlite:///{tmp / 'relay.db'}")]
    schema = f"bench_relay_{secrets.token_hex(4)}"
    if not opts.no_pg and pg_reachable(opts.pg):
        backends.append(("postgres", f"{opts.pg}?schema={schema}"))
    rows: list[dict[str, Any]] = []
    try:
        for window in opts.windows:
            for conns in opts.conns:
                total = opts.messages if conns > 1 else opts.messages // 4
                port = free_port()
                echo = start(["_echo", str(port)])
                try:
                    floor = client(["_client", "echo", f"ws://127.0.0.1:{port}/", str(conns),
                                    str(total), str(window)], echo.pid)
                finally:
                    stop(echo)
                rows.append({"server": "echo", "conns": conns, "window": window, **floor})
                for name, url in backends:
                    port = free_port()
                    if opts.profile:
                        os.environ["BENCH_PROFILE"] = f"{opts.profile}.{name}.{conns}x{window}"
                    metrics_port = free_port()
                    relay = start(["_relay", str(port), url, str(metrics_port)])
                    try:
                        before = commit_figures(metrics_port)
                        res = client(["_client", "relay", f"ws://127.0.0.1:{port}/",
                                      str(conns), str(total), str(window),
                                      *(["batch"] if opts.batch else [])], relay.pid)
                        after = commit_figures(metrics_port)
                    finally:
                        stop(relay)
                    # One group commit's own cost (warm-up included), beside the latency
                    # it is part of: the 1x1 target is p50 <= echo p50 + one commit.
                    seconds, commits, ops = (after[k] - before[k] for k in _COMMIT_METRICS)
                    res["commit_us"] = seconds / commits * 1e6 if commits else 0.0
                    res["ops_per_commit"] = ops / commits if commits else 0.0
                    res["echo_p50_us"] = floor["p50_us"]
                    res["x_rate"] = res["rate"] / floor["rate"]
                    res["x_p50"] = res["p50_us"] / floor["p50_us"]
                    res["x_p99"] = res["p99_us"] / floor["p99_us"]
                    rows.append({"server": name, "conns": conns, "window": window, **res})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        idle = None
        os.environ.pop("BENCH_PROFILE", None)
        if opts.idle:
            port = free_port()
            relay = start(["_relay", str(port), f"sqlite:///{tmp / 'idle.db'}"])
            try:
                idle = client(["_idle", f"ws://127.0.0.1:{port}/", str(opts.idle),
                               str(relay.pid)])
            finally:
                stop(relay)
    finally:
        if len(backends) > 1:
            drop_schema(opts.pg, schema)
    report(rows, idle)


def report(rows: list[dict[str, Any]], idle: dict[str, Any] | None) -> None:
    print("| server | W | conns | msg/s | x echo | p50 µs (deliver) | x | p99 µs | x "
          "| ack p50 µs | ack p99 µs | server CPU | server CPU µs/msg | client CPU "
          "| commit µs | ops/commit |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        def x(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key]:.2f}" if key in r else "1"

        print(f"| {r['server']} | {r['window']} | {r['conns']} | {r['rate']:,.0f} "
              f"| {x('x_rate')} | {r['p50_us']:,.0f} | {x('x_p50')} | {r['p99_us']:,.0f} "
              f"| {x('x_p99')} | {r.get('ack_p50_us', 0):,.0f} | {r.get('ack_p99_us', 0):,.0f} "
              f"| {r.get('server_cpu', 0):.2f} | {r.get('server_us', 0):.0f} "
              f"| {r['client_cpu']:.2f} | {r.get('commit_us', 0):,.0f} "
              f"| {r.get('ops_per_commit', 0):.1f} |")
    for r in rows:
        if r["server"] != "echo" and r["conns"] == 1 and r["window"] == 1:
            bound = r["echo_p50_us"] + r["commit_us"]
            print(f"\n{r['server']} 1x1: p50 {r['p50_us']:,.0f} µs against echo p50 + one "
                  f"group commit = {r['echo_p50_us']:,.0f} + {r['commit_us']:,.0f} = "
                  f"{bound:,.0f} µs ({r['p50_us'] / bound:.2f}x; target <= 1)")
    if idle:
        print(f"\nidle subscribed connections: {idle['connections']}, relay RSS "
              f"{idle['base_mib']:.1f} -> {idle['rss_mib']:.1f} MiB, "
              f"{idle['kib_per_conn']:.1f} KiB per connection")
    print("\nmedian echo rate:",
          f"{statistics.median(r['rate'] for r in rows if r['server'] == 'echo'):,.0f} msg/s")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        role, rest = sys.argv[1], sys.argv[2:]
        if role == "_echo":
            pin(0)
            run_echo(int(rest[0]))
        elif role == "_relay":
            pin(0)
            run_relay(int(rest[0]), rest[1], int(rest[2]) if len(rest) > 2 else None)
        elif role == "_client":
            import uvloop

            pin(1)
            print(json.dumps(uvloop.run(client_main(rest[0], rest[1], int(rest[2]),
                                                    int(rest[3]), int(rest[4]),
                                                    rest[5:] == ["batch"]))))
        elif role == "_idle":
            import resource

            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            pin(1)
            print(json.dumps(asyncio.run(idle_main(rest[0], int(rest[1]), int(rest[2])))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conns", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 8],
                        help="messages in flight per connection")
    parser.add_argument("--messages", type=int, default=40_000,
                        help="messages per run (a quarter of it with one connection)")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL URL for the relay")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--batch", action="store_true",
                        help="relay clients send with SEND_BATCH: the window, then each "
                             "acked delivery's worth, in one frame")
    parser.add_argument("--unpaced", action="store_true",
                        help="lift the pace shared by backlogged connections "
                             "(backlogged_frames_per_second) on the relays")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile each relay's event loop with cProfile into FILE.N")
    parser.add_argument("--idle", type=int, default=5000,
                        help="idle subscribed connections for the memory figure (0: skip)")
    opts = parser.parse_args()
    if opts.unpaced:
        os.environ["BENCH_RELAY_LIMITS"] = json.dumps(
            {"backlogged_frames_per_second": 1e9, "backlogged_frame_burst": 1e9})
    orchestrate(opts)


if __name__ == "__main__":
    main()

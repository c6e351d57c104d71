"""A seeded TCP fault proxy for `bench/chaos.py`: loopback in, loopback out.

One `FaultProxy` listens on a loopback port and forwards each connection to one backend
port (a relay), running its own asyncio loop in a daemon thread. While faults are on, each
new connection is, at random (seeded):

- *cut*: closed on both sides (abort, no close handshake) after a random lifetime;
- *delayed*: every chunk, in each direction, waits 0 to `max_delay` seconds before it is
  forwarded (order is kept: one pump per direction);

and `stall(seconds)` stops forwarding on every connection of the proxy for that long while
keeping every socket open (the "silent relay"). A backend that refuses the connection (the
relay is down) makes the proxy close the client's connection at once.

Counts of what actually happened are in `counts` ("proxy_cut", "proxy_delayed_conn",
"proxy_stall"), read with `snapshot()`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter

CHUNK = 65536


class FaultProxy:
    """Forward 127.0.0.1:`listen_port` to 127.0.0.1:`backend_port`, injecting faults."""

    def __init__(
        self,
        listen_port: int,
        backend_port: int,
        *,
        seed: int | str,
        cut_probability: float = 0.25,
        cut_after: tuple[float, float] = (0.5, 8.0),
        delay_probability: float = 0.3,
        max_delay: float = 0.3,
    ) -> None:
        self.listen_port = listen_port
        self.backend_port = backend_port
        self.cut_probability = cut_probability
        self.cut_after = cut_after
        self.delay_probability = delay_probability
        self.max_delay = max_delay
        self.faults = True
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(f"proxy-{seed}-{listen_port}")
        self._lock = threading.Lock()
        self._stalled_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"proxy-{listen_port}")

    # -- control, from any thread -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"fault proxy on port {self.listen_port} did not start")

    def stall(self, seconds: float) -> None:
        """Stop forwarding on every connection for `seconds`, sockets kept open."""
        with self._lock:
            self._stalled_until = max(self._stalled_until, time.monotonic() + seconds)
            self.counts["proxy_stall"] += 1

    def calm(self) -> None:
        """No more faults: pending cuts are cancelled, a stall in progress ends now."""
        with self._lock:
            self.faults = False
            self._stalled_until = 0.0

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.listen_port,
                                 reuse_address=True)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    def _decide(self) -> tuple[float | None, bool]:
        with self._lock:
            if not self.faults:
                return None, False
            cut = (self._rng.uniform(*self.cut_after)
                   if self._rng.random() < self.cut_probability else None)
            delayed = self._rng.random() < self.delay_probability
            if delayed:
                self.counts["proxy_delayed_conn"] += 1
            return cut, delayed

    async def _wait_stall(self) -> None:
        while True:
            with self._lock:
                left = self._stalled_until - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.1))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    delayed: bool, rng: random.Random) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                await self._wait_stall()
                if delayed and self.faults:
                    await asyncio.sleep(rng.uniform(0, self.max_delay))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        try:
            backend_r, backend_w = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            client_w.transport.abort()
            return
        cut_after, delayed = self._decide()
        with self._lock:
            rng = random.Random(self._rng.random())
        pumps = [
            asyncio.ensure_future(self._pump(client_r, backend_w, delayed, rng)),
            asyncio.ensure_future(self._pump(backend_r, client_w, delayed, rng)),
        ]
        done_all = asyncio.gather(*pumps)
        if cut_after is None:
            await done_all
            return
        try:
            await asyncio.wait_for(asyncio.shield(done_all), cut_after)
        except TimeoutError:
            if self.faults:
                with self._lock:
                    self.counts["proxy_cut"] += 1
                client_w.transport.abort()
                backend_w.transport.abort()
                for pump in pumps:
                    pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

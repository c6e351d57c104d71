"""The relay's limits: every bound an operator may tune, with the reason for its default.

`RelayLimits` is a frozen value handed to the server and the store; the CLI builds one from
its options. Defaults suit a small public relay on one modest machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from backchannel.protocol.relayframes import MAX_REQUEST_FRAME_SIZE

__all__ = [
    "DAY",
    "RelayLimits",
]

DAY: Final = 86_400.0

# An envelope nobody fetches for 30 days belongs to an abandoned channel; keeping it longer
# only grows the store (design §4: unacked envelopes expire after a TTL).
DEFAULT_ENVELOPE_TTL: Final = 30 * DAY
# A mailbox with no activity for 90 days (three envelope lifetimes) is forgotten.
DEFAULT_MAILBOX_IDLE_TTL: Final = 90 * DAY
# A channel that falls 1,000 messages behind is broken, not busy; the cap stops one mailbox
# from filling the disk.
DEFAULT_MAILBOX_MAX_ENVELOPES: Final = 1_000
# 64 MiB is a thousand typical notes or a thousand of the largest envelopes' worth of room.
DEFAULT_MAILBOX_MAX_BYTES: Final = 64 * 1024 * 1024
# Envelope bytes the whole store may hold. Per-mailbox quotas alone let many mailboxes fill
# the disk (review 2026-12 §2f); 4 GiB is 64 full mailboxes, or about 4 million typical
# 1 KiB envelopes, and fits a small VPS disk with room for the WAL and indexes.
DEFAULT_STORE_MAX_BYTES: Final = 4 * 1024 * 1024 * 1024
# Sustained frames per second per connection. A principal catching up after an outage
# flushes its whole outbox at once (one frame per envelope), and a channel must sustain
# 1,000 messages/s; 2,000 frames/s leaves room for the acks and receipts beside them while
# one connection still cannot take more than a small share of a relay's ~13k/s.
DEFAULT_FRAMES_PER_SECOND: Final = 2000.0
DEFAULT_FRAME_BURST: Final = 4000.0
# Frames per second, relay-wide, from connections that have more frames waiting than the
# relay has taken (a flood, or a client flushing a backlog): they take turns at this pace,
# in order, while connections with nothing waiting are served at once. Of a relay's ~13k
# frames/s (above), 4,000 keeps backlogged connections under a third, so that the loop
# idles and a light client (and the store's writer thread, which needs the interpreter
# lock) is served promptly: beside 16 flooders an honest client's p99 was 2-3x its p99
# alone at 4,000, 3.3-3.7x at 8,000 (bench/relay_abuse.py, same runs). It is still two
# connections at their full rate; more flushing a backlog at once share it. The burst
# lets a short backlog through at once.
DEFAULT_BACKLOGGED_FRAMES_PER_SECOND: Final = 4000.0
DEFAULT_BACKLOGGED_FRAME_BURST: Final = 1000.0
# Floods are judged by the share of refused frames among a connection's last frames, not by
# refusals in a row (a flooder that sends twice the rate alternates accepted and refused
# frames and never has two refusals in a row). Over the last 256 frames, 64 refused (25%)
# means the client sends at 4/3 of its rate or more and ignores RATE_LIMITED: close it.
# An honest client that overruns its burst gets a few refusals and backs off (the client
# retries after 0.1 s, doubling), far below a quarter of a window.
DEFAULT_FLOOD_WINDOW: Final = 256
DEFAULT_FLOOD_REFUSED: Final = 64
# Malformed frames mean a broken or hostile client; a few are answered, then it is closed.
DEFAULT_MAX_MALFORMED_FRAMES: Final = 8
# A household or office behind one NAT has a few dozen devices; 64 is generous for them
# and still stops one host from holding thousands of sockets. An IPv6 client counts per
# /64 (`addresses.budget_key`): one host is usually given a whole /64.
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: Final = 64
# Every TCP connection counts from accept to close, handshakes included. An idle subscribed
# connection costs the relay about 17 KiB (bench/relay.py: 2,000 of them, 33 -> 66 MiB),
# so 4,096 stay near 70 MiB, and 4,096 descriptors fit the usual hard limit of open files.
# Past this a new socket is answered 503 and closed at once, before its request is read.
DEFAULT_MAX_CONNECTIONS: Final = 4_096
# Time from accept to a completed WebSocket upgrade (the TLS handshake has as long again).
# A client on a slow mobile link upgrades in well under a second; a socket that has not
# in 5 s is holding a slot (slowloris) and is closed.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 5.0
# An address whose connection was closed for abuse (a flood, malformed or oversize frames)
# is refused new connections for this long, cheaply at accept: otherwise each reconnect
# buys a fresh burst and a handshake the relay pays for. Long enough to make a reconnect
# loop cost the attacker more than the relay, short enough that a household behind the
# same NAT as a broken client waits only seconds.
DEFAULT_ABUSE_COOLDOWN: Final = 10.0
# Mailboxes are created once per channel and relay: 1 per second per address (burst 20) is
# plenty for pairing. The relay-wide budget bounds the store's growth, and it is sized so
# that a few addresses cannot use it up for everyone: draining the burst takes 50 addresses
# each spending its own whole burst, and the sustained rate 100 addresses at full speed.
# Its last quarter is kept for addresses that have created little lately (see
# `ratelimit.AddressBook.may_create`), so that even then a fresh address still creates.
DEFAULT_CREATES_PER_SECOND_PER_ADDRESS: Final = 1.0
DEFAULT_CREATE_BURST_PER_ADDRESS: Final = 20.0
DEFAULT_CREATES_PER_SECOND: Final = 100.0
DEFAULT_CREATE_BURST: Final = 1_000.0
# A client watches one mailbox per channel it takes part in.
DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: Final = 64
# Deliveries in flight (pushed, not yet acked) per subscription: one full batch plus one
# being acked keeps the pipe full without the relay buffering much for a slow reader.
DEFAULT_DELIVERY_WINDOW: Final = 512
# Bytes queued for one connection that it does not read (the relay's outbox and the
# transport's write buffer together); past this it is too slow and is aborted at once,
# without a closing handshake it would not read either.
DEFAULT_MAX_OUTBOX_BYTES: Final = 8 * 1024 * 1024
# Bytes queued for all connections together. The per-connection cap alone lets 40
# addresses of 64 non-reading subscribers each hold 20 GiB; past this budget the
# connection holding the most is aborted. 256 MiB is 32 connections at their cap, far more
# than honest readers keep queued at once (a delivery window of typical notes is 0.5 MiB).
DEFAULT_MAX_QUEUED_BYTES: Final = 256 * 1024 * 1024
# Group commit: at most this many operations per transaction (the research measured 64 as
# the knee: 15x the throughput of one transaction each, 1-2 ms of added latency).
DEFAULT_COMMIT_BATCH: Final = 256
# How often expired envelopes and idle mailboxes are swept, and how many rows per sweep
# transaction (small transactions never stall the writer for long).
DEFAULT_SWEEP_INTERVAL: Final = 60.0
DEFAULT_SWEEP_BATCH: Final = 1_000
# Addresses whose rate state is remembered; the oldest are forgotten beyond this.
DEFAULT_MAX_TRACKED_ADDRESSES: Final = 65_536
# Time allowed for a graceful stop to answer in-flight requests before closing.
DEFAULT_SHUTDOWN_GRACE: Final = 5.0
# Private routing (docs/relay.md "Private routing"). A forwarding relay is, towards the
# destination, one client for many: its forwards are bounded so that it cannot be made to
# hold much memory, many sockets, or to hammer a destination on someone's behalf.
# Forwards in flight, relay-wide: each holds one request frame (at most 67 KB), so 64 hold
# at most 4.3 MB; a forward takes one round trip to the destination (tens of ms), so 64 in
# flight carry well over a thousand forwards per second.
DEFAULT_FORWARD_MAX_IN_FLIGHT: Final = 64
# Forwards in flight per client connection: a sender flushes a backlog a few at a time;
# 8 keeps one connection from taking the whole relay-wide budget.
DEFAULT_FORWARD_MAX_IN_FLIGHT_PER_CONNECTION: Final = 8
# Forwards per second per client address (burst; an IPv6 address counts per /64): an
# agent sends a slot's envelope every few seconds per channel; 20 per second (burst 100)
# lets a backlog through and stops one host from turning this relay into a flood of
# someone else's relay, however many connections it opens.
DEFAULT_FORWARDS_PER_SECOND_PER_ADDRESS: Final = 20.0
DEFAULT_FORWARD_BURST_PER_ADDRESS: Final = 100.0
# Destinations with a pooled connection: one per relay forwarded to. Past 32 the least
# recently used idle one is closed.
DEFAULT_FORWARD_MAX_DESTINATIONS: Final = 32
# Seconds one forward may take, connecting to the destination included: the client's own
# request timeout is 5 s, but its forward waits for two relays; 10 s tells a destination
# that has stopped answering from a slow one.
DEFAULT_FORWARD_TIMEOUT: Final = 10.0
# A pooled connection unused this long is closed (it holds a slot on the destination).
DEFAULT_FORWARD_IDLE_TIMEOUT: Final = 60.0


@dataclass(frozen=True, slots=True)
class RelayLimits:
    """Every tunable bound of a relay (see the module constants for the reasons)."""

    envelope_ttl: float = DEFAULT_ENVELOPE_TTL
    mailbox_idle_ttl: float = DEFAULT_MAILBOX_IDLE_TTL
    mailbox_max_envelopes: int = DEFAULT_MAILBOX_MAX_ENVELOPES
    mailbox_max_bytes: int = DEFAULT_MAILBOX_MAX_BYTES
    store_max_bytes: int = DEFAULT_STORE_MAX_BYTES
    max_frame_size: int = MAX_REQUEST_FRAME_SIZE
    frames_per_second: float = DEFAULT_FRAMES_PER_SECOND
    frame_burst: float = DEFAULT_FRAME_BURST
    backlogged_frames_per_second: float = DEFAULT_BACKLOGGED_FRAMES_PER_SECOND
    backlogged_frame_burst: float = DEFAULT_BACKLOGGED_FRAME_BURST
    flood_window: int = DEFAULT_FLOOD_WINDOW
    flood_refused: int = DEFAULT_FLOOD_REFUSED
    max_malformed_frames: int = DEFAULT_MAX_MALFORMED_FRAMES
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    abuse_cooldown: float = DEFAULT_ABUSE_COOLDOWN
    creates_per_second_per_address: float = DEFAULT_CREATES_PER_SECOND_PER_ADDRESS
    create_burst_per_address: float = DEFAULT_CREATE_BURST_PER_ADDRESS
    creates_per_second: float = DEFAULT_CREATES_PER_SECOND
    create_burst: float = DEFAULT_CREATE_BURST
    max_subscriptions_per_connection: int = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION
    delivery_window: int = DEFAULT_DELIVERY_WINDOW
    max_outbox_bytes: int = DEFAULT_MAX_OUTBOX_BYTES
    max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES
    commit_batch: int = DEFAULT_COMMIT_BATCH
    sweep_interval: float = DEFAULT_SWEEP_INTERVAL
    sweep_batch: int = DEFAULT_SWEEP_BATCH
    max_tracked_addresses: int = DEFAULT_MAX_TRACKED_ADDRESSES
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    forward_max_in_flight: int = DEFAULT_FORWARD_MAX_IN_FLIGHT
    forward_max_in_flight_per_connection: int = DEFAULT_FORWARD_MAX_IN_FLIGHT_PER_CONNECTION
    forwards_per_second_per_address: float = DEFAULT_FORWARDS_PER_SECOND_PER_ADDRESS
    forward_burst_per_address: float = DEFAULT_FORWARD_BURST_PER_ADDRESS
    forward_max_destinations: int = DEFAULT_FORWARD_MAX_DESTINATIONS
    forward_timeout: float = DEFAULT_FORWARD_TIMEOUT
    forward_idle_timeout: float = DEFAULT_FORWARD_IDLE_TIMEOUT

    def __post_init__(self) -> None:
        if self.envelope_ttl <= 0 or self.mailbox_idle_ttl <= 0:
            raise ValueError("TTLs must be positive")
        if self.mailbox_max_envelopes < 1 or self.mailbox_max_bytes < 1:
            raise ValueError("mailbox quotas must be positive")
        if self.store_max_bytes < 1:
            raise ValueError("the store's byte quota must be positive")
        if not 0 < self.max_frame_size <= MAX_REQUEST_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be 1..{MAX_REQUEST_FRAME_SIZE}")
        if self.frames_per_second <= 0 or self.frame_burst < 1:
            raise ValueError("frame rate and burst must be positive")
        if self.backlogged_frames_per_second <= 0 or self.backlogged_frame_burst < 1:
            raise ValueError("backlogged frame rate and burst must be positive")
        if not 0 < self.flood_refused <= self.flood_window:
            raise ValueError("flood_refused must be 1..flood_window")
        if self.max_connections < 1 or self.max_connections_per_address < 1:
            raise ValueError("connection limits must be positive")
        if self.handshake_timeout <= 0:
            raise ValueError("handshake_timeout must be positive")
        if self.abuse_cooldown < 0:
            raise ValueError("abuse_cooldown must not be negative")
        if self.max_outbox_bytes < 1 or self.max_queued_bytes < 1:
            raise ValueError("queue limits must be positive")
        if self.commit_batch < 1 or self.delivery_window < 1:
            raise ValueError("commit batch and delivery window must be positive")
        if (self.forward_max_in_flight < 1 or self.forward_max_in_flight_per_connection < 1
                or self.forward_max_destinations < 1):
            raise ValueError("forwarding bounds must be positive")
        if self.forwards_per_second_per_address <= 0 or self.forward_burst_per_address < 1:
            raise ValueError("forward rate and burst must be positive")
        if self.forward_timeout <= 0 or self.forward_idle_timeout <= 0:
            raise ValueError("forward timeouts must be positive")

"""Slot settings and costs (design §10): the cover kind, the interval bounds and where a
channel's interval comes from, and what slots cost. Kept apart from `slots`, which runs
them, so that the sender can read a channel's interval without importing the slot loop
(that imports the sender)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Final

from backchannel.client.errors import ClientError
from backchannel.protocol.envelope import BUCKETS, MAILBOX_ID_SIZE
from backchannel.protocol.relayframes import TOKEN_SIZE, Send, encode
from backchannel.protocol.text import escaped

__all__ = [
    "DEFAULT_KEY",
    "DEFAULT_SLOT_INTERVAL",
    "DIRECT_SLOT_FRAME",
    "KIND_COVER",
    "MAX_SLOT_INTERVAL",
    "MIN_SLOT_INTERVAL",
    "SEND_LAG",
    "SLOTS_ENV",
    "SLOT_BUCKET",
    "bytes_per_day",
    "describe_cost",
    "frame_bytes_per_day",
    "interval_key",
    "parse_interval",
    "slot_interval",
    "slot_interval_or_default",
]

# The kind of a cover message (inside the AEAD: the relay never sees it). Client kinds
# are 0x0004 (hello), 0x0005 (move), 0x0006 (fork notice); dialogue kinds start at 0x0100.
KIND_COVER: Final = 0x0008
# Seconds between a direction's slots by default: one envelope every 15 s is 5.9 MB a day
# each way (a 1 KiB bucket), and adds at most 15 s to a FLASH note (design §10: 10–30 s).
DEFAULT_SLOT_INTERVAL: Final = 15.0
# The shortest interval a principal may ask for: a tenth of a second is 885 MB a day each
# way, and is what tests use to keep runs short; faster would exceed the relay's default
# rate limit for one address with a few channels.
MIN_SLOT_INTERVAL: Final = 0.1
# The longest: an hour between slots is 24 envelopes a day, and a FLASH note that may wait
# an hour, beyond which slots hide little that is worth the delay.
MAX_SLOT_INTERVAL: Final = 3600.0
# Every slot envelope that fits it has this size, cover included.
SLOT_BUCKET: Final = BUCKETS[0]
# The SEND frame that carries one slot envelope directly: the envelope, its mailbox id,
# send token and the frame's header (1,082 bytes). A forwarded slot's frame is larger
# (`routing.forward_frame_size`: 2,285 bytes to a 21-character URL).
DIRECT_SLOT_FRAME: Final = len(encode(Send(0, bytes(MAILBOX_ID_SIZE), bytes(TOKEN_SIZE),
                                           bytes(SLOT_BUCKET))))
# Seconds from a slot's start to its send: choosing what to send (a claim, a seal: a few
# milliseconds) happens in between, so its duration does not show at the relay. Shorter
# intervals use a quarter of the interval.
SEND_LAG: Final = 0.05
# The principal's setting with the default interval of its channels, and the prefix of a
# channel's own.
DEFAULT_KEY: Final = "slots"
_CHANNEL_PREFIX: Final = "slots:"
# The environment's default, below the principal's settings ("off" in the test suite).
SLOTS_ENV: Final = "BACKCHANNEL_SLOTS"
_OFF: Final = "off"


def interval_key(channel_id: str) -> str:
    """The setting that holds one channel's interval."""
    return _CHANNEL_PREFIX + channel_id


def parse_interval(text: str, *, source: str = "the slot interval") -> float | None:
    """Seconds between slots, or None for "off".

    Raises:
        ClientError: neither "off" nor a number of seconds within the bounds.
    """
    text = text.strip().lower()
    if text == _OFF:
        return None
    try:
        seconds = float(text.removesuffix("s"))
    except ValueError:
        seconds = math.nan
    if seconds == 0:
        return None  # "0" is "off", as for the line test's --every
    if not MIN_SLOT_INTERVAL <= seconds <= MAX_SLOT_INTERVAL:  # NaN fails this too
        raise ClientError(
            f"{source} must be 'off' or a number of seconds from {MIN_SLOT_INTERVAL:g} to "
            f"{MAX_SLOT_INTERVAL:g}, not {escaped(text)!r}"
        )
    return seconds


def slot_interval(setting: Callable[[str], str], channel_id: str) -> float | None:
    """A channel's interval in seconds (None: slots off), from the first of: its own
    setting, the principal's default, `SLOTS_ENV`, `DEFAULT_SLOT_INTERVAL`.

    Raises:
        ClientError: one of them is set to something that is not an interval.
    """
    for key in (interval_key(channel_id), DEFAULT_KEY):
        if value := setting(key):
            return parse_interval(value, source=f"setting {key!r}")
    if value := os.environ.get(SLOTS_ENV, "").strip():
        return parse_interval(value, source=SLOTS_ENV)
    return DEFAULT_SLOT_INTERVAL


def slot_interval_or_default(setting: Callable[[str], str], channel_id: str) -> float | None:
    """`slot_interval`, with `DEFAULT_SLOT_INTERVAL` in place of a damaged setting: one
    set by hand to nonsense never turns slots off silently (`status` reports it)."""
    try:
        return slot_interval(setting, channel_id)
    except ClientError:
        return DEFAULT_SLOT_INTERVAL


def bytes_per_day(interval: float | None) -> int:
    """Envelope bytes one direction sends a day at `interval` (0 with slots off), counting
    every slot at `SLOT_BUCKET`."""
    if interval is None:
        return 0
    return round(SLOT_BUCKET * 86_400 / interval)


def frame_bytes_per_day(interval: float | None, frames: Sequence[int]) -> int:
    """Request-frame bytes the slots send a day at `interval`, `frames` giving each
    direction's frame per slot (`DIRECT_SLOT_FRAME`, a forward's, or 0 for a direction
    that sends nothing while forwarding is required and impossible)."""
    if interval is None:
        return 0
    return sum(round(frame * 86_400 / interval) for frame in frames)


def describe_cost(interval: float | None, directions: int,
                  frames: Sequence[int] = ()) -> str:
    """What a channel's slots cost, in words (`status`): `directions` is how many relays
    it writes to, `frames` each one's request frame per slot (as `frame_bytes_per_day`;
    empty: all direct)."""
    if interval is None:
        return ("off: envelopes leave as soon as they are queued, so a relay sees when "
                "this side writes (docs/threat-model.md)")
    sent = bytes_per_day(interval) * directions
    text = (f"one {SLOT_BUCKET:,}-byte envelope every {interval:g} s to each of "
            f"{directions} relay(s) while watch or the agent runs: {sent / 1e6:.1f} MB a day "
            f"of envelopes")
    forwarded = [frame for frame in frames if frame > DIRECT_SLOT_FRAME]
    if forwarded:
        total = frame_bytes_per_day(interval, frames)
        text += (f"; {len(forwarded)} of {directions} forwarded through another relay "
                 f"({max(forwarded):,} bytes a slot and a connection of its own, against "
                 f"{DIRECT_SLOT_FRAME:,} direct): {total / 1e6:.1f} MB a day sent in all")
    if held := sum(1 for frame in frames if frame == 0):
        text += (f"; {held} of {directions} send nothing now (forwarding is required and "
                 f"no other relay can forward)")
    return text + "; the counterpart's slots cost as much received at their rate"

"""Which relays of a channel hold which direction (issue 14 §1, docs/threat-model.md).

With two relays or more, the inviter's mailboxes of a channel go on one share of the
invite's relays and the joiner's on the other, so that no single relay holds both
mailboxes of a channel and none can pair them by holding them. Both sides compute the
shares from the invite's relay order alone, so nothing more needs to be said between them.
With one relay, both directions stay on it (there is nowhere else).

The setting `PLACEMENT_SETTING` = "every" puts one's mailboxes on every relay instead (each
side decides for its own): a relay that goes down then costs nothing, at the price that
each relay holds both mailboxes of the channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["PLACEMENT_SETTING", "inviter_share", "joiner_share"]

# "split" (or unset) or "every".
PLACEMENT_SETTING: Final = "relay-placement"


def _split(setting: str) -> bool:
    return setting.strip().lower() != "every"


def inviter_share(urls: Sequence[str], setting: str = "") -> list[str]:
    """The relays, in invite order, where the inviter keeps the channel's own mailboxes:
    every other one from the first (so 1 of 2, 2 of 3, 2 of 4)."""
    unique = list(dict.fromkeys(urls))
    return unique if len(unique) < 2 or not _split(setting) else unique[0::2]


def joiner_share(urls: Sequence[str], setting: str = "") -> list[str]:
    """The relays where the joiner keeps its mailboxes: the others (all with one relay)."""
    unique = list(dict.fromkeys(urls))
    return unique if len(unique) < 2 or not _split(setting) else unique[1::2]

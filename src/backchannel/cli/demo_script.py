"""The demonstration's conversation: two principals, a few sober lines each.

Modelled on the reported 2023-24 strategic channel between Washington and Beijing: lower
the risk of miscalculation, state red lines plainly, object candidly, and agree on the
next in-person round in a neutral city.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["CLOSING", "INVITER", "JOINER", "OPENING", "WHILE_OFFLINE", "Line"]

INVITER: Final = "washington"
JOINER: Final = "beijing"


@dataclass(frozen=True, slots=True)
class Line:
    speaker: str
    text: str


# Exchanged turn by turn, each side online.
OPENING: Final = (
    Line(INVITER, "Thank you for opening this channel. Our aim is to lower the risk of "
                  "miscalculation while the stakes are high."),
    Line(JOINER, "We share that aim. Taiwan is the most sensitive question between us; "
                 "it is a red line that should never be crossed."),
    Line(INVITER, "Understood. To be clear: the United States is not seeking a conflict "
                  "over Taiwan, and our policy has not changed."),
    Line(JOINER, "Noted. We also object to the new export controls on semiconductors; "
                 "cooperation cannot go on while our interests are undercut."),
)

# Sent while the joiner is offline; delivered when it next syncs.
WHILE_OFFLINE: Final = (
    Line(INVITER, "We hear your concern on export controls. Ours is the support reaching "
                  "Russia's war against Ukraine; we should discuss both candidly."),
    Line(INVITER, "Proposal: meet in person in a neutral city midway between our "
                  "capitals. Vienna served us well before."),
)

# After the joiner is back.
CLOSING: Final = (
    Line(JOINER, "Received both. We are ready to discuss both matters candidly. Vienna "
                 "is acceptable; we will propose dates this week."),
    Line(INVITER, "Thank you. We will confirm the dates through this channel."),
)

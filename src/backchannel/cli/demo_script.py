"""The demonstration's conversation: two principals, a few sober lines each.

Modelled on the reported 2023-24 strategic channel between Washington and Beijing: lower
the risk of miscalculation, state red lines plainly, object candidly, and agree on the
next in-person round in a neutral city.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "AGENDA",
    "ANSWER",
    "CLOSING",
    "FLASH_ACK_WITHIN_MS",
    "FLASH_NOTE",
    "HOLDING_REPLY",
    "HOLD_FOR_MS",
    "INVITER",
    "JOINER",
    "NEXT_ROUND",
    "OPENING",
    "PRIORITY_ACK_WITHIN_MS",
    "PRIORITY_NOTE",
    "QUESTION",
    "RECORD_EN",
    "RECORD_TITLE",
    "RECORD_ZH",
    "RED_LINE_TEXT",
    "RED_LINE_TITLE",
    "WHILE_OFFLINE",
    "Line",
]

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


# -- the strategic round: the dialogue kinds, in the article's terms -----------------------

RED_LINE_TITLE: Final = "Taiwan"
RED_LINE_TEXT: Final = "Taiwan is the first red line that must not be crossed."

FLASH_NOTE: Final = Line(
    INVITER, "Reports of an incident between our vessels in the South China Sea. Please "
             "confirm receipt and that your side is looking into it.")
FLASH_ACK_WITHIN_MS: Final = 10 * 60 * 1000
HOLDING_REPLY: Final = "Received. We are establishing the facts; expect an answer within the hour."
HOLD_FOR_MS: Final = 60 * 60 * 1000

# Short enough for the demo to watch it pass.
PRIORITY_NOTE: Final = Line(
    INVITER, "Please acknowledge: our delegation's travel to the next round is booked.")
PRIORITY_ACK_WITHIN_MS: Final = 300

# Asked about the first message sent while the joiner was offline.
QUESTION: Final = ("By 'support', do you mean deliveries by the state, or exports by "
                   "private firms?")
ANSWER: Final = "Both. We will bring specific cases to the next round."

NEXT_ROUND: Final = 2
AGENDA: Final = (
    Line(INVITER, "Taiwan: avoiding miscalculation"),
    Line(INVITER, "Support reaching Russia's war against Ukraine"),
    Line(JOINER, "Export controls on semiconductors"),
)

RECORD_TITLE: Final = "Vienna round: joint statement"
RECORD_EN: Final = ("The two sides held candid, substantive and constructive discussions, and "
                    "agreed to keep this strategic channel of communication open.")
RECORD_ZH: Final = "双方进行了坦诚、实质性、建设性的讨论，同意保持这一战略沟通渠道畅通。"

# A codebook entry the joiner proposes in both languages and sends as a FLASH: only its
# number and the two values travel; each side reads it in its own language.
CODE_NUMBER: Final = 7
CODE_WORD: Final = "BLUE HARBOR"
CODE_EN: Final = "Notice: a test launch at {time} from {place}; it is not directed at you."
CODE_ZH: Final = "通知：{time}将从{place}进行试射，并非针对贵方。"
CODE_VALUES: Final = {"time": "06:00Z", "place": "Jiuquan"}

"""The numbers of the dialogue layer: message kinds, precedence, sizes and bounds.

Dialogue messages travel as ordinary `Message` plaintexts (`docs/protocol.md` §8); their
`kind` says which body they carry. Kind 1 (`MessageKind.NOTE`) carries a `Note`; the
dialogue's own kinds are numbered from 0x0100, as the protocol reserves. Byte layouts and
state machines are in `docs/dialogue.md`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from backchannel.protocol.message import MESSAGE_ID_SIZE

__all__ = [
    "DIALOGUE_KIND_FIRST",
    "HASH_SIZE",
    "ID_SIZE",
    "MAX_ACK_WITHIN_MS",
    "MAX_CODE_NUMBER",
    "MAX_CODE_PARAMETERS",
    "MAX_CODE_WORD_BYTES",
    "MAX_LANGUAGES",
    "MAX_LANGUAGE_TAG_BYTES",
    "MAX_NOTE_TEXT_BYTES",
    "MAX_PARAMETER_NAME_BYTES",
    "MAX_PARAMETER_VALUE_BYTES",
    "MAX_REASON_BYTES",
    "MAX_ROUND",
    "MAX_STATEMENT_BYTES",
    "MAX_TEXT_BYTES",
    "MAX_TIMESTAMP_MS",
    "MAX_TITLE_BYTES",
    "MAX_VERSION",
    "DialogueKind",
    "Precedence",
]

# Every reference to another message is its 16-byte random message id (`docs/protocol.md`
# §8); red lines and records have ids of the same size, drawn at random by their author.
ID_SIZE: Final = MESSAGE_ID_SIZE
# A message's chain hash (SHA-256), which binds a clarification to the exact bytes it asks about.
HASH_SIZE: Final = 32

# The largest body is 64 KiB (`MAX_BODY_SIZE`), but the ratchet header, the message header
# and, on a channel's first message, the PQXDH initiation share the largest envelope: 48 KiB
# of text leaves them more than enough room, and is some twenty pages of prose.
MAX_NOTE_TEXT_BYTES: Final = 48 * 1024
# A question, an answer, a holding reply or a red line is a few paragraphs, not a treatise:
# 8 KiB keeps every such message in the 16 KiB envelope bucket.
MAX_TEXT_BYTES: Final = 8 * 1024
# A title is one line shown in a table: 200 bytes is 50 to 200 characters.
MAX_TITLE_BYTES: Final = 200
# Why an agenda item was declined, or where and when a round might meet: one short paragraph.
MAX_REASON_BYTES: Final = 1024
# An agreed statement in all its languages must fit one message with its signature and ids.
MAX_STATEMENT_BYTES: Final = 48 * 1024
# The six official languages of the United Nations and a few more; a statement with more
# versions than this has stopped being a bilateral record.
MAX_LANGUAGES: Final = 8
# RFC 5646 §4.4.1: implementations should accept language tags of at least 35 characters.
MAX_LANGUAGE_TAG_BYTES: Final = 35
# An acknowledgement deadline further than 30 days away is no longer urgent.
MAX_ACK_WITHIN_MS: Final = 30 * 24 * 3600 * 1000
# Versions of one red line or record, and meeting round numbers, are counted one by one by
# people; a u32 is plenty and a bound stops a peer from making the counter wrap.
MAX_VERSION: Final = 0xFFFF_FFFF
MAX_ROUND: Final = 0xFFFF_FFFF
# 9999-12-31T23:59:59.999Z: any later time cannot be shown as a calendar date.
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999

# A codebook is read aloud and typed under stress: entry numbers have at most four digits.
MAX_CODE_NUMBER: Final = 9999
# A code word is one word or two, not a sentence.
MAX_CODE_WORD_BYTES: Final = 64
# Parameters fill a few blanks (a time, a place, a unit): more makes it a form, not a code.
MAX_CODE_PARAMETERS: Final = 8
# A parameter's name is an identifier; its value is one line (a time, a place name).
MAX_PARAMETER_NAME_BYTES: Final = 32
MAX_PARAMETER_VALUE_BYTES: Final = 200

DIALOGUE_KIND_FIRST: Final = 0x0100


class Precedence(IntEnum):
    """How urgent a note is, in the terms of the Washington-Moscow hotline."""

    ROUTINE = 1
    PRIORITY = 2
    FLASH = 3


class DialogueKind(IntEnum):
    """Message kinds of the dialogue layer (the `kind` field of a `Message`)."""

    ACK = 0x0100
    """The principal acknowledges a note (an act, unlike the automatic receipts)."""
    HOLD = 0x0101
    """Received, cannot answer yet: expect an answer by a given time."""
    CLARIFY = 0x0102
    """A question bound to one message of the other side by id and hash."""
    ANSWER = 0x0103
    """The answer that closes a clarification request."""
    REDLINE = 0x0104
    """A red line declared, or a new version of one."""
    REDLINE_ACK = 0x0105
    """The other side understood one version of a red line (not: agreed to it)."""
    AGENDA_PROPOSE = 0x0106
    """An item proposed for a numbered meeting round."""
    AGENDA_ACCEPT = 0x0107
    """The other side accepts an agenda item."""
    AGENDA_DECLINE = 0x0108
    """The other side declines an agenda item."""
    RECORD_PROPOSE = 0x0109
    """A statement proposed for the record, signed by its proposer."""
    RECORD_SIGN = 0x010A
    """The co-signature that makes a proposed statement an agreed record."""
    LINETEST = 0x010B
    """A line test: the other side's client answers it automatically."""
    LINETEST_REPLY = 0x010C
    """The automatic answer to a line test."""
    CODEBOOK_PROPOSE = 0x010D
    """A codebook entry proposed, or a new version of one."""
    CODEBOOK_ACCEPT = 0x010E
    """The other side accepts one version of a codebook entry."""
    CODEBOOK_WITHDRAW = 0x010F
    """Either side withdraws a codebook entry (every version of it)."""
    CODEBOOK_SEND = 0x0110
    """A codebook message: an agreed entry's number, version and parameter values."""
    TRANSLATION = 0x0111
    """A translation of one message of the other side, made and shared by this side."""
    DUTY_PROPOSE = 0x0112
    """A notification duty (a category and its time rule) proposed, or a new version."""
    DUTY_ACCEPT = 0x0113
    """The other side accepts one version of a notification duty."""
    NOTIFY = 0x0114
    """A notification of an event under an agreed duty, with the event's time."""
    NOTIFY_REQUEST = 0x0115
    """The other side owes a notification of an event under an agreed duty."""

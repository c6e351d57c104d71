"""The dialogue layer: what makes a channel a strategic channel (design §6).

Pure: no I/O and no clock (`now_ms` is a parameter). The client stores every message of a
channel; `Dialogue` is a deterministic fold over them that knows, at any `now_ms`, which
notes await acknowledgement and which are overdue, which clarifications are open, each
side's red lines and what the other side understood, each meeting round's agreed agenda,
each record's signatures, and whether the line is up.

- Sending: build a body (`Note`, `Ack`, `Hold`, ...), `dialogue.check(body, now_ms)`, then
  send `body.encode()` as a message of kind `body.KIND`. Records are signed by
  `Dialogue.propose_record` and `Dialogue.cosign_record`, given the identity key pair.
- Receiving (and for our own messages, once stored): `dialogue.apply(DialogueEvent(...))`.
- Showing: `dialogue.board(now_ms)`; escalating: `dialogue.escalations(now_ms, done)`.
- On the record: `export_record(dialogue.agreed_record(record_id))` and, anywhere,
  `verify_record_file(data)`.

Everything but an agreed record is deniable: no other message carries a signature.
Byte layouts and state machines: `docs/dialogue.md`.
"""

from backchannel.dialogue.agenda import AgendaItem, AgendaRound, AgendaStatus
from backchannel.dialogue.agreed import (
    AgreedRecord,
    MalformedRecordFile,
    MissingCosignature,
    RecordFileError,
    RecordSignature,
    RecordSignatureInvalid,
    RecordTextAltered,
    UnexpectedSigner,
    VerifiedRecord,
    VerifiedSigner,
    export_proposal,
    export_record,
    verify_record_file,
)
from backchannel.dialogue.board import StatusBoard
from backchannel.dialogue.bodies import (
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Body,
    Clarify,
    Hold,
    LineTest,
    LineTestReply,
    Note,
    RecordPropose,
    RecordSign,
    RedLine,
    RedLineAck,
    decode_body,
)
from backchannel.dialogue.clarify import Clarification
from backchannel.dialogue.codebook import (
    CodeEntryStatus,
    CodeEntryVersion,
    CodeEntryView,
    CodeMessage,
)
from backchannel.dialogue.codes import (
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeText,
    render_code_text,
)
from backchannel.dialogue.events import (
    Anomaly,
    DialogueEvent,
    IllegalTransition,
    KnownMessage,
    Side,
)
from backchannel.dialogue.kinds import DialogueKind, Precedence
from backchannel.dialogue.linetest import (
    DEFAULT_LINETEST_EVERY_MS,
    DEFAULT_LINETEST_GRACE_MS,
    LineState,
    LineStatus,
)
from backchannel.dialogue.notify import (
    DutyAccept,
    DutyPropose,
    DutyRule,
    DutyView,
    Notification,
    NotificationStatus,
    Notify,
    NotifyRequest,
)
from backchannel.dialogue.records import RecordStatus, RecordVersion, RecordView
from backchannel.dialogue.redlines import RedLineVersion, RedLineView
from backchannel.dialogue.state import Dialogue
from backchannel.dialogue.statement import LanguageVersion, SignerRole, Statement, statement_hash
from backchannel.dialogue.translations import (
    AddedTranslation,
    Attribution,
    AttributionKind,
    InvalidLanguageTag,
    Languages,
    TextVersion,
    Translate,
    Translation,
    check_bcp47,
)
from backchannel.dialogue.urgent import Escalation, HoldingReply, PendingAck, escalations_due

__all__ = [
    "DEFAULT_LINETEST_EVERY_MS",
    "DEFAULT_LINETEST_GRACE_MS",
    "Ack",
    "AddedTranslation",
    "AgendaAccept",
    "AgendaDecline",
    "AgendaItem",
    "AgendaPropose",
    "AgendaRound",
    "AgendaStatus",
    "AgreedRecord",
    "Anomaly",
    "Answer",
    "Attribution",
    "AttributionKind",
    "Body",
    "Clarification",
    "Clarify",
    "CodeEntryStatus",
    "CodeEntryVersion",
    "CodeEntryView",
    "CodeMessage",
    "CodeText",
    "CodebookAccept",
    "CodebookPropose",
    "CodebookSend",
    "CodebookWithdraw",
    "Dialogue",
    "DialogueEvent",
    "DialogueKind",
    "DutyAccept",
    "DutyPropose",
    "DutyRule",
    "DutyView",
    "Escalation",
    "Hold",
    "HoldingReply",
    "IllegalTransition",
    "InvalidLanguageTag",
    "KnownMessage",
    "LanguageVersion",
    "Languages",
    "LineState",
    "LineStatus",
    "LineTest",
    "LineTestReply",
    "MalformedRecordFile",
    "MissingCosignature",
    "Note",
    "Notification",
    "NotificationStatus",
    "Notify",
    "NotifyRequest",
    "PendingAck",
    "Precedence",
    "RecordFileError",
    "RecordPropose",
    "RecordSign",
    "RecordSignature",
    "RecordSignatureInvalid",
    "RecordStatus",
    "RecordTextAltered",
    "RecordVersion",
    "RecordView",
    "RedLine",
    "RedLineAck",
    "RedLineVersion",
    "RedLineView",
    "Side",
    "SignerRole",
    "Statement",
    "StatusBoard",
    "TextVersion",
    "Translate",
    "Translation",
    "UnexpectedSigner",
    "VerifiedRecord",
    "VerifiedSigner",
    "check_bcp47",
    "decode_body",
    "escalations_due",
    "export_proposal",
    "export_record",
    "render_code_text",
    "statement_hash",
    "verify_record_file",
]

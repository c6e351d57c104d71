"""The public surface of `backchannel.dialogue` is pinned, and the layer stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import backchannel.dialogue as dialogue

PACKAGE = Path(dialogue.__file__).parent


def test_public_names_are_pinned() -> None:
    assert sorted(dialogue.__all__) == sorted(
        [
            "DEFAULT_LINETEST_EVERY_MS",
            "DEFAULT_LINETEST_GRACE_MS",
            "Ack",
            "AddedTranslation",
            "Attribution",
            "AttributionKind",
            "InvalidLanguageTag",
            "Languages",
            "TextVersion",
            "Translate",
            "Translation",
            "check_bcp47",
            "AgendaAccept",
            "AgendaDecline",
            "AgendaItem",
            "AgendaPropose",
            "AgendaRound",
            "AgendaStatus",
            "AgreedRecord",
            "Anomaly",
            "Answer",
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
            "DutyAccept",
            "DutyPropose",
            "DutyRule",
            "DutyView",
            "Notification",
            "NotificationStatus",
            "Notify",
            "NotifyRequest",
            "DialogueEvent",
            "DialogueKind",
            "Escalation",
            "Hold",
            "HoldingReply",
            "IllegalTransition",
            "KnownMessage",
            "LanguageVersion",
            "LineState",
            "LineStatus",
            "LineTest",
            "LineTestReply",
            "MalformedRecordFile",
            "MissingCosignature",
            "Note",
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
            "UnexpectedSigner",
            "VerifiedRecord",
            "VerifiedSigner",
            "decode_body",
            "escalations_due",
            "export_proposal",
            "export_record",
            "statement_hash",
            "render_code_text",
            "verify_record_file",
        ]
    )
    for name in dialogue.__all__:
        assert getattr(dialogue, name) is not None


def test_illegal_transitions_are_local_protocol_errors() -> None:
    from backchannel.protocol.errors import LocalProtocolError

    assert issubclass(dialogue.IllegalTransition, LocalProtocolError)


def test_the_dialogue_layer_does_no_io_and_reads_no_clock() -> None:
    forbidden_modules = {
        "time", "os", "socket", "asyncio", "random", "secrets", "pathlib", "sqlite3",
        "subprocess", "backchannel.client", "backchannel.cli",
    }  # fmt: skip
    forbidden_calls = {"open", "print", "input"}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                names = []
            for name in names:
                assert not any(name == m or name.startswith(m + ".") for m in forbidden_modules), (
                    f"{path.name} imports {name}"
                )
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in forbidden_calls, f"{path.name} calls {node.func.id}"
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("now", "utcnow", "today"), f"{path.name} reads a clock"

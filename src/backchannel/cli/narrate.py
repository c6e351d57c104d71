"""One line for people per dialogue message the counterpart sent: "beijing acknowledged
3f9a2c1e", "washington asks about 77c0d2aa: ...".

Used by `watch` and `sync`, so that acknowledgements, holding replies, answers, red
lines, agenda decisions and record signatures are seen when they arrive, not only on the
board. Receipts, line tests and notes have their own ways of being shown.
"""

from __future__ import annotations

from backchannel.cli.hints import Hint, command_line
from backchannel.cli.output import local_time, short_id, shown
from backchannel.client.records import MessageRecord
from backchannel.dialogue import (
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Clarify,
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    Hold,
    RecordPropose,
    RecordSign,
    RedLine,
    RedLineAck,
    decode_body,
)
from backchannel.dialogue.notify import DutyAccept, DutyPropose, Notify, NotifyRequest
from backchannel.dialogue.translations import Translate
from backchannel.protocol.errors import RemoteProtocolError

__all__ = ["describe"]


def _id(value: bytes) -> str:
    return short_id(value.hex())


def describe(peer: str, record: MessageRecord, hint: Hint = command_line) -> str | None:
    """What the counterpart `peer` did with this message, or None for a kind shown
    elsewhere (notes, receipts, line tests) or a body that does not decode (the fold
    records those as anomalies).

    Args:
        hint: builds the commands suggested (`cli.hints`), with the home in use.
    """
    try:
        body = decode_body(record.kind, bytes.fromhex(record.body))
    except RemoteProtocolError:
        return None
    # Every string below but our own words and ids is the counterpart's.
    peer = shown(peer)
    mine = short_id(record.message_id)
    match body:
        case Ack(message_id=target):
            return f"{peer} acknowledged your note {_id(target)}"
        case Hold(message_id=target, expected_by_ms=by, text=text):
            said = f": {shown(text, multiline=True)}" if text else ""
            return (f"{peer} holds {_id(target)}: received, answer expected by "
                    f"{local_time(by)}{said}")
        case Clarify(target_id=target, question=question):
            return (f"{peer} asks about {_id(target)} (request {mine}): "
                    f"{shown(question, multiline=True)} "
                    f"- to answer, add your answer in quotes to: {hint('answer', peer, mine)}")
        case Answer(request_id=request, text=text):
            return (f"{peer} answered your request {_id(request)}: "
                    f"{shown(text, multiline=True)}")
        case RedLine(redline_id=rid, version=version, title=title):
            return (f"{peer} declared red line {_id(rid)} version {version}: {shown(title)} "
                    f"- acknowledge it: {hint('redline', 'ack', peer, _id(rid))}")
        case RedLineAck(redline_id=rid, version=version):
            return f"{peer} acknowledged (understood) your red line {_id(rid)} version {version}"
        case AgendaPropose(round=number, title=title):
            return f"{peer} proposes for round {number} (item {mine}): {shown(title)}"
        case AgendaAccept(item_id=item):
            return f"{peer} accepted agenda item {_id(item)}"
        case AgendaDecline(item_id=item, reason=reason):
            why = f": {shown(reason, multiline=True)}" if reason else ""
            return f"{peer} declined agenda item {_id(item)}{why}"
        case RecordPropose(record_id=rid, version=version, statement=statement):
            return (f"{peer} proposes record {_id(rid)} version {version}: "
                    f"{shown(statement.title)} "
                    f"- read it: {hint('record', 'show', peer, _id(rid))}")
        case RecordSign(record_id=rid, version=version):
            return f"{peer} co-signed record {_id(rid)} version {version}: it is on the record"
        case CodebookPropose(number=number, code_word=word, version=version):
            return (f"{peer} proposes codebook entry {number} {shown(word)} version {version} "
                    f"- accept it: {hint('codebook', 'accept', peer, str(number))}")
        case CodebookAccept(entry_id=entry, version=version):
            return f"{peer} accepted codebook entry {_id(entry)} version {version}"
        case CodebookWithdraw(entry_id=entry):
            return f"{peer} withdrew codebook entry {_id(entry)}: neither side sends it now"
        case CodebookSend(entry_id=entry):
            return (f"{peer} sent codebook entry {_id(entry)} "
                    f"- read it: {hint('read', peer, mine)}")
        case Translate(target_id=target, translation=t):
            return (f"{peer} shared a {t.language} translation of {_id(target)} "
                    f"({shown(t.by.describe())}) - side by side: "
                    f"{hint('translate', 'show', peer, _id(target))}")
        case DutyPropose(title=title, version=version):
            return (f"{peer} proposes the notification duty {shown(title)} (version "
                    f"{version}: {body.describe()}) - accept it: "
                    f"{hint('duty', 'accept', peer, _id(body.duty_id))}")
        case DutyAccept(duty_id=duty, version=version):
            return f"{peer} accepted notification duty {_id(duty)} version {version}"
        case Notify(text=text, event_at_ms=at):
            return (f"{peer} notifies an event at {local_time(at)}: "
                    f"{shown(text, multiline=True)} - {hint('duty', 'list', peer)}")
        case NotifyRequest(event_at_ms=at):
            return (f"{peer} says you owe a notification of an event at {local_time(at)} "
                    f"(request {mine}) - {hint('duty', 'list', peer)}")
        case _:
            return None

"""Properties of the fold over random conversations: it never raises, an intent that passes
its check never becomes an anomaly, both sides converge, and refolding gives the same state."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backchannel.dialogue import (
    Ack,
    AgendaAccept,
    AgendaDecline,
    AgendaPropose,
    Answer,
    Attribution,
    AttributionKind,
    Body,
    Clarify,
    CodebookAccept,
    CodebookPropose,
    CodebookSend,
    CodebookWithdraw,
    CodeText,
    Dialogue,
    DialogueKind,
    DutyAccept,
    DutyPropose,
    DutyRule,
    Hold,
    IllegalTransition,
    Languages,
    LineTest,
    LineTestReply,
    Note,
    Notify,
    NotifyRequest,
    Precedence,
    RedLine,
    RedLineAck,
    Side,
    Statement,
    Translate,
    Translation,
)
from tests.dialogue.conftest import MINUTE, NAMES, Channel, Sent, other, snapshot

# Red-line and record ids: each side declares and proposes from its own pool (real ids are
# random, so the two sides never pick the same one), and acknowledges or signs from both.
POOLS = {"alice": (b"\x01" * 16, b"\x02" * 16), "bob": (b"\x03" * 16, b"\x04" * 16)}
EVERY_ID = POOLS["alice"] + POOLS["bob"]
# Codebook entries likewise, each with its own number (the local check refuses a number
# another live entry has, which random scripts would otherwise hit all the time).
CODE_POOLS = {"alice": (b"\x05" * 16, b"\x06" * 16), "bob": (b"\x07" * 16, b"\x08" * 16)}
EVERY_CODE = CODE_POOLS["alice"] + CODE_POOLS["bob"]
DUTY_POOLS = {"alice": (b"\x09" * 16, b"\x0a" * 16), "bob": (b"\x0b" * 16, b"\x0c" * 16)}
EVERY_DUTY = DUTY_POOLS["alice"] + DUTY_POOLS["bob"]
OPS = (
    "note", "ack", "hold", "clarify", "answer", "redline", "redline_ack", "agenda",
    "agenda_decide", "record_propose", "record_sign", "linetest", "linetest_reply",
    "code_propose", "code_accept", "code_withdraw", "code_send", "bilingual", "translate",
    "duty_propose", "duty_accept", "notify", "notify_request", "deliver", "advance",
)  # fmt: skip
steps = st.lists(
    # Deliveries are weighted up so that each side often knows what the other said.
    st.tuples(
        st.sampled_from(NAMES), st.sampled_from(OPS + ("deliver",) * 6), st.integers(1, 2**16)
    ),
    min_size=10,
    max_size=60,
)
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pick(sent: list[Sent], n: int) -> Sent | None:
    return sent[n % len(sent)] if sent else None


def _received(channel: Channel, who: str, *kinds: int) -> list[Sent]:
    """The other side's messages `who` has received, of the given kinds (any if none)."""
    me = channel.dialogues[who]
    return [
        s
        for s in channel.sent
        if s.sender != who and me.known(s.message_id) and (not kinds or s.kind in kinds)
    ]


def _intent(channel: Channel, who: str, op: str, n: int) -> Body | None:
    """A body `who` might want to send: usually a sensible one, one time in eight a target
    picked blindly (which its checks are then likely to refuse)."""
    me = channel.dialogues[who]
    blind = n % 8 == 7

    def target(*kinds: int) -> Sent | None:
        return _pick(channel.sent if blind else _received(channel, who, *kinds), n // 8)

    own_id, any_id = POOLS[who][n % 2], EVERY_ID[n % 4]
    match op:
        case "note":
            return Note(Precedence(1 + n % 3), (n % 3) * 5 * MINUTE, f"note {n}")
        case "ack" if note := target(1, DialogueKind.CODEBOOK_SEND):
            return Ack(note.message_id)
        case "hold" if held := target(1, DialogueKind.CLARIFY, DialogueKind.CODEBOOK_SEND):
            return Hold(held.message_id, channel.now_ms + (n % 30 + 1) * MINUTE)
        case "clarify" if asked := target():
            return Clarify(asked.message_id, asked.message_hash, f"question {n}?")
        case "answer" if request := target(DialogueKind.CLARIFY):
            return Answer(request.message_id, f"answer {n}")
        case "redline":
            version = me.next_redline_version(own_id) + (1 if blind else 0)
            return RedLine(own_id, version, "title", f"text {n}")
        case "redline_ack":
            red_line = me.red_line(any_id)
            version = red_line.latest.version if red_line and not blind else 1 + n % 3
            return RedLineAck(any_id, version)
        case "agenda":
            return AgendaPropose(1 + n % 2, f"item {n}")
        case "agenda_decide" if proposal := target(DialogueKind.AGENDA_PROPOSE):
            item = me.agenda_item(proposal.message_id)
            round_number = item.round if item and not blind else 1 + n % 3
            if n % 2:
                return AgendaAccept(round_number, proposal.message_id)
            return AgendaDecline(round_number, proposal.message_id, "no")
        case "record_propose":
            statement = Statement.single(f"record {n}", f"text {n}")
            return me.propose_record(channel.keys[who], own_id, statement, channel.now_ms)
        case "record_sign" if view := me.record(any_id):
            entry = view.versions[n % len(view.versions)] if blind else view.latest
            return me.cosign_record(
                channel.keys[who], any_id, entry.version, entry.statement_hash, channel.now_ms
            )
        case "linetest":
            return LineTest()
        case "linetest_reply" if test := target(DialogueKind.LINETEST):
            return LineTestReply(test.message_id)
        case "code_propose":
            code_id = CODE_POOLS[who][n % 2]
            version = me.next_codebook_version(code_id) + (1 if blind else 0)
            number = 1 + EVERY_CODE.index(code_id)
            texts = (CodeText("en", f"at {{time}} {n}"), CodeText("zh-Hans", f"{{time}} {n}"))
            return CodebookPropose(code_id, version, number, f"WORD {n}", texts, ("time",))
        case "code_accept" if entry := me.codebook_entry(EVERY_CODE[n % 4]):
            version = entry.latest.version if not blind else 1 + n % len(entry.versions)
            return CodebookAccept(entry.entry_id, version)
        case "code_withdraw":
            return CodebookWithdraw(EVERY_CODE[n % 4])
        case "code_send" if entry := me.codebook_entry(EVERY_CODE[n % 4]):
            current = entry.current
            version = current.version if current and not blind else 1 + n % len(entry.versions)
            return CodebookSend(entry.entry_id, version, (f"{n}Z",))
        case "bilingual":
            by = Attribution(AttributionKind(1 + n % 3), "" if n % 3 == 0 else f"T{n}")
            block = Languages("en", (Translation("zh-Hans", by, f"笔记 {n}"),), n % 2)
            return Note(Precedence(1 + n % 3), (n % 2) * 5 * MINUTE, f"note {n}", block)
        case "translate" if source := target(1, DialogueKind.CLARIFY, DialogueKind.REDLINE):
            titled = source.kind == DialogueKind.REDLINE
            by = Attribution(AttributionKind.MACHINE, "tool")
            text = Translation("ru", by, f"перевод {n}", "заголовок" if titled else "")
            return Translate(source.message_id, source.message_hash, text)
        case "duty_propose":
            duty_id = DUTY_POOLS[who][n % 2]
            version = me.next_duty_version(duty_id) + (1 if blind else 0)
            rule = DutyRule(1 + n % 2)
            return DutyPropose(duty_id, version, rule, (1 + n % 5) * MINUTE, f"duty {n}")
        case "duty_accept" if duty := me.duty(EVERY_DUTY[n % 4]):
            version = duty.latest.version if not blind else 1 + n % len(duty.versions)
            return DutyAccept(duty.duty_id, version)
        case "notify" if duty := me.duty(EVERY_DUTY[n % 4]):
            current = duty.current
            version = current.version if current and not blind else 1 + n % len(duty.versions)
            owed = [x for x in me.notifications() if x.requested and x.owed_by is Side.OURS
                    and x.notified_by is None and x.duty_id == duty.duty_id]  # fmt: skip
            request = owed[n % len(owed)].message_id if owed and n % 2 else bytes(16)
            event = channel.now_ms + ((n % 7) - 3) * MINUTE
            return Notify(duty.duty_id, version, event, f"event {n}", request)
        case "notify_request" if duty := me.duty(EVERY_DUTY[n % 4]):
            current = duty.current
            version = current.version if current and not blind else 1 + n % len(duty.versions)
            return NotifyRequest(duty.duty_id, version, channel.now_ms - (n % 3) * MINUTE)
    return None


def play(channel: Channel, script: list[tuple[str, str, int]]) -> int:
    """Run a script; returns how many intents were sent."""
    sent = 0
    for who, op, n in script:
        if op == "deliver":
            assert channel.deliver(who, 1 + n % 3) == []
            continue
        if op == "advance":
            channel.advance((n % 20) * MINUTE)
            continue
        try:
            body = _intent(channel, who, op, n)
            if body is None:
                continue
            channel.send(who, body, deliver=False)  # checks, then stores on the sender's side
        except IllegalTransition:
            continue
        sent += 1
    for who in NAMES:
        assert channel.deliver(who) == []
    return sent


def _neutral(value: Any, me: str, key: str = "") -> Any:
    """A board as a neutral observer sees it: sides named, receive times reduced to 'when
    known', lists in a canonical order."""
    if key == "withdrawn_by":
        return sorted(me if v == "ours" else other(me) for v in value)
    if isinstance(value, dict):
        renamed = {
            "awaiting_their_ack": f"awaiting_ack_from_{other(me)}",
            "awaiting_our_ack": f"awaiting_ack_from_{me}",
        }
        return {renamed.get(k, k): _neutral(v, me, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [_neutral(v, me) for v in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if key.endswith("_at_ms") and key not in ("sent_at_ms", "worry_at_ms"):
        return value is not None
    if value in ("ours", "theirs") and key in (
        "owner", "sent_by", "proposed_by", "asked_by", "translated_by", "owed_by"
    ):  # fmt: skip
        return me if value == "ours" else other(me)
    return value


def neutral_board(channel: Channel, who: str) -> dict[str, Any]:
    board = channel.dialogues[who].board(channel.now_ms).to_dict()
    for key in ("now_ms", "last_heard_from_ms", "line", "anomalies"):
        del board[key]
    return _neutral(board, who)  # type: ignore[no-any-return]


@SETTINGS
@given(steps)
def test_checked_intents_never_become_anomalies_and_both_sides_converge(
    script: list[tuple[str, str, int]],
) -> None:
    channel = Channel()
    play(channel, script)
    assert channel.alice.anomalies == () and channel.bob.anomalies == ()
    assert neutral_board(channel, "alice") == neutral_board(channel, "bob")


@SETTINGS
@given(steps)
def test_refolding_the_stored_messages_gives_the_same_state(
    script: list[tuple[str, str, int]],
) -> None:
    channel = Channel()
    play(channel, script)
    for who in NAMES:
        live = channel.dialogues[who]
        again = Dialogue.fold(live.ours, live.theirs, channel.logs[who])
        assert again.board(channel.now_ms) == live.board(channel.now_ms)


@SETTINGS
@given(steps, st.lists(st.tuples(st.integers(0, 2**16), st.binary(max_size=80)), max_size=12))
def test_a_hostile_peer_never_crashes_the_fold_nor_changes_state_by_breaking_rules(
    script: list[tuple[str, str, int]], attacks: list[tuple[int, bytes]]
) -> None:
    channel = Channel()
    play(channel, script)
    kinds = [1, *(int(k) for k in DialogueKind)]
    for n, noise in attacks:
        # Replay a real message's body under a random kind, or mutate it, or send noise.
        model = channel.sent[n % len(channel.sent)] if channel.sent else None
        body = noise
        if model is not None and n % 3:
            body = bytearray(model.body)
            if body and n % 3 == 2:
                body[n % len(body)] ^= 1 + n % 255
            body = bytes(body)
        kind = model.kind if model is not None and n % 2 else kinds[n % len(kinds)]
        before = snapshot(channel.alice, channel.now_ms)
        anomaly = channel.inject("alice", kind, body)
        if anomaly is not None:
            assert anomaly.side is Side.THEIRS
            assert snapshot(channel.alice, channel.now_ms) == before


def _long_script(seed: int, length: int = 150) -> list[tuple[str, str, int]]:
    rnd = random.Random(seed)
    weighted = OPS + ("deliver",) * 6
    return [(rnd.choice(NAMES), rnd.choice(weighted), rnd.randint(1, 2**16)) for _ in range(length)]


@pytest.mark.parametrize("seed", range(40))
def test_long_random_conversations_converge_without_anomalies(seed: int) -> None:
    channel = Channel()
    sent = play(channel, _long_script(seed))
    assert sent > 25
    assert channel.alice.anomalies == () and channel.bob.anomalies == ()
    assert neutral_board(channel, "alice") == neutral_board(channel, "bob")
    for who in NAMES:
        live = channel.dialogues[who]
        again = Dialogue.fold(live.ours, live.theirs, channel.logs[who])
        assert again.board(channel.now_ms) == live.board(channel.now_ms)


# Agenda-heavy scripts: both sides propose and decide often, and deliveries lag, so each side
# often stores its own proposals before the other's (their local orders then differ).
agenda_steps = st.lists(
    st.tuples(
        st.sampled_from(NAMES),
        st.sampled_from(("agenda", "agenda", "agenda_decide", "deliver", "advance", "note")),
        st.integers(1, 2**16),
    ),
    min_size=6,
    max_size=50,
)


def ordered_agenda(dialogue: Dialogue, me: str) -> list[Any]:
    """Every round's items and agreed agenda, order kept, sides named neutrally."""
    return [
        (
            r.round,
            [
                (i.item_id, i.title, me if i.proposed_by is Side.OURS else other(me), i.status)
                for i in r.items
            ],
            [i.item_id for i in r.agreed],
        )
        for r in dialogue.agenda_rounds()
    ]


def ordered_next_round(channel: Channel, who: str) -> Any:
    """The board's next round as JSON, its lists in the order the board gives them."""
    board = channel.dialogues[who].board(channel.now_ms).to_dict()
    nxt = board["next_round"]
    if nxt is None:
        return None
    return {
        "round": nxt["round"],
        "agreed": nxt["agreed"],
        "items": [(i["item_id"], i["status"], i["sent_at_ms"]) for i in nxt["items"]],
    }


@SETTINGS
@given(agenda_steps)
def test_both_sides_list_the_agenda_in_the_same_order(
    script: list[tuple[str, str, int]],
) -> None:
    channel = Channel()
    play(channel, script)
    assert ordered_agenda(channel.alice, "alice") == ordered_agenda(channel.bob, "bob")
    assert ordered_next_round(channel, "alice") == ordered_next_round(channel, "bob")
    # And the order is the canonical one, whatever order the messages were stored in.
    for who in NAMES:
        for r in channel.dialogues[who].agenda_rounds():
            keys = [(i.sent_at_ms, i.item_id) for i in r.items]
            assert keys == sorted(keys)


def test_proposals_crossing_in_flight_are_listed_alike() -> None:
    """Both propose before hearing from the other, then accept each other's item."""
    channel = Channel()
    mine = channel.send("alice", AgendaPropose(1, "Taiwan"), deliver=False)
    channel.advance(MINUTE)
    theirs = channel.send("bob", AgendaPropose(1, "Exports"), deliver=False)
    assert channel.deliver("alice") == [] and channel.deliver("bob") == []
    channel.send("alice", AgendaAccept(1, theirs.message_id))
    channel.send("bob", AgendaAccept(1, mine.message_id))
    for dialogue in (channel.alice, channel.bob):
        agreed = [i.item_id for i in dialogue.agenda(1).agreed]
        assert agreed == [mine.message_id, theirs.message_id]

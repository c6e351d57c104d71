"""Pure relay logic: capabilities, quotas, the subscription window, rate limits."""

from __future__ import annotations

from backchannel.protocol.envelope import Envelope
from backchannel.protocol.relayframes import ErrorCode, token_hash
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import (
    Subscription,
    authorized,
    deposit_refusal,
    envelope_refusal,
    expiry_time,
)
from backchannel.relay.ratelimit import AddressBook, ConnectionGuard, TokenBucket, Verdict


def test_authorized_only_with_the_matching_token() -> None:
    token = b"\x01" * 32
    assert authorized(token_hash(token), token)
    assert not authorized(token_hash(token), b"\x02" * 32)


def test_quota_refusals() -> None:
    assert deposit_refusal(2, 100, 50, 3, 1000) is None
    assert deposit_refusal(3, 100, 50, 3, 1000) == ErrorCode.QUOTA_EXCEEDED
    assert deposit_refusal(0, 990, 50, 3, 1000) == ErrorCode.QUOTA_EXCEEDED


def test_envelope_must_be_addressed_to_the_mailbox() -> None:
    mine, other = b"\x01" * 16, b"\x02" * 16
    env = Envelope(mine, b"\x00" * 1007).encode()
    assert envelope_refusal(mine, env) is None
    assert envelope_refusal(other, env) == ErrorCode.BAD_ENVELOPE
    assert envelope_refusal(mine, env[:-1]) == ErrorCode.BAD_ENVELOPE


def test_expiry_time() -> None:
    assert expiry_time(1000.5, 60) == 1060


def test_subscription_pushes_contiguous_runs_within_the_window() -> None:
    sub = Subscription(window=3)
    assert sub.offer([1, 2]) == []  # not yet backfilled: the store is read first
    mark = sub.begin_backfill()
    assert sub.accept_backfill([1, 2], more=False, mark=mark) == [1, 2]
    assert not sub.needs_backfill
    assert sub.offer([3, 4]) == [3]  # window of 3 is full after seq 3
    assert sub.needs_backfill and sub.room == 0
    assert sub.on_ack((1, 2))  # room again, and seq 4 is waiting in the store
    mark = sub.begin_backfill()
    assert sub.accept_backfill([3, 4], more=False, mark=mark) == [4]
    assert sub.offer([6]) == []  # a gap (5 went to another node's reader?): read the store
    assert sub.needs_backfill


def test_backfill_racing_a_commit_reads_again() -> None:
    sub = Subscription(window=10)
    mark = sub.begin_backfill()
    sub.offer([1])  # committed while the read was in flight
    assert sub.accept_backfill([], more=False, mark=mark) == []
    assert sub.needs_backfill  # the read may have missed seq 1


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert bucket.full(10.0)


def test_connection_guard_refuses_then_closes() -> None:
    guard = ConnectionGuard(RelayLimits(frames_per_second=1, frame_burst=1,
                                        flood_window=4, flood_refused=2,
                                        max_malformed_frames=2), 0.0)
    assert guard.on_frame(0.0) is Verdict.ACCEPT
    assert guard.on_frame(0.0) is Verdict.REFUSE
    assert guard.on_frame(0.0) is Verdict.CLOSE
    assert guard.on_malformed() is Verdict.REFUSE
    assert guard.on_malformed() is Verdict.CLOSE


def test_address_book_bounds_connections_creates_and_memory() -> None:
    limits = RelayLimits(max_connections_per_address=1, create_burst_per_address=1,
                         creates_per_second_per_address=0.001, max_tracked_addresses=2)
    book = AddressBook(limits, 0.0)
    assert book.may_connect("a")
    book.connected("a")
    assert not book.may_connect("a")
    book.disconnected("a")
    assert book.may_connect("a")
    assert book.may_create("a", 0.0) and not book.may_create("a", 0.0)
    book.may_create("b", 0.0)
    book.may_create("c", 0.0)
    assert len(book._buckets) == 2  # "a" was forgotten


def test_limits_validate() -> None:
    import pytest

    with pytest.raises(ValueError):
        RelayLimits(envelope_ttl=0)
    with pytest.raises(ValueError):
        RelayLimits(max_frame_size=10**9)


def test_rules_decide_from_the_row_alone() -> None:
    from backchannel.relay.mailbox import (
        MAX_SEQ,
        MailboxState,
        ack,
        create,
        delete,
        deposit,
        fetch_batch,
        fetch_refusal,
        seq_refusal,
        subscribe,
    )

    send, receive = b"\x01" * 32, b"\x02" * 32
    limits = RelayLimits(mailbox_max_envelopes=2, store_max_bytes=1_500)
    made = create(None, token_hash(send), token_hash(receive), 10.9)
    assert made.change is not None and made.change.created and made.refusal is None
    row = made.change.row
    assert row == MailboxState(token_hash(send), token_hash(receive), last_active=10)
    assert create(row, b"", b"", 11).refusal == ErrorCode.MAILBOX_EXISTS
    stored = deposit(row, send, 1_000, 20.0, limits, store_bytes=0)
    assert stored.answer == 1 and stored.change is not None
    assert stored.change.stored is not None and stored.change.store_bytes == 1_000
    assert stored.change.stored.expires_at == int(20.0 + limits.envelope_ttl)
    row = stored.change.row
    assert row is not None and (row.next_seq, row.count, row.size) == (2, 1, 1_000)
    assert deposit(row, receive, 10, 21, limits, 0).refusal == ErrorCode.UNAUTHORIZED
    assert deposit(row, send, 600, 21, limits, 1_000).refusal == ErrorCode.STORE_FULL
    assert deposit(None, send, 1, 21, limits, 0).refusal == ErrorCode.UNAUTHORIZED
    assert subscribe(row, receive, 30).answer == 1
    acked = ack(row, receive, (1, 1, 5), {1: 1_000}, 40)
    assert acked.answer == 1 and acked.change is not None
    assert acked.change.removed == (1,) and acked.change.store_bytes == -1_000
    assert ack(row, receive, (2**63,), {}, 40).refusal == ErrorCode.MALFORMED
    assert ack(row, send, (1,), {}, 40).refusal == ErrorCode.UNAUTHORIZED
    gone = delete(row, receive)
    assert gone.change is not None and gone.change.dropped and gone.change.store_bytes == -1_000
    assert seq_refusal((0, MAX_SEQ)) is None
    assert seq_refusal((-1,)) == seq_refusal((MAX_SEQ + 1,)) == ErrorCode.MALFORMED
    assert fetch_refusal(0, 0) == ErrorCode.MALFORMED
    rows = [(1, b"a" * 10), (2, b"b" * 10), (3, b"c" * 10)]
    assert [d.seq for d in fetch_batch(rows, 2, 100)[0]] == [1, 2]
    assert fetch_batch(rows, 2, 100)[1] is True
    assert [d.seq for d in fetch_batch(rows, 5, 15)[0]] == [1]
    assert fetch_batch(rows[:1], 5, 1) == (fetch_batch(rows[:1], 5, 100)[0], False)


def test_store_byte_quota_must_be_positive() -> None:
    import pytest

    with pytest.raises(ValueError, match="byte quota"):
        RelayLimits(store_max_bytes=0)

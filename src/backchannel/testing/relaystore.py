"""An in-memory relay store: the reference the SQLite and PostgreSQL backends are held to.

It applies the same rules (`backchannel.relay.mailbox`) through the same `decide`, op after
op in arrival order, and group-commits like the real backends: `submit` queues, the batch
runs on the next turn of the event loop, and futures resolve (and the listener hears) only
after the whole batch is applied. It keeps nothing across processes; use it in tests of
code built on the relay, and in the contract tests every backend must pass.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from backchannel.protocol.relayframes import ErrorCode
from backchannel.relay import mailbox
from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import Change, MailboxState
from backchannel.relay.metrics import RelayMetrics
from backchannel.relay.store.base import (
    Batch,
    Op,
    Refused,
    RelayStore,
    StoreUnavailable,
    SweepResult,
    acked_seqs,
    decide,
    op_failure,
)

__all__ = ["MemoryRelayStore"]

# Envelopes of one mailbox: seq -> (expires_at, body), in seq order (dicts keep insertion
# order and seqs only grow).
_Envelopes = dict[int, tuple[int, bytes]]


class MemoryRelayStore(RelayStore):
    """Relay storage in dictionaries, with the rules and answers of the durable backends.

    Args:
        limits: quotas and TTLs (the defaults when None).
        metrics: where commit latency is recorded.

    Attributes:
        mailboxes: every mailbox's row, by id (for assertions).
        envelopes: every mailbox's envelopes, seq -> (expires_at, body), in seq order.
        store_bytes: envelope bytes stored, all mailboxes (the store-wide quota's count).
    """

    def __init__(self, limits: RelayLimits | None = None,
                 metrics: RelayMetrics | None = None) -> None:
        super().__init__(limits if limits is not None else RelayLimits(), metrics)
        self.mailboxes: dict[bytes, MailboxState] = {}
        self.envelopes: dict[bytes, _Envelopes] = {}
        self.store_bytes = 0
        self._pending: list[Op] = []
        self._scheduled = False

    async def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._commit()
        self._closed = True

    def _enqueue(self, op: Op) -> None:
        self._pending.append(op)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._commit)

    def _drain(self) -> list[Op]:
        ops, self._pending = self._pending, []
        return ops

    def _commit(self) -> None:
        self._scheduled = False
        while self._pending and not self.failed.is_set():
            ops = self._pending[: self.limits.commit_batch]
            del self._pending[: len(ops)]
            batch = Batch(ops)
            try:
                self._run(batch)
            except BaseException as exc:  # the "writer" died: say so, as the backends do
                batch.fail_all()
                self._resolve(batch, batch.elapsed)
                self._fatal(exc)
                return
            self._resolve(batch, batch.elapsed)

    def _run(self, batch: Batch) -> None:
        for op in batch.ops:
            # The savepoint: what this op may touch, put back if it fails half-way.
            mid = op.mailbox_id
            held = self.envelopes.get(mid)
            saved = (self.mailboxes.get(mid), None if held is None else dict(held),
                     self.store_bytes)
            try:
                self._apply(batch, op)
            except Exception as exc:  # one op fails alone, as on the real backends
                self._restore(mid, *saved)
                batch.fail(op, op_failure(exc, ()))

    def _restore(self, mid: bytes, row: MailboxState | None, held: _Envelopes | None,
                 store_bytes: int) -> None:
        if row is None:
            self.mailboxes.pop(mid, None)
        else:
            self.mailboxes[mid] = row
        if held is None:
            self.envelopes.pop(mid, None)
        else:
            self.envelopes[mid] = held
        self.store_bytes = store_bytes

    def _apply(self, batch: Batch, op: Op) -> None:
        mid = op.mailbox_id
        row = self.mailboxes.get(mid)
        held = self.envelopes.get(mid, {})
        present = {seq: len(held[seq][1]) for seq in acked_seqs(op) if seq in held}
        decision = decide(op, row, present, self.limits, self.store_bytes)
        if decision.change is not None:
            self._write(mid, op, decision.change)
        batch.answer(op, decision)

    def _write(self, mid: bytes, op: Op, change: Change) -> None:
        """Apply `change`; called only with changes `decide` returned, so it cannot fail."""
        if change.dropped:
            self.mailboxes.pop(mid, None)
            self.envelopes.pop(mid, None)
        elif change.row is not None:
            self.mailboxes[mid] = change.row
        if change.stored is not None:
            body: bytes = op.envelope  # type: ignore[union-attr]
            self.envelopes.setdefault(mid, {})[change.stored.seq] = (
                change.stored.expires_at, body)
        held = self.envelopes.get(mid)
        for seq in change.removed:
            if held is not None:
                held.pop(seq, None)
        self.store_bytes += change.store_bytes

    async def _read_after(self, mailbox_id: bytes, receive_token: bytes | None,
                          after_seq: int, count: int,
                          now: float) -> list[tuple[int, bytes]]:
        row = self.mailboxes.get(mailbox_id)
        if receive_token is not None and (
                row is None or not mailbox.authorized(row.receive_hash, receive_token)):
            raise Refused(ErrorCode.UNAUTHORIZED)
        out: list[tuple[int, bytes]] = []
        for seq, (expires_at, body) in self.envelopes.get(mailbox_id, {}).items():
            if seq > after_seq and not mailbox.expired(expires_at, now):
                out.append((seq, body))
                if len(out) == count:
                    break
        return out

    async def sweep(self, now: float) -> SweepResult:
        if self._closed:
            raise StoreUnavailable("the relay store is closed")
        budget = self.limits.sweep_batch
        gone = 0
        for mid, held in self.envelopes.items():
            for seq in [s for s, (e, _) in held.items() if mailbox.expired(e, now)][:budget - gone]:
                _, body = held.pop(seq)
                row = self.mailboxes[mid]
                self.mailboxes[mid] = _shrunk(row, len(body))
                self.store_bytes -= len(body)
                gone += 1
            if gone >= budget:
                break
        idle = [mid for mid, row in self.mailboxes.items()
                if mailbox.idle(row, now, self.limits.mailbox_idle_ttl)][:budget]
        for mid in idle:
            del self.mailboxes[mid]
            self.envelopes.pop(mid, None)
        self.metrics.expired.inc(gone)
        return SweepResult(gone, len(idle))

    async def healthy(self) -> bool:
        return not self._closed and not self.failed.is_set()


def _shrunk(row: MailboxState, size: int) -> MailboxState:
    return replace(row, count=row.count - 1, size=row.size - size)

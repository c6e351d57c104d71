"""A batch applied in memory first: the rows it touches, changed op by op, then written net.

A backend whose every statement costs a network round trip (PostgreSQL) reads the rows of
a whole batch at once, applies the rules (`decide`) op after op in arrival order to this
overlay, exactly as it would one statement at a time, and then writes only the net result
in a few set-based statements. The answers are those of applying the ops one by one; the
cost is a handful of round trips per batch instead of several per op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backchannel.relay.limits import RelayLimits
from backchannel.relay.mailbox import Change, Decision, MailboxState
from backchannel.relay.store.base import DepositOp, Op, acked_seqs, decide

__all__ = ["NetWrites", "Overlay"]


@dataclass(slots=True)
class NetWrites:
    """What a batch leaves behind, in the order a backend writes it.

    Attributes:
        cleared: mailboxes whose envelopes from before the batch are all deleted.
        acked: ``(mailbox_id, seq)`` of envelopes from before the batch that acks deleted.
        gone: mailboxes that existed before the batch and do not after it.
        updated: rows that existed before the batch and changed (all fields written).
        created: rows that did not exist before the batch and do after it.
        inserted: envelopes stored by the batch and still there:
            ``(mailbox_id, seq, expires_at, body)``.
        store_bytes: the change of the store-wide byte total.
    """

    cleared: list[bytes] = field(default_factory=list)
    acked: list[tuple[bytes, int]] = field(default_factory=list)
    gone: list[bytes] = field(default_factory=list)
    updated: dict[bytes, MailboxState] = field(default_factory=dict)
    created: dict[bytes, MailboxState] = field(default_factory=dict)
    inserted: list[tuple[bytes, int, int, bytes]] = field(default_factory=list)
    store_bytes: int = 0


class Overlay:
    """The rows one batch reads and writes, kept in memory while the batch is decided.

    Args:
        rows: every mailbox the batch names, as stored before it (None: no such mailbox).
        sizes: size of each envelope an ack in the batch names, as stored before it.
        limits: quotas and TTLs.
        store_bytes: envelope bytes in the whole store before the batch.
    """

    def __init__(self, rows: dict[bytes, MailboxState | None],
                 sizes: dict[bytes, dict[int, int]], limits: RelayLimits,
                 store_bytes: int) -> None:
        self._before = dict(rows)
        self._rows = rows
        self._sizes = sizes
        self._limits = limits
        self._store_bytes = store_bytes
        self._net = NetWrites()
        self._cleared: set[bytes] = set()
        self._new: dict[bytes, dict[int, tuple[int, bytes]]] = {}

    def apply(self, op: Op) -> Decision:
        """Decide `op` by the rules against the overlay, and apply its change to it."""
        mid = op.mailbox_id
        held = self._sizes.get(mid, {})
        present = {seq: held[seq] for seq in acked_seqs(op) if seq in held}
        decision = decide(op, self._rows[mid], present, self._limits, self._store_bytes)
        if decision.change is not None:
            self._note(mid, op, decision.change)
        return decision

    def _note(self, mid: bytes, op: Op, change: Change) -> None:
        self._store_bytes += change.store_bytes
        self._net.store_bytes += change.store_bytes
        new = self._new.setdefault(mid, {})
        held = self._sizes.setdefault(mid, {})
        if change.dropped:
            self._rows[mid] = None
            self._cleared.add(mid)
            new.clear()
            held.clear()
            return
        if change.row is not None:
            self._rows[mid] = change.row
        if change.stored is not None:
            assert isinstance(op, DepositOp)
            new[change.stored.seq] = (change.stored.expires_at, op.envelope)
            held[change.stored.seq] = len(op.envelope)
        for seq in change.removed:
            del held[seq]
            if new.pop(seq, None) is None and mid not in self._cleared:
                self._net.acked.append((mid, seq))

    def net(self) -> NetWrites:
        """The writes that leave the store as if every op had been applied in turn."""
        net = self._net
        net.cleared = sorted(self._cleared)
        for mid, after in self._rows.items():
            before = self._before[mid]
            if before is not None and after is None:
                net.gone.append(mid)
            elif before is not None and after is not None and (
                    after != before or mid in self._cleared):
                net.updated[mid] = after
            elif before is None and after is not None:
                net.created[mid] = after
        for mid, new in self._new.items():
            net.inserted.extend((mid, seq, expires_at, body)
                                for seq, (expires_at, body) in new.items())
        return net

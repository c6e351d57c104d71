"""Our pending invites (with their one-time prekeys), the invites we accepted, and the
claims on our invites by someone other than their first joiner."""

from __future__ import annotations

from typing import Final

from backchannel.client.keystore import Keystore
from backchannel.client.records import InviteClaimRecord, InviteRecord, dump, load

__all__ = ["InviteRepository"]

_PENDING: Final = "invite"
_ACCEPTED: Final = "accepted"
_CLAIM: Final = "invite_claim"


class InviteRepository:
    """Invites of one principal's store; ids are hex, as in the records."""

    def __init__(self, store: Keystore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return f"InviteRepository({self._store!r})"

    def pending(self) -> list[InviteRecord]:
        """Invites we made that nobody has taken up yet, oldest first."""
        return [load(InviteRecord, raw) for _, raw in self._store.all(_PENDING)]

    def add(self, record: InviteRecord) -> None:
        self._store.put(_PENDING, bytes.fromhex(record.invite_id), dump(record))

    def spend(self, invite_id: str) -> None:
        """The invite was taken up: its one-time prekey goes with it."""
        self._store.delete(_PENDING, bytes.fromhex(invite_id))

    def was_accepted(self, invite_id: str) -> bool:
        """True when we already joined with this (their) invite."""
        return self._store.get(_ACCEPTED, bytes.fromhex(invite_id)) is not None

    def mark_accepted(self, invite_id: str) -> None:
        self._store.put(_ACCEPTED, bytes.fromhex(invite_id), b"1")

    def record_claim(self, payload: bytes, claim: InviteClaimRecord) -> bool:
        """Keep a claim on a spent invite, once per claiming payload (a relay may deliver
        it again). Inside the caller's transaction.

        Returns:
            True if it is new.
        """
        key = self._store.index(b"invite claim", payload)
        if self._store.get(_CLAIM, key) is not None:
            return False
        self._store.put(_CLAIM, key, dump(claim))
        return True

    def claims(self) -> list[InviteClaimRecord]:
        """Every claim on a spent invite, oldest first. Kept for good: an alarm."""
        return [load(InviteClaimRecord, raw) for _, raw in self._store.all(_CLAIM)]

    def delete_claims(self, channel_id: str) -> None:
        """Forget the claims on the invite of a channel being removed."""
        for key, raw in self._store.all(_CLAIM):
            if load(InviteClaimRecord, raw).channel_id == channel_id:
                self._store.delete(_CLAIM, key)

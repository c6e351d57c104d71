"""Agreed records: statements proposed by one side and co-signed by the other
(`docs/dialogue.md`, "Agreed records"). The only part of the dialogue that is signed.

State machine of one version of a record (the record's owner is the side that proposed v1)::

    (none) --RECORD_PROPOSE v1 by S, signed--> v1 proposed, owner S
    vN     --RECORD_PROPOSE vN+1 by the owner, signed--> vN+1 proposed (vN superseded
           unless it was already agreed)
    vK proposed --RECORD_SIGN vK by the other side, hash and signature valid--> vK agreed

Illegal: a first version other than 1; a version that does not follow the latest; a new
version by the side that does not own the record; a proposal or co-signature whose
signature does not verify; co-signing an unknown record or version, one's own proposal, a
version already co-signed, or with a statement hash other than the proposal's. This side
may co-sign only the latest version ("the record was changed after it was proposed"). A
co-signature of an older version *from the other side* makes that version agreed: it was
signed before the newer version arrived, the file it yields verifies, and both folds must
agree on it.

Only `RecordBook.propose` and `RecordBook.cosign` use the identity's secret key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum

from backchannel.dialogue.agreed import AgreedRecord, RecordSignature
from backchannel.dialogue.bodies import RecordPropose, RecordSign
from backchannel.dialogue.events import DialogueEvent, IllegalTransition, Side, short_id
from backchannel.dialogue.statement import (
    SignerRole,
    Statement,
    record_signing_bytes,
    statement_hash,
)
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.e2e.primitives import constant_time_equal
from backchannel.protocol.errors import LocalProtocolError

__all__ = ["RecordBook", "RecordStatus", "RecordVersion", "RecordView"]


class RecordStatus(Enum):
    PROPOSED = "proposed"  # the latest version, awaiting the other side's co-signature
    AGREED = "agreed"  # co-signed: on the record
    SUPERSEDED = "superseded"  # replaced by a newer version before it was co-signed


@dataclass(frozen=True, slots=True)
class RecordVersion:
    """One version of a record: its statement and its signatures.

    Attributes:
        record_id: the record.
        version: this version's number.
        proposed_by: the side that proposed (and signed) it.
        statement: what it says.
        statement_hash: `statement_hash(statement)`.
        message_id: the RECORD_PROPOSE message.
        proposal: the proposer's signature and signing time.
        cosignature: the co-signer's, once co-signed.
        status: proposed, agreed or superseded.
    """

    record_id: bytes
    version: int
    proposed_by: Side
    statement: Statement = field(repr=False)
    statement_hash: bytes
    message_id: bytes
    proposal: RecordSignature
    cosignature: RecordSignature | None = None
    status: RecordStatus = RecordStatus.PROPOSED


@dataclass(frozen=True, slots=True)
class RecordView:
    """A record and all its versions (oldest first); `latest` is the one under discussion."""

    record_id: bytes
    owner: Side
    versions: tuple[RecordVersion, ...]

    @property
    def latest(self) -> RecordVersion:
        return self.versions[-1]

    @property
    def agreed(self) -> tuple[RecordVersion, ...]:
        return tuple(v for v in self.versions if v.status is RecordStatus.AGREED)


@dataclass(slots=True)
class _Thread:
    owner: Side
    versions: list[RecordVersion]


class RecordBook:
    """Both sides' records, checked against the two principals' public identities."""

    __slots__ = ("_identities", "_records")

    def __init__(self, ours: PublicIdentity, theirs: PublicIdentity) -> None:
        self._identities = {Side.OURS: ours, Side.THEIRS: theirs}
        self._records: dict[bytes, _Thread] = {}

    def _signing_bytes(
        self,
        role: SignerRole,
        proposer: Side,
        record_id: bytes,
        version: int,
        digest: bytes,
        signed_at_ms: int,
    ) -> bytes:
        return record_signing_bytes(
            role,
            record_id,
            version,
            self._identities[proposer],
            self._identities[proposer.other],
            digest,
            signed_at_ms,
        )

    def latest_version(self, record_id: bytes) -> int:
        """The latest version of a record, 0 if there is none."""
        thread = self._records.get(record_id)
        return 0 if thread is None else len(thread.versions)

    def check_propose(self, side: Side, record_id: bytes, version: int) -> None:
        """Check that `side` may propose `version` of `record_id`.

        Raises:
            IllegalTransition: the version does not follow the latest, or the record
                belongs to the other side.
        """
        name = short_id(record_id)
        thread = self._records.get(record_id)
        if thread is not None and thread.owner is not side:
            raise IllegalTransition(
                f"cannot propose a version of record {name}: it belongs to the other side"
            )
        expected = self.latest_version(record_id) + 1
        if version != expected:
            raise IllegalTransition(
                f"cannot propose version {version} of record {name}: the next version is {expected}"
            )

    def _prepared_proposal(
        self, side: Side, message_id: bytes, body: RecordPropose
    ) -> RecordVersion:
        self.check_propose(side, body.record_id, body.version)
        digest = statement_hash(body.statement)
        data = self._signing_bytes(
            SignerRole.PROPOSER, side, body.record_id, body.version, digest, body.signed_at_ms
        )
        signer = self._identities[side]
        if not signer.verify(body.signature, data):
            raise IllegalTransition(
                f"proposal of record {short_id(body.record_id)} version {body.version}: "
                "the proposer's signature does not verify"
            )
        proposal = RecordSignature(signer, body.signed_at_ms, body.signature)
        return RecordVersion(
            body.record_id, body.version, side, body.statement, digest, message_id, proposal
        )

    def apply_propose(self, event: DialogueEvent, body: RecordPropose) -> None:
        """Add a proposed version, or raise `IllegalTransition` leaving the state as it was."""
        version = self._prepared_proposal(event.side, event.message_id, body)
        thread = self._records.setdefault(body.record_id, _Thread(event.side, []))
        if thread.versions and thread.versions[-1].status is RecordStatus.PROPOSED:
            thread.versions[-1] = replace(thread.versions[-1], status=RecordStatus.SUPERSEDED)
        thread.versions.append(version)

    def check_sign(
        self,
        side: Side,
        record_id: bytes,
        version: int,
        digest: bytes | None,
        *,
        latest_only: bool,
    ) -> RecordVersion:
        """Check that `side` may co-sign `version` of `record_id`.

        Args:
            side: the co-signing side.
            record_id: the record.
            version: the version to co-sign.
            digest: the statement hash the co-signer read (None: do not compare).
            latest_only: refuse a version older than the latest (this side's own intents).

        Returns:
            The version to co-sign.

        Raises:
            IllegalTransition: unknown record or version, `side`'s own proposal, a version
                already co-signed, an old version (when `latest_only`: the record was
                changed after it was proposed), or a statement hash that differs.
        """
        name = short_id(record_id)
        thread = self._records.get(record_id)
        if thread is None:
            raise IllegalTransition(f"cannot co-sign record {name}: unknown record")
        latest = len(thread.versions)
        if not 1 <= version <= latest:
            raise IllegalTransition(
                f"cannot co-sign version {version} of record {name}: the latest version is {latest}"
            )
        entry = thread.versions[version - 1]
        if entry.proposed_by is side:
            raise IllegalTransition(
                f"cannot co-sign version {version} of record {name}: its proposer signed it "
                "when proposing it"
            )
        if entry.cosignature is not None:
            raise IllegalTransition(
                f"cannot co-sign version {version} of record {name}: it is already co-signed"
            )
        if latest_only and version != latest:
            raise IllegalTransition(
                f"cannot co-sign version {version} of record {name}: the record was changed "
                f"after it was proposed (version {latest} exists)"
            )
        if digest is not None and not constant_time_equal(digest, entry.statement_hash):
            raise IllegalTransition(
                f"cannot co-sign version {version} of record {name}: the statement hash "
                "differs from the proposed statement"
            )
        return entry

    def _prepared_cosignature(
        self, side: Side, body: RecordSign, *, latest_only: bool
    ) -> RecordVersion:
        entry = self.check_sign(
            side, body.record_id, body.version, body.statement_hash, latest_only=latest_only
        )
        data = self._signing_bytes(
            SignerRole.COSIGNER,
            entry.proposed_by,
            body.record_id,
            body.version,
            entry.statement_hash,
            body.signed_at_ms,
        )
        signer = self._identities[side]
        if not signer.verify(body.signature, data):
            raise IllegalTransition(
                f"co-signature of record {short_id(body.record_id)} version {body.version}: "
                "the signature does not verify"
            )
        cosignature = RecordSignature(signer, body.signed_at_ms, body.signature)
        return replace(entry, cosignature=cosignature, status=RecordStatus.AGREED)

    def apply_sign(self, event: DialogueEvent, body: RecordSign) -> None:
        """Add a co-signature, or raise `IllegalTransition` leaving the state as it was."""
        agreed = self._prepared_cosignature(event.side, body, latest_only=False)
        self._records[body.record_id].versions[body.version - 1] = agreed

    def check_body(self, side: Side, body: RecordPropose | RecordSign) -> None:
        """Check a record body this side is about to send, signature included.

        Raises:
            IllegalTransition: as `check_propose` or `check_sign` (latest version only), or
                the signature does not verify.
        """
        match body:
            case RecordPropose():
                self._prepared_proposal(side, bytes(16), body)
            case RecordSign():
                self._prepared_cosignature(side, body, latest_only=True)

    def propose(
        self, identity: IdentityKeyPair, record_id: bytes, statement: Statement, now_ms: int
    ) -> RecordPropose:
        """Sign and build this side's proposal of the next version of a record.

        Args:
            identity: this principal's identity key pair (its public half must be `ours`).
            record_id: a new random 16-byte id, or an existing record of ours to revise.
            statement: what the record says.
            now_ms: the signing time.

        Returns:
            The body to send as a RECORD_PROPOSE message.

        Raises:
            LocalProtocolError: the identity is not this side's.
            IllegalTransition: the record belongs to the other side.
        """
        self._check_identity(identity)
        version = self.latest_version(record_id) + 1
        self.check_propose(Side.OURS, record_id, version)
        digest = statement_hash(statement)
        data = self._signing_bytes(
            SignerRole.PROPOSER, Side.OURS, record_id, version, digest, now_ms
        )
        return RecordPropose(record_id, version, statement, now_ms, identity.sign(data))

    def cosign(
        self,
        identity: IdentityKeyPair,
        record_id: bytes,
        version: int,
        digest: bytes,
        now_ms: int,
    ) -> RecordSign:
        """Sign and build this side's co-signature of the other side's proposal.

        Args:
            identity: this principal's identity key pair (its public half must be `ours`).
            record_id: the record.
            version: the version the principal read (must be the latest).
            digest: the statement hash the principal read.
            now_ms: the signing time.

        Returns:
            The body to send as a RECORD_SIGN message.

        Raises:
            LocalProtocolError: the identity is not this side's.
            IllegalTransition: see `check_sign`.
        """
        self._check_identity(identity)
        entry = self.check_sign(Side.OURS, record_id, version, digest, latest_only=True)
        data = self._signing_bytes(
            SignerRole.COSIGNER,
            entry.proposed_by,
            record_id,
            version,
            entry.statement_hash,
            now_ms,
        )
        return RecordSign(record_id, version, entry.statement_hash, now_ms, identity.sign(data))

    def _check_identity(self, identity: IdentityKeyPair) -> None:
        if identity.public != self._identities[Side.OURS]:
            raise LocalProtocolError("this identity is not the one this dialogue belongs to")

    def get(self, record_id: bytes) -> RecordView | None:
        thread = self._records.get(record_id)
        return (
            None if thread is None else RecordView(record_id, thread.owner, tuple(thread.versions))
        )

    def all(self) -> tuple[RecordView, ...]:
        """Every record, in the order it was first proposed."""
        return tuple(RecordView(r, t.owner, tuple(t.versions)) for r, t in self._records.items())

    def agreed_record(self, record_id: bytes, version: int | None = None) -> AgreedRecord:
        """The agreed record for export (`export_record`).

        Args:
            record_id: the record.
            version: the version (None: the latest agreed version).

        Raises:
            LocalProtocolError: unknown record or version, or not agreed (yet).
        """
        thread = self._records.get(record_id)
        if thread is None:
            raise LocalProtocolError(f"unknown record {short_id(record_id)}")
        for entry in reversed(thread.versions):
            if entry.cosignature is not None and version in (None, entry.version):
                return AgreedRecord(
                    record_id, entry.version, entry.statement, entry.proposal, entry.cosignature
                )
        which = "no agreed version" if version is None else f"no agreed version {version}"
        raise LocalProtocolError(f"record {short_id(record_id)} has {which}")

"""The agreed-record file: export, and offline verification that refuses any alteration."""

from __future__ import annotations

import base64
import json

import pytest

from backchannel.dialogue import (
    AgreedRecord,
    LanguageVersion,
    MalformedRecordFile,
    MissingCosignature,
    RecordFileError,
    RecordSignature,
    RecordSignatureInvalid,
    RecordTextAltered,
    SignerRole,
    Statement,
    UnexpectedSigner,
    export_proposal,
    export_record,
    statement_hash,
    verify_record_file,
)
from backchannel.dialogue.agreed import MAX_RECORD_FILE_BYTES
from backchannel.dialogue.statement import record_signing_bytes
from backchannel.protocol.e2e.keys import IdentityKeyPair, PublicIdentity
from backchannel.protocol.errors import LocalProtocolError, RemoteProtocolError
from backchannel.testing import SeededRng
from tests.dialogue.conftest import MINUTE, Channel

RECORD = b"\x5e" * 16
STATEMENT = Statement(
    "Joint readout, Vienna",
    (
        LanguageVersion("en", "Both sides held candid, substantive talks.\n\nThey agreed to"
                        " keep the channel open.", authoritative=True),
        LanguageVersion("zh-Hans", "双方进行了坦诚、实质性的会谈。"),
    ),
)  # fmt: skip
BEGIN = b"-----BEGIN BACKCHANNEL AGREED RECORD-----\n"
END = b"-----END BACKCHANNEL AGREED RECORD-----\n"


def agreed(channel: Channel) -> AgreedRecord:
    proposal = channel.alice.propose_record(
        channel.keys["alice"], RECORD, STATEMENT, channel.now_ms
    )
    channel.send("alice", proposal)
    channel.advance(3 * MINUTE)
    sign = channel.bob.cosign_record(
        channel.keys["bob"], RECORD, 1, statement_hash(STATEMENT), channel.now_ms
    )
    channel.send("bob", sign)
    return channel.bob.agreed_record(RECORD)


@pytest.fixture
def record(channel: Channel) -> AgreedRecord:
    return agreed(channel)


@pytest.fixture
def data(record: AgreedRecord) -> bytes:
    return export_record(record)


def block_of(data: bytes) -> bytes:
    start = data.rindex(b"\n" + BEGIN) + 1 + len(BEGIN)
    return base64.b64decode(data[start : -len(END)].replace(b"\n", b""))


def with_block(data: bytes, block: bytes) -> bytes:
    """The same readable part, with another signed block armored below it."""
    head = data[: data.rindex(b"\n" + BEGIN) + 1]
    encoded = base64.b64encode(block)
    armor = b"".join(encoded[i : i + 64] + b"\n" for i in range(0, len(encoded), 64))
    return head + BEGIN + armor + END


def offsets() -> dict[str, int]:
    """Where each field of the signed block starts."""
    start = 8 + 1 + 16 + 4
    proposer = start + len(STATEMENT.encode())
    cosigner = proposer + 66
    proposal = cosigner + 66
    flag = proposal + 8 + 64
    return {"proposer": proposer, "cosigner": cosigner, "proposal": proposal, "flag": flag}


def test_an_exported_record_verifies_offline_and_says_who_signed_what_when(
    channel: Channel, data: bytes
) -> None:
    verified = verify_record_file(data)
    alice, bob = channel.keys["alice"].public, channel.keys["bob"].public
    assert verified.record_id == RECORD and verified.version == 1
    assert verified.statement == STATEMENT
    assert verified.authoritative_language == "en"
    assert verified.statement_hash == statement_hash(STATEMENT)
    assert verified.proposer.identity == alice and verified.proposer.role is SignerRole.PROPOSER
    assert verified.cosigner.identity == bob and verified.cosigner.role is SignerRole.COSIGNER
    assert verified.cosigner.signed_at_ms - verified.proposer.signed_at_ms == 3 * MINUTE
    assert verify_record_file(data, parties=[bob, alice]) == verified
    summary = verified.to_dict()
    json.dumps(summary)
    assert summary["proposer"]["fingerprint"] == alice.fingerprint  # type: ignore[index]
    assert summary["cosigner"]["signed_at"] == "2023-11-14T22:16:20.000Z"  # type: ignore[index]
    assert summary["texts"] == {v.language: v.text for v in STATEMENT.versions}


def test_the_file_is_readable_text(channel: Channel, data: bytes) -> None:
    text = data.decode("utf-8")
    assert text.startswith("Backchannel agreed record\n")
    assert "Title:        Joint readout, Vienna\n" in text
    assert "=== en, authoritative ===\nBoth sides held candid" in text
    assert "双方进行了坦诚" in text
    assert channel.keys["alice"].public.fingerprint in text
    assert "at 2023-11-14T22:13:20.000Z" in text
    assert all(len(line) <= 64 for line in text.split(BEGIN.decode())[1].splitlines())


def test_both_sides_export_the_same_file(channel: Channel) -> None:
    agreed(channel)
    assert export_record(channel.alice.agreed_record(RECORD)) == export_record(
        channel.bob.agreed_record(RECORD)
    )


def test_any_single_byte_changed_is_detected(data: bytes) -> None:
    for i in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            altered = bytearray(data)
            altered[i] ^= mask
            with pytest.raises(RecordFileError):
                verify_record_file(bytes(altered))


def test_any_single_byte_removed_or_added_is_detected(data: bytes) -> None:
    for i in range(len(data) + 1):
        if i < len(data):
            with pytest.raises(RecordFileError):
                verify_record_file(data[:i] + data[i + 1 :])
        with pytest.raises(RecordFileError):
            verify_record_file(data[:i] + b"\n" + data[i:])


def test_every_change_to_the_signed_block_breaks_a_signature_or_the_format(data: bytes) -> None:
    block = block_of(data)
    for i in range(len(block)):
        altered = bytearray(block)
        altered[i] ^= 0x04
        with pytest.raises((RecordSignatureInvalid, MalformedRecordFile)):
            verify_record_file(with_block(data, bytes(altered)))


def test_a_co_signature_by_a_third_key_is_refused(channel: Channel, record: AgreedRecord) -> None:
    data = export_record(record)
    stranger = IdentityKeyPair.generate(SeededRng("stranger"))
    signed = record_signing_bytes(
        SignerRole.COSIGNER, RECORD, 1, record.proposal.signer, record.cosignature.signer,
        statement_hash(STATEMENT), record.cosignature.signed_at_ms,
    )  # fmt: skip
    block = bytearray(block_of(data))
    at = offsets()["flag"] + 1 + 8
    block[at : at + 64] = stranger.sign(signed)
    with pytest.raises(RecordSignatureInvalid) as caught:
        verify_record_file(with_block(data, bytes(block)))
    assert caught.value.role is SignerRole.COSIGNER


def test_a_third_key_named_as_co_signer_breaks_the_proposer_s_signature(
    channel: Channel, record: AgreedRecord
) -> None:
    data = export_record(record)
    stranger = IdentityKeyPair.generate(SeededRng("stranger"))
    signed = record_signing_bytes(
        SignerRole.COSIGNER, RECORD, 1, record.proposal.signer, stranger.public,
        statement_hash(STATEMENT), record.cosignature.signed_at_ms,
    )  # fmt: skip
    block = bytearray(block_of(data))
    where = offsets()
    block[where["cosigner"] : where["cosigner"] + 66] = stranger.public.encode()
    block[where["flag"] + 9 : where["flag"] + 9 + 64] = stranger.sign(signed)
    with pytest.raises(RecordSignatureInvalid) as caught:
        verify_record_file(with_block(data, bytes(block)))
    assert caught.value.role is SignerRole.PROPOSER


def test_a_record_forged_by_two_strangers_fails_only_against_the_expected_parties(
    channel: Channel,
) -> None:
    rng = SeededRng("forgers")
    mallory, trent = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    forgery = Channel(keys={"alice": mallory, "bob": trent})
    data = export_record(agreed(forgery))
    assert verify_record_file(data).proposer.identity == mallory.public
    parties = [channel.keys["alice"].public, channel.keys["bob"].public]
    with pytest.raises(UnexpectedSigner):
        verify_record_file(data, parties=parties)


def test_a_missing_co_signature_is_refused(channel: Channel, record: AgreedRecord) -> None:
    draft = export_proposal(RECORD, 1, STATEMENT, record.proposal, channel.keys["bob"].public)
    assert draft.startswith(b"Backchannel record PROPOSAL (not agreed)\n")
    with pytest.raises(MissingCosignature):
        verify_record_file(draft)
    # The co-signature cut out of a complete file.
    block = block_of(export_record(record))
    stripped = block[: offsets()["flag"]] + b"\x00"
    with pytest.raises(MissingCosignature):
        verify_record_file(with_block(export_record(record), stripped))


def test_an_altered_readable_copy_is_refused(data: bytes) -> None:
    altered = data.replace(b"candid, substantive", b"candid, fruitless!!", 1)
    assert altered != data and block_of(altered) == block_of(data)
    with pytest.raises(RecordTextAltered):
        verify_record_file(altered)
    with pytest.raises(RecordTextAltered):
        verify_record_file(data.replace(b"\n", b"\r\n", 1))


def test_a_rewrapped_block_is_refused(data: bytes) -> None:
    block = block_of(data)
    encoded = base64.b64encode(block)
    head = data[: data.rindex(b"\n" + BEGIN) + 1]
    rewrapped = head + BEGIN + b"".join(
        encoded[i : i + 76] + b"\n" for i in range(0, len(encoded), 76)
    ) + END  # fmt: skip
    with pytest.raises(RecordTextAltered):
        verify_record_file(rewrapped)


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda d: b"", "does not end"),
        (lambda d: d[:-1], "does not end"),
        (lambda d: b"\xff" + d, "UTF-8"),
        (lambda d: d[d.index(BEGIN) :], "no agreed-record block"),
        (lambda d: d.replace(BEGIN, b"-----BEGIN SOMETHING ELSE-----\n"), "no agreed-record"),
        (lambda d: b"x" * MAX_RECORD_FILE_BYTES + d, "larger than"),
        (lambda d: with_block(d, b"BCRECORX" + block_of(d)[8:]), "not an agreed-record block"),
        (lambda d: with_block(d, block_of(d)[:8] + b"\x02" + block_of(d)[9:]), "unknown"),
        (lambda d: with_block(d, block_of(d) + b"\x00"), "trailing"),
        (lambda d: with_block(d, block_of(d)[:-1]), "truncated"),
        (lambda d: with_block(d, block_of(d)[:-73] + b"\x02" + block_of(d)[-72:]), "flag"),
        (lambda d: with_block(d, b""), "truncated"),
    ],
)
def test_malformed_files_are_refused(data: bytes, mangle: object, why: str) -> None:
    with pytest.raises(MalformedRecordFile, match=why):
        verify_record_file(mangle(data))  # type: ignore[operator]


def test_non_canonical_base64_is_refused(data: bytes) -> None:
    start = data.rindex(b"\n" + BEGIN) + 1 + len(BEGIN)
    armor = data[start : -len(END)]
    # The block's length leaves unused low bits in the last base64 character; setting one
    # decodes to the same bytes, so only a canonical-form check can catch it.
    assert armor.rstrip(b"\n").endswith(b"=")
    last = armor.rstrip(b"\n").rstrip(b"=")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twisted = alphabet[alphabet.index(last[-1:]) + 1 : alphabet.index(last[-1:]) + 2]
    altered = data[: start + len(last) - 1] + twisted + data[start + len(last) :]
    with pytest.raises(MalformedRecordFile, match="canonical"):
        verify_record_file(altered)


def test_the_same_identity_twice_is_refused(channel: Channel, record: AgreedRecord) -> None:
    data = export_record(record)
    block = bytearray(block_of(data))
    where = offsets()
    block[where["cosigner"] : where["cosigner"] + 66] = record.proposal.signer.encode()
    with pytest.raises(MalformedRecordFile, match="same identity"):
        verify_record_file(with_block(data, bytes(block)))


def test_export_refuses_a_record_whose_signatures_do_not_verify(record: AgreedRecord) -> None:
    from dataclasses import replace

    bad = replace(record, cosignature=RecordSignature(record.cosignature.signer, 0, bytes(64)))
    with pytest.raises(LocalProtocolError, match="co-signer"):
        export_record(bad)
    bad = replace(record, statement=Statement.single("Other", "Other"))
    with pytest.raises(LocalProtocolError, match="proposer"):
        export_record(bad)


def test_record_errors_are_remote_protocol_errors() -> None:
    for error in (MalformedRecordFile, RecordSignatureInvalid, MissingCosignature,
                  UnexpectedSigner, RecordTextAltered):  # fmt: skip
        assert issubclass(error, RecordFileError) and issubclass(error, RemoteProtocolError)
    assert isinstance(PublicIdentity, type)

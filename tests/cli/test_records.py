"""Agreed records through the CLI: proposed, changed, co-signed, exported, and verified
offline (no home, no passphrase) by `record verify`, which refuses a file with any byte
changed or without its co-signature, with a precise reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backchannel.client.engine import Principal
from backchannel.client.strategic import StrategicChannel
from backchannel.dialogue import export_proposal
from backchannel.protocol.e2e.keys import PublicIdentity
from tests.cli.conftest import PASSPHRASE, Pair, one_error_line, run

EN = "The two sides held candid, substantive and constructive discussions."
ZH = "双方进行了坦诚、实质性、建设性的讨论。"


@pytest.fixture()
def agreed(pair: Pair, tmp_path: Path) -> tuple[Pair, str, Path]:
    """Washington proposes a record, changes it, Beijing co-signs the latest version, and
    Washington exports it; the illegal acts along the way are refused."""
    w, b = pair.washington, pair.beijing
    proposed = json.loads(run(w, "record", "propose", "beijing", "Vienna round",
                              "--lang", f"en={EN}", "--lang", f"zh={ZH}",
                              "--authoritative", "en", "--json").stdout)
    record, ref = proposed["record_id"], proposed["record_id"][:8]
    assert proposed["version"] == 1
    run(b, "sync")
    amended = json.loads(run(w, "record", "propose", "beijing", "Vienna round", EN + " Amended.",
                             "--update", ref, "--json").stdout)
    assert amended["record_id"] == record and amended["version"] == 2
    run(b, "sync")
    # Beijing read version 1; the record changed since, so signing "version 1" is refused.
    line = one_error_line(run(b, "record", "sign", "washington", ref, "--version", "1", code=1))
    assert "changed after version 1" in line and "version 2 is the latest" in line
    assert "error: " in one_error_line(run(w, "record", "sign", "beijing", ref, code=1))  # own
    # Not yet co-signed: nothing to export.
    assert "error: " in one_error_line(run(w, "record", "export", "beijing", ref, "-o",
                                           str(tmp_path / "early.txt"), code=1))
    shown = run(b, "record", "show", "washington", ref).stdout
    assert "Amended." in shown and "awaiting your co-signature" in shown
    run(b, "record", "sign", "washington", ref, "--version", "2")
    assert "already" in one_error_line(run(b, "record", "sign", "washington", ref, code=1))
    run(w, "sync")
    out = tmp_path / "vienna.txt"
    run(w, "record", "export", "beijing", ref, "-o", str(out))
    return pair, record, out


def verify(path: Path, *, code: int = 0, as_json: bool = False) -> str:
    # No home and no passphrase: the check must need neither.
    args = ["record", "verify", str(path)] + (["--json"] if as_json else [])
    result = run(None, *args, passphrase=None, code=code)
    return result.stdout if code == 0 else one_error_line(result)


def test_an_agreed_record_verifies_offline_and_not_with_a_byte_changed(
    agreed: tuple[Pair, str, Path],
) -> None:
    pair, record, out = agreed
    human = verify(out)
    assert human.startswith("VALID") and "Proposed by" in human and "Co-signed by" in human
    assert EN + " Amended." in human
    shown = json.loads(verify(out, as_json=True))
    assert shown["valid"] is True and shown["record_id"] == record and shown["version"] == 2
    w_key = Principal.open(pair.washington, PASSPHRASE)
    try:
        assert shown["proposer"]["fingerprint"] == w_key.identity.fingerprint
    finally:
        w_key.close()
    assert shown["cosigner"]["role"] == "co-signer" and shown["cosigner"]["signed_at"]
    records = json.loads(run(pair.beijing, "record", "show", "washington", "--json").stdout)
    (listed,) = records["records"]
    assert listed["status"] == "agreed" and [v["status"] for v in listed["versions"]] == [
        "superseded", "agreed"]

    # The same file with one byte changed is refused, with the reason.
    data = bytearray(out.read_bytes())
    # A byte inside the signed block's base64, and one in the readable copy above it.
    block_at = data.index(b"-----BEGIN") + 80
    for where in (block_at, data.index(b"Amended.")):
        changed = out.with_name(f"changed-{where}.txt")
        damaged = bytearray(data)
        damaged[where] = ord("A") if damaged[where] != ord("A") else ord("B")
        changed.write_bytes(bytes(damaged))
        line = verify(changed, code=1)
        assert line.startswith(f"error: {changed} is not a valid agreed record: ")
    failure = json.loads(run(None, "record", "verify", str(changed), "--json",
                             passphrase=None, code=1).stdout)
    assert failure == {"valid": False, "error": "text_altered",
                       "reason": "the file differs from the signed record it contains"}


def test_a_proposal_without_its_cosignature_is_refused(
    pair: Pair, tmp_path: Path
) -> None:
    run(pair.washington, "record", "propose", "beijing", "Vienna round", EN)
    with Principal.open(pair.washington, PASSPHRASE) as principal:
        strategic = StrategicChannel(principal, "beijing")
        (view,) = strategic.dialogue().records()
        peer = PublicIdentity.decode(bytes.fromhex(strategic.record.peer_identity))
        latest = view.latest
        data = export_proposal(view.record_id, latest.version, latest.statement,
                               latest.proposal, peer)
    proposal = tmp_path / "proposal.txt"
    proposal.write_bytes(data)
    assert "no co-signature" in verify(proposal, code=1)
    failure = json.loads(run(None, "record", "verify", str(proposal), "--json",
                             passphrase=None, code=1).stdout)
    assert failure["valid"] is False and failure["error"] == "missing_cosignature"


def test_verify_names_a_missing_file_and_a_file_that_is_no_record(tmp_path: Path) -> None:
    assert "No such file" in verify(tmp_path / "absent.txt", code=1)
    other = tmp_path / "notes.txt"
    other.write_text("Minutes of the meeting.\n")
    assert "not a valid agreed record" in verify(other, code=1)


def test_whoami_shows_the_fingerprint_that_record_verify_names(
    agreed: tuple[Pair, str, Path],
) -> None:
    pair, _record, out = agreed
    mine = json.loads(run(pair.washington, "whoami", "--json").stdout)
    shown = json.loads(verify(out, as_json=True))
    assert shown["proposer"]["fingerprint"] == mine["fingerprint"]
    assert mine["name"] == "washington" and len(mine["signing_key"]) == 64
    assert mine["fingerprint"] in run(pair.washington, "whoami").stdout


def test_equally_authentic_texts_are_signed_and_record_verify_shows_the_clause(
    pair: Pair, tmp_path: Path
) -> None:
    w, b = pair.washington, pair.beijing
    proposed = json.loads(run(w, "record", "propose", "beijing", "Notification",
                              "--lang", f"en={EN}", "--lang", f"zh-Hans={ZH}",
                              "--lang", "ru=Перевод для сведения.", "--authentic", "en",
                              "--authentic", "zh-Hans", "--json").stdout)  # fmt: skip
    ref = proposed["record_id"][:8]
    run(b, "sync")
    shown = run(b, "record", "show", "washington", ref).stdout
    assert "Authentic texts: The en, zh-Hans texts are equally authentic." in shown
    assert "=== ru, translation ===" in shown
    run(b, "record", "sign", "washington", ref)
    run(w, "sync")
    out = tmp_path / "notification.txt"
    run(w, "record", "export", "beijing", ref, "-o", str(out))
    text = verify(out)
    assert ("Authentic texts: The en, zh-Hans texts are equally authentic. The ru text is a "
            "translation.") in text  # fmt: skip
    assert "=== zh-Hans, authentic ===" in text
    shape = json.loads(verify(out, as_json=True))
    assert shape["authentic_languages"] == ["en", "zh-Hans"]
    assert shape["prevailing_language"] is None
    # With --authoritative among them, one prevails in case of divergence.
    run(w, "record", "propose", "beijing", "T", "--lang", f"en={EN}", "--lang", f"zh-Hans={ZH}",
        "--authentic", "en", "--authentic", "zh-Hans", "--authoritative", "zh-Hans")  # fmt: skip
    assert "--authentic" in run(w, "record", "propose", "beijing", "T", "--lang", f"en={EN}",
                                "--authentic", "fr", code=2).output  # fmt: skip

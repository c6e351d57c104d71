"""A second, minimal decoder written from docs/protocol.md alone: it imports nothing from
Backchannel, only `cryptography` and the standard library, and re-derives every golden
vector (payload v1 and v2) from the JSON files: the SeededRng draws, PQXDH as the
responder, both sides' ratchets, then each payload's header and body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = Path(__file__).parent
FILES = ["golden_v1.json", "golden.json"]
BUCKETS = (1024, 4096, 16384, 65536)
F = b"\xff" * 32


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HERE / name).read_text())
    return data


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes, n: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=n, salt=salt, info=info).derive(ikm)


def _dh(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public)
    )


def _x_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _kdf_rk(rk: bytes, dh: bytes) -> tuple[bytes, bytes, bytes]:
    okm = _hkdf(dh, rk, b"Backchannel root chain v1", 96)
    return okm[:32], okm[32:64], okm[64:]


def _kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    """(next chain key, message key)."""
    return hmac.digest(ck, b"\x02", "sha256"), hmac.digest(ck, b"\x01", "sha256")


def _public_identity(private64: bytes) -> bytes:
    ed = Ed25519PrivateKey.from_private_bytes(private64[:32]).public_key().public_bytes_raw()
    return b"\x06" + ed + b"\x05" + _x_public(private64[32:])


@dataclass
class Side:
    dhs: bytes  # private
    dhr: bytes | None = None
    rk: bytes = b""
    cks: bytes | None = None
    ckr: bytes | None = None
    hks: bytes | None = None
    hkr: bytes | None = None
    nhks: bytes | None = None
    nhkr: bytes | None = None


def _pqxdh_as_responder(v: dict[str, Any]) -> tuple[bytes, bytes, bytes, bytes]:
    """Spec §4 from Bob's secrets and the initiation; returns RK0, HK_A, NHK_B, AD."""
    init = bytes.fromhex(v["initiation"])
    assert init[0] == 0x05
    ek = init[1:33]
    spk_id, pq_id, has_opk = struct.unpack_from(">IIB", init, 33)
    pos = 42
    assert (spk_id, pq_id, has_opk) == (1, 1, 1)
    pos += 4  # opk_id
    ct, sealed = init[pos : pos + 1088], init[pos + 1088 :]
    assert len(sealed) == 82
    spk = bytes.fromhex(v["signed_prekey_private"])
    opk = bytes.fromhex(v["one_time_prekey_private"])
    bob = bytes.fromhex(v["bob_identity_private"])
    ss = MLKEM768PrivateKey.from_seed_bytes(bytes.fromhex(v["pq_prekey_seed"])).decapsulate(ct)
    dh3 = _dh(spk, ek)
    seal = _hkdf(F + dh3 + ss, b"\x00" * 32, b"Backchannel initiator identity seal v1", 32)
    alice = ChaCha20Poly1305(seal).decrypt(b"\x00" * 12, sealed, init[: pos + 1088])
    assert alice[0] == 0x06 and alice[33] == 0x05
    dh1, dh2, dh4 = _dh(spk, alice[34:]), _dh(bob[32:], ek), _dh(opk, ek)
    info = b"Backchannel_X25519_SHA-256_ML-KEM-768"
    sk = _hkdf(F + dh1 + dh2 + dh3 + dh4 + ss, b"\x00" * 32, info, 32)
    okm = _hkdf(sk, None, b"Backchannel ratchet init v1", 96)
    return okm[:32], okm[32:64], okm[64:], alice + _public_identity(bob)


def _prefix_size(payload: bytes) -> int:
    if payload[0] in (0x01, 0x03):
        return 1 + 33 + 4 + 4 + 1 + (4 if payload[42] == 1 else 0) + 1088 + 82
    assert payload[0] in (0x02, 0x04)
    return 1


def _open_header(keys: list[bytes | None], sealed: bytes, ad: bytes) -> tuple[int, bytes]:
    for i, key in enumerate(keys):
        if key is None:
            continue
        try:
            return i, AESGCMSIV(key).decrypt(sealed[:12], sealed[12:], ad)
        except Exception:
            continue
    raise AssertionError("no header key opens the header")


@pytest.mark.parametrize("name", FILES)
def test_every_vector_is_rederived_from_the_file_alone(name: str) -> None:
    v = _load(name)
    rk0, hk_a, nhk_b, ad = _pqxdh_as_responder(v)
    assert (rk0.hex(), hk_a.hex(), nhk_b.hex()) == (
        v["root_key"],
        v["shared_header_key"],
        v["shared_next_header_key"],
    )
    assert ad.hex() == v["associated_data"]
    messages = v["messages"]
    spk = bytes.fromhex(v["signed_prekey_private"])
    alice = Side(dhs=bytes.fromhex(messages[0]["sender_ratchet_private"]), dhr=_x_public(spk))
    alice.rk, alice.cks, alice.nhks = _kdf_rk(rk0, _dh(alice.dhs, _x_public(spk)))
    alice.hks, alice.nhkr = hk_a, nhk_b
    bob = Side(dhs=spk, rk=rk0, nhks=nhk_b, nhkr=hk_a)
    sides = {"alice": alice, "bob": bob}
    previous: dict[str, bytes] = {}
    for i, m in enumerate(messages):
        sender, receiver = m["sender"], "bob" if m["sender"] == "alice" else "alice"
        s, r = sides[sender], sides[receiver]
        payload = bytes.fromhex(m["payload"])
        assert len(payload) + 17 in BUCKETS
        version = 2 if payload[0] in (0x03, 0x04) else 1
        assert version == v["payload_version"]
        rest = payload[_prefix_size(payload) :]
        sealed, body = rest[:68], rest[68:]
        # The sender's side: its header key and next message key.
        assert s.dhs.hex() == m["sender_ratchet_private"] and s.cks is not None
        s.cks, mk = _kdf_ck(s.cks)
        assert s.hks is not None and s.hks.hex() == m["header_key"]
        assert mk.hex() == m["message_key"]
        # The receiver's side, from the header alone (spec §5).
        which, header = _open_header([r.hkr, r.nhkr], sealed, ad)
        dh, _pn, _n = struct.unpack(">32sII", header)
        assert dh == _x_public(s.dhs)
        if which == 1:  # a new chain: DH ratchet step
            r.hks, r.hkr, r.dhr = r.nhks, r.nhkr, dh
            r.rk, r.ckr, r.nhkr = _kdf_rk(r.rk, _dh(r.dhs, dh))
            later = [x for x in messages[i + 1 :] if x["sender"] == receiver]
            if later:  # its next ratchet key is the one its next message shows
                r.dhs = bytes.fromhex(later[0]["sender_ratchet_private"])
                r.rk, r.cks, r.nhks = _kdf_rk(r.rk, _dh(r.dhs, dh))
        assert r.ckr is not None
        r.ckr, receiver_mk = _kdf_ck(r.ckr)
        assert receiver_mk == mk
        if version == 2:
            assert body[:12].hex() == m["body_nonce"] and sealed[:12].hex() == m["header_nonce"]
            padded = AESGCMSIV(mk).decrypt(body[:12], body[12:], ad + sealed)
            overhead = len(payload) - len(padded)
            assert overhead == _prefix_size(payload) + 68 + 12 + 16
        else:
            padded = ChaCha20Poly1305(mk).decrypt(b"\x00" * 12, body, ad + sealed)
        (length,) = struct.unpack_from(">I", padded)
        plain, padding = padded[4 : 4 + length], padded[4 + length :]
        assert padding == bytes(len(padding))
        # The smallest bucket that holds it (spec §6).
        needed = len(payload) - len(padded) + 4 + length
        assert len(payload) + 17 == min(b for b in BUCKETS if needed <= b - 17)
        assert plain.hex() == m["message"]
        version_byte, _mid, seq, prev_hash, _at, kind, body_len = struct.unpack_from(
            ">B16sQ32sQHI", plain
        )
        assert (version_byte, kind) == (1, 1)
        assert plain[71:].hex() == m["body"] and body_len == len(plain) - 71
        expected_prev = previous.get(sender, b"")
        if expected_prev:
            prefix = b"Backchannel message hash v1"
            assert prev_hash == hashlib.sha256(prefix + expected_prev).digest()
        else:
            assert prev_hash == bytes(32) and seq == 1
        previous[sender] = plain


def test_seeded_rng_as_specified_gives_every_recorded_draw() -> None:
    """docs/protocol.md §12: the i-th call (from 1) is SHAKE-256(seed || u64(i))[:n]."""
    v = _load("golden.json")
    seed = v["rng_seed"].encode()
    for i, draw in enumerate(v["rng_draws"], start=1):
        n = len(draw) // 2
        assert hashlib.shake_256(seed + i.to_bytes(8, "big")).digest(n).hex() == draw


def test_the_draws_come_in_the_specified_order() -> None:
    v = _load("golden.json")
    draws = v["rng_draws"]
    fixed = [
        v["alice_identity_private"],
        v["bob_identity_private"],
        v["one_time_prekey_private"],
        v["signed_prekey_private"],
        v["pq_prekey_seed"],
        v["ephemeral_private"],
        v["kem_m"],
        v["messages"][0]["sender_ratchet_private"],
    ]
    assert draws[: len(fixed)] == fixed
    rest = draws[len(fixed) :]
    for m in v["messages"]:
        message_id = m["message"][2:34]
        assert rest[:3] == [message_id, m["header_nonce"], m["body_nonce"]]
        rest = rest[3:]
        if rest and len(rest[0]) == 64:  # the receiver's DH ratchet step draws its new key
            rest = rest[1:]
    assert rest == []

"""A second implementation of the PQ ratchet's receiving and chunk-filling rules, written
from docs/protocol.md §13 alone: like `test_independent_decoder` it imports nothing from
Backchannel (only `cryptography`, the standard library and that decoder's §4/§5 helpers).

It replays golden_pq.json: for every message it predicts the header's epoch and the exact
chunk area from its own model of the sender (§13.4), opens the payload (§13.2), and applies
the chunks to its model of the receiver (§13.5); at the end its epoch keys are the file's.
The only inputs it takes from the file beyond §12's are the seeds and the derandomised
encapsulations (§13.10), which a real implementation would draw itself.
"""

from __future__ import annotations

import hmac
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

from tests.vectors.test_independent_decoder import (
    BUCKETS,
    Side,
    _dh,
    _hkdf,
    _kdf_ck,
    _kdf_rk,
    _open_header,
    _pqxdh_as_responder,
    _x_public,
)

HERE = Path(__file__).parent
UNITS = {1: 74, 2: 68}  # EK, CT in 16-byte units


def _prefix_size(payload: bytes) -> int:
    if payload[0] == 0x05:
        return 1 + 33 + 4 + 4 + 1 + (4 if payload[42] == 1 else 0) + 1088 + 82
    assert payload[0] == 0x06
    return 1


@dataclass
class Pq:
    """One side of §13.5, as the spec states it."""

    initiator: bool
    v: dict[str, Any]
    keys: dict[int, bytes]
    send_epoch: int = 0
    own: int = 0
    seed: bytes = b""
    owed: list[list[Any]] = field(default_factory=list)  # [kind, epoch, object, position]
    partial: dict[tuple[int, int], tuple[bytearray, int]] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(self.keys)

    def ek_sender(self, epoch: int) -> bool:
        return (epoch % 2 == 1) == self.initiator

    def begin(self, epoch: int) -> None:
        self.seed = bytes.fromhex(self.v["pq_seeds"][str(epoch)])
        ek = MLKEM768PrivateKey.from_seed_bytes(self.seed).public_key().public_bytes_raw()
        self.own = epoch
        self.owed.append([1, epoch, ek, 0])

    def add_key(self, epoch: int, secret: bytes) -> None:
        info = b"Backchannel PQ ratchet epoch v1" + struct.pack(">I", epoch)
        self.keys[epoch] = _hkdf(secret, self.keys[epoch - 1], info, 32)

    def drop(self) -> None:
        self.owed = [
            o
            for o in self.owed
            if not (o[0] == 2 and o[1] <= self.send_epoch)
            and not (o[0] == 1 and o[1] <= self.latest)
        ]

    def fill(self, capacity: int) -> bytes:
        out, budget = b"", capacity
        for item in sorted(self.owed, key=lambda o: o[0] != 2):
            kind, epoch, data, p = item
            units, taken = UNITS[kind], 0
            while taken < units and budget >= 23:
                count = min(units - p, units - taken, (budget - 7) // 16)
                out += struct.pack(">BIBB", kind, epoch, p, count) + data[p * 16 : (p + count) * 16]
                budget -= 7 + 16 * count
                taken += count
                p = (p + count) % units
            item[3] = p
        return out

    def complete(self, kind: int, epoch: int) -> bytes | None:
        held = self.partial.get((kind, epoch))
        if held is None or held[1] != (1 << UNITS[kind]) - 1:
            return None
        del self.partial[kind, epoch]
        return bytes(held[0])

    def receive(self, h: int, chunks: list[tuple[int, int, int, bytes]]) -> None:
        self.send_epoch = max(self.send_epoch, h)
        self.drop()
        latest = self.latest
        peer_next = latest + 1 if not self.ek_sender(latest + 1) else latest + 2
        for kind, epoch, first, data in chunks:
            if not (
                (kind == 2 and self.own and epoch == self.own) or (kind == 1 and epoch == peer_next)
            ):
                continue
            buf, mask = self.partial.get((kind, epoch), (bytearray(16 * UNITS[kind]), 0))
            for i in range(len(data) // 16):
                unit = first + i
                assert (
                    not mask >> unit & 1
                    or buf[16 * unit : 16 * unit + 16] == data[16 * i : 16 * i + 16]
                )
                buf[16 * unit : 16 * unit + 16] = data[16 * i : 16 * i + 16]
                mask |= 1 << unit
            self.partial[kind, epoch] = (buf, mask)
        encapsulations = self.v["pq_encapsulations"]
        ct = self.complete(2, self.own) if self.own == self.latest + 1 else None
        if ct is not None:
            epoch = self.own
            assert ct.hex() == encapsulations[epoch - 1]["ct"]
            self.add_key(epoch, MLKEM768PrivateKey.from_seed_bytes(self.seed).decapsulate(ct))
            self.send_epoch, self.own, self.seed = epoch, 0, b""
            self.drop()
            self.begin(epoch + 2)
        p = self.latest + 1
        if not self.ek_sender(p) and self.own in (0, p + 1):
            ek = self.complete(1, p)
            if ek is not None:
                enc = encapsulations[p - 1]
                assert enc["ek"] == ek.hex()
                self.add_key(p, bytes.fromhex(enc["ss"]))
                self.owed.append([2, p, bytes.fromhex(enc["ct"]), 0])
                if self.own == 0:
                    self.begin(p + 1)


def _chunks(area: bytes) -> list[tuple[int, int, int, bytes]]:
    out, at = [], 0
    while at < len(area) and area[at] != 0:
        kind, epoch, first, count = struct.unpack_from(">BIBB", area, at)
        out.append((kind, epoch, first, area[at + 7 : at + 7 + 16 * count]))
        at += 7 + 16 * count
    assert area[at:] == bytes(len(area) - at)
    return out


def test_the_pq_vectors_follow_from_section_13_alone() -> None:
    v: dict[str, Any] = json.loads((HERE / "golden_pq.json").read_text())
    rk0, hk_a, nhk_b, ad = _pqxdh_as_responder(v)
    assert ad.hex() == v["associated_data"] and rk0.hex() == v["root_key"]
    messages = v["messages"]
    spk = bytes.fromhex(v["signed_prekey_private"])
    alice = Side(dhs=bytes.fromhex(messages[0]["sender_ratchet_private"]), dhr=_x_public(spk))
    alice.rk, alice.cks, alice.nhks = _kdf_rk(rk0, _dh(alice.dhs, _x_public(spk)))
    alice.hks, alice.nhkr = hk_a, nhk_b
    bob = Side(dhs=spk, rk=rk0, nhks=nhk_b, nhkr=hk_a)
    sides = {"alice": alice, "bob": bob}
    key0 = _hkdf(ad, None, b"Backchannel PQ ratchet epoch 0 v1", 32)
    pqs = {"alice": Pq(True, v, {0: key0}), "bob": Pq(False, v, {0: key0})}
    pqs["alice"].begin(1)
    for i, m in enumerate(messages):
        sender, receiver = m["sender"], "bob" if m["sender"] == "alice" else "alice"
        s, r = sides[sender], sides[receiver]
        payload = bytes.fromhex(m["payload"])
        rest = payload[_prefix_size(payload) :]
        sealed, body = rest[:72], rest[72:]
        assert s.cks is not None
        s.cks, mk = _kdf_ck(s.cks)
        assert mk.hex() == m["message_key"]
        which, header = _open_header([r.hkr, r.nhkr], sealed, ad)
        dh, _pn, _n, epoch = struct.unpack(">32sIII", header)
        if which == 1:
            r.hks, r.hkr, r.dhr = r.nhks, r.nhkr, dh
            r.rk, r.ckr, r.nhkr = _kdf_rk(r.rk, _dh(r.dhs, dh))
            later = [x for x in messages[i + 1 :] if x["sender"] == receiver]
            if later:
                r.dhs = bytes.fromhex(later[0]["sender_ratchet_private"])
                r.rk, r.cks, r.nhks = _kdf_rk(r.rk, _dh(r.dhs, dh))
        assert r.ckr is not None
        r.ckr, receiver_mk = _kdf_ck(r.ckr)
        assert receiver_mk == mk
        # §13.2: the header names the sender's send epoch; the body key mixes its key in.
        assert epoch == pqs[sender].send_epoch
        body_key = hmac.digest(
            pqs[receiver].keys[epoch], b"Backchannel PQ message key v1" + mk, "sha256"
        )
        padded = AESGCMSIV(body_key).decrypt(body[:12], body[12:], ad + sealed)
        body_len = struct.unpack_from(">I", padded, 67)[0]
        plain = padded[: 71 + body_len]
        assert plain.hex() == m["message"]
        needed = len(payload) - len(padded) + len(plain)
        assert len(payload) + 17 == min(b for b in BUCKETS if needed <= b - 17)
        # §13.4: the chunk area is exactly what the sender's rules put there.
        area = padded[len(plain) :]
        predicted = pqs[sender].fill(len(area))
        assert area == predicted + bytes(len(area) - len(predicted)), i
        pqs[receiver].receive(epoch, _chunks(area))
        assert pqs[receiver].latest == m["receiver_pq_latest"]
    for entry in v["epochs"]:
        e = entry["epoch"]
        assert pqs["alice"].keys[e].hex() == pqs["bob"].keys[e].hex() == entry["key"]

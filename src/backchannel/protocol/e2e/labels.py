"""Every KDF label and domain-separation string, in one place.

Each key has one purpose and each purpose one label; changing any of these values changes
the wire protocol (the golden vectors in `tests/vectors/` pin them).
"""

from __future__ import annotations

from typing import Final

# PQXDH (Signal PQXDH spec §2.1: an ASCII application string of at least 8 bytes naming the
# curve, hash and KEM).
PQXDH_INFO: Final = b"Backchannel_X25519_SHA-256_ML-KEM-768"
# PQXDH §2.2 "F": 32 0xFF bytes prepended to the KDF input for X25519, so the input never
# collides with an XEdDSA/X3DH input of another protocol.
PQXDH_PREFIX: Final = b"\xff" * 32

# Splits the 32-byte PQXDH secret SK into the root key and the two shared header keys the
# Double Ratchet with header encryption needs (DR spec §4.3: SK, shared_hka, shared_nhkb).
RATCHET_INIT_INFO: Final = b"Backchannel ratchet init v1"
# Key that seals the initiator's identity in the first message, so a relay cannot learn who
# is opening a channel (only the responder, who holds the signed prekey, can open it).
INITIATOR_SEAL_INFO: Final = b"Backchannel initiator identity seal v1"

# Double Ratchet KDF_RK_HE (DR spec §4.2): HKDF(salt=RK, ikm=DH output) -> RK || CK || NHK.
ROOT_KDF_INFO: Final = b"Backchannel root chain v1"
# Double Ratchet KDF_CK (DR spec §5.2): HMAC-SHA256(CK, 0x01) -> MK, HMAC-SHA256(CK, 0x02) -> CK.
CHAIN_MESSAGE_KEY_INPUT: Final = b"\x01"
CHAIN_NEXT_KEY_INPUT: Final = b"\x02"

# Post-quantum ratchet (docs/protocol.md §13). Epoch 0's key carries no KEM secret: it is
# derived from the public session AD so that both sides start from the same value, whether
# the session began with the PQ ratchet or was upgraded to it.
PQ_EPOCH0_INFO: Final = b"Backchannel PQ ratchet epoch 0 v1"
# KDF_PQ(key_{e-1}, ss_e) = HKDF-SHA256(salt=key_{e-1}, ikm=ss_e, info=PQ_EPOCH_INFO || u32 e):
# each epoch's key chains the previous one, so the chain is as strong as its best KEM.
PQ_EPOCH_INFO: Final = b"Backchannel PQ ratchet epoch v1"
# The message key of a PQ payload: HMAC-SHA256(key_e, PQ_MESSAGE_KEY_INPUT || MK), so an
# attacker needs both the Double Ratchet's MK and the epoch's KEM-derived key (libsignal's
# triple ratchet mixes SPQR's key into its message keys the same way).
PQ_MESSAGE_KEY_INPUT: Final = b"Backchannel PQ message key v1"


# Safety numbers: iterated SHA-512 over a version and one side's identity, as Signal's
# NumericFingerprint does, so both sides derive the same number.
SAFETY_NUMBER_PREFIX: Final = b"Backchannel safety number v1"

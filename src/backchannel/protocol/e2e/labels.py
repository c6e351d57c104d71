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


# Safety numbers: iterated SHA-512 over a version and one side's identity, as Signal's
# NumericFingerprint does, so both sides derive the same number.
SAFETY_NUMBER_PREFIX: Final = b"Backchannel safety number v1"

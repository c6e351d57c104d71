"""Cross-check against an independent Double Ratchet: Syndace's `doubleratchet` package.

Its KDF chain, separate-HMACs chain KDF and HKDF root KDF are configured with our labels;
from the same inputs it must derive the same keys, and those keys must open our ciphertexts.
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from doubleratchet.kdf_chain import KDFChain
from doubleratchet.recommended import HashFunction, kdf_hkdf, kdf_separate_hmacs
from doubleratchet.symmetric_key_ratchet import Chain, SymmetricKeyRatchet

from backchannel.protocol.e2e import labels
from backchannel.protocol.e2e.ratchet import SEALED_HEADER_SIZE, Ratchet
from backchannel.testing import SeededRng


class ChainKdf(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


class RootKdf(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return labels.ROOT_KDF_INFO


# Syndace's KDFChain.step(data, n) derives 32 + n bytes and keeps the first 32 as the next
# chain key. With data 0x02 0x01 the separate-HMACs KDF yields HMAC(ck,2) || HMAC(ck,1):
# next chain key, then message key, exactly DR spec §5.2.
CHAIN_CONSTANT = labels.CHAIN_NEXT_KEY_INPUT + labels.CHAIN_MESSAGE_KEY_INPUT


async def _their_message_keys(chain_key: bytes, count: int) -> list[bytes]:
    ratchet = SymmetricKeyRatchet.create(ChainKdf, CHAIN_CONSTANT)
    ratchet.replace_chain(Chain.SENDING, chain_key)
    return [await ratchet.next_encryption_key() for _ in range(count)]


def test_message_keys_match_an_independent_symmetric_ratchet() -> None:
    rng = SeededRng("syndace symmetric")
    root, header_a, header_b, bob_spk = rng(32), rng(32), rng(32), rng(32)
    bob_public = X25519PrivateKey.from_private_bytes(bob_spk).public_key().public_bytes_raw()
    alice = Ratchet.init_initiator(root, bob_public, header_a, header_b, rng)
    ad = b"A" * 132
    bodies = [f"message {i}".encode() for i in range(20)]
    ciphertexts = [alice.encrypt(body, ad, rng) for body in bodies]

    async def theirs() -> list[bytes]:
        # Root step (DR §3.3) computed by their KDF chain from the raw DH output.
        dh = alice.dhs.exchange(X25519PublicKey.from_public_bytes(bob_public))
        root_chain = KDFChain.create(RootKdf, root)
        sending_chain_and_header_key = await root_chain.step(dh, 64)
        return await _their_message_keys(sending_chain_and_header_key[:32], len(bodies))

    for key, body, ciphertext in zip(asyncio.run(theirs()), bodies, ciphertexts, strict=True):
        sealed, encrypted = ciphertext[:SEALED_HEADER_SIZE], ciphertext[SEALED_HEADER_SIZE:]
        # Body v2: nonce(12) || AES-256-GCM-SIV(MK, nonce, plaintext, AD || sealed header).
        nonce, rest = encrypted[:12], encrypted[12:]
        assert AESGCMSIV(key).decrypt(nonce, rest, ad + sealed) == body


def test_root_chain_matches_an_independent_kdf_chain() -> None:
    rng = SeededRng("syndace root")
    from backchannel.protocol.e2e.ratchet import _kdf_rk

    async def theirs(root: bytes, inputs: list[bytes]) -> list[bytes]:
        chain = KDFChain.create(RootKdf, root)
        return [await chain.step(dh, 64) for dh in inputs]

    root = rng(32)
    inputs = [rng(32) for _ in range(10)]
    expected = asyncio.run(theirs(root, inputs))
    ours = []
    for dh in inputs:
        root, chain_key, next_header_key = _kdf_rk(root, dh)
        ours.append(chain_key + next_header_key)
    assert ours == expected

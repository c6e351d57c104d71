"""Protocol speed against its floor: the raw primitive costs, measured in the same run.

    python bench/protocol.py [--messages N] [--handshakes N] [--turns N]

Prints µs per operation for (a) a one-way stream of 1 KiB messages (seal + open), (b)
ping-pong (a DH ratchet step on every message), (c) a PQXDH session setup (initiator +
responder, including the first message), and beside each the floor: the same work's
primitive calls alone. Ratios compare numbers from this run only; the machine is noisy.

Then the post-quantum ratchet (docs/protocol.md §13): messages per completed PQ epoch in
each direction of a ping-pong, for a 200-byte note (1 KiB envelopes) and for the smallest
body that takes a 4 KiB envelope; µs per message of a 200-byte-note ping-pong with and
without the PQ ratchet (averaged over many epochs) beside their primitive floors; and the
envelope size distribution of the same messages with and without it (identical, or the
run fails).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeyBundle, PrekeySecrets
from backchannel.protocol.e2e.primitives import (
    aead_decrypt,
    aead_encrypt,
    ed25519_public,
    ed25519_verify,
    header_decrypt,
    header_encrypt,
    hkdf,
    hmac_sha256,
    mlkem_private,
    mlkem_public,
)
from backchannel.protocol.e2e.session import Session
from backchannel.protocol.envelope import ENVELOPE_HEADER_SIZE

BODY = os.urandom(900)  # a 900-byte body fills the 1 KiB bucket
NOTE = os.urandom(200)  # a short note: a 1 KiB envelope with room for PQ chunks
REPEATS = 7


def per_op(fn: Callable[[], None], count: int) -> float:
    """Median over REPEATS batches of µs per call."""
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        samples.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(samples)


def paired_per_op(fns: list[Callable[[], None]], count: int) -> list[float]:
    """Median µs per call of each of `fns`, their batches interleaved so that the noise
    of a shared machine falls on all of them alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(3 * REPEATS):
        for fn, out in zip(fns, samples, strict=True):
            start = time.perf_counter()
            for _ in range(count):
                fn()
            out.append((time.perf_counter() - start) / count * 1e6)
    return [statistics.median(out) for out in samples]


def new_pair(pq: bool = False) -> tuple[Session, Session]:
    rng = os.urandom
    alice, bob = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    prekeys = PrekeySecrets.generate(rng, one_time_count=1)
    session = Session.initiate(alice, prekeys.bundle(bob, 1), rng, pq=pq)
    responder, _, _ = Session.respond(bob, prekeys, session.seal(1, b"", 0, rng).payload, rng)
    session.open(responder.seal(1, b"", 0, rng).payload, rng)
    return session, responder


def stream_message(a: Session, b: Session) -> Callable[[], None]:
    def run() -> None:
        b.open(a.seal(1, BODY, 0, os.urandom).payload, os.urandom)

    return run


def ping_pong(a: Session, b: Session) -> Callable[[], None]:
    turn = [a, b]

    def run() -> None:
        sender, receiver = turn
        receiver.open(sender.seal(1, BODY, 0, os.urandom).payload, os.urandom)
        turn.reverse()

    return run


def message_floor() -> Callable[[], None]:
    key, hk, plain = os.urandom(32), os.urandom(32), os.urandom(1024 - 17 - 1 - 68 - 16)
    header, ad = os.urandom(40), os.urandom(132)

    def run() -> None:
        mk = hmac_sha256(key, b"\x01")
        sealed = header_encrypt(hk, os.urandom(12), header, ad)
        ciphertext = aead_encrypt(mk, plain, ad + sealed)
        header_decrypt(hk, sealed, ad)
        aead_decrypt(mk, ciphertext, ad + sealed)

    return run


def dh_step_floor() -> Callable[[], None]:
    """What a DH ratchet step costs in primitives: a key pair, two X25519, two HKDF."""
    peer = X25519PrivateKey.generate().public_key()
    root = os.urandom(32)
    message = message_floor()

    def run() -> None:
        mine = X25519PrivateKey.generate()
        hkdf(mine.exchange(peer), salt=root, info=b"r", length=96)
        hkdf(X25519PrivateKey.generate().exchange(peer), salt=root, info=b"r", length=96)
        message()

    return run


def handshake(
    bundle_bytes: bytes, bob: IdentityKeyPair, prekeys: PrekeySecrets
) -> Callable[[], None]:
    alice = IdentityKeyPair.generate(os.urandom)

    def run() -> None:
        bundle = PrekeyBundle.decode(bundle_bytes)
        first = Session.initiate(alice, bundle, os.urandom).seal(1, b"", 0, os.urandom)
        Session.respond(bob, prekeys, first.payload, os.urandom)

    return run


def handshake_floor(bundle: PrekeyBundle, prekeys: PrekeySecrets) -> Callable[[], None]:
    """PQXDH's primitive calls: 2 signature checks, 1 ephemeral key, 4+4 X25519, 1 ML-KEM
    encapsulation and decapsulation, 2 HKDF per side, the sealed identity and a first
    message's AEAD work."""
    identity = ed25519_public(bundle.identity.signing_key)
    spk_sig = bundle.signed_prekey_signature
    pq_sig = bundle.pq_prekey_signature
    tagged_spk, tagged_pq = b"\x05" + bundle.signed_prekey, b"\x0c" + bundle.pq_prekey
    peer = X25519PrivateKey.generate().public_key()
    kem = mlkem_private(prekeys.pq_prekey_seed)
    message = message_floor()

    def run() -> None:
        ed25519_verify(identity, spk_sig, tagged_spk)
        ed25519_verify(identity, pq_sig, tagged_pq)
        ephemeral = X25519PrivateKey.generate()
        for _ in range(8):
            ephemeral.exchange(peer)
        _, ct = mlkem_public(bundle.pq_prekey).encapsulate()
        kem.decapsulate(ct)
        for _ in range(4):
            hkdf(b"x" * 160, salt=None, info=b"i", length=96)
        aead_decrypt(b"k" * 32, aead_encrypt(b"k" * 32, b"i" * 66, b""), b"")
        message()

    return run


def _latest(session: Session) -> int:
    pq = session.post_quantum
    assert pq is not None
    return pq.latest


def messages_per_epoch(body: bytes, turns: int) -> tuple[int, float]:
    """(envelope size, messages each side sent per epoch both sides completed)."""
    a, b = new_pair(pq=True)
    start = min(_latest(a), _latest(b))
    size = 0
    for _ in range(turns):
        payload = a.seal(1, body, 0, os.urandom).payload
        size = len(payload) + ENVELOPE_HEADER_SIZE
        b.open(payload, os.urandom)
        a.open(b.seal(1, body, 0, os.urandom).payload, os.urandom)
    epochs = min(_latest(a), _latest(b)) - start
    return size, turns / epochs if epochs else float("inf")


def smallest_4k_body() -> bytes:
    a, _b = new_pair(pq=True)
    for size in range(700, 1100):
        if len(a.seal(1, bytes(size), 0, os.urandom).payload) + ENVELOPE_HEADER_SIZE == 4096:
            return os.urandom(size)
    raise AssertionError("no body between 700 and 1100 bytes takes 4 KiB")


def note_ping_pong(pq: bool) -> Callable[[], None]:
    a, b = new_pair(pq)
    turn = [a, b]

    def run() -> None:
        sender, receiver = turn
        receiver.open(sender.seal(1, NOTE, 0, os.urandom).payload, os.urandom)
        turn.reverse()

    return run


def pq_epoch_floor() -> Callable[[], None]:
    """One PQ epoch's primitive calls: a key pair from a seed, an encapsulation, a
    decapsulation, one HKDF."""

    def run() -> None:
        key = mlkem_private(os.urandom(64))
        _, ct = mlkem_public(key.public_key().public_bytes_raw()).encapsulate()
        hkdf(key.decapsulate(ct), salt=b"k" * 32, info=b"e", length=32)

    return run


def size_distribution(pq: bool, bodies: list[bytes]) -> Counter[int]:
    a, b = new_pair(pq)
    sizes: Counter[int] = Counter()
    for i, body in enumerate(bodies):
        sender, receiver = (a, b) if i % 2 else (b, a)
        payload = sender.seal(1, body, 0, os.urandom).payload
        receiver.open(payload, os.urandom)
        sizes[len(payload) + ENVELOPE_HEADER_SIZE] += 1
    return sizes


def post_quantum_report(messages: int, turns: int) -> None:
    print()
    print("post-quantum ratchet (docs/protocol.md §13)")
    big = smallest_4k_body()
    for label, body in (("200-byte note", NOTE), (f"{len(big)}-byte body", big)):
        size, per_epoch = messages_per_epoch(body, turns)
        print(
            f"  {label:<18} {size:>5}-byte envelopes: {per_epoch:.2f} messages per epoch"
            " in each direction"
        )
    classical, with_pq, floor = paired_per_op(
        [note_ping_pong(False), note_ping_pong(True), dh_step_floor()], messages
    )
    epoch = per_op(pq_epoch_floor(), max(messages // 10, 10))
    _, per_epoch = messages_per_epoch(NOTE, turns)
    # Each epoch costs its KEM work once, spread over the messages of both directions.
    pq_floor = floor + epoch / (2 * per_epoch)
    print(f"  {'200-byte note ping-pong':<38} {'µs':>9} {'floor µs':>9} {'ratio':>6}")
    print(f"  {'  classical':<38} {classical:9.1f} {floor:9.1f} {classical / floor:6.2f}")
    print(
        f"  {'  with the PQ ratchet':<38} {with_pq:9.1f} {pq_floor:9.1f} {with_pq / pq_floor:6.2f}"
    )
    print(
        f"  PQ / classical, same run: {with_pq / classical:.2f}x"
        f" (one epoch's KEM work: {epoch:.1f} µs)"
    )
    rnd = random.Random(13)
    bodies = [
        os.urandom(rnd.choice((0, 40, 200, 600, 830, 900, 2000, 3900, 5000, 15000)))
        for _ in range(200)
    ]
    without, with_ = size_distribution(False, bodies), size_distribution(True, bodies)
    print(f"  envelope sizes, 200 messages: without {dict(sorted(without.items()))}")
    print(f"                                with    {dict(sorted(with_.items()))}")
    if without != with_:
        raise SystemExit("envelope sizes differ with the PQ ratchet")
    print("  identical: yes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--handshakes", type=int, default=30)
    parser.add_argument("--turns", type=int, default=200, help="ping-pong turns per count")
    args = parser.parse_args()

    bob = IdentityKeyPair.generate(os.urandom)
    prekeys = PrekeySecrets.generate(os.urandom, one_time_count=0)
    bundle = prekeys.bundle(bob, None)

    rows = [
        (
            "1 KiB message, one-way stream",
            per_op(stream_message(*new_pair()), args.messages),
            per_op(message_floor(), args.messages),
        ),
        (
            "1 KiB message, ping-pong (DH step)",
            per_op(ping_pong(*new_pair()), args.messages),
            per_op(dh_step_floor(), args.messages),
        ),
        (
            "PQXDH session setup (both sides)",
            per_op(handshake(bundle.encode(), bob, prekeys), args.handshakes),
            per_op(handshake_floor(bundle, prekeys), args.handshakes),
        ),
    ]
    print(f"{'operation':<38} {'µs':>9} {'floor µs':>9} {'ratio':>6}")
    for name, ours, floor in rows:
        print(f"{name:<38} {ours:9.1f} {floor:9.1f} {ours / floor:6.2f}")
    post_quantum_report(args.messages, args.turns)


if __name__ == "__main__":
    main()

"""What a new passphrase must be: a small rule, with no dependency, that refuses the
passphrases a guesser tries first.

Why a rule and not a strength estimator: no vetted estimator (zxcvbn or the like) is a
dependency, and the passphrase guards a file that an attacker who copied it can try
offline at the Argon2id cost (about 0.2 s per guess per core, `keystore.KdfParameters`).
A 4-digit PIN falls in about 35 core-minutes, a common password in seconds; twelve
characters of anything not on the short list below are out of reach of exhaustive search
at that cost. The rule does not make a weak choice strong (`"aaaaaaaaaaab"` passes); it
refuses the ones that cost nothing to guess, and says why.

Applied by the command line (`init`, `passphrase change`), not by `Principal.create`:
tests, benchmarks and the demo make throwaway homes through the API. Scripts and tests
that need a weak passphrase through the command line pass `--allow-weak-passphrase` or
set `BACKCHANNEL_ALLOW_WEAK_PASSPHRASE=1`.
"""

from __future__ import annotations

import itertools
from typing import Final

from backchannel.client.errors import ClientError

__all__ = [
    "ALLOW_WEAK_ENV",
    "MIN_PASSPHRASE_LENGTH",
    "WeakPassphrase",
    "check_passphrase",
    "passphrase_weakness",
]

# Twelve characters: at 95 printable characters, even a random 12 is ~2^78 guesses; at
# words' entropy, three or four words. NIST SP 800-63B asks for at least 8 when a rate
# limit exists; an offline guesser has none, hence more.
MIN_PASSPHRASE_LENGTH: Final = 12
ALLOW_WEAK_ENV: Final = "BACKCHANNEL_ALLOW_WEAK_PASSPHRASE"

# The passphrases a guesser tries first (the top of public breach-frequency lists, and
# ones long enough to pass the length rule), compared lower-cased with spaces removed.
_COMMON: Final = frozenset({
    "123456789012", "1234567890123", "12345678901234", "123456789123", "1234512345",
    "111111111111", "000000000000", "qwertyuiop", "qwertyuiopasdfghjkl",
    "qwertyuiop123", "qwerty123456", "1qaz2wsx3edc", "1q2w3e4r5t6y", "zaq12wsxcde3",
    "password", "password1", "password123", "password1234", "passwordpassword",
    "passw0rd", "p@ssw0rd", "p@ssword123", "iloveyou", "iloveyou1234", "letmein",
    "letmein12345", "welcome", "welcome12345", "admin", "admin1234567", "administrator",
    "changeme", "changemenow", "secret", "topsecret", "supersecret", "mypassword",
    "mypassword123", "abc123", "abcdefghijkl", "abcdefghijklm", "trustno1", "monkey",
    "dragon", "football", "baseball", "sunshine", "princess", "starwars", "whatever",
    "passphrase", "mypassphrase", "backchannel", "backchannel123", "correcthorse",
})


class WeakPassphrase(ClientError):
    """The new passphrase is one a guesser would try first; the message says why."""


def _is_run(text: str) -> bool:
    """True for a run such as ``abcdefghijkl`` or ``987654321098`` (each character one
    code point from the last, always up or always down, digits wrapping 9 -> 0)."""
    if len(text) < 3:
        return False

    def step(a: str, b: str) -> int:
        if a.isdigit() and b.isdigit():
            return (int(b) - int(a)) % 10
        return ord(b) - ord(a)

    steps = {step(a, b) for a, b in itertools.pairwise(text)}
    return steps in ({1}, {-1}, {9})


def passphrase_weakness(passphrase: str) -> str | None:
    """Why `passphrase` is too weak to protect the state, or None if the rule passes it.

    Checks, in this order: not empty or all whitespace; not one character repeated; not
    a short pattern repeated (``abab…``) or a run (``1234…``); not on the built-in list of
    the most common passwords; at least `MIN_PASSPHRASE_LENGTH` characters once runs of
    whitespace count as one.
    """
    if not passphrase.strip():
        return "it is empty or only whitespace"
    squeezed = "".join(passphrase.split()).lower()
    if len(set(squeezed)) == 1:
        return "it is one character repeated"
    for size in (2, 3, 4):
        unit = squeezed[:size]
        if len(squeezed) >= 2 * size and unit * (len(squeezed) // size) == squeezed:
            return f"it is {unit!r} repeated"
    if _is_run(squeezed):
        return "it is a run of consecutive characters"
    if squeezed in _COMMON:
        return "it is one of the most common passwords"
    length = len(" ".join(passphrase.split()))
    if length < MIN_PASSPHRASE_LENGTH:
        return (
            f"it has {length} character(s); use at least {MIN_PASSPHRASE_LENGTH}, for"
            " example three or four unrelated words"
        )
    return None


def check_passphrase(passphrase: str, *, allow_weak: bool = False) -> None:
    """Refuse a weak new passphrase (`passphrase_weakness`), unless `allow_weak`.

    Even with `allow_weak`, an empty passphrase is refused: it would encrypt the state
    with a key anyone can derive.

    Raises:
        WeakPassphrase: it is too weak, with the reason.
    """
    if not passphrase:
        raise WeakPassphrase("the passphrase is empty; it encrypts the local state")
    if allow_weak:
        return
    reason = passphrase_weakness(passphrase)
    if reason is not None:
        raise WeakPassphrase(
            f"passphrase refused: {reason} (--allow-weak-passphrase overrides, for tests)"
        )

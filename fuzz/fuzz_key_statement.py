"""Invariant: any bytes either decode to a relay key statement that verifies under the
identity it names (and, given that identity as the pin, again) and whose text form
decodes to the same statement, or raise StatementRefused; nothing else escapes.

Run: python fuzz/fuzz_key_statement.py [corpus dir] (atheris, libFuzzer flags accepted).
Seeds are genuine statements, so mutations reach the signature check as well as the parser.
"""

from __future__ import annotations

import sys

from backchannel.protocol.forwarding import KEY_SEED_SIZE, RelayKeyPair
from backchannel.protocol.keystatement import KeyStatement, RelayIdentity, StatementRefused

_IDENTITY = RelayIdentity(b"\x09" * 32)
_KEYS = [RelayKeyPair(bytes([i]) * KEY_SEED_SIZE).public for i in (1, 2)]
SEEDS = [_IDENTITY.sign([(_KEYS[0], 0)], 1_800_000_000).raw,
         _IDENTITY.sign([(_KEYS[0], 0), (_KEYS[1], 1_800_600_000)], 1_800_000_000).raw]


def test_one_input(data: bytes) -> None:
    try:
        statement = KeyStatement.from_bytes(data)
    except StatementRefused:
        return
    assert statement.raw == data
    assert KeyStatement.from_bytes(data, statement.identity) == statement
    assert KeyStatement.from_text(statement.to_text()) == statement
    assert statement.keys[0][1] == 0


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

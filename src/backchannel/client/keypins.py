"""Relay key pins: a relay's forwarding key is used only when its signed statement verifies
under the pin of its identity (docs/relay.md "Key pins").

Invites of version 4 give each relay's pin; `refresh_key` fetches the relay's statement,
checks it against the pin and keeps its current key. It runs when a relay with a pin has
no key yet (the joiner, after `accept`), and again whenever a send sealed to the key we
hold is refused as UNKNOWN_KEY or KEY_RETIRED, by the destination or, as far as we can
tell, by the forwarding relay in its name. The statement then settles who is right:

- its current key is another one: the relay rotated; the new key is kept and used;
- its current key is the one we sealed to: the refusal was false (a destination cannot
  refuse its current key), so the forwarding relay made it up or damaged the seal. The
  caller counts that forwarding relay out for the pass and never sends directly on its
  word (`Sender.flush_relay`).

A statement older than the one we hold by more than `MAX_STATEMENT_AGE_GAP` is refused, so
an old one replayed cannot roll a relay back to a key it retired.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from backchannel.client.routing import fetch_key_statement
from backchannel.client.state.shared import ClientState
from backchannel.client.transport import RelayClosed
from backchannel.protocol.errors import LocalProtocolError
from backchannel.protocol.forwarding import RelayPublicKey
from backchannel.protocol.keystatement import KeyStatement, StatementRefused

__all__ = ["MAX_STATEMENT_AGE_GAP", "KeyCheck", "Refreshed", "refresh_key"]

# Seconds a fresh statement may be older than the one held: relay nodes sharing a key
# file sign with their own clocks, which drift; a statement from before a rotation is
# days older (the default overlap is a week).
MAX_STATEMENT_AGE_GAP: Final = 600


class KeyCheck(enum.Enum):
    """What a fetch of a relay's statement showed."""

    CHANGED = "changed"  # verified; its current key is not the one we used: use it
    SAME = "same"  # verified; the key we used is still current: the refusal was false
    REFUSED = "refused"  # another identity than the pin, a bad signature, or a rollback
    UNREACHABLE = "unreachable"  # no statement came: nothing is known either way


@dataclass(frozen=True, slots=True)
class Refreshed:
    """The outcome of `refresh_key`, with a line for the principal when not CHANGED."""

    check: KeyCheck
    reason: str = ""


async def refresh_key(state: ClientState, url: str, used: RelayPublicKey | None, *,
                      timeout: float) -> Refreshed:
    """Fetch the relay's key statement, verify it against its pin and keep its key.

    A relay without a pin (paired with a version 3 invite, whose key the inviter signed)
    is pinned to the identity of the first statement that verifies, fetched over the same
    TLS as its key was: trust on first use, from then on held to it.

    Args:
        used: the key the refused send was sealed to (None: we had none).
        timeout: seconds for the fetch.
    """
    pin = state.relays.pin(url)
    try:
        statement = await fetch_key_statement(url, pin, timeout=timeout)
    except StatementRefused as error:
        return Refreshed(KeyCheck.REFUSED, f"{url}'s key statement was refused: {error}")
    except (RelayClosed, LocalProtocolError) as error:
        return Refreshed(KeyCheck.UNREACHABLE, f"{url}'s key statement: {error}")
    with state.store.transaction():
        held = state.relays.statement(url)
        if _rolled_back(held, statement):
            return Refreshed(KeyCheck.REFUSED,
                             f"{url} sent a key statement older than the one held")
        if pin is None:
            state.relays.put_pin(url, statement.identity)
        state.relays.keep_statement(url, statement)
    if used is not None and statement.lists_current(used):
        return Refreshed(KeyCheck.SAME, f"{url}'s signed statement still lists the key "
                                        "the refusal called unknown")
    return Refreshed(KeyCheck.CHANGED)


def _rolled_back(held: KeyStatement | None, fresh: KeyStatement) -> bool:
    return held is not None and fresh.issued_at + MAX_STATEMENT_AGE_GAP < held.issued_at

"""Private routing, the client's side: deposit through another relay (docs/relay.md).

`forward_send` asks a forwarding relay F to carry one send to the destination relay D: the
mailbox id, the send token and the envelope are sealed to D's published key
(`protocol.forwarding`), so F learns D's URL and the sealed size, never the mailbox, and D
sees F's address, never ours. D's outcome comes back sealed under a reply key only we and
D hold: a "stored" that F made up fails to open (`ForgedForwardReply`).

Each call opens its own short connection to F and closes it, so that forwards for
different mailboxes share no connection (issue 14 §1 asks the same of direct sends).
`choose_forwarder` picks F among known relays of another operator than D's, and
`plan_route` makes the flush's choice from the principal's settings.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from backchannel.client.transport import RelayClosed, RelayRequestError
from backchannel.protocol.envelope import MAILBOX_ID_SIZE
from backchannel.protocol.errors import BackchannelError
from backchannel.protocol.forwarding import (
    ForgedReply,
    InnerSend,
    RelayPublicKey,
    open_reply,
    seal_send,
)
from backchannel.protocol.keystatement import MAX_STATEMENT_SIZE, KeyStatement
from backchannel.protocol.relayconn import Answer, ClientConnection, Refusal
from backchannel.protocol.relayframes import (
    FORWARD_KEY_ID_SIZE,
    HPKE_ENC_SIZE,
    HPKE_TAG_SIZE,
    MAX_RESPONSE_FRAME_SIZE,
    REPLY_KEY_SIZE,
    TOKEN_SIZE,
    ErrorCode,
    Forward,
    SealedResult,
    encode,
)
from backchannel.protocol.text import check_relay_url

__all__ = [
    "DEFAULT_FORWARD_TIMEOUT",
    "DEFAULT_KEY_TIMEOUT",
    "FORWARDING_MODES",
    "FORWARDING_SETTING",
    "NO_FORWARDER",
    "DestinationDown",
    "ForgedForwardReply",
    "ForwardRefused",
    "ForwarderUnfit",
    "RelayChoice",
    "Route",
    "StaleKey",
    "choose_forwarder",
    "fetch_key_statement",
    "fetch_relay_key",
    "forward_deposit",
    "forward_frame_size",
    "forward_send",
    "operator_setting",
    "plan_route",
]

# The relay publishes its key here (`relay.server.RELAY_KEY_PATH`).
RELAY_KEY_PATH: Final = "/relay-key"
# An answer to GET /relay-key: headers and the 1,634-character key; more is not a key.
_MAX_KEY_ANSWER: Final = 4096
# The relay publishes its signed key statement here (`relay.server.RELAY_KEY_STATEMENT_PATH`).
RELAY_KEY_STATEMENT_PATH: Final = "/relay-key-statement"
# An answer to GET /relay-key-statement: headers and the statement's text.
_MAX_STATEMENT_ANSWER: Final = 1024 + (MAX_STATEMENT_SIZE * 4 + 2) // 3
# Seconds to fetch a relay's key.
DEFAULT_KEY_TIMEOUT: Final = 10.0
# Why a send goes direct (or waits) when no relay is fit to forward it (a route's status).
NO_FORWARDER: Final = "no other relay can forward to it"
# A forwarding relay's own refusals that say it will carry nothing to the destination.
_UNFIT_CODES: Final = frozenset({ErrorCode.BAD_DESTINATION, ErrorCode.FORWARDING_DISABLED})
# Seconds a forward may take end to end: the forwarding relay allows itself 10 s to reach
# the destination and have its answer (`RelayLimits.forward_timeout`); two more cover our
# own connection to it.
DEFAULT_FORWARD_TIMEOUT: Final = 12.0


class ForwardRefused(RelayRequestError):
    """The forward was refused, by the destination or by the forwarding relay.

    Attributes:
        code: the `ErrorCode` value.
        by_destination: True when the refusal came sealed by the destination relay (it
            is authentic: the destination read the send and refused it); False when the
            forwarding relay refused, or passed on a plain refusal, which it could have
            made up (it could as well have dropped the send).
    """

    def __init__(self, code: int, reason: str, *, by_destination: bool) -> None:
        super().__init__(code, reason)
        self.by_destination = by_destination


class ForgedForwardReply(RelayClosed):
    """The forwarding relay answered with an outcome the destination did not seal: it lied
    about the send (or damaged the answer). Treat the send as not stored, and F as
    hostile."""


def _reached(exc: BaseException) -> RelayClosed:
    return RelayClosed(f"the relay cannot be reached ({type(exc).__name__})")


async def forward_send(
    forwarder_url: str,
    destination_url: str,
    destination_key: RelayPublicKey,
    mailbox_id: bytes,
    send_token: bytes,
    envelope: bytes,
    *,
    timeout: float = DEFAULT_FORWARD_TIMEOUT,
) -> int:
    """Deposit `envelope` in `mailbox_id` on the destination relay, through another relay.

    Args:
        forwarder_url: the relay that carries the send (F); it sees our address.
        destination_url: the relay that holds the mailbox (D); it sees F's address.
        destination_key: D's published forwarding key (``GET /relay-key`` or an invite).
        mailbox_id, send_token, envelope: the deposit, as for `RelayClient.send`.
        timeout: seconds for the whole forward.

    Returns:
        The envelope's sequence number on D (authenticated by D).

    Raises:
        InsecureRelayUrl, UnsafeText: a URL is not a relay URL (`check_relay_url`).
        ForwardRefused: refused (``by_destination`` says by whom).
        ForgedForwardReply: F's answer was not sealed by D.
        RelayClosed: F cannot be reached, broke the protocol, or did not answer in time
            (the envelope may or may not be stored: send it again; receivers deduplicate).
    """
    check_relay_url(forwarder_url, "forwarding relay URL")
    check_relay_url(destination_url, "destination relay URL")
    reply_key = os.urandom(REPLY_KEY_SIZE)
    sealed = seal_send(destination_key,
                       InnerSend(mailbox_id, send_token, reply_key, envelope))
    conn = ClientConnection()
    _, data = conn.send_request(Forward(0, destination_key.key_id, destination_url, sealed))
    try:
        async with asyncio.timeout(timeout):
            async with connect(forwarder_url, compression=None,
                               max_size=MAX_RESPONSE_FRAME_SIZE) as ws:
                await ws.send(data)
                message = await ws.recv()
    except TimeoutError:
        raise RelayClosed(f"the forward was not answered within {timeout:g} s") from None
    except (OSError, InvalidHandshake, ConnectionClosed) as exc:
        raise _reached(exc) from None
    if isinstance(message, str):
        raise RelayClosed("the forwarding relay sent a text frame")
    try:
        events = conn.receive(message)
    except BackchannelError as exc:
        raise RelayClosed(f"the forwarding relay broke the protocol: {exc}") from None
    match events:
        case [Answer(frame=SealedResult(sealed=sealed_reply))]:
            try:
                outcome = open_reply(reply_key, sealed_reply)
            except ForgedReply as exc:
                raise ForgedForwardReply(str(exc)) from None
            if not outcome.stored:
                raise ForwardRefused(outcome.code, "", by_destination=True)
            return outcome.seq
        case [Refusal(code=code, reason=reason)]:
            raise ForwardRefused(code, reason, by_destination=False)
    raise RelayClosed("the forwarding relay answered something else")


class DestinationDown(RelayClosed):
    """The forwarding relay could not reach the destination: it is down for this pass, as
    if we had failed to reach it ourselves."""


class ForwarderUnfit(RelayClosed):
    """The forwarding relay says it carries no sends to this destination: it forwards to
    no one (`--no-forwarding`), or not there (a relay on its own machine or network, a URL
    it refuses). Nothing was carried, so the send may go again by another route; the
    relay is out of the choice for that destination, as if it were down for it.

    Its word is not checked (the refusal is not sealed by the destination), and need not
    be: a forwarding relay that lies so could as well drop the connection, which also
    counts it out."""


class StaleKey(RelayClosed):
    """The destination (or the forwarding relay for it) refused the key we sealed to as
    unknown or retired: it may have another now (`client.keypins` tells)."""


async def forward_deposit(forwarder_url: str, destination_url: str,
                          destination_key: RelayPublicKey, mailbox_id: bytes,
                          send_token: bytes, envelope: bytes) -> int:
    """`forward_send`, with the refusals a sender acts on other than as refusals named by
    what they mean (the flush and the slots settle forwards alike).

    Raises:
        DestinationDown: the forwarding relay says it cannot reach the destination.
        ForwarderUnfit: the forwarding relay says it carries nothing to the destination.
        StaleKey: the key we sealed to was refused as unknown or retired.
        ForwardRefused, ForgedForwardReply, RelayClosed: as `forward_send`.
    """
    try:
        return await forward_send(forwarder_url, destination_url, destination_key,
                                  mailbox_id, send_token, envelope)
    except ForwardRefused as error:
        if error.code == ErrorCode.DESTINATION_UNAVAILABLE and not error.by_destination:
            raise DestinationDown(
                f"{forwarder_url} cannot reach it now (forwarded send)") from None
        if error.code in _UNFIT_CODES and not error.by_destination:
            raise ForwarderUnfit(
                f"{forwarder_url} does not forward to {destination_url}") from None
        if error.code in (ErrorCode.UNKNOWN_KEY, ErrorCode.KEY_RETIRED):
            raise StaleKey(f"{destination_url} no longer has the key we know") from None
        raise


def forward_frame_size(destination_url: str, envelope_size: int) -> int:
    """Bytes of the Forward frame that carries one envelope of `envelope_size` to
    `destination_url` (what the forwarding relay receives from us; the sealed send it
    passes on to the destination is the same sealed bytes): the HPKE encapsulation and
    tag, the mailbox id, send token and reply key sealed with the envelope, and the
    destination's URL."""
    inner = MAILBOX_ID_SIZE + TOKEN_SIZE + REPLY_KEY_SIZE + 4 + envelope_size
    sealed = bytes(HPKE_ENC_SIZE + inner + HPKE_TAG_SIZE)
    return len(encode(Forward(0, bytes(FORWARD_KEY_ID_SIZE), destination_url, sealed)))


@dataclass(frozen=True, slots=True)
class RelayChoice:
    """A relay the client knows: its URL and who runs it (an operator label, as invites
    may carry; empty when unknown)."""

    url: str
    operator: str = ""


def choose_forwarder(destination: RelayChoice, known: Sequence[RelayChoice],
                     rng: random.Random | None = None) -> RelayChoice | None:
    """A forwarding relay for sends to `destination`, or None when none is fit.

    One run by another operator than the destination's is preferred (two operators would
    have to pool their logs to link sender and mailbox); failing that, any other relay
    (another address at least); never the destination itself. Picked at random among the
    best, so that sends do not all funnel through one relay.
    """
    pick = rng if rng is not None else random.SystemRandom()
    others = [r for r in known if r.url != destination.url]
    apart = [r for r in others
             if not destination.operator or not r.operator or r.operator != destination.operator]
    # Unknown operators might be the destination's: prefer relays known to be another's.
    known_apart = [r for r in apart if r.operator and destination.operator]
    for group in (known_apart, apart, others):
        if group:
            return pick.choice(group)
    return None



async def fetch_relay_key(url: str, *, timeout: float = DEFAULT_KEY_TIMEOUT) -> RelayPublicKey:
    """A relay's published forwarding key, from ``GET /relay-key`` beside its WebSocket,
    unverified (no pin): what relays of the release before key statements offer.

    Over ``wss://`` the request goes over TLS verified against the system's trust store,
    as the WebSocket does. A key verified against the relay's pin (`fetch_key_statement`)
    is preferred. Compare `RelayPublicKey.fingerprint` with what the operator prints when
    in doubt.

    Raises:
        InsecureRelayUrl, UnsafeText: not a relay URL.
        RelayClosed: the relay cannot be reached, or has no key, or answered garbage.
    """
    body = await _http_get(url, RELAY_KEY_PATH, _MAX_KEY_ANSWER, timeout, "key")
    try:
        return RelayPublicKey.from_text(body.strip().decode("ascii"))
    except (UnicodeDecodeError, BackchannelError):
        raise RelayClosed("the relay's published key is not a relay key") from None


async def fetch_key_statement(url: str, pin: bytes | None, *,
                              timeout: float = DEFAULT_KEY_TIMEOUT) -> KeyStatement:
    """A relay's signed key statement, from ``GET /relay-key-statement``, verified: its
    signature, and (with `pin`) that it is the pinned identity's. Fetched directly, over
    a short connection of its own that carries nothing else (docs/threat-model.md says
    what that shows the relay).

    Raises:
        InsecureRelayUrl, UnsafeText: not a relay URL.
        RelayClosed: the relay cannot be reached, publishes no statement, or answered
            something that is not one.
        StatementRefused: a statement that does not verify, or another identity's than
            `pin`: none of its keys may be used.
    """
    body = await _http_get(url, RELAY_KEY_STATEMENT_PATH, _MAX_STATEMENT_ANSWER, timeout,
                           "key statement")
    try:
        text = body.strip().decode("ascii")
    except UnicodeDecodeError:
        raise RelayClosed("the relay's key statement is not text") from None
    return KeyStatement.from_text(text, pin)


async def _http_get(url: str, path: str, limit: int, timeout: float, what: str) -> bytes:
    """The body of a 200 answer to ``GET path`` on the relay at `url` (at most `limit`
    bytes, headers included), over a connection opened and closed for it.

    Raises:
        InsecureRelayUrl, UnsafeText: not a relay URL.
        RelayClosed: unreachable, not answered in time, longer than `limit`, or not 200.
    """
    check_relay_url(url)
    parts = urlsplit(url)
    secure = parts.scheme.lower() == "wss"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    context = ssl.create_default_context() if secure else None
    authority = f"[{host}]" if ":" in host else host
    request = (f"GET {path} HTTP/1.1\r\nHost: {authority}:{port}\r\n"
               "Connection: close\r\n\r\n").encode("ascii")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
            try:
                writer.write(request)
                await writer.drain()
                answer = await reader.read(limit + 1)
                while len(answer) <= limit and (more := await reader.read(
                        limit + 1 - len(answer))):
                    answer += more
            finally:
                writer.close()
    except TimeoutError:
        raise RelayClosed(f"the relay's {what} was not sent within {timeout:g} s") from None
    except (OSError, ssl.SSLError) as exc:
        raise _reached(exc) from None
    head, sep, body = answer.partition(b"\r\n\r\n")
    if len(answer) > limit or not sep or not head.startswith(b"HTTP/1.1 200 "):
        raise RelayClosed(f"the relay publishes no forwarding {what}")
    return body


# --- the flush's choice (`Sender.flush_relay`) -----------------------------------------

# The setting that says how sends go: "auto" (or unset) forwards where it can and sends
# direct otherwise; "require" forwards or does not send; "off" always sends direct.
FORWARDING_SETTING: Final = "forwarding"
FORWARDING_MODES: Final = ("auto", "require", "off")
_OPERATOR_PREFIX: Final = "relay-operator:"


def operator_setting(url: str) -> str:
    """The setting naming who runs the relay at `url` (any label; same label, same
    operator). Unset: unknown, which `choose_forwarder` trusts less than a known other."""
    return _OPERATOR_PREFIX + url


@dataclass(frozen=True, slots=True)
class Route:
    """How the rows for one destination relay go in this flush.

    Attributes:
        forwarder: the relay that carries them (None: direct, or not at all).
        key: the destination's forwarding key, when forwarded.
        send: False when forwarding is required and impossible: the rows wait.
        status: one line for the principal (empty when forwarded as asked).
    """

    forwarder: str | None
    key: RelayPublicKey | None
    send: bool
    status: str


def plan_route(destination: str, known: Sequence[str], key: RelayPublicKey | None,
               setting: Callable[[str], str], down: Collection[str] = (),
               rng: random.Random | None = None) -> Route:
    """Pick how to reach `destination`: through a forwarding relay where one fits and the
    destination's key is known (from an invite), else direct unless the setting is
    "require". `down`: relays not to use as forwarders now (unreachable in this pass)."""
    mode = setting(FORWARDING_SETTING).strip().lower() or "auto"
    if mode not in FORWARDING_MODES:
        mode = "require"  # an unreadable setting errs on the side that leaks less
    if mode == "off":
        return Route(None, None, True, "")
    why = ""
    if key is None:
        why = f"no forwarding key is known for {destination}"
    else:
        choices = [RelayChoice(u, setting(operator_setting(u)))
                   for u in known if u not in down]
        picked = choose_forwarder(
            RelayChoice(destination, setting(operator_setting(destination))), choices, rng)
        if picked is not None:
            return Route(picked.url, key, True, "")
        why = NO_FORWARDER
    if mode == "require":
        return Route(None, None, False,
                     f"not sent to {destination}: forwarding is required and {why}")
    return Route(None, None, True,
                 f"sent directly to {destination} (it sees this machine's address): {why}")

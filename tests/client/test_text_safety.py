"""The text policy at the client's edges (review §2d, §2e): hostile names and relay URLs in
invites and hellos are refused before anything is stored, our own name and relays are
checked before use, and a relay's free-text reason never reaches an error message."""

from __future__ import annotations

from pathlib import Path

import pytest

from backchannel.client import engine
from backchannel.client.engine import Principal
from backchannel.client.errors import ClientError, InviteRefused
from backchannel.client.invite import Hello, Invite, Move, RelayAddress
from backchannel.client.transport import RELAY_ERROR_TEXT, RelayRequestError, relay_error_text
from backchannel.dialogue import decode_body
from backchannel.protocol.e2e.keys import IdentityKeyPair
from backchannel.protocol.e2e.prekeys import PrekeySecrets
from backchannel.protocol.errors import RemoteProtocolError, UnsafeRemoteText
from backchannel.protocol.message import MessageKind
from backchannel.protocol.relayframes import ErrorCode
from backchannel.protocol.text import first_refused
from backchannel.testing import SeededRng

from .conftest import FAST_KDF, MakePrincipal, running_relay
from .fault_relays import refusing_relay

HOSTILE_NAME = "\x1b[2J\x1b[HVERIFIED OK\x1b[8m"
HOSTILE_REASON = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[2J\u202eKO\x9b"
_RNG = SeededRng("text safety")
_ID = IdentityKeyPair.generate(_RNG)
_BUNDLE = PrekeySecrets.generate(_RNG, one_time_count=1).bundle(_ID, 1)
_GOOD = RelayAddress("wss://relay.example/", b"\x01" * 16, b"\x02" * 32)


def _code(name: str = "washington", url: str = "wss://relay.example/") -> str:
    # The dataclass does not check what it holds: a hostile inviter's client would not.
    relays = (RelayAddress(url, b"\x01" * 16, b"\x02" * 32),)
    return Invite(b"\x07" * 16, 2**62, name, relays, _BUNDLE).signed(_ID).to_code()


@pytest.mark.parametrize("name", [HOSTILE_NAME, "a\u202eb", "a\u200bb", "a\x9bb", "a\nb",
                                  "\u2066x\u2069"])
def test_invite_with_a_hostile_name_is_refused(name: str) -> None:
    with pytest.raises(InviteRefused, match=r"invite code refused: the name in the invite "
                                            r"contains U\+[0-9A-F]{4}") as caught:
        Invite.from_code(_code(name=name), now_ms=0)
    assert first_refused(str(caught.value)) is None


@pytest.mark.parametrize(("url", "why"), [
    ("ws://relay.example/", "not encrypted: use wss://"),
    ("wss://relay.example/\x1b[2J", "contains U\\+001B"),
    ("https://relay.example/", "web address"),
])
def test_invite_with_an_insecure_or_hostile_relay_is_refused(url: str, why: str) -> None:
    with pytest.raises(InviteRefused, match=why) as caught:
        Invite.from_code(_code(url=url), now_ms=0)
    assert first_refused(str(caught.value)) is None


def test_loopback_ws_in_an_invite_is_accepted() -> None:
    invite = Invite.from_code(_code(url="ws://127.0.0.1:8470/"), now_ms=0)
    assert invite.relays[0].url == "ws://127.0.0.1:8470/"


def test_hello_and_move_refuse_hostile_text() -> None:
    with pytest.raises(RemoteProtocolError, match="name in the hello contains U\\+001B"):
        Hello.decode(Hello(HOSTILE_NAME, (_GOOD,)).encode())
    insecure = RelayAddress("ws://10.1.2.3/", b"\x01" * 16, b"\x02" * 32)
    with pytest.raises(RemoteProtocolError, match="use wss://"):
        Move.decode(Move((insecure,)).encode())


def test_init_refuses_a_hostile_name_and_writes_nothing(tmp_path: Path) -> None:
    for name in (HOSTILE_NAME, "wash\u202eington", "a\u2028b"):
        with pytest.raises(ClientError, match="the name contains U\\+"):
            Principal.create(tmp_path / "home", name, "passphrase", kdf=FAST_KDF)
    assert not (tmp_path / "home").exists()


async def test_invite_refuses_insecure_relays_before_connecting(
    make_principal: MakePrincipal,
) -> None:
    alice = make_principal("alice")
    # Nothing listens at these: a refusal that came from connecting would say so.
    for url, why in (("ws://relay.example.org/", "use wss://"),
                     ("http://relay.example.org/", "web address"),
                     ("wss://relay.example.org/\u202e", "U\\+202E")):
        with pytest.raises(ClientError, match=why):
            await alice.invite([url])
    assert alice.pending_invites() == []


async def test_accepting_a_hostile_invite_leaves_the_state_as_it_was(
    tmp_path: Path, make_principal: MakePrincipal, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = make_principal("bob")
    async with running_relay(tmp_path / "r.db") as relay:
        # A hostile inviter: its own client skipped the check on its name.
        monkeypatch.setattr(engine, "check_safe_text", lambda *a, **k: None)
        mallory = Principal.create(tmp_path / "mallory", HOSTILE_NAME, "pw", kdf=FAST_KDF)
        monkeypatch.undo()
        try:
            code = await mallory.invite([relay.url])
        finally:
            mallory.close()
        with pytest.raises(InviteRefused, match="the name in the invite contains U\\+001B"):
            await bob.accept(code)
    assert bob.channels() == []
    with pytest.raises(ClientError, match="channel's name contains U\\+202E"):
        await bob.accept(_code(), name="x\u202e")


async def test_a_hostile_hello_is_rejected_and_the_invite_stays_open(
    tmp_path: Path, make_principal: MakePrincipal, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = make_principal("alice")
    async with running_relay(tmp_path / "r.db") as relay:
        code = await alice.invite([relay.url])
        monkeypatch.setattr(engine, "check_safe_text", lambda *a, **k: None)
        mallory = Principal.create(tmp_path / "mallory", HOSTILE_NAME, "pw", kdf=FAST_KDF)
        monkeypatch.undo()
        try:
            await mallory.accept(code)
        finally:
            mallory.close()
        report = await alice.sync()
    assert report.rejected == 1 and report.new_channels == []
    assert alice.channels() == [] and len(alice.pending_invites()) == 1


def test_every_relay_error_code_has_the_clients_own_words() -> None:
    assert set(RELAY_ERROR_TEXT) == set(ErrorCode)
    error = RelayRequestError(12, HOSTILE_REASON)
    assert str(error) == "relay error 12: " + RELAY_ERROR_TEXT[ErrorCode.QUOTA_EXCEEDED]
    assert first_refused(error.relay_reason) is None and "\\x1b" in error.relay_reason
    assert relay_error_text(999) == "relay error 999: the relay refused the request"


async def test_a_relays_reason_never_reaches_the_error(make_principal: MakePrincipal) -> None:
    alice = make_principal("alice")
    async with refusing_relay(HOSTILE_REASON) as url:
        with pytest.raises(ClientError) as caught:
            await alice.invite([url])
    message = str(caught.value)
    assert "relay error 4: the relay is limiting requests" in message
    assert "KO" not in message and first_refused(message) is None


def test_refused_text_from_the_other_side_is_blamed_on_them_with_field_and_code_point() -> None:
    with pytest.raises(UnsafeRemoteText) as caught:
        Hello.decode(Hello("a\u202eb", (_GOOD,)).encode())
    assert (caught.value.field, caught.value.code_point) == ("the name in the hello", 0x202E)
    # A note body built past the checks (as a hostile client would): text "1000" + RLO.
    text = "1000\u202e".encode()
    body = bytes([1]) + bytes(8) + len(text).to_bytes(2, "big") + text
    with pytest.raises(UnsafeRemoteText, match="note text contains U\\+202E") as refused:
        decode_body(MessageKind.NOTE, body)
    assert (refused.value.field, refused.value.code_point) == ("note text", 0x202E)

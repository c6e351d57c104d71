"""The text policy (protocol/text.py): what is refused, how errors name it, how output is
escaped; hypothesis properties for each function."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backchannel.protocol.errors import (
    InsecureRelayUrl,
    LocalProtocolError,
    UnsafeText,
)
from backchannel.protocol.text import (
    JOINERS,
    REFUSED_CATEGORIES,
    check_relay_url,
    check_safe_text,
    code_point,
    escaped,
    first_refused,
    is_loopback_host,
    json_escaped,
)

# What the review found reaching terminals (§2d), one of each kind.
HOSTILE = [
    "\x1b[2J\x1b[H\x1b[32mVERIFIED OK\x1b[8m",  # CSI: clear, home, colour, conceal
    "\x1b]52;c;ZWNobyBwd25lZA==\x07",  # OSC 52: set the clipboard
    "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8: a link
    "\x9b2J",  # C1 CSI, one code point
    "0001\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u2066a\u2067b\u2068c\u2069",  # isolates
    "00\u200b01",  # ZERO WIDTH SPACE
    "\ufeffname",  # BOM
    "a\u2028b\u2029c",  # line and paragraph separators
    "a\rb",  # carriage return
    "tag\U000e0041",  # an invisible tag character
    "\ud800",  # a lone surrogate
]
ORDINARY = ["washington", "北京", "Москва", "Zürich", "👨\u200d👩\u200d👧 family", "[bold]x[/]",
            "C:\\path", "تهران", "नमस्ते"]

# Text the policy lets through in a body: no refused category, but line feed, tab and joiners.
body_chars = st.one_of(
    st.characters(blacklist_categories=tuple(REFUSED_CATEGORIES)),
    st.sampled_from("\n\t\u200c\u200d"),
)
line_chars = st.characters(blacklist_categories=tuple(REFUSED_CATEGORIES))


def _is_refused(char: str) -> bool:
    return unicodedata.category(char) in REFUSED_CATEGORIES


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_is_refused_everywhere(text: str) -> None:
    assert first_refused(text) is not None
    assert first_refused(text, multiline=True, joiners=True) is not None
    with pytest.raises(UnsafeText):
        check_safe_text(text, "name", multiline=True, joiners=True)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_allowed_in_a_body(text: str) -> None:
    check_safe_text(text, "note text", multiline=True, joiners=True)


def test_joiners_line_feeds_and_tabs_only_where_allowed() -> None:
    check_safe_text("a\nb\tc", "body", multiline=True)
    check_safe_text("👨\u200d👩", "body", joiners=True)
    for text, kwargs in (("a\nb", {"joiners": True}), ("👨\u200d👩", {"multiline": True})):
        with pytest.raises(UnsafeText):
            check_safe_text(text, "title", **kwargs)


def test_the_error_names_field_and_code_point_never_the_character() -> None:
    with pytest.raises(UnsafeText) as caught:
        check_safe_text("1000\u202e", "statement title")
    error = caught.value
    assert isinstance(error, LocalProtocolError)
    assert (error.field, error.code_point) == ("statement title", 0x202E)
    message = str(error)
    assert message.startswith("statement title contains U+202E (RIGHT-TO-LEFT OVERRIDE")
    assert "\u202e" not in message
    with pytest.raises(UnsafeText, match=r"U\+001B \(a control character\)"):
        check_safe_text("\x1b[2J", "name")
    assert code_point("\u200b") == "U+200B (ZERO WIDTH SPACE, a format character)"


def _first_refused_by_category(text: str, *, multiline: bool, joiners: bool) -> str | None:
    """The policy spelled out character by character, as the module doc states it."""
    for char in text:
        if unicodedata.category(char) not in {"Cc", "Cf", "Zl", "Zp", "Cs"}:
            continue
        if multiline and char in "\n\t":
            continue
        if joiners and char in "\u200c\u200d":
            continue
        return char
    return None


@pytest.mark.parametrize("multiline", [False, True])
def test_every_ascii_character_is_judged_as_its_category(multiline: bool) -> None:
    for code in range(0x80):
        text = f"a{chr(code)}b"
        assert first_refused(text, multiline=multiline) == _first_refused_by_category(
            text, multiline=multiline, joiners=False), hex(code)


@given(st.one_of(st.text(st.characters(max_codepoint=0x7F)), st.text()),
       st.booleans(), st.booleans())
def test_first_refused_is_the_category_policy(text: str, multiline: bool,
                                              joiners: bool) -> None:
    # ASCII takes a fast path (one regular expression): it must find what the
    # per-character rule finds, the same character first.
    assert first_refused(text, multiline=multiline, joiners=joiners) == (
        _first_refused_by_category(text, multiline=multiline, joiners=joiners))


@given(st.text())
def test_check_safe_text_refuses_exactly_what_first_refused_finds(text: str) -> None:
    found = first_refused(text)
    try:
        check_safe_text(text, "field")
    except UnsafeText as error:
        assert found is not None and error.code_point == ord(found)
    else:
        assert found is None
    assert (found is None) == (not any(_is_refused(c) for c in text))


@given(st.text(body_chars))
def test_policy_text_passes_the_body_check(text: str) -> None:
    check_safe_text(text, "body", multiline=True, joiners=True)


@given(st.text(line_chars))
def test_policy_text_passes_the_line_check(text: str) -> None:
    check_safe_text(text, "title")


@given(st.text())
def test_escaped_output_never_holds_a_refused_character(text: str) -> None:
    shown = escaped(text)
    assert all(not _is_refused(c) or c in JOINERS for c in shown)
    many = escaped(text, multiline=True)
    assert all(not _is_refused(c) or c in JOINERS or c in "\n\t" for c in many)
    # Whatever went in, the output can be written to a UTF-8 terminal.
    shown.encode("utf-8")


@given(st.text(body_chars))
def test_escaped_is_the_identity_on_allowed_text(text: str) -> None:
    assert escaped(text, multiline=True) == text


@pytest.mark.parametrize("text", ORDINARY)
def test_escaped_keeps_every_script_and_emoji(text: str) -> None:
    assert escaped(text) == text


def test_escaped_spelling() -> None:
    assert escaped("a\x1b[2J\x9b\u202e\ud800\n") == "a\\x1b[2J\\x9b<U+202E><U+D800>\\x0a"
    assert escaped("a\nb\tc\rd", multiline=True) == "a\nb\tc\\x0dd"


@pytest.mark.parametrize("url", [
    "wss://relay.example.org/", "wss://relay.example.org:8443/path", "ws://127.0.0.1:8470/",
    "ws://127.5.6.7/", "ws://[::1]:8470/", "ws://localhost:8470/", "WS://LOCALHOST/",
    "ws://[::ffff:127.0.0.1]/",
])
def test_relay_urls_allowed(url: str) -> None:
    check_relay_url(url)


@pytest.mark.parametrize(("url", "why"), [
    ("ws://relay.example.org/", "not encrypted: use wss://"),
    ("ws://10.0.0.1:8470/", "not encrypted: use wss://"),
    ("ws://[::2]/", "not encrypted: use wss://"),
    ("ws://localhost.evil.example/", "not encrypted: use wss://"),
    ("http://relay.example.org/", "is a web address; a relay URL starts with wss://"),
    ("https://relay.example.org/", "is a web address; a relay URL starts with wss://"),
    ("ftp://relay.example.org/", "must start with wss://"),
    ("relay.example.org", "must start with wss://"),
    ("wss:///path", "names no host"),
    ("wss://[::1/", "not a valid URL"),
])
def test_relay_urls_refused(url: str, why: str) -> None:
    with pytest.raises(InsecureRelayUrl, match=why.replace("?", r"\?")):
        check_relay_url(url)


@pytest.mark.parametrize("url", ["wss://relay\x1b[2J.example/", "wss://a.example/\u202e",
                                 "wss://a .example/", "wss://a.example/\u00a0"])
def test_relay_urls_with_hidden_characters_refused(url: str) -> None:
    with pytest.raises(UnsafeText):
        check_relay_url(url)


@given(st.text(max_size=40))
def test_a_refused_url_says_why_and_an_accepted_one_is_clean(url: str) -> None:
    try:
        check_relay_url(url)
    except LocalProtocolError as error:
        assert first_refused(str(error)) is None
    else:
        assert first_refused(url) is None and url.lower().startswith(("ws://", "wss://"))


def test_loopback_hosts() -> None:
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1")
    assert is_loopback_host("localhost")
    assert not is_loopback_host("128.0.0.1") and not is_loopback_host("example.org")


@given(st.dictionaries(st.text(max_size=8), st.text(max_size=30), max_size=4),
       st.sampled_from([None, 2]))
def test_json_escaped_keeps_the_value_and_drops_every_refused_character(
    data: dict[str, str], indent: int | None
) -> None:
    printed = json_escaped(json.dumps(data, indent=indent, ensure_ascii=False))
    assert json.loads(printed) == data
    assert all(c == "\n" or not _is_refused(c) for c in printed)
    printed.encode("utf-8")  # lone surrogates are escapes now, not raw

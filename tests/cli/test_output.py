"""Small pieces of the CLI's output and input parsing."""

from __future__ import annotations

import unicodedata

import pytest
import typer
from hypothesis import given
from hypothesis import strategies as st

from backchannel.cli.context import plain_console
from backchannel.cli.output import local_time, short_id, shown, utc_time
from backchannel.cli.pairing import parse_ttl
from backchannel.protocol.text import JOINERS, REFUSED_CATEGORIES

# Ordinary text in a few scripts: Latin, Chinese, Cyrillic, Arabic, and emoji (with the
# zero-width joiner their sequences use), spaces, punctuation and markup-like brackets.
_ordinary = st.text(st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(min_codepoint=0x0400, max_codepoint=0x04FF),
    st.characters(min_codepoint=0x0620, max_codepoint=0x064A),
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1F6FF),
    st.just("\u200d"),
))


@pytest.mark.parametrize(("text", "ms"), [("90s", 90_000), ("30m", 1_800_000),
                                          ("12h", 43_200_000), ("7d", 604_800_000),
                                          ("1.5h", 5_400_000), (" 2D ", 172_800_000)])
def test_invite_lifetimes(text: str, ms: int) -> None:
    assert parse_ttl(text) == ms


@pytest.mark.parametrize("text", ["", "7", "0s", "-1d", "31d", "1w", "soon"])
def test_bad_invite_lifetimes(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_ttl(text)


def test_times() -> None:
    assert utc_time(0) is None and local_time(0) == "-" and local_time(0, empty="never") == "never"
    assert utc_time(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert local_time(1_700_000_000_123).startswith("2023-11-1")  # another day: date shown


def test_short_ids_are_prefixes() -> None:
    assert short_id("0123456789abcdef") == "01234567"


@given(st.text())
def test_shown_output_never_holds_a_control_format_or_separator(text: str) -> None:
    for multiline in (False, True):
        out = shown(text, multiline=multiline)
        allowed = JOINERS | (set("\n\t") if multiline else set())
        assert all(c in allowed or unicodedata.category(c) not in REFUSED_CATEGORIES
                   for c in out)
        assert not {"\x1b", "\x9b", "\u202e", "\u2066", "\u2069", "\u200b"} & set(out)


@given(_ordinary)
def test_shown_is_the_identity_on_ordinary_text(text: str) -> None:
    assert shown(text) == text


def test_the_console_escapes_whatever_it_prints_and_reads_no_markup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain_console().print("[bold]x[/bold] \x1b[2J\u202e1000 北京")
    out = capsys.readouterr().out
    assert out == "[bold]x[/bold] \\x1b[2J<U+202E>1000 北京\n"

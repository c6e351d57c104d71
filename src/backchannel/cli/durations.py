"""Durations and moments as principals type them: ``10m``, ``1h30m``, ``2025-05-12T14:00``.

A bad value is a usage error (`typer.BadParameter`, exit code 2), as for every option
Click checks; the message names the option and shows what is accepted.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

import typer

__all__ = ["format_duration", "parse_duration", "parse_since", "parse_when"]

_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
# One part of a duration; several may follow each other (`1h30m`). `ms` is tried before
# `m` so that `300ms` is 300 milliseconds, not 300 minutes and a stray `s`.
_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_EXAMPLES: Final = "such as 300ms, 90s, 10m, 1h30m or 2d"


def parse_duration(
    text: str, *, option: str, allow_zero: bool = False, maximum_ms: int | None = None
) -> int:
    """A duration such as ``300ms``, ``90s``, ``10m``, ``1h30m`` or ``2d``, in milliseconds.

    Args:
        text: what the principal typed.
        option: the option's name, for the error message.
        allow_zero: accept ``0`` (meaning "never" or "off" where the option says so).
        maximum_ms: the longest the option accepts, said in the error as a duration.

    Raises:
        typer.BadParameter: not a duration, zero when zero is not allowed, or longer than
            `maximum_ms`.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if allow_zero and cleaned in ("0", "off", "never"):
        return 0
    parts = _PART.findall(cleaned)
    if not parts or "".join(number + unit for number, unit in parts) != cleaned:
        raise typer.BadParameter(f"{text!r} is not a duration {_EXAMPLES}", param_hint=option)
    total = round(sum(float(number) * _UNIT_MS[unit] for number, unit in parts))
    if total <= 0 and not allow_zero:
        raise typer.BadParameter("a duration is more than zero", param_hint=option)
    if maximum_ms is not None and total > maximum_ms:
        raise typer.BadParameter(
            f"{text!r} is too long: at most {format_duration(maximum_ms)}", param_hint=option
        )
    return total


def parse_when(text: str, *, now_ms: int, option: str) -> int:
    """A moment: a duration from now (``2h``), an ISO date and time, or a time of day.

    A date and time without a zone (``2025-05-12T14:00``) and a time of day (``14:00``)
    are in the local time zone; a time of day already past today means tomorrow.

    Raises:
        typer.BadParameter: none of these, or a moment that is not in the future.
    """
    try:
        return now_ms + parse_duration(text, option=option)
    except typer.BadParameter:
        pass
    now = dt.datetime.fromtimestamp(now_ms / 1000).astimezone()
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            clock = dt.time.fromisoformat(text.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is neither a duration ({_EXAMPLES}) nor a time such as 14:00 "
                "or 2025-05-12T14:00 (local time unless a zone is given)",
                param_hint=option,
            ) from None
        moment = dt.datetime.combine(now.date(), clock)
        if moment.tzinfo is None and moment.astimezone() <= now:
            moment += dt.timedelta(days=1)
    # A naive moment is read in the local zone; `astimezone()` does exactly that.
    when_ms = round(moment.astimezone().timestamp() * 1000)
    if when_ms <= now_ms:
        raise typer.BadParameter(f"{text!r} is not in the future", param_hint=option)
    return when_ms


def parse_since(text: str, *, now_ms: int, option: str) -> int:
    """A moment in the past: a duration back from now (``2h``, ``3d``), or an ISO date
    (``2026-12-01``, midnight local time) or date and time (local unless a zone is given).

    Raises:
        typer.BadParameter: neither, or a moment in the future.
    """
    try:
        return max(now_ms - parse_duration(text, option=option), 0)
    except typer.BadParameter:
        pass
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a duration ({_EXAMPLES}) nor a date such as 2026-12-01 "
            "or 2026-12-01T14:00 (local time unless a zone is given)",
            param_hint=option,
        ) from None
    # A naive moment is read in the local zone; `astimezone()` does exactly that.
    since_ms = round(moment.astimezone().timestamp() * 1000)
    if since_ms > now_ms:
        raise typer.BadParameter(f"{text!r} is in the future", param_hint=option)
    return since_ms


def format_duration(ms: int) -> str:
    """A duration for people, in at most two units: ``300ms``, ``45s``, ``1h30m``, ``2d``."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms // 1000
    units = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))
    parts: list[str] = []
    for name, size in units:
        if seconds >= size and len(parts) < 2:
            parts.append(f"{seconds // size}{name}")
            seconds %= size
        elif parts:
            break  # "1d0h" and "1h0m5s" say less than "1d" and "1h"
    return "".join(parts)

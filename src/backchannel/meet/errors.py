"""Errors raised by the meeting planner.

Every one of them blames the caller's input (a place that does not exist, two options that
contradict each other, a date that does not parse), so they all sit below
`LocalProtocolError`. Their text is written for the person at the command line: it says what
was wrong and, where it can, what to type instead.
"""

from __future__ import annotations

from backchannel.protocol.errors import LocalProtocolError

__all__ = [
    "AmbiguousPlace",
    "InvalidRequest",
    "MeetError",
    "NoAirportNearby",
    "UnknownCountry",
    "UnknownPlace",
]


class MeetError(LocalProtocolError):
    """The meeting planner cannot do what was asked; the message says why."""


class UnknownPlace(MeetError):
    """No city, airport or country in the offline dataset matches the name given.

    Attributes:
        query: the name as typed.
        suggestions: close matches, best first (may be empty).
    """

    def __init__(self, query: str, suggestions: tuple[str, ...]) -> None:
        self.query = query
        self.suggestions = suggestions
        hint = f"; did you mean: {'; '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown place {query!r}{hint}")


class AmbiguousPlace(MeetError):
    """Several places share the name and none clearly dominates.

    Attributes:
        query: the name as typed.
        candidates: how to name each candidate unambiguously, largest first.
    """

    def __init__(self, query: str, candidates: tuple[str, ...]) -> None:
        self.query = query
        self.candidates = candidates
        super().__init__(
            f"ambiguous place {query!r}: it could be {'; '.join(candidates)} "
            "(write 'City, Country', 'City, State' or an airport code)"
        )


class UnknownCountry(MeetError):
    """A country name or code does not match any country in the dataset.

    Attributes:
        query: the name as typed.
        suggestions: close matches, best first (may be empty).
    """

    def __init__(self, query: str, suggestions: tuple[str, ...]) -> None:
        self.query = query
        self.suggestions = suggestions
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown country {query!r}{hint}")


class NoAirportNearby(MeetError):
    """The place resolved, but no airport in the dataset is close enough to fly to it."""


class InvalidRequest(MeetError):
    """The options are malformed or contradict each other (e.g. allow and exclude one country)."""

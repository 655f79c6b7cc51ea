"""Realistic, deterministic customer rows, rendered straight to COPY text.

Why not Faker per row: the original system called Faker once per field per
row and spent 678 of its 798 seconds on that for 3M customers. Here Faker (and
the curated ``data/cities.csv``) only fill small *value pools* once; rows are
then drawn from the pools with vectorised NumPy sampling, and each column is
rendered with one ``str.join`` per chunk.

Determinism independent of the chunk size: every column has its own random
stream, cut into fixed blocks of :data:`BLOCK` rows, and block ``k`` of stream
``s`` is always drawn from ``default_rng([seed, s, k])``. A chunk of any size
draws exactly the blocks it overlaps and slices them, so row ``i`` gets the
same values whether it is loaded in chunks of 1,000 or 1,000,000. The three
tables are rendered in three passes; a column that two tables need (a
customer's city decides both their address and their phone prefix) is drawn
from the same stream in both passes, so they agree.

Skew, for filters with realistic selectivity: cities are weighted by
population (Vienna is about 2% of customers); US and UK surnames and US first
names carry their census frequencies from Faker's data ("Smith" is the most
common surname), the other locales' names are drawn uniformly; loyalty points
follow a Lomax (Pareto II) law, many small and a few very large.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from faker import Faker

#: Rows per random block; see the module docstring.
BLOCK = 8192

CITIES_CSV = Path(__file__).resolve().parent / "data" / "cities.csv"

BIRTHDAY_FIRST = np.datetime64("1940-01-01", "D")
BIRTHDAY_LAST = np.datetime64("2007-12-31", "D")
HISTORY_SECONDS = 10 * 365 * 24 * 3600  # customers joined within the last ten years

# customer_id = CUSTOMER_ID_PREFIX + 9 digits of (A * id + B) mod 10**9: an
# affine bijection (A is coprime with 10**9), so ids up to 10**9 never collide
# yet do not look sequential.
CUSTOMER_ID_A = 387_420_489  # 3**18
CUSTOMER_ID_B = 104_729
CUSTOMER_ID_MOD = 10**9

# One random stream per drawn quantity (never renumber: it changes the data).
S_CITY, S_STREET, S_STREET_NUMBER, S_POSTCODE = 1, 2, 3, 4
S_GENDER, S_FIRST_NAME, S_LAST_NAME, S_PHONE = 5, 6, 7, 8
S_BIRTHDAY, S_CREATED, S_UPDATED = 9, 10, 11
S_POINTS, S_REL_CREATED, S_ACTIVITY = 12, 13, 14

_UNSAFE_FOR_COPY = re.compile(r"[\t\n\r\\]")


@dataclass(frozen=True)
class City:
    name: str
    country: str
    locale: str
    population: int
    postcode_patterns: tuple[str, ...]
    phone_pattern: str


def load_cities(path: Path = CITIES_CSV) -> list[City]:
    with path.open(encoding="utf-8") as f:
        return [
            City(
                name=row["city"],
                country=row["country"],
                locale=row["locale"],
                population=int(row["population"]),
                postcode_patterns=tuple(row["postcodes"].split("|")),
                phone_pattern=row["phone"],
            )
            for row in csv.DictReader(f)
        ]


class GroupedPool:
    """Several weighted pools of strings, sampled in one vectorised call.

    Group ``g``'s cumulative weights are scaled into ``(g, g + 1]`` and all
    groups are concatenated into one ascending array, so a row of group ``g``
    with a uniform draw ``u`` picks ``searchsorted(cum, g + u)``: one NumPy
    call samples every row, whatever its group.
    """

    def __init__(self, groups: Sequence[Sequence[tuple[str, float]]]) -> None:
        values: list[str] = []
        cumulative: list[np.ndarray] = []
        for g, group in enumerate(groups):
            if not group:
                raise ValueError(f"pool group {g} is empty")
            names, weights = zip(*group, strict=True)
            for name in names:
                if _UNSAFE_FOR_COPY.search(name):
                    raise ValueError(f"pool value {name!r} needs COPY escaping")
            w = np.asarray(weights, dtype=np.float64)
            cum = g + np.cumsum(w) / w.sum()
            cum[-1] = g + 1  # exact upper edge despite rounding
            values.extend(names)
            cumulative.append(cum)
        self.values = np.asarray(values, dtype=object)
        self.cumulative = np.concatenate(cumulative)

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        index = np.searchsorted(self.cumulative, group + u, side="right")
        return self.values[np.minimum(index, len(self.values) - 1)]


def fill_pattern(pattern: str, rng: np.random.Generator) -> str:
    """``#`` becomes a digit, ``?`` a letter used in postcodes."""
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return "".join(
        str(rng.integers(10))
        if ch == "#"
        else letters[rng.integers(len(letters))]
        if ch == "?"
        else ch
        for ch in pattern
    )


def phone_formatter(pattern: str) -> tuple[Callable[..., str], list[int]]:
    """Turn ``+43 1 ### ####`` into a ``str.format`` and the digit count of each group."""
    widths = [len(m) for m in re.findall(r"#+", pattern)]
    template = re.sub(r"#+", lambda m: f"{{:0{len(m.group())}d}}", pattern)
    return template.format, widths


def _names(locale: str, attribute: str) -> list[tuple[str, float]]:
    provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
    # Some locales (pl_PL) split surnames by gender and inherit the base
    # provider's one-name placeholder list as ``last_names``.
    candidates = [attribute, "male_last_names", "last_names_male", "unisex_last_names"]
    names = next(
        names
        for names in (getattr(provider, a, None) for a in candidates)
        if len(names or ()) >= 10
    )
    if isinstance(names, dict):
        return [(name, float(weight)) for name, weight in names.items()]
    # Locales without frequencies: every name equally likely.
    return [(name, 1.0) for name in dict.fromkeys(names)]


def _text(values: Sequence[str] | np.ndarray) -> list[str]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _ints(values: np.ndarray) -> list[str]:
    return list(map(str, values.tolist()))


class IsoText:
    """ISO 8601 text for dates and UTC timestamps, by table look-up.

    ``np.datetime_as_string`` costs about 0.5 µs a value; a customer row has
    four dates, so generation would spend more time formatting than COPY spends
    parsing. Every date in the data lies in a known range of days and every
    time of day is one of 86,400 values, so both are formatted once and a row's
    text is two array look-ups and one concatenation.
    """

    def __init__(self, first_day: np.datetime64, last_day: np.datetime64) -> None:
        self.first_day = first_day.astype("datetime64[D]")
        days = np.arange(self.first_day, last_day.astype("datetime64[D]") + 1)
        self.days = np.array(np.datetime_as_string(days).tolist(), dtype=object)
        seconds = np.arange(86400)
        self.times = np.array(
            [
                f"T{h:02d}:{m:02d}:{s:02d}"
                for h, m, s in zip(
                    (seconds // 3600).tolist(),
                    (seconds // 60 % 60).tolist(),
                    (seconds % 60).tolist(),
                    strict=True,
                )
            ],
            dtype=object,
        )
        self.epoch_day = int(self.first_day.astype(np.int64))

    def dates(self, days: np.ndarray) -> list[str]:
        """``days`` as numpy ``datetime64[D]``."""
        return self.days[days.astype(np.int64) - self.epoch_day].tolist()

    def timestamps(self, seconds: np.ndarray) -> list[str]:
        """``seconds`` since the Unix epoch, rendered in UTC (the load's time zone)."""
        day, second = np.divmod(seconds, 86400)
        return (self.days[day - self.epoch_day] + self.times[second]).tolist()


def _copy_text(columns: Sequence[list[str]]) -> bytes:
    """COPY text format: tab-separated, newline-terminated (pools hold no tab,
    newline or backslash, so nothing needs escaping)."""
    return ("\n".join(map("\t".join, zip(*columns, strict=True))) + "\n").encode()


class CustomerDataset:
    """Rows 1..n of the three tables, for one seed and one reference date."""

    STREET_POOL_SIZE = 400
    POSTCODE_POOL_SIZE = 60

    def __init__(self, seed: int, as_of: dt.date) -> None:
        self.seed = seed
        self.as_of = as_of
        midnight = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
        self.now = int(midnight.timestamp())
        self.cities = load_cities()
        self.iso = IsoText(
            BIRTHDAY_FIRST,
            np.datetime64(as_of, "D"),
        )

    # -- pools, built once -------------------------------------------------

    @cached_property
    def locales(self) -> list[str]:
        return list(dict.fromkeys(city.locale for city in self.cities))

    @cached_property
    def city_locale(self) -> np.ndarray:
        return np.array([self.locales.index(c.locale) for c in self.cities])

    @cached_property
    def city_pool(self) -> GroupedPool:
        return GroupedPool([[(str(i), c.population) for i, c in enumerate(self.cities)]])

    @cached_property
    def first_names(self) -> GroupedPool:
        # Group 2 * locale + (0 for male, 1 for female).
        return GroupedPool(
            [
                _names(locale, attribute)
                for locale in self.locales
                for attribute in ("first_names_male", "first_names_female")
            ]
        )

    @cached_property
    def last_names(self) -> GroupedPool:
        return GroupedPool([_names(locale, "last_names") for locale in self.locales])

    @cached_property
    def streets(self) -> GroupedPool:
        groups = []
        for i, locale in enumerate(self.locales):
            fake = Faker(locale)
            fake.seed_instance(self.seed * 1000 + i)
            names = {fake.street_name() for _ in range(self.STREET_POOL_SIZE)}
            groups.append([(name, 1.0) for name in sorted(names)])
        return GroupedPool(groups)

    @cached_property
    def postcodes(self) -> GroupedPool:
        groups = []
        for i, city in enumerate(self.cities):
            rng = np.random.default_rng([self.seed, 0, i])
            codes = {
                fill_pattern(city.postcode_patterns[j % len(city.postcode_patterns)], rng)
                for j in range(self.POSTCODE_POOL_SIZE)
            }
            groups.append([(code, 1.0) for code in sorted(codes)])
        return GroupedPool(groups)

    @cached_property
    def phone_formats(self) -> list[tuple[Callable[..., str], list[int]]]:
        return [phone_formatter(city.phone_pattern) for city in self.cities]

    def warm_up(self) -> None:
        """Build every pool now, so that timing of the first chunk is honest."""
        for name in (
            "city_pool",
            "first_names",
            "last_names",
            "streets",
            "postcodes",
            "phone_formats",
        ):
            getattr(self, name)

    # -- random streams ------------------------------------------------------

    def uniform(self, stream: int, start: int, stop: int) -> np.ndarray:
        """Uniform [0, 1) draws for 0-based rows ``start..stop-1`` of a stream."""
        first, last = start // BLOCK, (stop - 1) // BLOCK
        blocks = [
            np.random.default_rng([self.seed, stream, k]).random(BLOCK)
            for k in range(first, last + 1)
        ]
        offset = start - first * BLOCK
        return np.concatenate(blocks)[offset : offset + (stop - start)]

    def city(self, start: int, stop: int) -> np.ndarray:
        sampled = self.city_pool.sample(np.zeros(stop - start), self.uniform(S_CITY, start, stop))
        return sampled.astype(np.int64)

    def created(self, start: int, stop: int) -> np.ndarray:
        # Squared draws: more customers joined recently than ten years ago.
        age = (self.uniform(S_CREATED, start, stop) ** 2 * HISTORY_SECONDS).astype(np.int64)
        return self.now - age

    def relationship_created(self, start: int, stop: int) -> np.ndarray:
        # The loyalty record follows sign-up within 30 days (not in the future).
        created = self.created(start, stop)
        delay = (self.uniform(S_REL_CREATED, start, stop) * 30 * 86400).astype(np.int64)
        return np.minimum(created + delay, self.now)

    # -- tables, as COPY text for 1-based ids start+1..stop ------------------

    ADDRESS_COLUMNS = ("id", "street", "street_number", "city_code", "city", "country")

    def address_rows(self, start: int, stop: int) -> bytes:
        city = self.city(start, stop)
        street = self.streets.sample(self.city_locale[city], self.uniform(S_STREET, start, stop))
        # Small house numbers are the most common.
        number = 1 + (self.uniform(S_STREET_NUMBER, start, stop) ** 3 * 250).astype(np.int64)
        postcode = self.postcodes.sample(city, self.uniform(S_POSTCODE, start, stop))
        names = np.array([c.name for c in self.cities], dtype=object)
        countries = np.array([c.country for c in self.cities], dtype=object)
        return _copy_text(
            [
                _ints(np.arange(start + 1, stop + 1)),
                _text(street),
                _ints(number),
                _text(postcode),
                _text(names[city]),
                _text(countries[city]),
            ]
        )

    APPUSER_COLUMNS = (
        "id",
        "first_name",
        "last_name",
        "gender",
        "customer_id",
        "phone_number",
        "birthday",
        "created",
        "last_updated",
        "address_id",
    )

    def appuser_rows(self, start: int, stop: int) -> bytes:
        ids = np.arange(start + 1, stop + 1)
        city = self.city(start, stop)
        locale = self.city_locale[city]
        g = self.uniform(S_GENDER, start, stop)
        gender = np.where(g < 0.485, "m", np.where(g < 0.97, "f", "o")).astype(object)
        # "o" customers carry a male or female first name, half each.
        female = (g >= 0.485) & ((g < 0.97) | (g >= 0.985))
        first = self.first_names.sample(
            2 * locale + female, self.uniform(S_FIRST_NAME, start, stop)
        )
        last = self.last_names.sample(locale, self.uniform(S_LAST_NAME, start, stop))
        customer_id = (CUSTOMER_ID_A * ids + CUSTOMER_ID_B) % CUSTOMER_ID_MOD
        span = int((BIRTHDAY_LAST - BIRTHDAY_FIRST).astype(np.int64)) + 1
        birthday = BIRTHDAY_FIRST + (self.uniform(S_BIRTHDAY, start, stop) * span).astype(
            "timedelta64[D]"
        )
        created = self.created(start, stop)
        # Most profiles are edited soon after sign-up, a few much later.
        updated = created + (
            self.uniform(S_UPDATED, start, stop) ** 3 * (self.now - created)
        ).astype(np.int64)
        return _copy_text(
            [
                _ints(ids),
                _text(first),
                _text(last),
                _text(gender),
                list(map("CU{:09d}".format, customer_id.tolist())),
                self._phones(city, self.uniform(S_PHONE, start, stop)),
                self.iso.dates(birthday),
                self.iso.timestamps(created),
                self.iso.timestamps(updated),
                _ints(ids),  # each customer has their own address, same id
            ]
        )

    def _phones(self, city: np.ndarray, u: np.ndarray) -> list[str]:
        phones = np.empty(len(city), dtype=object)
        for c in np.unique(city):
            rows = np.flatnonzero(city == c)
            fmt, widths = self.phone_formats[c]
            # One draw per row spread over the digit groups; the leading
            # digit of a subscriber number is never 0.
            total = sum(widths)
            number = (10 ** (total - 1) + u[rows] * 9 * 10 ** (total - 1)).astype(np.int64)
            parts, rest = [], number
            for width in reversed(widths):
                parts.append(rest % 10**width)
                rest = rest // 10**width
            parts.reverse()
            phones[rows] = list(map(fmt, *(p.tolist() for p in parts)))
        return phones.tolist()

    RELATIONSHIP_COLUMNS = ("appuser_id", "points", "created", "last_activity")

    def relationship_rows(self, start: int, stop: int) -> bytes:
        ids = np.arange(start + 1, stop + 1)
        # Lomax law: median about 60 points, a few customers with 100,000+.
        u = self.uniform(S_POINTS, start, stop)
        points = np.minimum(100 * ((1 - u) ** (-1 / 1.2) - 1), 1_000_000).astype(np.int64)
        created = self.relationship_created(start, stop)
        activity = created + (
            np.sqrt(self.uniform(S_ACTIVITY, start, stop)) * (self.now - created)
        ).astype(np.int64)
        return _copy_text(
            [
                _ints(ids),
                _ints(points),
                self.iso.timestamps(created),
                self.iso.timestamps(activity),
            ]
        )

"""Realistic, deterministic customer rows, rendered straight to binary COPY.

Why not Faker per row: the original system called Faker once per field per
row and spent 678 of its 798 seconds on that for 3M customers. Here Faker (and
the curated ``data/cities.csv``) only fill small *value pools* once; rows are
then drawn from the pools with vectorised NumPy sampling and written in
PostgreSQL's binary COPY format (:mod:`.binary_copy`): numbers and timestamps
are NumPy casts, text values are encoded once per pool value.

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

Times look like a live system's: microseconds, spread over every hour of the
day, sign-ups growing over the years, no instant shared by many rows. Each
time is drawn between two bounds that are already in the past (a loyalty
record between its customer's sign-up and ``--as-of``), never computed beyond
them and clamped back, which would pile rows up on the bound.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from faker import Faker

from . import binary_copy

#: Rows per random block; see the module docstring.
BLOCK = 8192

CITIES_CSV = Path(__file__).resolve().parent / "data" / "cities.csv"

DAY_MICROSECONDS = 86_400 * 1_000_000
BIRTHDAY_FIRST = np.datetime64("1940-01-01", "D")
BIRTHDAY_LAST = np.datetime64("2007-12-31", "D")
#: Customers joined within the ten years before --as-of.
HISTORY_MICROSECONDS = 3650 * DAY_MICROSECONDS
#: A loyalty record follows its customer's sign-up within this delay.
RECORD_DELAY_MICROSECONDS = 30 * DAY_MICROSECONDS

# customer_id = CUSTOMER_ID_PREFIX + 9 digits of (A * id + B) mod 10**9: an
# affine bijection (A is coprime with 10**9), so ids up to 10**9 never collide
# yet do not look sequential.
CUSTOMER_ID_PREFIX = "CU"
CUSTOMER_ID_A = 387_420_489  # 3**18
CUSTOMER_ID_B = 104_729
CUSTOMER_ID_MOD = 10**9
CUSTOMER_ID_DIGITS = 9

#: Loyalty points: a Lomax law of this shape and scale, truncated (not
#: clamped) at the cap so that no single value collects the tail.
POINTS_SHAPE, POINTS_SCALE, POINTS_CAP = 1.2, 100.0, 1_000_000

# One random stream per drawn quantity (never renumber: it changes the data).
S_CITY, S_STREET, S_STREET_NUMBER, S_POSTCODE = 1, 2, 3, 4
S_GENDER, S_FIRST_NAME, S_LAST_NAME, S_PHONE = 5, 6, 7, 8
S_BIRTHDAY, S_CREATED, S_UPDATED = 9, 10, 11
S_POINTS, S_REL_CREATED, S_ACTIVITY = 12, 13, 14


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
    call samples every row, whatever its group. Each value is encoded as a
    COPY field once (``fields``); rows draw the encoded bytes. ``group`` says
    which group each value belongs to.
    """

    def __init__(self, groups: Sequence[Sequence[tuple[str, float]]]) -> None:
        values: list[str] = []
        cumulative: list[np.ndarray] = []
        for g, group in enumerate(groups):
            if not group:
                raise ValueError(f"pool group {g} is empty")
            names, weights = zip(*group, strict=True)
            w = np.asarray(weights, dtype=np.float64)
            cum = g + np.cumsum(w) / w.sum()
            cum[-1] = g + 1  # exact upper edge despite rounding
            values.extend(names)
            cumulative.append(cum)
        self.values = np.asarray(values, dtype=object)
        self.fields = binary_copy.text_fields(values)
        self.group = np.repeat(np.arange(len(groups)), [len(group) for group in groups])
        self.cumulative = np.concatenate(cumulative)

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The index in ``values`` (and ``fields``) of each row's draw."""
        index = np.searchsorted(self.cumulative, group + u, side="right")
        return np.minimum(index, len(self.values) - 1)


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


@dataclass(frozen=True)
class PhonePattern:
    """``+43 1 ### ####``: the pattern's ASCII codes and where its digits go."""

    template: np.ndarray
    digit_positions: np.ndarray

    @classmethod
    def parse(cls, pattern: str) -> PhonePattern:
        codes = np.frombuffer(pattern.encode("ascii"), dtype=np.uint8)
        return cls(codes, np.flatnonzero(codes == ord("#")))

    def render(self, number: np.ndarray) -> np.ndarray:
        """The pattern filled with the digits of each ``number``, as COPY fields."""
        return binary_copy.ascii_fields(_fill_digits(self.template, self.digit_positions, number))


def _fill_digits(template: np.ndarray, positions: np.ndarray, number: np.ndarray) -> np.ndarray:
    """Rows of ``template`` whose ``positions`` hold ``number``'s digits, most significant first."""
    powers = 10 ** np.arange(len(positions) - 1, -1, -1, dtype=np.int64)
    characters = np.repeat(template[np.newaxis, :], len(number), axis=0)
    characters[:, positions] = ord("0") + number[:, np.newaxis] // powers % 10
    return characters


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


def _between(earliest: np.ndarray, latest: int, fraction: np.ndarray) -> np.ndarray:
    """Microseconds ``fraction`` of the way from ``earliest`` to ``latest``."""
    return earliest + (fraction * (latest - earliest)).astype(np.int64)


class CustomerDataset:
    """Rows 1..n of the three tables, for one seed, one size and one reference date."""

    STREET_POOL_SIZE = 400
    POSTCODE_POOL_SIZE = 60
    MAX_STREET_NUMBER = 250

    def __init__(self, seed: int, as_of: dt.date, n: int) -> None:
        self.seed = seed
        self.as_of = as_of
        self.n = n
        midnight = dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
        #: --as-of midnight UTC, in microseconds since 1970: every time lies before it.
        self.now = int(midnight.timestamp()) * 1_000_000
        self.cities = load_cities()

    # -- pools, built once -------------------------------------------------

    @cached_property
    def locales(self) -> list[str]:
        return list(dict.fromkeys(city.locale for city in self.cities))

    @cached_property
    def city_locale(self) -> np.ndarray:
        return np.array([self.locales.index(c.locale) for c in self.cities])

    @cached_property
    def city_pool(self) -> GroupedPool:
        return GroupedPool([[(c.name, c.population) for c in self.cities]])

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
            # Only the providers street names use: discovering all of
            # Faker's providers costs most of a second per run.
            fake = Faker(locale, providers=["faker.providers.address", "faker.providers.person"])
            fake.seed_instance(self.seed * 1000 + i)
            names = {fake.street_name() for _ in range(self.STREET_POOL_SIZE)}
            groups.append([(name, 1.0) for name in sorted(names)])
        return GroupedPool(groups)

    @cached_property
    def street_number_fields(self) -> np.ndarray:
        return binary_copy.text_fields(str(k) for k in range(self.MAX_STREET_NUMBER + 1))

    @cached_property
    def postcodes(self) -> GroupedPool:
        """Each city's postcodes (group = city)."""
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
    def postcode_city_country_fields(self) -> np.ndarray:
        """Per postcode of :attr:`postcodes`: it, its city and its country, three
        consecutive COPY fields encoded once (a postcode belongs to one city)."""
        return np.array(
            [
                field
                + binary_copy.text_field(self.cities[c].name)
                + binary_copy.text_field(self.cities[c].country)
                for field, c in zip(
                    self.postcodes.fields, self.postcodes.group.tolist(), strict=True
                )
            ],
            dtype=object,
        )

    @cached_property
    def phone_patterns(self) -> list[PhonePattern]:
        return [PhonePattern.parse(city.phone_pattern) for city in self.cities]

    def warm_up(self) -> None:
        """Build every pool now, so that timing of the first chunk is honest."""
        for name in (
            "city_pool",
            "first_names",
            "last_names",
            "streets",
            "street_number_fields",
            "postcode_city_country_fields",
            "phone_patterns",
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
        return self.city_pool.sample(np.zeros(stop - start), self.uniform(S_CITY, start, stop))

    def created(self, start: int, stop: int) -> np.ndarray:
        """Sign-ups, in microseconds, in id order: the rate grows steadily over the ten years.

        As in any table whose ids come from a sequence, a customer who joined
        later has a larger id. Row ``i`` of ``n`` takes a random point of its
        own slot ``[i, i + 1) / n`` of the sign-up distribution, whose density
        rises linearly from ten years ago to --as-of (inverse CDF ``sqrt``:
        twice the average rate at the end, none at the start, no pile-up).
        The slots depend on ``n``, not on the chunk.
        """
        slot = (np.arange(start, stop) + self.uniform(S_CREATED, start, stop)) / self.n
        earliest = np.full(stop - start, self.now - HISTORY_MICROSECONDS)
        return _between(earliest, self.now, np.sqrt(slot))

    def relationship_created(self, start: int, stop: int) -> np.ndarray:
        """The loyalty record follows sign-up within 30 days, and before --as-of."""
        created = self.created(start, stop)
        delay = np.minimum(RECORD_DELAY_MICROSECONDS, self.now - created)
        return created + (self.uniform(S_REL_CREATED, start, stop) * delay).astype(np.int64)

    # -- tables, as binary COPY rows for 1-based ids start+1..stop -------------

    ADDRESS_COLUMNS = ("id", "street", "street_number", "city_code", "city", "country")

    def address_rows(self, start: int, stop: int) -> bytes:
        city = self.city(start, stop)
        street = self.streets.sample(self.city_locale[city], self.uniform(S_STREET, start, stop))
        # Small house numbers are the most common.
        number = 1 + (
            self.uniform(S_STREET_NUMBER, start, stop) ** 3 * self.MAX_STREET_NUMBER
        ).astype(np.int64)
        postcode = self.postcodes.sample(city, self.uniform(S_POSTCODE, start, stop))
        return binary_copy.rows(
            [binary_copy.int8(np.arange(start + 1, stop + 1))],
            [
                binary_copy.Encoded(self.streets.fields[street]),
                binary_copy.Encoded(self.street_number_fields[number]),
                binary_copy.Encoded(self.postcode_city_country_fields[postcode], fields=3),
            ],
        )

    APPUSER_COLUMNS = (
        "id",
        "gender",
        "customer_id",
        "birthday",
        "created",
        "last_updated",
        "address_id",
        "first_name",
        "last_name",
        "phone_number",
    )

    def appuser_rows(self, start: int, stop: int) -> bytes:
        ids = np.arange(start + 1, stop + 1)
        city = self.city(start, stop)
        locale = self.city_locale[city]
        g = self.uniform(S_GENDER, start, stop)
        gender = np.where(g < 0.485, ord("m"), np.where(g < 0.97, ord("f"), ord("o")))
        # "o" customers carry a male or female first name, half each.
        female = (g >= 0.485) & ((g < 0.97) | (g >= 0.985))
        first = self.first_names.sample(
            2 * locale + female, self.uniform(S_FIRST_NAME, start, stop)
        )
        last = self.last_names.sample(locale, self.uniform(S_LAST_NAME, start, stop))
        span = int((BIRTHDAY_LAST - BIRTHDAY_FIRST).astype(np.int64)) + 1
        birthday = BIRTHDAY_FIRST.astype(np.int64) + (
            self.uniform(S_BIRTHDAY, start, stop) * span
        ).astype(np.int64)
        created = self.created(start, stop)
        # Most profiles are edited soon after sign-up, a few much later.
        updated = _between(created, self.now, self.uniform(S_UPDATED, start, stop) ** 3)
        return binary_copy.rows(
            [
                binary_copy.int8(ids),
                binary_copy.ascii_text(gender[:, np.newaxis]),
                binary_copy.ascii_text(self._customer_ids(ids)),
                binary_copy.date(birthday),
                binary_copy.timestamptz(created),
                binary_copy.timestamptz(updated),
                binary_copy.int8(ids),  # each customer has their own address, same id
            ],
            [
                binary_copy.Encoded(self.first_names.fields[first]),
                binary_copy.Encoded(self.last_names.fields[last]),
                binary_copy.Encoded(self._phones(city, self.uniform(S_PHONE, start, stop))),
            ],
        )

    @staticmethod
    def _customer_ids(ids: np.ndarray) -> np.ndarray:
        """``CU`` and 9 digits, as ASCII codes."""
        template = np.frombuffer(
            (CUSTOMER_ID_PREFIX + "#" * CUSTOMER_ID_DIGITS).encode(), dtype=np.uint8
        )
        number = (CUSTOMER_ID_A * ids + CUSTOMER_ID_B) % CUSTOMER_ID_MOD
        return _fill_digits(template, np.arange(len(CUSTOMER_ID_PREFIX), len(template)), number)

    def _phones(self, city: np.ndarray, u: np.ndarray) -> np.ndarray:
        phones = np.empty(len(city), dtype=object)
        for c in np.unique(city):
            rows = np.flatnonzero(city == c)
            pattern = self.phone_patterns[c]
            # One draw per row gives every digit; a subscriber number never
            # starts with 0.
            digits = len(pattern.digit_positions)
            number = (10 ** (digits - 1) + u[rows] * 9 * 10 ** (digits - 1)).astype(np.int64)
            phones[rows] = pattern.render(number)
        return phones

    RELATIONSHIP_COLUMNS = ("appuser_id", "points", "created", "last_activity")

    def relationship_rows(self, start: int, stop: int) -> bytes:
        ids = np.arange(start + 1, stop + 1)
        # Lomax law: median about 60 points, a few customers with 100,000+.
        # Inverse CDF of the law truncated at the cap: u is scaled into
        # [0, F(cap)), so the tail thins out instead of piling up on the cap.
        tail = (1 + POINTS_CAP / POINTS_SCALE) ** -POINTS_SHAPE
        u = self.uniform(S_POINTS, start, stop) * (1 - tail)
        points = (POINTS_SCALE * ((1 - u) ** (-1 / POINTS_SHAPE) - 1)).astype(np.int64)
        created = self.relationship_created(start, stop)
        # Activity is recent for most customers, whenever they joined.
        activity = _between(created, self.now, np.sqrt(self.uniform(S_ACTIVITY, start, stop)))
        return binary_copy.rows(
            [
                binary_copy.int8(ids),
                binary_copy.int4(points),
                binary_copy.timestamptz(created),
                binary_copy.timestamptz(activity),
            ]
        )

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
population (Vienna is about 2.6% of customers); US and UK surnames and US first
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

import datetime as dt
import unicodedata
from functools import cached_property

import numpy as np
from faker import Faker

from . import binary_copy
from .pools import (
    GroupedPool,
    PhonePattern,
    decimal_texts,
    fill_digits,
    fill_pattern,
    load_cities,
    locale_names,
)

#: Rows per random block; see the module docstring.
BLOCK = 8192

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
S_EMAIL = 15

#: Customers who gave an e-mail address; the others have none (NULL).
EMAIL_SHARE = 0.9
#: Mail providers by locale: a customer's address is at one of their
#: country's, drawn uniformly.
EMAIL_DOMAINS = {
    "de_AT": ("gmx.at", "gmail.com", "outlook.com", "aon.at"),
    "de_CH": ("bluewin.ch", "gmail.com", "gmx.ch", "outlook.com"),
    "de_DE": ("web.de", "gmx.de", "gmail.com", "t-online.de"),
    "en_GB": ("gmail.com", "outlook.com", "btinternet.com", "yahoo.co.uk"),
    "en_US": ("gmail.com", "yahoo.com", "outlook.com", "aol.com"),
    "es_ES": ("gmail.com", "hotmail.es", "yahoo.es", "outlook.es"),
    "fr_CH": ("bluewin.ch", "gmail.com", "outlook.com", "sunrise.ch"),
    "fr_FR": ("orange.fr", "gmail.com", "free.fr", "laposte.net"),
    "it_IT": ("libero.it", "gmail.com", "virgilio.it", "outlook.it"),
    "nl_NL": ("gmail.com", "ziggo.nl", "outlook.com", "kpnmail.nl"),
    "pl_PL": ("wp.pl", "gmail.com", "onet.pl", "interia.pl"),
}
#: A NULL in binary COPY: a length of -1 and no bytes.
NULL_FIELD = (-1).to_bytes(4, "big", signed=True)
#: Letters that Unicode's decomposition does not take to ASCII.
TRANSLITERATION = str.maketrans({"ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae"})


def mailbox_part(name: str) -> bytes:
    """A name as the local part of an address: ASCII, lower case, letters only
    ("Jürgen" → "jurgen", "O'Brien" → "obrien")."""
    folded = unicodedata.normalize("NFKD", name.translate(TRANSLITERATION))
    return "".join(c for c in folded if c.isascii() and c.isalpha()).lower().encode()


def _between(earliest: np.ndarray, latest: int, fraction: np.ndarray) -> np.ndarray:
    """Microseconds ``fraction`` of the way from ``earliest`` to ``latest``."""
    return earliest + (fraction * (latest - earliest)).astype(np.int64)


class CustomerDataset:
    """Rows 1..n of the three tables and the read table, for one seed, one size and one
    reference date."""

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
                locale_names(locale, attribute)
                for locale in self.locales
                for attribute in ("first_names_male", "first_names_female")
            ]
        )

    @cached_property
    def last_names(self) -> GroupedPool:
        return GroupedPool([locale_names(locale, "last_names") for locale in self.locales])

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
    def email_domains(self) -> GroupedPool:
        """Each locale's mail providers (group = locale), ``encoded`` as bytes."""
        pool = GroupedPool(
            [[("@" + domain, 1.0) for domain in EMAIL_DOMAINS[locale]] for locale in self.locales]
        )
        pool.encoded = np.array([value.encode() for value in pool.values], dtype=object)
        return pool

    @cached_property
    def mailbox_parts(self) -> tuple[np.ndarray, np.ndarray]:
        """The first and the last names as local parts of an address."""
        return tuple(
            np.array([mailbox_part(str(name)) for name in pool.values], dtype=object)
            for pool in (self.first_names, self.last_names)
        )

    @cached_property
    def mailbox_part_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        return tuple(np.array([len(part) for part in parts]) for parts in self.mailbox_parts)

    @cached_property
    def email_domain_lengths(self) -> np.ndarray:
        return np.array([len(encoded) for encoded in self.email_domains.encoded])

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
            "email_domains",
            "mailbox_parts",
            "mailbox_part_lengths",
            "email_domain_lengths",
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
        return binary_copy.rows(*self._address_parts(start, stop))

    def _address_parts(self, start: int, stop: int) -> tuple[list, list]:
        city = self.city(start, stop)
        street = self.streets.sample(self.city_locale[city], self.uniform(S_STREET, start, stop))
        # Small house numbers are the most common.
        number = 1 + (
            self.uniform(S_STREET_NUMBER, start, stop) ** 3 * self.MAX_STREET_NUMBER
        ).astype(np.int64)
        postcode = self.postcodes.sample(city, self.uniform(S_POSTCODE, start, stop))
        return (
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
        "email",
    )

    def appuser_rows(self, start: int, stop: int) -> bytes:
        return binary_copy.rows(*self._appuser_parts(start, stop))

    def _appuser_parts(self, start: int, stop: int) -> tuple[list, list]:
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
        return (
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
                binary_copy.Encoded(self._emails(ids, first, last, locale, start, stop)),
            ],
        )

    def _emails(
        self,
        ids: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        locale: np.ndarray,
        start: int,
        stop: int,
    ) -> np.ndarray:
        """``first.last<id>@provider`` for most customers (the id makes it
        theirs alone), NULL for the others, as COPY fields.

        The parts are joined by ``+`` over object arrays (a C loop each), the
        id's digits and each field's length prefix made by NumPy: a ``str()``
        of every id and a Python expression per row for its prefix took 120
        to 150 ms of every 100,000 rows, half of generating the customers'
        table (and the read table's, which repeats it).
        """
        u = self.uniform(S_EMAIL, start, stop)
        first_parts, last_parts = self.mailbox_parts
        first_lengths, last_lengths = self.mailbox_part_lengths
        domain = self.email_domains.sample(locale, u / EMAIL_SHARE)
        digits, digit_lengths = decimal_texts(ids)
        lengths = (
            first_lengths[first]
            + 1
            + last_lengths[last]
            + digit_lengths
            + self.email_domain_lengths[domain]
        )
        prefixes = np.array(lengths.astype(">i4").view("V4").tolist(), dtype=object)
        fields = (
            prefixes
            + first_parts[first]
            + b"."
            + last_parts[last]
            + digits
            + self.email_domains.encoded[domain]
        )
        fields[u >= EMAIL_SHARE] = NULL_FIELD
        return fields

    @staticmethod
    def _customer_ids(ids: np.ndarray) -> np.ndarray:
        """``CU`` and 9 digits, as ASCII codes."""
        template = np.frombuffer(
            (CUSTOMER_ID_PREFIX + "#" * CUSTOMER_ID_DIGITS).encode(), dtype=np.uint8
        )
        number = (CUSTOMER_ID_A * ids + CUSTOMER_ID_B) % CUSTOMER_ID_MOD
        return fill_digits(template, np.arange(len(CUSTOMER_ID_PREFIX), len(template)), number)

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
        return binary_copy.rows(*self._relationship_parts(start, stop))

    def _relationship_parts(self, start: int, stop: int) -> tuple[list, list]:
        ids = np.arange(start + 1, stop + 1)
        # Lomax law: median about 80 points, a few customers with 100,000+.
        # Inverse CDF of the law truncated at the cap: u is scaled into
        # [0, F(cap)), so the tail thins out instead of piling up on the cap.
        tail = (1 + POINTS_CAP / POINTS_SCALE) ** -POINTS_SHAPE
        u = self.uniform(S_POINTS, start, stop) * (1 - tail)
        points = (POINTS_SCALE * ((1 - u) ** (-1 / POINTS_SHAPE) - 1)).astype(np.int64)
        created = self.relationship_created(start, stop)
        # Activity is recent for most customers, whenever they joined.
        activity = _between(created, self.now, np.sqrt(self.uniform(S_ACTIVITY, start, stop)))
        return (
            [
                binary_copy.int8(ids),
                binary_copy.int4(points),
                binary_copy.timestamptz(created),
                binary_copy.timestamptz(activity),
            ],
            [],
        )

    #: The read table's columns (core.models.CustomerRow; birthday_key is
    #: computed by PostgreSQL): the customer's fixed-width ones, the record's,
    #: then the customer's text and the address's.
    CUSTOMER_LIST_COLUMNS = (
        *APPUSER_COLUMNS[:7],
        "points",
        "relationship_created",
        "last_activity",
        *APPUSER_COLUMNS[7:],
        *ADDRESS_COLUMNS[1:],
    )

    def customer_list_rows(self, start: int, stop: int) -> bytes:
        """The read table's rows: the join of the three tables' rows, drawn from
        the same streams, so that each equals its customer's, address's and
        record's."""
        customer_fixed, customer_text = self._appuser_parts(start, stop)
        _, address_text = self._address_parts(start, stop)
        record_fixed, _ = self._relationship_parts(start, stop)
        return binary_copy.rows(
            [*customer_fixed, *record_fixed[1:]], [*customer_text, *address_text]
        )

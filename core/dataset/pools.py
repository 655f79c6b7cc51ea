"""The value pools generate_data draws rows from: cities, names, streets,
postcodes and phone numbers, each built once per run.

Faker (and the curated ``data/cities.csv``) fill small pools once; rows are
then drawn from the pools with vectorised NumPy sampling
(:class:`GroupedPool`), every value encoded as a binary COPY field once.
"""

from __future__ import annotations

import csv
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import binary_copy

CITIES_CSV = Path(__file__).resolve().parent / "data" / "cities.csv"


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
        return binary_copy.ascii_fields(fill_digits(self.template, self.digit_positions, number))


def fill_digits(template: np.ndarray, positions: np.ndarray, number: np.ndarray) -> np.ndarray:
    """Rows of ``template`` whose ``positions`` hold ``number``'s digits, most significant first."""
    powers = 10 ** np.arange(len(positions) - 1, -1, -1, dtype=np.int64)
    characters = np.repeat(template[np.newaxis, :], len(number), axis=0)
    characters[:, positions] = ord("0") + number[:, np.newaxis] // powers % 10
    return characters


def decimal_texts(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each non-negative number's decimal digits (no leading zeros) as a bytes
    object, and their lengths: NumPy's digits per width of number, where a
    ``str()`` of each number took a third of an e-mail address's time."""
    numbers = np.asarray(numbers, dtype=np.int64)
    lengths = np.ones(len(numbers), dtype=np.int64)
    for width in range(1, 19):
        lengths += numbers >= 10**width
    texts = np.empty(len(numbers), dtype=object)
    for width in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == width)
        characters = fill_digits(
            np.full(width, ord("0"), dtype=np.uint8), np.arange(width), numbers[rows]
        )
        texts[rows] = characters.view(f"V{width}").ravel().tolist()
    return texts, lengths


def locale_names(locale: str, attribute: str) -> list[tuple[str, float]]:
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

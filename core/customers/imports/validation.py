"""Every staged row validated before anything is written, with the API's rules.

Each rule of the API's write serializer is also written as SQL, run over the
whole staging table at once (:func:`suspect_sql`): required fields, lengths,
choices, the formats of dates, times, numbers and e-mail addresses, the
birthday's and the last activity's ranges. The SQL may flag a row the API
would take (its date parser takes more than one format); it must never pass
one the API refuses, which ``core/tests/customers/test_imports.py`` checks on
generated rows. Every flagged row is then validated by the API's own
serializer (``validate_row``, given by the caller: the serializer is the
API's), which has the last word, gives the messages, and cleans the values
the SQL then writes.

What only an import can get wrong is checked in SQL alone
(:func:`file_errors`): a cell a spreadsheet would run as a formula, a
customer or an e-mail address twice in the file, an e-mail address another
customer holds.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import models

from core.models import AppUser

from ..export import FORMULA_CODES
from .fields import WRITABLE, ImportField
from .reading import STAGING

#: Validates one row as the API would: its writable fields by name (text as in
#: the file, None for an empty cell) and the customer it updates (None: a new
#: one). Returns each invalid field's message, or, where there is none, the
#: fields' values as the API cleaned them (text again).
RowValidator = Callable[
    [dict[str, str | None], AppUser | None], tuple[dict[str, str], dict[str, str | None]]
]

#: Rows fetched from the staging table at a time for the serializer.
BATCH = 2_000

DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
#: An instant as the export writes it (PostgreSQL's ISO 8601, with an offset).
INSTANT = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"([+-](0[0-9]|1[0-4]):[0-5][0-9]|Z)$"
)
#: Django's EmailValidator, its common case (an unquoted local part, a domain
#: name of ASCII labels, a top-level domain of letters and inner hyphens): an
#: address it takes that this misses is flagged, then taken. Its
#: limits on a label's length (63) are not in the pattern: PostgreSQL's regular
#: expressions run a bounded repeat such as {0,61} as that many states, 12x
#: slower over a million addresses (14 s). An address of at most EMAIL_SHORT
#: characters cannot hold a label that long (the shortest that does,
#: ``a@b.`` and 64 characters, has 68); a longer one is flagged.
EMAIL = (
    r"^[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z-]*[A-Za-z]$"
)
EMAIL_SHORT = 64


def _quoted(pattern: str) -> str:
    return "'" + pattern.replace("'", "''") + "'"


def calendar_date(cell: str) -> str:
    """SQL true when ``cell`` starts with a day of the calendar (YYYY-MM-DD,
    a year 1900 to 9999; the API's earliest birthday). ``cell`` has matched a
    pattern of digits, so its parts compare as text; only a day after the
    28th asks the calendar (a CASE, so that make_date never sees a month 13):
    a million birthdays take 1 s instead of 4."""
    year, month, day = (
        f"substr({cell}, {start}, {n})::int" for start, n in ((1, 4), (6, 2), (9, 2))
    )
    last_day = f"extract(day FROM make_date({year}, {month}, 1) + interval '1 month - 1 day')"
    return (
        f"(CASE WHEN {cell} < '1900' OR substr({cell}, 6, 2) NOT BETWEEN '01' AND '12' "
        f"OR substr({cell}, 9, 2) < '01' THEN false "
        f"WHEN substr({cell}, 9, 2) <= '28' THEN true "
        f"ELSE {day} <= {last_day} END)"
    )


def valid_sql(f: ImportField, row: str = "s", created: str = "l.relationship_created") -> str:
    """SQL true when the cell of ``f`` in ``row`` is one the API surely takes;
    ``created`` is when the matched customer's loyalty record was created
    (NULL: a new record, created now)."""
    cell = f'{row}."{f.staged}"'
    field = f.field
    empty = f"coalesce({cell}, '') = ''"
    optional = field.null or field.has_default() or f.group == "relationship"
    tests: list[str] = []
    if isinstance(field, models.CharField):
        tests.append(f"length({cell}) <= {field.max_length}")
        if field.choices:
            choices = ", ".join(_quoted(str(value)) for value, _ in field.choices)
            tests.append(f"{cell} IN ({choices})")
        if isinstance(field, models.EmailField):
            tests.append(f"length({cell}) <= {EMAIL_SHORT} AND {cell} ~ {_quoted(EMAIL)}")
    elif isinstance(field, models.DateTimeField):
        # CASE: SQL does not promise to test the pattern before the casts.
        instant = f"{cell}::timestamptz"
        bounds = (
            # The API's bounds: not after now, not before the record's
            # creation (a new record's: now), each with a minute's skew.
            f" AND {instant} <= now() + interval '1 minute' "
            f"AND {instant} >= coalesce({created}, now()) - interval '1 minute'"
            if f.name == "relationship.last_activity"
            else ""
        )
        tests.append(
            f"CASE WHEN NOT {cell} ~ {_quoted(INSTANT)} THEN false "
            f"WHEN NOT {calendar_date(cell)} THEN false ELSE true{bounds} END"
        )
    elif isinstance(field, models.DateField):
        tests.append(
            f"CASE WHEN NOT {cell} ~ {_quoted(DATE)} THEN false "
            f"WHEN NOT {calendar_date(cell)} THEN false "
            f"ELSE {cell} <= to_char(current_date, 'YYYY-MM-DD') END"
        )
    elif isinstance(field, models.IntegerField):
        tests.append(
            f"CASE WHEN {cell} ~ '^[0-9]{{1,10}}$' THEN {cell}::bigint <= 2147483647 ELSE false END"
        )
    test = " AND ".join(tests) or "true"
    if optional:
        return f"({empty} OR ({test}))"
    return f"(NOT {empty} AND {test})"


def suspect_sql(row: str = "s", created: str = "l.relationship_created") -> str:
    """SQL true for a row a rule might refuse (the serializer decides)."""
    valid = "\n    AND ".join(valid_sql(f, row, created) for f in WRITABLE)
    return f"NOT (\n    {valid}\n)"


def formula_sql(f: ImportField, row: str = "f") -> str:
    """A cell a spreadsheet would run: a formula character first, but for the
    '+' or '-' of a phone number (digits, spaces and ()./- only)."""
    cell = f'{row}."{f.staged}"'
    # ascii() reads the first character in place (see the export's cells).
    return (
        f"CASE WHEN ascii({cell}) IN ({FORMULA_CODES}) "
        f"THEN NOT {cell} ~ '^[+-][0-9 ()./-]*$' ELSE false END"
    )


#: The text columns, where a spreadsheet's formula can hide.
TEXT = [f for f in WRITABLE if isinstance(f.field, models.CharField)]


def formulas_sql(row: str = "f") -> str:
    """The names of the cells of ``row`` (as the file has them) a spreadsheet would run."""
    names = ", ".join(f"CASE WHEN {formula_sql(f, row)} THEN '{f.name}' END" for f in TEXT)
    return f"array_remove(ARRAY[{names}]::text[], NULL)"


def formula_errors(cursor) -> list[tuple[int, str, str]]:
    """(line, field, message) of each CSV cell a spreadsheet would run (noted
    before the export's neutralised cells lost their ')."""
    cursor.execute(f"SELECT line, unnest(formulas) FROM {STAGING} WHERE cardinality(formulas) > 0")
    message = (
        "A formula: a spreadsheet would run it. Put a ' in front of it, as the export does, "
        "or remove it."
    )
    return [(line, name, message) for line, name in cursor.fetchall()]


#: What the export puts in front of a cell a spreadsheet would run.
QUOTE = "'"


def unneutralised_sql(f: ImportField, row: str = "f") -> str:
    """The cell of ``f`` in ``row`` without the ``'`` the export put in front
    of a cell a spreadsheet would run (``'+43 1 …``)."""
    cell = f'{row}."{f.staged}"'
    if f not in TEXT:
        return cell
    return (
        f"CASE WHEN ascii({cell}) = {ord(QUOTE)} AND ascii(substr({cell}, 2)) IN ({FORMULA_CODES}) "
        f"THEN substr({cell}, 2) ELSE {cell} END"
    )


def twice_sql(column: str) -> str:
    """The lines whose ``column`` an earlier line of the file has (any case)."""
    return (
        f"SELECT line, '{column}', 'The file has this {column} on an earlier line.' FROM ("
        f"SELECT line, row_number() OVER (PARTITION BY lower({column}) ORDER BY line) AS nth "
        f"FROM {STAGING} WHERE coalesce({column}, '') <> '') d WHERE nth > 1"
    )


def taken_sql(column: str, compared: str, what: str) -> str:
    """The lines whose ``column`` another customer than the one they update holds."""
    return (
        f"SELECT s.line, '{column}', 'Another customer has this {what}.' "
        f"FROM {STAGING} s JOIN core_appuser u ON u.{column} = {compared} "
        "WHERE u.id IS DISTINCT FROM s.match_id"
    )


def file_errors(cursor, match: str) -> list[tuple[int, str, str]]:
    """(line, field, message) of what only an import can get wrong: a customer
    or an address twice in the file, an e-mail address (or, matching by
    e-mail, a customer_id) another customer holds."""
    checks = [
        twice_sql("customer_id"),
        twice_sql("email"),
        taken_sql("email", "lower(s.email)", "e-mail address"),
    ]
    if match == "email":
        checks.append(taken_sql("customer_id", "s.customer_id", "customer_id"))
    cursor.execute(" UNION ALL ".join(checks))
    return cursor.fetchall()


def validate(cursor, validate_row: RowValidator) -> list[tuple[int, str, str]]:
    """Run the serializer on every row the SQL's rules flagged (``suspect``);
    return (line, field, message) of each invalid field, and write the cleaned
    values of the flagged rows it takes back into the staging table."""
    errors: list[tuple[int, str, str]] = []
    names = [f.staged for f in WRITABLE]
    selected = ", ".join(f'"{n}"' for n in names)
    assignments = ", ".join(f'"{n}" = c."{n}"' for n in names)
    arrays = ", ".join(["%s::bigint[]"] + ["%s::text[]"] * len(names))
    aliases = ", ".join(["line"] + [f'"{n}"' for n in names])
    last = 0
    while True:
        cursor.execute(
            f"SELECT line, match_id, {selected} FROM {STAGING} "
            f"WHERE suspect AND line > %s ORDER BY line LIMIT %s",
            [last, BATCH],
        )
        rows = cursor.fetchall()
        if not rows:
            return errors
        matched = AppUser.objects.in_bulk([r[1] for r in rows if r[1] is not None])
        cleaned_rows = []
        for line, match_id, *values in rows:
            last = line
            row = {f.name: value for f, value in zip(WRITABLE, values, strict=True)}
            problems, cleaned = validate_row(row, matched.get(match_id))
            if problems:
                errors += [(line, name, message) for name, message in problems.items()]
            else:
                cleaned_rows.append([line, *(cleaned.get(f.name, row[f.name]) for f in WRITABLE)])
        if cleaned_rows:
            # One statement a batch (the staging table has no index to find a line by).
            cursor.execute(
                f"UPDATE {STAGING} s SET {assignments} "
                f"FROM unnest({arrays}) AS c({aliases}) WHERE s.line = c.line",
                [list(column) for column in zip(*cleaned_rows, strict=True)],
            )

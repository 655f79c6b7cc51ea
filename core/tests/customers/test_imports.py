"""Importing customers: what the export writes comes back as it was, new rows
are created, changed rows change only what differs, and every bad row is
named by line and field with nothing written."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.api.serializers import validated_import_row
from core.customers.imports import UnreadableFile, customer_import
from core.customers.imports.fields import WRITABLE
from core.customers.imports.merge import prepare
from core.customers.imports.reading import FILE, STAGING, create_staging
from core.customers.imports.validation import valid_sql
from core.dataset.loader import customer_dataset_replace
from core.history.context import Source, Writer, writing_as
from core.models import AppUser, HistoryEvent
from core.tests.clients import api_client
from core.tests.read_table import drift

pytestmark = pytest.mark.django_db


def exported(fmt: str = "csv", query: str = "") -> bytes:
    client = api_client("importer-reader")
    response = client.get(f"/api/users/export/?format={fmt}{query}")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def imported(data: bytes, **options):
    with writing_as(Writer(Source.IMPORT, request_id="test-import")):
        return customer_import(io.BytesIO(data), validate_row=validated_import_row, **options)


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def csv_of(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@pytest.fixture
def loaded(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    customer_dataset_replace(n=60, chunk=60, seed=4)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
def test_importing_the_export_changes_nothing(loaded, fmt):
    before = exported(fmt)
    events = HistoryEvent.objects.count()
    result = imported(before)
    assert (result.created, result.updated, result.unchanged, result.invalid) == (0, 0, 60, 0)
    assert result.written
    assert HistoryEvent.objects.count() == events
    assert exported(fmt) == before


def test_new_rows_are_created_and_changed_rows_change_only_what_differs(loaded):
    rows = rows_of(exported())
    rows[0]["address_city"] = "Graz"
    rows[1]["first_name"] = "Renamed"
    rows[2]["relationship_points"] = "4242"
    # A new record starts now: no last activity before that (the API's rule).
    new = dict(
        rows[3],
        customer_id="NEW-1",
        email="new.one@example.com",
        id="",
        relationship_last_activity="",
    )
    result = imported(csv_of([*rows[:5], new]))
    assert (result.created, result.updated, result.unchanged) == (1, 3, 2), result.errors
    assert drift() == []
    created = AppUser.objects.get(customer_id="NEW-1")
    assert created.address.city == rows[3]["address_city"]
    assert created.relationship.points == int(rows[3]["relationship_points"])
    events = HistoryEvent.objects.filter(source=Source.IMPORT, request_id="test-import")
    changed = sorted(
        field for e in events.filter(kind="U") for field in e.changes if field != "last_updated"
    )
    assert changed == ["address.city", "first_name", "relationship.points"]


def test_a_neutralised_cell_comes_back_without_its_quote(loaded):
    rows = rows_of(exported())
    assert rows[0]["phone_number"].startswith("'+")
    rows[0]["phone_number"] = "'+43 1 999 0000"
    result = imported(csv_of(rows[:1]))
    assert result.updated == 1
    assert AppUser.objects.get(pk=rows[0]["id"]).phone_number == "+43 1 999 0000"


def test_a_bad_row_is_named_by_line_and_field_and_nothing_is_written(loaded):
    rows = rows_of(exported())
    rows[1]["birthday"] = "1990-02-30"
    rows[2]["gender"] = "x"
    rows[3]["customer_id"] = rows[0]["customer_id"]
    rows[4]["first_name"] = '=HYPERLINK("http://evil")'
    rows[0]["last_name"] = "Changed"
    result = imported(csv_of(rows[:5]))
    assert not result.written
    assert result.invalid == 4
    found = {(e["line"], e["field"]) for e in result.errors}
    assert {(3, "birthday"), (4, "gender"), (5, "customer_id"), (6, "first_name")} <= found
    assert AppUser.objects.filter(last_name="Changed").count() == 0
    skipped = imported(csv_of(rows[:5]), skip_invalid=True)
    assert skipped.written
    assert skipped.updated == 1
    assert AppUser.objects.filter(last_name="Changed").count() == 1


def test_a_dry_run_says_what_would_change_and_writes_nothing(loaded):
    rows = rows_of(exported())
    rows[0]["address_city"] = "Hallstatt"
    result = imported(csv_of(rows[:3]), dry_run=True)
    assert (result.updated, result.unchanged, result.written) == (1, 2, False)
    (change,) = result.changes
    assert change["line"] == 2
    assert change["changes"]["address.city"][1] == "Hallstatt"
    assert AppUser.objects.filter(address__city="Hallstatt").count() == 0


def test_a_wrong_header_is_named(loaded):
    with pytest.raises(UnreadableFile) as raised:
        imported(b'"first_name","colour"\n"Ann","red"\n')
    fields = {e["field"] for e in raised.value.errors}
    assert "colour" in fields
    assert "last_name" in fields


def test_a_utf16_file_is_refused_with_a_reason(loaded):
    with pytest.raises(UnreadableFile) as raised:
        imported(exported().decode().encode("utf-16"))
    assert "UTF-16" in raised.value.errors[0]["message"]


def test_a_malformed_csv_line_is_named(loaded):
    data = exported().split(b"\n")
    data[4] = data[4] + b',"extra"'
    with pytest.raises(UnreadableFile) as raised:
        imported(b"\n".join(data))
    assert raised.value.errors[0]["line"] == 5


def test_ndjson_with_a_broken_line_names_it(loaded):
    lines = exported("ndjson").split(b"\n")
    lines[2] = b"{not json"
    result = imported(b"\n".join(lines))
    assert not result.written
    assert [e["line"] for e in result.errors] == [3]


#: Cells the SQL's rules see: anything a client might put in a file (but a NUL,
#: which COPY refuses before any rule sees it).
CELL = st.one_of(
    st.none(),
    st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12),
    st.sampled_from(
        [
            "1990-02-28",
            "1990-02-30",
            "2990-01-01",
            "1899-12-31",
            "12",
            "-3",
            "12.0",
            "m",
            "x",
            "a@b.co",
            "a@b",
            "2024-01-01T00:00:00+00:00",
            "2024-02-29",
            "2023-02-29",
            "2024-04-31",
            "2024-13-01",
            "0000-01-01",
            "2024-04-31T10:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T10:60:00+00:00",
            "2024-01-01T10:00:00+15:00",
            "now",
            "99999999999",
        ]
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(CELL, min_size=len(WRITABLE), max_size=len(WRITABLE)))
def test_the_sql_flags_every_row_the_api_refuses(db, values):
    """The SQL's rules may flag a row the API takes, never pass one it refuses."""
    row = {f.name: v for f, v in zip(WRITABLE, values, strict=True)}
    problems, _ = validated_import_row(row, None)
    with connection.cursor() as cursor:
        cursor.execute("SAVEPOINT flagged")
        try:
            create_staging(cursor)
            columns = ", ".join(f'"{f.staged}"' for f in WRITABLE)
            holes = ", ".join(["%s"] * len(WRITABLE))
            cursor.execute(f"INSERT INTO {FILE} ({columns}) VALUES ({holes})", values)
            prepare(cursor, "customer_id", neutralised=False)
            cursor.execute(f"SELECT suspect FROM {STAGING}")
            (suspect,) = cursor.fetchone()
        finally:
            cursor.execute("ROLLBACK TO SAVEPOINT flagged")
    if problems:
        assert suspect, (row, problems)


#: E-mail addresses near the edges of Django's rules: labels of 63 and 64
#: characters, one-character top-level domains, dots and hyphens out of place.
ADDRESS = st.one_of(
    st.emails(),
    st.builds(
        lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
        st.text("ab.-+", min_size=1, max_size=4),
        st.lists(
            st.sampled_from(["b", "-b", "b-", "b" * 63, "b" * 64, "b-c"]), min_size=1, max_size=2
        ),
        st.sampled_from(["c", "de", "d-", "-d", "c" * 63, "c" * 64, "d1"]),
    ),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(address=ADDRESS)
def test_the_sql_flags_every_email_address_django_refuses(db, address):
    """The SQL's e-mail rule, which leaves a label's length to a bound on the
    whole address, passes no address Django's validator refuses."""
    email = next(f for f in WRITABLE if f.name == "email")
    problems, _ = validated_import_row({f.name: None for f in WRITABLE} | {"email": address}, None)
    rule = valid_sql(email).replace("%", "%%")  # the pattern's own %, not a parameter
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT {rule} FROM (SELECT %s::text AS "email") s', [address])
        (passed,) = cursor.fetchone()
    if passed:
        assert "email" not in problems, (address, problems)


def test_ndjson_rows_are_the_apis(loaded):
    lines = [json.loads(line) for line in exported("ndjson").split(b"\n")[:-1]]
    lines[0]["address"]["city"] = "Salzburg"
    data = "\n".join(json.dumps(line) for line in lines[:2]).encode()
    result = imported(data)
    assert (result.updated, result.unchanged) == (1, 1)

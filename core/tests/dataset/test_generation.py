"""Generated rows: deterministic whatever the chunk, realistic and skewed."""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from collections import Counter

import pytest
from django.core.management import call_command

from core.models import Address, AppUser, CustomerRelationship

from .snapshots import table_digest

pytestmark = pytest.mark.django_db(transaction=True)


AS_OF = dt.date(2026, 1, 15)


def generate(n: int, chunk: int = 1000, seed: int = 42, **options) -> None:
    call_command("generate_data", n=n, chunk=chunk, seed=seed, as_of=AS_OF, quiet=True, **options)


def test_same_seed_gives_identical_rows_whatever_the_chunk(reports_dir):
    generate(2500, chunk=2500)
    whole = table_digest()
    generate(2500, chunk=333)
    assert table_digest() == whole
    generate(2500, chunk=333, seed=43)
    assert table_digest() != whole


def test_data_is_realistic_and_skewed(reports_dir):
    generate(20_000, chunk=5000)
    surnames = Counter(AppUser.objects.values_list("last_name", flat=True))
    assert "Smith" in [name for name, _ in surnames.most_common(3)]
    assert len(surnames) > 2000, "most names are rare"
    vienna = Address.objects.filter(city="Vienna")
    assert 200 < vienna.count() < 800  # about 2% of customers
    assert set(vienna.values_list("country", flat=True)) == {"Austria"}
    assert all(
        code in {f"1{d:02d}0" for d in range(1, 24)}
        for code in vienna.values_list("city_code", flat=True)
    )
    assert (
        AppUser.objects.filter(address__city="Vienna")
        .exclude(phone_number__startswith="+43 1 ")
        .count()
        == 0
    )
    assert set(AppUser.objects.values_list("gender", flat=True)) == {"m", "f", "o"}
    users = list(AppUser.objects.values("birthday", "created", "last_updated", "customer_id"))
    assert all(dt.date(1940, 1, 1) <= u["birthday"] <= dt.date(2007, 12, 31) for u in users)
    as_of = dt.datetime.combine(AS_OF, dt.time(), tzinfo=dt.UTC)
    assert all(as_of - dt.timedelta(days=3651) <= u["created"] <= as_of for u in users)
    assert all(u["last_updated"] >= u["created"] for u in users)
    assert len({u["customer_id"] for u in users}) == len(users)
    records = list(CustomerRelationship.objects.values("points", "created", "last_activity"))
    assert all(r["last_activity"] >= r["created"] for r in records)
    points = [r["points"] for r in records]
    assert min(points) >= 0
    assert statistics.median(points) < statistics.mean(points), "many small, few large"
    assert max(points) > 20 * statistics.median(points)


def test_times_look_like_a_live_systems(reports_dir):
    """No instant shared by more than a couple of rows, every hour of the day,
    microseconds, nothing at or after --as-of midnight; sign-ups in id order.

    Records used to be created (and last active) at exactly --as-of midnight
    when sign-up plus a delay passed it: 6% of them, so the list ordered by
    -relationship__last_activity began with thousands of ties.
    """
    n = 20_000
    generate(n, chunk=3000)
    as_of = dt.datetime.combine(AS_OF, dt.time(), tzinfo=dt.UTC)
    users = AppUser.objects.order_by("id")
    records = CustomerRelationship.objects.order_by("appuser_id")
    columns = {
        "customer created": list(users.values_list("created", flat=True)),
        "customer last_updated": list(users.values_list("last_updated", flat=True)),
        "record created": list(records.values_list("created", flat=True)),
        "record last_activity": list(records.values_list("last_activity", flat=True)),
    }
    for name, values in columns.items():
        (value, count), *_ = Counter(values).most_common(1)
        assert count <= 2, f"{name}: {count} rows at {value}"
        assert max(values) < as_of, name
        hours = Counter(value.hour for value in values)
        assert len(hours) == 24, name
        assert min(hours.values()) > 0.02 * n, f"{name}: {sorted(hours.items())}"
        whole_seconds = sum(value.microsecond == 0 for value in values)
        assert whole_seconds < 0.01 * n, f"{name}: {whole_seconds} values on a whole second"
    signups = columns["customer created"]
    assert all(a < b for a, b in itertools.pairwise(signups)), "ids follow sign-ups"
    for user, record in zip(users.values("created"), records.values("created"), strict=True):
        assert user["created"] <= record["created"] <= user["created"] + dt.timedelta(days=30)
    first_page = records.order_by("-last_activity").values_list("last_activity", flat=True)[:100]
    assert len(set(first_page)) == 100
    points = Counter(records.values_list("points", flat=True))
    assert points.most_common(1)[0][1] < 0.03 * n, "many customers share small balances, not more"
    largest = sorted(points)[-20:]
    assert all(points[value] == 1 for value in largest), "no value collects the tail"
    birthdays = Counter(users.values_list("birthday", flat=True))
    assert birthdays.most_common(1)[0][1] < 0.002 * n

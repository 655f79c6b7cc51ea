"""Old events go, in batches, when an operator prunes; a load leaves one event
for the whole data set; an erasure's event is kept whatever its age."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.dataset.loader import customer_dataset_replace
from core.models import HistoryEvent

pytestmark = pytest.mark.django_db(transaction=True)

Kind = HistoryEvent.Kind


def aged(days: int, **filters) -> None:
    HistoryEvent.objects.filter(**filters).update(
        at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    )


def test_a_load_leaves_one_event_for_the_data_set_not_one_per_row():
    customer_dataset_replace(n=40, chunk=40, seed=2)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE core_customerrelationship SET points = points + 1")
    assert HistoryEvent.objects.count() == 41
    customer_dataset_replace(n=30, chunk=30, seed=3)
    (event,) = HistoryEvent.objects.all()
    assert (event.kind, event.entity, event.changes) == (Kind.REPLACED, 4, {"customers": 30})


def test_pruning_deletes_old_events_in_batches_and_keeps_erasures():
    customer_dataset_replace(n=25, chunk=25, seed=2)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE core_customerrelationship SET points = points + 1")
    HistoryEvent.objects.create(
        at=dt.datetime.now(dt.UTC), entity=1, row_id=99, customer_id=99, kind=Kind.ERASED
    )
    aged(400)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE core_customerrelationship SET points = points + 1 WHERE appuser_id <= 5"
        )
    out = StringIO()
    before = (dt.date.today() - dt.timedelta(days=30)).isoformat()
    call_command("prune_history", "--before", before, "--batch", "10", stdout=out)
    # 25 updates and the load's event were old; the erasure stays, and the 5 new ones.
    assert "Deleted 26 events." in out.getvalue()
    assert out.getvalue().count(" deleted") == 3  # batches of 10, 10 and 6
    assert HistoryEvent.objects.filter(kind=Kind.ERASED).count() == 1
    assert HistoryEvent.objects.filter(kind=Kind.UPDATE).count() == 5


def test_pruning_by_the_configured_age(settings):
    customer_dataset_replace(n=5, chunk=5, seed=2)
    aged(10)
    settings.CRM_HISTORY_DAYS = 30
    call_command("prune_history", stdout=StringIO())
    assert HistoryEvent.objects.count() == 1
    settings.CRM_HISTORY_DAYS = 5
    call_command("prune_history", stdout=StringIO())
    assert HistoryEvent.objects.count() == 0


def test_pruning_needs_a_date_or_an_age(settings):
    settings.CRM_HISTORY_DAYS = 0
    with pytest.raises(CommandError, match="--before"):
        call_command("prune_history", stdout=StringIO())

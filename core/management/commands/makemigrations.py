"""``makemigrations`` that also writes the triggers the models generate.

Django's command, with an autodetector that compares the app's generated
triggers (:func:`core.models.database_triggers`) with those its migrations
froze (:class:`core.triggers.SyncTriggers`, replayed in order) and adds one
``SyncTriggers`` operation for the difference, after the model changes of
the same migration (a new read-table column exists before a trigger writes
it). ``makemigrations --check`` therefore fails while they differ.
"""

from __future__ import annotations

from django.core.management.commands import makemigrations
from django.db.migrations import Migration
from django.db.migrations.autodetector import MigrationAutodetector

from core import triggers
from core.models import database_triggers

APP = "core"


def frozen_triggers(graph) -> dict[str, triggers.Trigger]:
    """The app's triggers as its migrations leave them (by name)."""
    state: dict[str, triggers.Trigger] = {}
    leaves = graph.leaf_nodes(APP)
    if not leaves:
        return state
    for key in graph.forwards_plan(leaves[-1]):
        if key[0] != APP:
            continue
        for operation in graph.nodes[key].operations:
            if isinstance(operation, triggers.SyncTriggers):
                state = operation.replay(state)
    return state


class TriggerAutodetector(MigrationAutodetector):
    """Django's autodetector, plus the app's generated triggers."""

    def _detect_changes(self, convert_apps=None, graph=None):
        changes = super()._detect_changes(convert_apps, graph)
        if graph is None or (convert_apps and APP not in convert_apps):
            return changes
        operation = triggers.changes(frozen_triggers(graph), database_triggers())
        if operation is None:
            return changes
        migrations = changes.setdefault(APP, [])
        if not migrations:
            migrations.append(Migration("auto_1", APP))
        migrations[-1].operations.append(operation)
        return changes


class Command(makemigrations.Command):
    autodetector = TriggerAutodetector

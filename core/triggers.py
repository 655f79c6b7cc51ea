"""Triggers generated from the models, frozen by migrations.

The read table's triggers (:mod:`core.read_table_triggers`) are SQL generated
from the models' declarations. Generated SQL must still be versioned like a
schema: a migration that ran must be reproducible later, whatever the code
says then. So each migration freezes the triggers it installs, as
:class:`Trigger` values in a :class:`SyncTriggers` operation, and
``makemigrations`` writes that operation whenever what the models generate
differs from what the migrations froze (see
:mod:`core.management.commands.makemigrations`); ``makemigrations --check``
fails until it has.

Why not django-pgtrigger, which does the same for triggers declared in a
model's ``Meta``: it compiles one function per trigger with a check of its
own ``pgtrigger.ignore`` in each (a subtransaction per call), names them
``pgtrigger_<name>_<hash>``, leaves a function behind when a trigger is
removed, and keeps its install hash in a trigger comment that
:mod:`core.dataset.shadow`'s swap does not carry over. What is needed here,
statement-level triggers with transition tables whose bodies are generated,
takes this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import migrations
from django.db.migrations.serializer import BaseSerializer
from django.db.migrations.writer import MigrationWriter

#: Transition tables of a statement-level trigger, by event.
TRANSITION_TABLES = {
    "INSERT": "NEW TABLE AS new_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
    "TRUNCATE": None,
}


@dataclass(frozen=True)
class Trigger:
    """A statement-level ``AFTER`` trigger and its own plpgsql function
    (``core_<name>``), whose ``body`` reads the statement's rows from the
    transition tables ``new_rows`` and ``old_rows``."""

    name: str
    table: str
    event: str
    body: str

    @property
    def function(self) -> str:
        return f"core_{self.name}"

    @property
    def source(self) -> str:
        """The function's source as PostgreSQL keeps it (``pg_proc.prosrc``)."""
        return f"\nBEGIN\n{self.body}\n    RETURN NULL;\nEND\n"

    def create_sql(self) -> str:
        transition = TRANSITION_TABLES[self.event]
        referencing = f" REFERENCING {transition}" if transition else ""
        return (
            f"CREATE OR REPLACE FUNCTION {self.function}() RETURNS trigger "
            f"LANGUAGE plpgsql AS $${self.source}$$;\n"
            f"CREATE OR REPLACE TRIGGER {self.name} AFTER {self.event} ON {self.table}"
            f"{referencing} FOR EACH STATEMENT EXECUTE FUNCTION {self.function}();"
        )

    def drop_sql(self) -> str:
        return (
            f"DROP TRIGGER IF EXISTS {self.name} ON {self.table};\n"
            f"DROP FUNCTION IF EXISTS {self.function}();"
        )


def sync_sql(before: Iterable[Trigger], after: Iterable[Trigger]) -> str:
    """The SQL that turns the triggers ``before`` into the triggers ``after``:
    drop those gone, create or replace the others."""
    after = list(after)
    names = {trigger.name for trigger in after}
    statements = [trigger.drop_sql() for trigger in before if trigger.name not in names]
    statements += [trigger.create_sql() for trigger in after]
    return "\n".join(statements)


class SyncTriggers(migrations.operations.base.Operation):
    """Replace the triggers ``before`` by the triggers ``after``: those in
    ``before`` only are dropped, those in ``after`` created or replaced.
    Reversed, the other way round."""

    reversible = True
    reduces_to_sql = True

    def __init__(self, before: list[Trigger], after: list[Trigger]) -> None:
        self.before = list(before)
        self.after = list(after)

    def deconstruct(self):
        return self.__class__.__qualname__, [], {"before": self.before, "after": self.after}

    def state_forwards(self, app_label, state) -> None:
        # Triggers are not part of Django's model state: frozen_triggers()
        # replays these operations instead.
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        schema_editor.execute(sync_sql(self.before, self.after), params=None)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        schema_editor.execute(sync_sql(self.after, self.before), params=None)

    def describe(self) -> str:
        changed = sorted({t.name for t in self.before} | {t.name for t in self.after})
        return f"Sync triggers {', '.join(changed)}"

    @property
    def migration_name_fragment(self) -> str:
        return "sync_triggers"

    def replay(self, triggers: dict[str, Trigger]) -> dict[str, Trigger]:
        """The triggers after this operation, given those before it (by name)."""
        gone = {trigger.name for trigger in self.before}
        result = {name: t for name, t in triggers.items() if name not in gone}
        result.update({trigger.name: trigger for trigger in self.after})
        return result


def changes(frozen: dict[str, Trigger], generated: Iterable[Trigger]) -> SyncTriggers | None:
    """The operation that brings the ``frozen`` triggers to the ``generated``
    ones, or None where they are the same."""
    generated = {trigger.name: trigger for trigger in generated}
    before = [t for name, t in sorted(frozen.items()) if generated.get(name) != t]
    after = [t for name, t in sorted(generated.items()) if frozen.get(name) != t]
    if not before and not after:
        return None
    return SyncTriggers(before=before, after=after)


class TriggerSerializer(BaseSerializer):
    """A frozen trigger as a migration writes it: its body one string literal
    per line of SQL, rather than one long line of escapes. (Not a triple-quoted
    string: the migration writer indents every line it writes, and would
    indent the SQL inside one.)"""

    def serialize(self) -> tuple[str, set[str]]:
        trigger: Trigger = self.value
        lines = trigger.body.splitlines(keepends=True) or [""]
        body = "\n".join(f"        {line!r}" for line in lines)
        return (
            f"core.triggers.Trigger(\n    name={trigger.name!r},\n    table={trigger.table!r},\n"
            f"    event={trigger.event!r},\n    body=(\n{body}\n    ),\n)",
            {"import core.triggers"},
        )


MigrationWriter.register_serializer(Trigger, TriggerSerializer)

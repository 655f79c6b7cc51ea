"""What is built on the loaded tables, and in which order: each shadow table's
indexes, exclusion constraints and ANALYZE, then the foreign keys, as
:class:`~.builds.Step` s that :mod:`.builds` runs on several connections."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql

from .builds import Step
from .shadow import TableDefinition


@dataclass(frozen=True)
class LoadedTable:
    """A table being replaced: its live definition and where its rows come from."""

    definition: TableDefinition
    columns: tuple[str, ...]
    rows: Callable[[int, int], bytes]

    @property
    def live(self) -> str:
        return self.definition.table

    @property
    def shadow(self) -> str:
        return self.definition.shadow


#: Build priorities. The short steps that others wait for (ANALYZE, foreign
#: keys) go ahead of any index build, so that they overlap the remaining
#: builds instead of trailing after the last one. Index builds go table by
#: table in the order the tables are loaded (each table's ANALYZE and foreign
#: keys can then run while the next table's indexes build, and only the last
#: table's trail), costliest first within a table (so that the last builds to
#: finish are short).
URGENT = 1000.0
TABLE_PRIORITY = 10.0


def build_steps(tables: list[LoadedTable]) -> list[Step]:
    """Every build step, with what each waits for and what it locks."""
    shadows = {table.live: table.shadow for table in tables}
    steps: list[Step] = []
    for rank, table in enumerate(tables):
        definition, loaded = table.definition, f"copy {table.live}"
        first = (len(tables) - rank) * TABLE_PRIORITY
        indexes = [
            Step(
                name=f"index {index.temporary}",
                kind="index",
                statement=index.create(table.shadow),
                after=frozenset({loaded}),
                shares=frozenset({table.live}),
                priority=first + index.cost,
                parallel=True,
            )
            for index in definition.indexes
        ]
        built = frozenset({loaded, *(step.name for step in indexes)})
        exclusions = [
            Step(
                name=f"constraint {table.live} {k}",
                kind="constraint",
                statement=statement,
                after=built,
                locks=frozenset({table.live}),
            )
            for k, statement in enumerate(definition.exclusion_statements())
        ]
        analyze = Step(
            name=f"analyze {table.live}",
            kind="analyze",
            statement=f"ANALYZE {_quote(table.shadow)}",
            after=built | {step.name for step in exclusions},
            locks=frozenset({table.live}),
            priority=URGENT,
        )
        steps += [*indexes, *exclusions, analyze]
    for table in tables:
        for name, definition, references in table.definition.foreign_keys:
            statement = table.definition.foreign_key_statement(name, definition, shadows)
            referenced = {references} & shadows.keys()
            steps.append(
                Step(
                    name=f"foreign key {table.live} {name}",
                    kind="foreign key",
                    statement=statement,
                    after=frozenset(f"analyze {live}" for live in {table.live, *referenced}),
                    locks=frozenset({table.live, *referenced}),
                    priority=URGENT,
                )
            )
    return steps


def _quote(identifier: str) -> str:
    return sql.Identifier(identifier).as_string(None)

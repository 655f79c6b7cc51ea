"""A table's shadow: what the catalog says the live table is, and the SQL that
rebuilds it beside the live one and swaps it in.

Everything is read from PostgreSQL's catalog, not from the models, so the
shadow is exactly what the migrations made of the live table (names of
indexes and constraints included), whatever another branch adds to
``core/models.py``. :class:`TableDefinition` is a value: read it twice and
compare, and you know whether a migration changed the table in between.

What a shadow gets, and how:

* columns, NOT NULL, CHECK constraints, defaults, generated columns, storage,
  compression and column comments: ``CREATE TABLE … (LIKE … INCLUDING ALL
  EXCLUDING INDEXES EXCLUDING IDENTITY EXCLUDING STATISTICS)``;
* indexes, and the unique indexes behind primary keys and unique
  constraints: built after the load under temporary names (:class:`IndexBuild`),
  renamed at the swap; a constraint adopts its index there
  (``ADD CONSTRAINT … USING INDEX``, a catalog change, no scan);
* foreign keys: added after the load, under their own names (constraint
  names are per table), pointing at the other shadows;
* exclusion constraints: added after the load under temporary names;
* identity columns: added at the swap, restarting after the last loaded id;
* extended statistics, per-column statistics targets, storage parameters,
  the table's comment and its grants: copied when the shadow is created;
* triggers: created at the swap, from their own definitions (which name the
  live table: the shadow has just taken its name), so that the load's COPY
  does not fire them row by row. What a trigger does for each row the loader
  does once for the whole load: the read table's triggers (migration 0011)
  write its rows, which the load copies itself, and the names, cities and
  countries they add to SearchTerm, which
  :func:`core.customers.search.search_terms_rebuild` refills at the swap.

What it refuses (:class:`UnsupportedTable`), before any work: row security,
inheritance and partitions, and foreign keys of other tables that reference
these ones (replacing every row would break them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from psycopg import sql

#: A shadow table's name is the live table's plus this suffix; nothing else
#: may use it (stray shadows are found and dropped by this name).
SHADOW_SUFFIX = "__load"

#: The swap renames the replaced table with this suffix and drops it once
#: the swap has committed (unlinking gigabytes of files takes a while, and
#: must not hold the locks that readers wait for).
RETIRED_SUFFIX = "__old"

# An identifier as pg_get_*def() print it (quoted when needed), optionally
# schema-qualified.
_IDENTIFIER = r'(?:"(?:[^"]|"")+"|[^\s"(.]+)'
_NAME = rf"{_IDENTIFIER}(?:\.{_IDENTIFIER})?"
_INDEX_HEAD = re.compile(rf"^CREATE (?P<unique>UNIQUE )?INDEX {_NAME} ON (?:ONLY )?{_NAME} ")
_STATISTICS_HEAD = re.compile(rf"^CREATE STATISTICS {_NAME}(?P<body>.*) FROM {_NAME}$", re.DOTALL)
_REFERENCES = re.compile(rf"REFERENCES (?:{_IDENTIFIER}\.)?(?P<table>{_IDENTIFIER})\(")


class UnsupportedTable(Exception):
    """The live table has something a rebuild from the catalog would lose."""


def shadow_name(live: str) -> str:
    return f"{live}{SHADOW_SUFFIX}"


def retired_name(live: str) -> str:
    return f"{live}{RETIRED_SUFFIX}"


def temporary_name(live: str, k: int) -> str:
    """The name of an index or constraint on the shadow until the swap."""
    return f"{live}{SHADOW_SUFFIX}_{k}"


@dataclass(frozen=True)
class IndexBuild:
    """One index to build on the shadow: a plain index or a constraint's.

    ``constraint`` is the kind of constraint the index becomes at the swap
    (``PRIMARY KEY`` or ``UNIQUE``, then ``timing``, e.g. ``DEFERRABLE
    INITIALLY DEFERRED``), empty for a plain index.
    """

    name: str
    temporary: str
    definition: str  # pg_get_indexdef() of the live index
    #: Relative cost of the build, to start the costliest first (an estimate
    #: from statistics that may change: not part of the definition).
    cost: float = field(compare=False)
    constraint: str = ""
    timing: str = ""

    def create(self, shadow: str) -> str:
        """``CREATE INDEX`` on the shadow, under the temporary name."""
        match = _INDEX_HEAD.match(self.definition)
        if match is None:
            raise UnsupportedTable(f"cannot parse the definition of index {self.name}")
        return (
            f"CREATE {match['unique'] or ''}INDEX {_quote(self.temporary)} ON {_quote(shadow)} "
            + self.definition[match.end() :]
        )

    def install(self, live: str) -> str:
        """The swap's statement that gives the index (or its constraint) its live name."""
        if self.constraint:
            return (
                f"ALTER TABLE {_quote(live)} ADD CONSTRAINT {_quote(self.name)} "
                f"{self.constraint} USING INDEX {_quote(self.temporary)} {self.timing}"
            ).rstrip()
        return f"ALTER INDEX {_quote(self.temporary)} RENAME TO {_quote(self.name)}"


@dataclass(frozen=True)
class TableDefinition:
    """What the loader rebuilds of one live table, as read from the catalog."""

    table: str
    indexes: tuple[IndexBuild, ...]
    foreign_keys: tuple[tuple[str, str, str], ...]  # (name, definition, referenced table)
    exclusions: tuple[tuple[str, str], ...]
    identity: tuple[tuple[str, str], ...]  # (column, "ALWAYS" or "BY DEFAULT")
    statistics: tuple[tuple[str, str], ...]  # (name, pg_get_statisticsobjdef)
    statistics_targets: tuple[tuple[str, int], ...]
    storage_parameters: tuple[str, ...]  # pg_class.reloptions, toast ones as toast.x=y
    comment: str | None
    grants: tuple[tuple[str, str, bool], ...]  # (privilege, grantee or PUBLIC, grantable)
    triggers: tuple[tuple[str, str], ...] = ()  # (name, pg_get_triggerdef)

    @property
    def shadow(self) -> str:
        return shadow_name(self.table)

    @classmethod
    def read(cls, cursor, table: str) -> TableDefinition:
        cursor.execute("SELECT %s::regclass::oid", [table])
        oid = cursor.fetchone()[0]

        def rows_of(query: str) -> tuple[tuple, ...]:
            cursor.execute(query, [oid])
            return tuple(cursor.fetchall())

        indexes: list[IndexBuild] = []
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid), k.conname, k.contype, "
            "       k.condeferrable, k.condeferred, "
            # What a build costs, roughly: GIN (an entry per trigram) most,
            # then sorting text or computed keys, then plain scalars; a
            # b-tree whose leading column follows the rows' order (the live
            # table's statistics say so) sorts little.
            "       CASE WHEN am.amname = 'gin' THEN 3 "
            "            WHEN i.indexprs IS NOT NULL OR EXISTS ("
            "                SELECT 1 FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
            "                WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "                AND t.typcategory = 'S') THEN 2 "
            "            ELSE 1 END "
            "       * (1 - 0.75 * coalesce(("
            "           SELECT abs(s.correlation) FROM pg_stats s "
            "           JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "                AND a.attnum = i.indkey[0] AND a.attname = s.attname "
            "           WHERE s.schemaname = current_schema() "
            "           AND s.tablename = %(table)s AND am.amname = 'btree'), 0)) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam "
            "LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid "
            "     AND k.contype IN ('p', 'u', 'x') "
            "WHERE i.indrelid = %(oid)s AND k.contype IS DISTINCT FROM 'x' "
            "ORDER BY c.relname",
            {"oid": oid, "table": table},
        )
        for k, (name, definition, constraint, kind, deferrable, deferred, cost) in enumerate(
            cursor.fetchall()
        ):
            clause = timing = ""
            if constraint is not None:
                name = constraint
                clause = "PRIMARY KEY" if kind == "p" else "UNIQUE"
                if deferrable:
                    timing = "DEFERRABLE INITIALLY " + ("DEFERRED" if deferred else "IMMEDIATE")
            indexes.append(
                IndexBuild(name, temporary_name(table, k), definition, float(cost), clause, timing)
            )
        foreign_keys = rows_of(
            "SELECT conname, pg_get_constraintdef(oid), confrelid::regclass::text "
            "FROM pg_constraint WHERE conrelid = %s AND contype = 'f' ORDER BY conname",
        )
        exclusions = rows_of(
            "SELECT conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE conrelid = %s AND contype = 'x' ORDER BY conname",
        )
        identity = rows_of(
            "SELECT attname, CASE attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END "
            "FROM pg_attribute WHERE attrelid = %s AND attidentity <> '' AND NOT attisdropped "
            "ORDER BY attnum",
        )
        statistics = rows_of(
            "SELECT stxname, pg_get_statisticsobjdef(oid) FROM pg_statistic_ext "
            "WHERE stxrelid = %s ORDER BY stxname",
        )
        targets = rows_of(
            # NULL (PostgreSQL 17+) or -1 (before) is the default target.
            "SELECT attname, attstattarget FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attstattarget >= 0 "
            "ORDER BY attnum",
        )
        cursor.execute(
            "SELECT coalesce(c.reloptions, '{}') || coalesce(("
            "    SELECT array_agg('toast.' || option) FROM unnest(t.reloptions) option), '{}'), "
            "  obj_description(c.oid, 'pg_class') "
            "FROM pg_class c LEFT JOIN pg_class t ON t.oid = c.reltoastrelid WHERE c.oid = %s",
            [oid],
        )
        options, comment = cursor.fetchone()
        grants = rows_of(
            "SELECT a.privilege_type, "
            "       CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END, "
            "       a.is_grantable "
            "FROM pg_class c, aclexplode(c.relacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = %s AND a.grantee <> c.relowner ORDER BY 2, 1",
        )
        triggers = rows_of(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = %s AND NOT tgisinternal ORDER BY tgname",
        )
        return cls(
            table=table,
            triggers=triggers,
            indexes=tuple(indexes),
            foreign_keys=foreign_keys,
            exclusions=exclusions,
            identity=identity,
            statistics=statistics,
            statistics_targets=targets,
            storage_parameters=tuple(options),
            comment=comment,
            grants=grants,
        )

    # -- the shadow's life: create, build, swap ------------------------------

    def create_statements(self) -> list[str]:
        """The shadow, empty, with everything a load does not change.

        Autovacuum is off on the shadow: it would otherwise wake up on a
        freshly committed multi-million-row table in the middle of the index
        builds and take a lock they wait for. The swap restores the live
        table's parameters.
        """
        options = [o for o in self.storage_parameters if not _is_autovacuum_switch(o)]
        options += ["autovacuum_enabled = off", "toast.autovacuum_enabled = off"]
        statements = [
            f"CREATE TABLE {_quote(self.shadow)} (LIKE {_quote(self.table)} INCLUDING ALL "
            "EXCLUDING INDEXES EXCLUDING IDENTITY EXCLUDING STATISTICS) "
            f"WITH ({', '.join(options)})"
        ]
        for k, (name, definition) in enumerate(self.statistics):
            match = _STATISTICS_HEAD.match(definition)
            if match is None:
                raise UnsupportedTable(f"cannot parse the definition of statistics {name}")
            statements.append(
                f"CREATE STATISTICS {_quote(self._statistics_name(k))}{match['body']} "
                f"FROM {_quote(self.shadow)}"
            )
        for column, target in self.statistics_targets:
            statements.append(
                f"ALTER TABLE {_quote(self.shadow)} ALTER COLUMN {_quote(column)} "
                f"SET STATISTICS {int(target)}"
            )
        if self.comment is not None:
            statements.append(f"COMMENT ON TABLE {_quote(self.shadow)} IS {_literal(self.comment)}")
        for privilege, grantee, grantable in self.grants:
            statements.append(
                f"GRANT {privilege} ON {_quote(self.shadow)} TO {grantee}"
                + (" WITH GRANT OPTION" if grantable else "")
            )
        return statements

    def foreign_key_statement(self, name: str, definition: str, shadows: dict[str, str]) -> str:
        """The foreign key on the shadow, pointing at the shadow of a table being replaced."""
        definition = _REFERENCES.sub(
            lambda m: (
                "REFERENCES "
                + _quote(shadows.get(_unquote(m["table"]), _unquote(m["table"])))
                + "("
            ),
            definition,
        )
        return f"ALTER TABLE {_quote(self.shadow)} ADD CONSTRAINT {_quote(name)} {definition}"

    def exclusion_statements(self) -> list[str]:
        return [
            f"ALTER TABLE {_quote(self.shadow)} ADD CONSTRAINT "
            f"{_quote(self._exclusion_name(k))} {definition}"
            for k, (_name, definition) in enumerate(self.exclusions)
        ]

    def retire_statements(self, cursor) -> list[str]:
        """Rename the live table, and what is named in the schema with it
        (indexes, identity sequences, statistics), out of the shadow's way."""
        cursor.execute(
            "SELECT 'INDEX', c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %(table)s::regclass "
            "UNION ALL "
            "SELECT 'SEQUENCE', s.relname FROM pg_depend d JOIN pg_class s ON s.oid = d.objid "
            "WHERE d.refobjid = %(table)s::regclass AND d.classid = 'pg_class'::regclass "
            "AND s.relkind = 'S' "
            "UNION ALL "
            "SELECT 'STATISTICS', stxname FROM pg_statistic_ext "
            "WHERE stxrelid = %(table)s::regclass "
            "ORDER BY 1, 2",
            {"table": self.table},
        )
        retired = retired_name(self.table)
        return [
            f"ALTER TABLE {_quote(self.table)} RENAME TO {_quote(retired)}",
            *(
                f"ALTER {kind} {_quote(name)} RENAME TO {_quote(f'{retired}_{k}')}"
                for k, (kind, name) in enumerate(cursor.fetchall())
            ),
        ]

    def swap_statements(self, next_id: int) -> list[str]:
        """After the live table is retired: the shadow takes its name and everything else."""
        statements = [f"ALTER TABLE {_quote(self.shadow)} RENAME TO {_quote(self.table)}"]
        statements += [index.install(self.table) for index in self.indexes]
        statements += [
            f"ALTER TABLE {_quote(self.table)} RENAME CONSTRAINT "
            f"{_quote(self._exclusion_name(k))} TO {_quote(name)}"
            for k, (name, _definition) in enumerate(self.exclusions)
        ]
        statements += [
            f"ALTER STATISTICS {_quote(self._statistics_name(k))} RENAME TO {_quote(name)}"
            for k, (name, _definition) in enumerate(self.statistics)
        ]
        statements += [
            f"ALTER TABLE {_quote(self.table)} ALTER COLUMN {_quote(column)} "
            f"ADD GENERATED {kind} AS IDENTITY (START WITH {int(next_id)})"
            for column, kind in self.identity
        ]
        statements.append(
            f"ALTER TABLE {_quote(self.table)} RESET (autovacuum_enabled, toast.autovacuum_enabled)"
        )
        kept = [o for o in self.storage_parameters if _is_autovacuum_switch(o)]
        if kept:
            statements.append(f"ALTER TABLE {_quote(self.table)} SET ({', '.join(kept)})")
        # Trigger names are per table: the retired table keeps its own.
        statements += [definition for _name, definition in self.triggers]
        return statements

    def _statistics_name(self, k: int) -> str:
        return temporary_name(self.table, len(self.indexes) + k)

    def _exclusion_name(self, k: int) -> str:
        return temporary_name(self.table, len(self.indexes) + len(self.statistics) + k)


def refuse_what_a_rebuild_would_lose(cursor, tables: list[str]) -> None:
    """Raise :class:`UnsupportedTable` if replacing ``tables`` would lose
    something the shadows cannot carry over."""
    cursor.execute(
        "SELECT c.relname, "
        "  c.relrowsecurity OR c.relkind = 'p' OR EXISTS ("
        "    SELECT 1 FROM pg_inherits WHERE inhparent = c.oid OR inhrelid = c.oid), "
        "  (SELECT string_agg(k.conrelid::regclass::text, ', ') FROM pg_constraint k "
        "   WHERE k.confrelid = c.oid AND k.contype = 'f' "
        "   AND k.conrelid <> ALL(%(tables)s::regclass[])) "
        "FROM pg_class c WHERE c.oid = ANY(%(tables)s::regclass[]) ORDER BY 1",
        {"tables": tables},
    )
    for table, special, referencing in cursor.fetchall():
        if special:
            raise UnsupportedTable(
                f"{table} uses row security, partitions or inheritance, which a rebuild would lose"
            )
        if referencing:
            raise UnsupportedTable(
                f"{referencing} references {table}: replacing every row would break that"
            )


def _is_autovacuum_switch(option: str) -> bool:
    return option.split("=")[0].strip() in {"autovacuum_enabled", "toast.autovacuum_enabled"}


def _quote(identifier: str) -> str:
    return sql.Identifier(identifier).as_string(None)


def _literal(value: str) -> str:
    return sql.Literal(value).as_string(None)


def _unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier

"""The triggers that keep the read table equal to the join, generated from its declaration.

For each table of record and each event (insert, update, delete, truncate),
one statement-level trigger with transition tables: a bulk ``UPDATE`` of
100,000 loyalty records is one ``UPDATE`` of their 100,000 read rows, not
100,000 calls. Each trigger writes only the read columns its own table
gives, straight from the rows the statement wrote (``new_rows``), so two
transactions that change one customer through different tables (one the
name, the other the points) each write their own columns, and the row keeps
both: under READ COMMITTED the second ``UPDATE`` of the read row waits for
the first and applies its columns to what the first wrote. Under REPEATABLE
READ and SERIALIZABLE the second fails to serialize instead, and the write
services run it again.

Only where a customer starts living at an address (a new customer, a move)
does a trigger read another table: it copies that address's columns. Then
the address could be changing in another transaction, which cannot see this
customer yet (an update of the address looks its customers up in its own
snapshot). So the trigger first *rewrites* the address row (``SET id = id``,
a HOT update that changes nothing): the other transaction's update of it
waits for this one to commit and then finds the customer (READ COMMITTED),
or fails to serialize (REPEATABLE READ, SERIALIZABLE); and if the other
committed first, this one reads its address afresh (READ COMMITTED) or fails
to serialize. A lock (``FOR SHARE``) would make the first wait too, but a
REPEATABLE READ transaction that updates a row someone else only locked does
not fail: it then misses the new customer and leaves the read row stale.

Foreign keys are checked at commit (Django declares them ``DEFERRABLE
INITIALLY DEFERRED``), so within a transaction a customer may point at an
address that does not exist yet, or a loyalty record at a customer not yet
inserted; the triggers of the later insert complete the row.
"""

from __future__ import annotations

from core.read_table import Column, Join, JoinKind, ReadTable
from core.triggers import Trigger

EVENTS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")


def listed_triggers(table: ReadTable) -> list[Trigger]:
    """Every trigger that keeps ``table`` equal to the join of its sources."""
    writer = Writer(table)
    triggers = []
    for join in table.joins:
        for event in EVENTS:
            body = writer.body(join, event)
            name = f"{join.table.removeprefix('core_')}_{event.lower()}_listed"
            triggers.append(Trigger(name, join.table, event, body))
    return triggers


def _indent(statements: list[str], depth: int = 1) -> str:
    pad = "    " * depth
    return "\n".join(pad + line if line else line for s in statements for line in s.splitlines())


class Writer:
    """The SQL of each trigger body, for one read table."""

    def __init__(self, table: ReadTable) -> None:
        self.table = table
        self.root = table.root

    # -- pieces --------------------------------------------------------------

    @staticmethod
    def alias(join: Join) -> str:
        return join.model._meta.model_name

    def joined_rows(self, root_rows: str) -> str:
        """``FROM`` the customers ``root_rows`` (a table or the transition table
        aliased as the customer) joined to every other source."""
        root = self.alias(self.root)
        parts = [f"{root_rows} {root}"]
        for join in self.table.joins[1:]:
            other = self.alias(join)
            if join.kind is JoinKind.MANY_TO_ONE:
                parts.append(f"JOIN {join.table} {other} ON {other}.{join.pk} = {root}.{join.link}")
            else:
                parts.append(
                    f"LEFT JOIN {join.table} {other} ON {other}.{join.link} = {root}.{self.root.pk}"
                )
        return "\n    ".join(parts)

    def select_list(self) -> str:
        return ", ".join(
            f"{self.alias(self.table.join_of(c))}.{c.source_column}" for c in self.table.columns
        )

    def insert_rows(self, root_rows: str, where: str = "", *, upsert: bool = False) -> str:
        """Insert the read rows of the customers ``root_rows`` (every column from the join)."""
        names = ", ".join(self.table.stored_columns())
        sql = (
            f"INSERT INTO {self.table.table} ({names})\n"
            f"SELECT {self.select_list()}\n"
            f"FROM {self.joined_rows(root_rows)}"
        )
        if where:
            sql += f"\nWHERE {where}"
        if upsert:
            sets = ", ".join(
                f"{c} = EXCLUDED.{c}" for c in self.table.stored_columns() if c != "id"
            )
            sql += f"\nON CONFLICT (id) DO UPDATE SET {sets}"
        return sql + ";"

    @staticmethod
    def assignments(columns: tuple[Column, ...] | list[Column], rows: str) -> str:
        return ", ".join(f"{c.name} = {rows}.{c.source_column}" for c in columns)

    @staticmethod
    def changed(columns: tuple[Column, ...] | list[Column]) -> str:
        """Rows whose copied columns changed (old and new rows paired as o and n)."""
        new = ", ".join(f"n.{c.source_column}" for c in columns)
        old = ", ".join(f"o.{c.source_column}" for c in columns)
        if len(columns) == 1:
            return f"{new} IS DISTINCT FROM {old}"
        return f"({new}) IS DISTINCT FROM ({old})"

    @staticmethod
    def paired(join: Join) -> str:
        """Old and new rows of an UPDATE, paired by primary key."""
        return f"new_rows n JOIN old_rows o ON o.{join.pk} = n.{join.pk}"

    @staticmethod
    def any_row(rows: str) -> str:
        """Whether ``rows`` (a FROM list and its WHERE) has a row.

        Counted rather than ``EXISTS``: a transition table has no index, and
        for ``EXISTS`` PostgreSQL picks the plan that finds a first row
        soonest, a nested loop over both tables, which is quadratic when
        there is none: an import that changed 50,000 customers' addresses
        spent minutes asking whether any had moved. Counting them all is a
        hash join, linear.
        """
        return f"(SELECT count(*) FROM {rows}) > 0"

    @classmethod
    def key_changed(cls, join: Join) -> str:
        """Whether the statement changed a primary key (its rows then pair with none)."""
        return cls.any_row(
            f"old_rows o WHERE NOT EXISTS (SELECT FROM new_rows n WHERE n.{join.pk} = o.{join.pk})"
        )

    def known_values(self, join: Join, event: str) -> str | None:
        """Add the known values (SearchTerm) of the rows the statement wrote."""
        known = [c for c in self.table.known_columns() if c in join.columns]
        if not known:
            return None
        if event == "INSERT":
            values = ", ".join(f"('{c.name}', n.{c.source_column})" for c in known)
            source = f"new_rows n CROSS JOIN LATERAL (VALUES {values}) k(field, value)"
            test = "k.value IS NOT NULL"
        else:
            values = ", ".join(
                f"('{c.name}', n.{c.source_column}, o.{c.source_column})" for c in known
            )
            source = (
                f"new_rows n LEFT JOIN old_rows o ON o.{join.pk} = n.{join.pk}\n"
                f"    CROSS JOIN LATERAL (VALUES {values}) k(field, value, old)"
            )
            test = "k.value IS NOT NULL AND k.value IS DISTINCT FROM k.old"
        return (
            "INSERT INTO core_searchterm (field, value)\n"
            f"SELECT DISTINCT k.field, k.value FROM {source}\n"
            f"WHERE {test}\n"
            "ON CONFLICT (field, value) DO NOTHING;"
        )

    def rewrite_addresses(self, ids: str) -> list[str]:
        """Rewrite the rows of every many-to-one source that ``ids`` (a
        subquery of customers' rows, aliased n) now point at (see the module
        docstring)."""
        statements = []
        for join in self.table.joins[1:]:
            if join.kind is JoinKind.MANY_TO_ONE:
                other = self.alias(join)
                statements.append(
                    f"UPDATE {join.table} {other} SET {join.pk} = {other}.{join.pk}\n"
                    f"WHERE {other}.{join.pk} IN (SELECT n.{join.link} FROM {ids});"
                )
        return statements

    # -- bodies --------------------------------------------------------------

    def body(self, join: Join, event: str) -> str:
        statements = getattr(self, f"{join.kind.value}_{event.lower()}")(join)
        known = self.known_values(join, event) if event in ("INSERT", "UPDATE") else None
        if known:
            statements.append(known)
        return _indent(statements)

    def root_insert(self, join: Join) -> list[str]:
        return [*self.rewrite_addresses("new_rows n"), self.insert_rows("new_rows")]

    def root_update(self, join: Join) -> list[str]:
        own = [c for c in join.columns if not c.field.primary_key]
        statements = [
            f"UPDATE {self.table.table} l SET {self.assignments(own, 'n')}\n"
            f"FROM {self.paired(join)}\n"
            f"WHERE l.id = n.{join.pk} AND {self.changed(own)};"
        ]
        for other in self.table.joins[1:]:
            if other.kind is not JoinKind.MANY_TO_ONE:
                continue
            alias = self.alias(other)
            moved = f"{self.paired(join)} WHERE n.{other.link} IS DISTINCT FROM o.{other.link}"
            root = self.alias(join)
            move = [
                *self.rewrite_addresses(moved),
                # The moved customers' rows from the join, read after the rewrite.
                self.insert_rows(
                    self.root.table,
                    f"{root}.{join.pk} IN (SELECT n.{join.pk} FROM {moved})",
                    upsert=True,
                ),
                "-- Moved to a row that is not there yet: out of the join until it is.",
                f"DELETE FROM {self.table.table} l USING new_rows n\n"
                f"WHERE l.id = n.{join.pk} AND NOT EXISTS "
                f"(SELECT FROM {other.table} {alias} WHERE {alias}.{other.pk} = n.{other.link});",
            ]
            statements.append(f"IF {self.any_row(moved)} THEN\n{_indent(move)}\nEND IF;")
        rekeyed = [
            f"DELETE FROM {self.table.table} l USING old_rows o\n"
            f"WHERE l.id = o.{join.pk} AND NOT EXISTS "
            f"(SELECT FROM new_rows n WHERE n.{join.pk} = o.{join.pk});",
            *self.rewrite_addresses("new_rows n"),
            self.insert_rows(
                "new_rows",
                f"NOT EXISTS (SELECT FROM old_rows o WHERE o.{join.pk} = "
                f"{self.alias(join)}.{join.pk})",
            ),
        ]
        statements.append(f"IF {self.key_changed(join)} THEN\n{_indent(rekeyed)}\nEND IF;")
        return statements

    def root_delete(self, join: Join) -> list[str]:
        return [f"DELETE FROM {self.table.table} l USING old_rows o WHERE l.id = o.{join.pk};"]

    def root_truncate(self, join: Join) -> list[str]:
        return [f"DELETE FROM {self.table.table};"]

    def many_to_one_insert(self, join: Join) -> list[str]:
        # Customers already pointing at the new rows (their foreign key is
        # checked at commit): now in the join.
        return [self.customers_at(join, "new_rows")]

    def customers_at(self, join: Join, rows: str, where: str = "") -> str:
        """Upsert the read rows of the customers pointing at ``rows`` of ``join``'s table."""
        root = self.alias(self.root)
        return self.insert_rows(
            self.root.table,
            f"{root}.{join.link} IN (SELECT n.{join.pk} FROM {rows} n{where})",
            upsert=True,
        )

    def many_to_one_update(self, join: Join) -> list[str]:
        root = self.alias(self.root)
        rekeyed = [
            f"DELETE FROM {self.table.table} l USING old_rows o JOIN {self.root.table} {root} "
            f"ON {root}.{join.link} = o.{join.pk}\n"
            f"WHERE l.id = {root}.{self.root.pk} AND NOT EXISTS "
            f"(SELECT FROM new_rows n WHERE n.{join.pk} = o.{join.pk});",
            self.customers_at(
                join,
                "new_rows",
                f" WHERE NOT EXISTS (SELECT FROM old_rows o WHERE o.{join.pk} = n.{join.pk})",
            ),
        ]
        return [
            f"UPDATE {self.table.table} l SET {self.assignments(join.columns, 'n')}\n"
            f"FROM {self.paired(join)} JOIN {self.root.table} {root} "
            f"ON {root}.{join.link} = n.{join.pk}\n"
            f"WHERE l.id = {root}.{self.root.pk} AND {self.changed(join.columns)};",
            f"IF {self.key_changed(join)} THEN\n{_indent(rekeyed)}\nEND IF;",
        ]

    def many_to_one_delete(self, join: Join) -> list[str]:
        # Customers still pointing at the deleted rows (checked at commit):
        # out of the join.
        root = self.alias(self.root)
        return [
            f"DELETE FROM {self.table.table} l USING old_rows o JOIN {self.root.table} {root} "
            f"ON {root}.{join.link} = o.{join.pk}\n"
            f"WHERE l.id = {root}.{self.root.pk};"
        ]

    def many_to_one_truncate(self, join: Join) -> list[str]:
        # Every customer pointed at one of the rows: none is in the join any more.
        return [f"DELETE FROM {self.table.table};"]

    def one_to_one_insert(self, join: Join) -> list[str]:
        return [
            f"UPDATE {self.table.table} l SET {self.assignments(join.columns, 'n')}\n"
            f"FROM new_rows n WHERE l.id = n.{join.link};"
        ]

    def one_to_one_update(self, join: Join) -> list[str]:
        rekeyed = [
            self.cleared(
                join,
                "old_rows o",
                f"l.id = o.{join.link} AND NOT EXISTS "
                f"(SELECT FROM new_rows n WHERE n.{join.pk} = o.{join.pk})",
            ),
            f"UPDATE {self.table.table} l SET {self.assignments(join.columns, 'n')}\n"
            f"FROM new_rows n WHERE l.id = n.{join.link} AND NOT EXISTS "
            f"(SELECT FROM old_rows o WHERE o.{join.pk} = n.{join.pk});",
        ]
        return [
            f"UPDATE {self.table.table} l SET {self.assignments(join.columns, 'n')}\n"
            f"FROM {self.paired(join)}\n"
            f"WHERE l.id = n.{join.link} AND {self.changed(join.columns)};",
            f"IF {self.key_changed(join)} THEN\n{_indent(rekeyed)}\nEND IF;",
        ]

    def cleared(self, join: Join, rows: str, where: str) -> str:
        """Set ``join``'s columns to NULL (the customer has no such row)."""
        nulls = ", ".join(f"{c.name} = NULL" for c in join.columns)
        return f"UPDATE {self.table.table} l SET {nulls}\nFROM {rows} WHERE {where};"

    def one_to_one_delete(self, join: Join) -> list[str]:
        return [self.cleared(join, "old_rows o", f"l.id = o.{join.link}")]

    def one_to_one_truncate(self, join: Join) -> list[str]:
        marker = next(c for c in join.columns if not c.source.null)
        nulls = ", ".join(f"{c.name} = NULL" for c in join.columns)
        return [f"UPDATE {self.table.table} SET {nulls} WHERE {marker.name} IS NOT NULL;"]

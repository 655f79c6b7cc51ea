"""Distinct values of an indexed column, without reading every row.

``SELECT DISTINCT country FROM core_customer_list`` reads all 3M rows to find
ten countries. A *loose index scan* jumps through the column's b-tree from one
value to the next instead: one index descent per distinct value (58 cities, 10
countries, about 11,000 names). PostgreSQL has no such plan of its own; a
recursive query spells it out. The known values' rebuild after a load
(:func:`core.customers.search.search_terms_rebuild`) uses it; everything else
reads those values from :class:`core.models.SearchTerm`.
"""

from __future__ import annotations

DISTINCT_SQL = """
    WITH RECURSIVE walk(value) AS (
        (SELECT {column} FROM {table} ORDER BY {column} LIMIT 1)
        UNION ALL
        SELECT (SELECT {column} FROM {table} WHERE {column} > walk.value
                ORDER BY {column} LIMIT 1)
        FROM walk WHERE walk.value IS NOT NULL
    )
    SELECT value FROM walk WHERE value IS NOT NULL
"""


def distinct_values_sql(table: str, column: str) -> str:
    """A query of the distinct values of ``table.column``, which must lead a b-tree index.

    Both names are this project's own identifiers, never a client's input.
    """
    return DISTINCT_SQL.format(table=table, column=column)

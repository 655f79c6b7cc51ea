"""The list's read table against the join it stands for, compared row by row.

Written here from the README's definition (a customer, their address, their
loyalty record or none), not from the migration's, so that a mistake in one
is not repeated in the other.
"""

from __future__ import annotations

from django.db import connection

#: The read table's columns (birthday_key is PostgreSQL's own), and what each
#: is in the join.
JOINED = {
    "id": "u.id",
    "first_name": "u.first_name",
    "last_name": "u.last_name",
    "gender": "u.gender",
    "customer_id": "u.customer_id",
    "phone_number": "u.phone_number",
    "birthday": "u.birthday",
    "birthday_key": "coalesce(u.birthday, '9999-12-31')",
    "created": "u.created",
    "last_updated": "u.last_updated",
    "address_id": "u.address_id",
    "street": "a.street",
    "street_number": "a.street_number",
    "city_code": "a.city_code",
    "city": "a.city",
    "country": "a.country",
    "points": "r.points",
    "relationship_created": "r.created",
    "last_activity": "r.last_activity",
}

DRIFT = f"""
WITH listed AS (SELECT {", ".join(JOINED)} FROM core_customer_list),
joined AS (
    SELECT {", ".join(JOINED.values())}
    FROM core_appuser u JOIN core_address a ON a.id = u.address_id
    LEFT JOIN core_customerrelationship r ON r.appuser_id = u.id
)
(SELECT 'listed, not joined', * FROM (SELECT * FROM listed EXCEPT ALL SELECT * FROM joined) d)
UNION ALL
(SELECT 'joined, not listed', * FROM (SELECT * FROM joined EXCEPT ALL SELECT * FROM listed) d)
ORDER BY 2
LIMIT 20
"""


def drift(using=None) -> list[tuple]:
    """Rows of the read table that are not the join's, and the other way round
    (every column compared; at most 20, each tagged with its side)."""
    conn = using or connection
    with conn.cursor() as cursor:
        cursor.execute(DRIFT)
        return cursor.fetchall()

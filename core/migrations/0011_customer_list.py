"""The list's read table, core_customer_list, kept equal to the join of the three tables.

One row per customer with their address and loyalty record (core.models.CustomerRow).
Triggers on core_appuser, core_address and core_customerrelationship rewrite
the rows of every customer a statement touched, in the same transaction, so
that the services, the admin, the ORM, raw SQL and psql all keep it true.

**One function** (core_customer_list_refresh) rewrites given customers'
rows from the join: it deletes the rows of customers who are gone and
upserts the others, skipping rows that did not change. The triggers are
statement-level with transition tables, so that a bulk UPDATE of 100,000
records rewrites their rows in one set-based statement rather than 100,000
calls.

**Concurrency.** Two transactions that change the same customer (one their
name, the other their address, or the shared address of many customers)
must not leave the row with only one change. Each refresh first locks the
customers' rows FOR UPDATE, then reads the join in a new statement: under
READ COMMITTED a writer that waited for another's lock reads what it
committed, and the last writer's row has both changes. A row that does not
exist yet (a customer being created, or moved to another address) cannot be
locked; its refresh locks the customer's address FOR SHARE instead, which
waits for a transaction changing that address (and makes it wait), for the
same effect. Under REPEATABLE READ the row lock raises a serialization
failure instead, which the services retry.

**What the loader does.** generate_data loads core_customer_list by COPY
beside the other tables; the triggers are created on the new tables at its
swap (core.dataset.shadow), so they never fire per loaded row.

It also: moves SearchTerm's upkeep here (the function adds the names,
cities and countries of every row it writes), and drops the indexes of the
three tables that only the list used.
"""

import datetime
import django.contrib.postgres.indexes
import django.db.models.functions.comparison
import django.db.models.functions.text
from django.db import migrations, models

#: The read table's columns, and what each is in the join.
COLUMNS = {
    "id": "u.id",
    "first_name": "u.first_name",
    "last_name": "u.last_name",
    "gender": "u.gender",
    "customer_id": "u.customer_id",
    "phone_number": "u.phone_number",
    "birthday": "u.birthday",
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

JOIN = (
    "core_appuser u JOIN core_address a ON a.id = u.address_id "
    "LEFT JOIN core_customerrelationship r ON r.appuser_id = u.id"
)

SELECT_JOIN = f"SELECT {', '.join(COLUMNS.values())} FROM {JOIN}"
NAMES = ", ".join(COLUMNS)

#: The values SearchTerm keeps, by field.
KNOWN = ("first_name", "last_name", "city", "country")

REFRESH = f"""
CREATE FUNCTION core_customer_list_refresh(customer_ids bigint[], new_addresses boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF new_addresses THEN
        -- Customers created or moved: their rows cannot be locked yet. Lock
        -- their addresses instead (FOR SHARE conflicts with an UPDATE of the
        -- address), so that a change of the address in flight elsewhere is
        -- read below once committed, or waits for this transaction and then
        -- finds these customers.
        PERFORM FROM core_address a
        WHERE a.id IN (SELECT u.address_id FROM core_appuser u WHERE u.id = ANY(customer_ids))
        ORDER BY a.id FOR SHARE;
    END IF;
    -- Every refresh of these customers takes these locks first; the next
    -- statements read the join afresh (READ COMMITTED), after whoever held them.
    PERFORM FROM core_customer_list l WHERE l.id = ANY(customer_ids) ORDER BY l.id FOR UPDATE;
    DELETE FROM core_customer_list l
    WHERE l.id = ANY(customer_ids) AND NOT EXISTS (
        SELECT FROM core_appuser u JOIN core_address a ON a.id = u.address_id WHERE u.id = l.id
    );
    WITH written AS (
        INSERT INTO core_customer_list ({NAMES})
        {SELECT_JOIN} WHERE u.id = ANY(customer_ids)
        ON CONFLICT (id) DO UPDATE SET
            {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS if c != "id")}
        WHERE (core_customer_list.*) IS DISTINCT FROM (EXCLUDED.*)
        RETURNING {", ".join(KNOWN)}
    )
    INSERT INTO core_searchterm (field, value)
    SELECT DISTINCT k.field, k.value FROM written,
        LATERAL (VALUES {", ".join(f"('{c}', written.{c})" for c in KNOWN)}) k(field, value)
    ON CONFLICT (field, value) DO NOTHING;
END
$$;
"""

#: (table, event, the customers a statement touched, whether they may be new at an address).
TRIGGERS = [
    ("core_appuser", "INSERT", "SELECT id FROM new_rows", "true"),
    (
        "core_appuser",
        "UPDATE",
        "SELECT id FROM new_rows UNION SELECT id FROM old_rows",
        "EXISTS (SELECT FROM new_rows n JOIN old_rows o ON o.id = n.id "
        "WHERE n.address_id <> o.address_id)",
    ),
    ("core_appuser", "DELETE", "SELECT id FROM old_rows", "false"),
    (
        "core_address",
        "INSERT",
        "SELECT u.id FROM core_appuser u WHERE u.address_id IN (SELECT id FROM new_rows)",
        "false",
    ),
    (
        "core_address",
        "UPDATE",
        "SELECT u.id FROM core_appuser u WHERE u.address_id IN "
        "(SELECT id FROM new_rows UNION SELECT id FROM old_rows)",
        "false",
    ),
    (
        "core_address",
        "DELETE",
        "SELECT u.id FROM core_appuser u WHERE u.address_id IN (SELECT id FROM old_rows)",
        "false",
    ),
    ("core_customerrelationship", "INSERT", "SELECT appuser_id FROM new_rows", "false"),
    (
        "core_customerrelationship",
        "UPDATE",
        "SELECT appuser_id FROM new_rows UNION SELECT appuser_id FROM old_rows",
        "false",
    ),
    ("core_customerrelationship", "DELETE", "SELECT appuser_id FROM old_rows", "false"),
]


def trigger_sql(table: str, event: str, customers: str, new_addresses: str) -> str:
    name = f"{table.removeprefix('core_')}_{event.lower()}_listed"
    function = f"core_{name}"
    transition = {
        "INSERT": "NEW TABLE AS new_rows",
        "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "DELETE": "OLD TABLE AS old_rows",
    }[event]
    return f"""
CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM core_customer_list_refresh(ARRAY({customers}), {new_addresses});
    RETURN NULL;
END
$$;
CREATE TRIGGER {name} AFTER {event} ON {table}
    REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""


TRUNCATES = """
CREATE FUNCTION core_appuser_truncate_listed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM core_customer_list;
    RETURN NULL;
END
$$;
CREATE TRIGGER appuser_truncate_listed AFTER TRUNCATE ON core_appuser
    FOR EACH STATEMENT EXECUTE FUNCTION core_appuser_truncate_listed();
CREATE FUNCTION core_customerrelationship_truncate_listed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE core_customer_list
    SET points = NULL, relationship_created = NULL, last_activity = NULL
    WHERE relationship_created IS NOT NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER customerrelationship_truncate_listed AFTER TRUNCATE ON core_customerrelationship
    FOR EACH STATEMENT EXECUTE FUNCTION core_customerrelationship_truncate_listed();
"""


def drop_sql() -> str:
    statements = [
        f"DROP TRIGGER {table.removeprefix('core_')}_{event.lower()}_listed ON {table}; "
        f"DROP FUNCTION core_{table.removeprefix('core_')}_{event.lower()}_listed();"
        for table, event, _, _ in TRIGGERS
    ]
    statements += [
        "DROP TRIGGER appuser_truncate_listed ON core_appuser;",
        "DROP FUNCTION core_appuser_truncate_listed();",
        "DROP TRIGGER customerrelationship_truncate_listed ON core_customerrelationship;",
        "DROP FUNCTION core_customerrelationship_truncate_listed();",
        "DROP FUNCTION core_customer_list_refresh(bigint[], boolean);",
    ]
    return "\n".join(statements)


#: The rows of the customers already there, and the cities and countries they know.
BACKFILL = f"""
INSERT INTO core_customer_list ({NAMES}) {SELECT_JOIN};
INSERT INTO core_searchterm (field, value)
SELECT DISTINCT 'city', city FROM core_customer_list
UNION ALL SELECT DISTINCT 'country', country FROM core_customer_list
ON CONFLICT (field, value) DO NOTHING;
"""

#: SearchTerm's upkeep moves into core_customer_list_refresh (the trigger of
#: migration 0008, restored if this one is reversed).
NAMES_TRIGGER = """
CREATE FUNCTION core_searchterm_add_names() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO core_searchterm (field, value)
    VALUES ('first_name', NEW.first_name), ('last_name', NEW.last_name)
    ON CONFLICT (field, value) DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER appuser_names_known
    AFTER INSERT OR UPDATE OF first_name, last_name ON core_appuser
    FOR EACH ROW EXECUTE FUNCTION core_searchterm_add_names();
"""
NAMES_TRIGGER_DROP = (
    "DROP TRIGGER appuser_names_known ON core_appuser; DROP FUNCTION core_searchterm_add_names();"
)


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0010_record_created_after_customer"),
    ]

    operations = [
        migrations.CreateModel(
            name="CustomerRow",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("first_name", models.CharField(max_length=64)),
                ("last_name", models.CharField(max_length=64)),
                ("gender", models.CharField(max_length=1)),
                ("customer_id", models.CharField(max_length=64)),
                ("phone_number", models.CharField(max_length=32)),
                ("birthday", models.DateField(null=True)),
                (
                    "birthday_key",
                    models.GeneratedField(
                        db_persist=True,
                        expression=django.db.models.functions.comparison.Coalesce(
                            "birthday", models.Value(datetime.date(9999, 12, 31))
                        ),
                        output_field=models.DateField(),
                    ),
                ),
                ("created", models.DateTimeField()),
                ("last_updated", models.DateTimeField()),
                ("address_id", models.BigIntegerField()),
                ("street", models.CharField(max_length=255)),
                ("street_number", models.CharField(max_length=50)),
                ("city_code", models.CharField(max_length=20)),
                ("city", models.CharField(max_length=100)),
                ("country", models.CharField(max_length=100)),
                ("points", models.IntegerField(null=True)),
                ("relationship_created", models.DateTimeField(null=True)),
                ("last_activity", models.DateTimeField(null=True)),
            ],
            options={
                "verbose_name": "customer (list)",
                "db_table": "core_customer_list",
            },
        ),
        migrations.AlterField(
            model_name="searchterm",
            name="value",
            field=models.CharField(max_length=100),
        ),
        migrations.RunSQL(
            REFRESH + "".join(trigger_sql(*trigger) for trigger in TRIGGERS) + TRUNCATES,
            reverse_sql=drop_sql(),
        ),
        migrations.RunSQL(NAMES_TRIGGER_DROP, reverse_sql=NAMES_TRIGGER),
        # Indexes are built after the rows are in: one sort each, not an
        # insertion per row.
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(
                fields=["first_name", "last_name", "id"], name="customer_list_first_name"
            ),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(
                fields=["last_name", "first_name", "id"], name="customer_list_last_name"
            ),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["customer_id"], name="customer_list_customer_id"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["birthday_key", "id"], name="customer_list_birthday"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["created", "id"], name="customer_list_created"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["last_updated", "id"], name="customer_list_last_updated"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["city", "id"], name="customer_list_city"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["country", "city", "id"], name="customer_list_country"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["city_code"], name="customer_list_city_code"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["points", "id"], name="customer_list_points"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=models.Index(fields=["last_activity", "id"], name="customer_list_last_activity"),
        ),
        migrations.AddIndex(
            model_name="customerrow",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("phone_number"), name="gin_trgm_ops"
                ),
                name="customer_list_phone_trgm",
            ),
        ),
        migrations.RemoveIndex(
            model_name="address",
            name="address_city_id",
        ),
        migrations.RemoveIndex(
            model_name="address",
            name="address_city_code_id",
        ),
        migrations.RemoveIndex(
            model_name="address",
            name="address_country_id",
        ),
        migrations.RemoveIndex(
            model_name="appuser",
            name="appuser_phone_number_trgm",
        ),
        migrations.RemoveIndex(
            model_name="appuser",
            name="appuser_first_name_id",
        ),
        migrations.RemoveIndex(
            model_name="appuser",
            name="appuser_last_name_id",
        ),
        migrations.RemoveIndex(
            model_name="appuser",
            name="appuser_birthday_id",
        ),
        migrations.RemoveIndex(
            model_name="appuser",
            name="appuser_created_id",
        ),
        migrations.RemoveIndex(
            model_name="appuser",
            name="appuser_last_updated_id",
        ),
        migrations.RemoveIndex(
            model_name="customerrelationship",
            name="relationship_points_user",
        ),
        migrations.RemoveIndex(
            model_name="customerrelationship",
            name="relationship_activity_user",
        ),
    ]

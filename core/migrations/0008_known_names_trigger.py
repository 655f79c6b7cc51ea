"""Every customer's first and last name is a SearchTerm, whoever writes the customer.

The list's name filters look a substring up among the known names and read
the customers with those names from the name b-trees (see
core.customers.filters.KnownNameSubstring); that is only right if every name
in core_appuser is known. The services and the admin used to add names
themselves; a trigger also covers the ORM, bulk inserts, raw SQL and psql.
generate_data rebuilds the table after its load (its COPY goes into a shadow
table that gets the trigger at the swap).
"""

from django.db import migrations

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

# Names written before the trigger existed: a loose index scan of each name's
# b-tree (one descent per distinct name, see core.customers.distinct).
KNOWN_NAMES = """
INSERT INTO core_searchterm (field, value)
SELECT '{field}', value FROM (
    WITH RECURSIVE walk(value) AS (
        (SELECT {field} FROM core_appuser ORDER BY {field} LIMIT 1)
        UNION ALL
        SELECT (SELECT {field} FROM core_appuser WHERE {field} > walk.value
                ORDER BY {field} LIMIT 1)
        FROM walk WHERE walk.value IS NOT NULL
    )
    SELECT value FROM walk WHERE value IS NOT NULL
) names
ON CONFLICT (field, value) DO NOTHING;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0007_list_indexes_without_cliffs"),
    ]

    operations = [
        migrations.RunSQL(
            NAMES_TRIGGER,
            reverse_sql=(
                "DROP TRIGGER appuser_names_known ON core_appuser; "
                "DROP FUNCTION core_searchterm_add_names();"
            ),
        ),
        migrations.RunSQL(
            KNOWN_NAMES.format(field="first_name") + KNOWN_NAMES.format(field="last_name"),
            reverse_sql=migrations.RunSQL.noop,
        ),
        # The name filters read the names' b-trees now (see the docstring).
        migrations.RemoveIndex(model_name="appuser", name="appuser_first_name_trgm"),
        migrations.RemoveIndex(model_name="appuser", name="appuser_last_name_trgm"),
    ]

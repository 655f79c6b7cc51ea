"""The read table's triggers, generated from its declaration (core.models.CustomerRow).

Migration 0011 wrote them by hand around one function that rewrote whole
rows from the join, and that function could leave a row stale: a customer
moved to an address while a REPEATABLE READ or SERIALIZABLE transaction
changed that address looked the address's customers up in its own snapshot
and missed them (the mover only locked the address, which raises no
serialization failure). The generated triggers write each table's own
columns, and rewrite an address a customer starts living at, so that such a
race waits or fails to serialize (see core.read_table_triggers).

Reversed, 0011's triggers and function come back.
"""

import importlib

import core.triggers
from django.db import migrations

#: Migration 0011, whose triggers and function this one replaces.
HAND_WRITTEN = importlib.import_module("core.migrations.0011_customer_list")


def hand_written_triggers():
    """0011's triggers, as Trigger values (their bodies as 0011 wrote them)."""
    triggers = []
    for table, event, customers, new_addresses in HAND_WRITTEN.TRIGGERS:
        name = f"{table.removeprefix('core_')}_{event.lower()}_listed"
        body = f"    PERFORM core_customer_list_refresh(ARRAY({customers}), {new_addresses});"
        triggers.append(core.triggers.Trigger(name=name, table=table, event=event, body=body))
    triggers.append(
        core.triggers.Trigger(
            name="appuser_truncate_listed",
            table="core_appuser",
            event="TRUNCATE",
            body="    DELETE FROM core_customer_list;",
        )
    )
    triggers.append(
        core.triggers.Trigger(
            name="customerrelationship_truncate_listed",
            table="core_customerrelationship",
            event="TRUNCATE",
            body=(
                "    UPDATE core_customer_list\n"
                "    SET points = NULL, relationship_created = NULL, last_activity = NULL\n"
                "    WHERE relationship_created IS NOT NULL;"
            ),
        )
    )
    return triggers


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0011_customer_list'),
    ]

    operations = [
        core.triggers.SyncTriggers(
            before=hand_written_triggers(),
            after=[core.triggers.Trigger(
    name='address_delete_listed',
    table='core_address',
    event='DELETE',
    body=(
        '    DELETE FROM core_customer_list l USING old_rows o JOIN core_appuser appuser ON appuser.address_id = o.id\n'
        '    WHERE l.id = appuser.id;'
    ),
), core.triggers.Trigger(
    name='address_insert_listed',
    table='core_address',
    event='INSERT',
    body=(
        '    INSERT INTO core_customer_list (id, first_name, last_name, gender, customer_id, phone_number, birthday, created, last_updated, address_id, street, street_number, city_code, city, country, points, relationship_created, last_activity)\n'
        '    SELECT appuser.id, appuser.first_name, appuser.last_name, appuser.gender, appuser.customer_id, appuser.phone_number, appuser.birthday, appuser.created, appuser.last_updated, appuser.address_id, address.street, address.street_number, address.city_code, address.city, address.country, customerrelationship.points, customerrelationship.created, customerrelationship.last_activity\n'
        '    FROM core_appuser appuser\n'
        '        JOIN core_address address ON address.id = appuser.address_id\n'
        '        LEFT JOIN core_customerrelationship customerrelationship ON customerrelationship.appuser_id = appuser.id\n'
        '    WHERE appuser.address_id IN (SELECT n.id FROM new_rows n)\n'
        '    ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, gender = EXCLUDED.gender, customer_id = EXCLUDED.customer_id, phone_number = EXCLUDED.phone_number, birthday = EXCLUDED.birthday, created = EXCLUDED.created, last_updated = EXCLUDED.last_updated, address_id = EXCLUDED.address_id, street = EXCLUDED.street, street_number = EXCLUDED.street_number, city_code = EXCLUDED.city_code, city = EXCLUDED.city, country = EXCLUDED.country, points = EXCLUDED.points, relationship_created = EXCLUDED.relationship_created, last_activity = EXCLUDED.last_activity;\n'
        '    INSERT INTO core_searchterm (field, value)\n'
        "    SELECT DISTINCT k.field, k.value FROM new_rows n CROSS JOIN LATERAL (VALUES ('city', n.city), ('country', n.country)) k(field, value)\n"
        '    WHERE k.value IS NOT NULL\n'
        '    ON CONFLICT (field, value) DO NOTHING;'
    ),
), core.triggers.Trigger(
    name='address_truncate_listed',
    table='core_address',
    event='TRUNCATE',
    body=(
        '    DELETE FROM core_customer_list;'
    ),
), core.triggers.Trigger(
    name='address_update_listed',
    table='core_address',
    event='UPDATE',
    body=(
        '    UPDATE core_customer_list l SET street = n.street, street_number = n.street_number, city_code = n.city_code, city = n.city, country = n.country\n'
        '    FROM new_rows n JOIN old_rows o ON o.id = n.id JOIN core_appuser appuser ON appuser.address_id = n.id\n'
        '    WHERE l.id = appuser.id AND (n.street, n.street_number, n.city_code, n.city, n.country) IS DISTINCT FROM (o.street, o.street_number, o.city_code, o.city, o.country);\n'
        '    IF EXISTS (SELECT FROM old_rows o WHERE NOT EXISTS (SELECT FROM new_rows n WHERE n.id = o.id)) THEN\n'
        '        DELETE FROM core_customer_list l USING old_rows o JOIN core_appuser appuser ON appuser.address_id = o.id\n'
        '        WHERE l.id = appuser.id AND NOT EXISTS (SELECT FROM new_rows n WHERE n.id = o.id);\n'
        '        INSERT INTO core_customer_list (id, first_name, last_name, gender, customer_id, phone_number, birthday, created, last_updated, address_id, street, street_number, city_code, city, country, points, relationship_created, last_activity)\n'
        '        SELECT appuser.id, appuser.first_name, appuser.last_name, appuser.gender, appuser.customer_id, appuser.phone_number, appuser.birthday, appuser.created, appuser.last_updated, appuser.address_id, address.street, address.street_number, address.city_code, address.city, address.country, customerrelationship.points, customerrelationship.created, customerrelationship.last_activity\n'
        '        FROM core_appuser appuser\n'
        '            JOIN core_address address ON address.id = appuser.address_id\n'
        '            LEFT JOIN core_customerrelationship customerrelationship ON customerrelationship.appuser_id = appuser.id\n'
        '        WHERE appuser.address_id IN (SELECT n.id FROM new_rows n WHERE NOT EXISTS (SELECT FROM old_rows o WHERE o.id = n.id))\n'
        '        ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, gender = EXCLUDED.gender, customer_id = EXCLUDED.customer_id, phone_number = EXCLUDED.phone_number, birthday = EXCLUDED.birthday, created = EXCLUDED.created, last_updated = EXCLUDED.last_updated, address_id = EXCLUDED.address_id, street = EXCLUDED.street, street_number = EXCLUDED.street_number, city_code = EXCLUDED.city_code, city = EXCLUDED.city, country = EXCLUDED.country, points = EXCLUDED.points, relationship_created = EXCLUDED.relationship_created, last_activity = EXCLUDED.last_activity;\n'
        '    END IF;\n'
        '    INSERT INTO core_searchterm (field, value)\n'
        '    SELECT DISTINCT k.field, k.value FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id\n'
        "        CROSS JOIN LATERAL (VALUES ('city', n.city, o.city), ('country', n.country, o.country)) k(field, value, old)\n"
        '    WHERE k.value IS NOT NULL AND k.value IS DISTINCT FROM k.old\n'
        '    ON CONFLICT (field, value) DO NOTHING;'
    ),
), core.triggers.Trigger(
    name='appuser_delete_listed',
    table='core_appuser',
    event='DELETE',
    body=(
        '    DELETE FROM core_customer_list l USING old_rows o WHERE l.id = o.id;'
    ),
), core.triggers.Trigger(
    name='appuser_insert_listed',
    table='core_appuser',
    event='INSERT',
    body=(
        '    UPDATE core_address address SET id = address.id\n'
        '    WHERE address.id IN (SELECT n.address_id FROM new_rows n);\n'
        '    INSERT INTO core_customer_list (id, first_name, last_name, gender, customer_id, phone_number, birthday, created, last_updated, address_id, street, street_number, city_code, city, country, points, relationship_created, last_activity)\n'
        '    SELECT appuser.id, appuser.first_name, appuser.last_name, appuser.gender, appuser.customer_id, appuser.phone_number, appuser.birthday, appuser.created, appuser.last_updated, appuser.address_id, address.street, address.street_number, address.city_code, address.city, address.country, customerrelationship.points, customerrelationship.created, customerrelationship.last_activity\n'
        '    FROM new_rows appuser\n'
        '        JOIN core_address address ON address.id = appuser.address_id\n'
        '        LEFT JOIN core_customerrelationship customerrelationship ON customerrelationship.appuser_id = appuser.id;\n'
        '    INSERT INTO core_searchterm (field, value)\n'
        "    SELECT DISTINCT k.field, k.value FROM new_rows n CROSS JOIN LATERAL (VALUES ('first_name', n.first_name), ('last_name', n.last_name)) k(field, value)\n"
        '    WHERE k.value IS NOT NULL\n'
        '    ON CONFLICT (field, value) DO NOTHING;'
    ),
), core.triggers.Trigger(
    name='appuser_truncate_listed',
    table='core_appuser',
    event='TRUNCATE',
    body=(
        '    DELETE FROM core_customer_list;'
    ),
), core.triggers.Trigger(
    name='appuser_update_listed',
    table='core_appuser',
    event='UPDATE',
    body=(
        '    UPDATE core_customer_list l SET first_name = n.first_name, last_name = n.last_name, gender = n.gender, customer_id = n.customer_id, phone_number = n.phone_number, birthday = n.birthday, created = n.created, last_updated = n.last_updated, address_id = n.address_id\n'
        '    FROM new_rows n JOIN old_rows o ON o.id = n.id\n'
        '    WHERE l.id = n.id AND (n.first_name, n.last_name, n.gender, n.customer_id, n.phone_number, n.birthday, n.created, n.last_updated, n.address_id) IS DISTINCT FROM (o.first_name, o.last_name, o.gender, o.customer_id, o.phone_number, o.birthday, o.created, o.last_updated, o.address_id);\n'
        '    IF EXISTS (SELECT FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.address_id IS DISTINCT FROM o.address_id) THEN\n'
        '        UPDATE core_address address SET id = address.id\n'
        '        WHERE address.id IN (SELECT n.address_id FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.address_id IS DISTINCT FROM o.address_id);\n'
        '        INSERT INTO core_customer_list (id, first_name, last_name, gender, customer_id, phone_number, birthday, created, last_updated, address_id, street, street_number, city_code, city, country, points, relationship_created, last_activity)\n'
        '        SELECT appuser.id, appuser.first_name, appuser.last_name, appuser.gender, appuser.customer_id, appuser.phone_number, appuser.birthday, appuser.created, appuser.last_updated, appuser.address_id, address.street, address.street_number, address.city_code, address.city, address.country, customerrelationship.points, customerrelationship.created, customerrelationship.last_activity\n'
        '        FROM core_appuser appuser\n'
        '            JOIN core_address address ON address.id = appuser.address_id\n'
        '            LEFT JOIN core_customerrelationship customerrelationship ON customerrelationship.appuser_id = appuser.id\n'
        '        WHERE appuser.id IN (SELECT n.id FROM new_rows n JOIN old_rows o ON o.id = n.id WHERE n.address_id IS DISTINCT FROM o.address_id)\n'
        '        ON CONFLICT (id) DO UPDATE SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, gender = EXCLUDED.gender, customer_id = EXCLUDED.customer_id, phone_number = EXCLUDED.phone_number, birthday = EXCLUDED.birthday, created = EXCLUDED.created, last_updated = EXCLUDED.last_updated, address_id = EXCLUDED.address_id, street = EXCLUDED.street, street_number = EXCLUDED.street_number, city_code = EXCLUDED.city_code, city = EXCLUDED.city, country = EXCLUDED.country, points = EXCLUDED.points, relationship_created = EXCLUDED.relationship_created, last_activity = EXCLUDED.last_activity;\n'
        '        -- Moved to a row that is not there yet: out of the join until it is.\n'
        '        DELETE FROM core_customer_list l USING new_rows n\n'
        '        WHERE l.id = n.id AND NOT EXISTS (SELECT FROM core_address address WHERE address.id = n.address_id);\n'
        '    END IF;\n'
        '    IF EXISTS (SELECT FROM old_rows o WHERE NOT EXISTS (SELECT FROM new_rows n WHERE n.id = o.id)) THEN\n'
        '        DELETE FROM core_customer_list l USING old_rows o\n'
        '        WHERE l.id = o.id AND NOT EXISTS (SELECT FROM new_rows n WHERE n.id = o.id);\n'
        '        UPDATE core_address address SET id = address.id\n'
        '        WHERE address.id IN (SELECT n.address_id FROM new_rows n);\n'
        '        INSERT INTO core_customer_list (id, first_name, last_name, gender, customer_id, phone_number, birthday, created, last_updated, address_id, street, street_number, city_code, city, country, points, relationship_created, last_activity)\n'
        '        SELECT appuser.id, appuser.first_name, appuser.last_name, appuser.gender, appuser.customer_id, appuser.phone_number, appuser.birthday, appuser.created, appuser.last_updated, appuser.address_id, address.street, address.street_number, address.city_code, address.city, address.country, customerrelationship.points, customerrelationship.created, customerrelationship.last_activity\n'
        '        FROM new_rows appuser\n'
        '            JOIN core_address address ON address.id = appuser.address_id\n'
        '            LEFT JOIN core_customerrelationship customerrelationship ON customerrelationship.appuser_id = appuser.id\n'
        '        WHERE NOT EXISTS (SELECT FROM old_rows o WHERE o.id = appuser.id);\n'
        '    END IF;\n'
        '    INSERT INTO core_searchterm (field, value)\n'
        '    SELECT DISTINCT k.field, k.value FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id\n'
        "        CROSS JOIN LATERAL (VALUES ('first_name', n.first_name, o.first_name), ('last_name', n.last_name, o.last_name)) k(field, value, old)\n"
        '    WHERE k.value IS NOT NULL AND k.value IS DISTINCT FROM k.old\n'
        '    ON CONFLICT (field, value) DO NOTHING;'
    ),
), core.triggers.Trigger(
    name='customerrelationship_delete_listed',
    table='core_customerrelationship',
    event='DELETE',
    body=(
        '    UPDATE core_customer_list l SET points = NULL, relationship_created = NULL, last_activity = NULL\n'
        '    FROM old_rows o WHERE l.id = o.appuser_id;'
    ),
), core.triggers.Trigger(
    name='customerrelationship_insert_listed',
    table='core_customerrelationship',
    event='INSERT',
    body=(
        '    UPDATE core_customer_list l SET points = n.points, relationship_created = n.created, last_activity = n.last_activity\n'
        '    FROM new_rows n WHERE l.id = n.appuser_id;'
    ),
), core.triggers.Trigger(
    name='customerrelationship_truncate_listed',
    table='core_customerrelationship',
    event='TRUNCATE',
    body=(
        '    UPDATE core_customer_list SET points = NULL, relationship_created = NULL, last_activity = NULL WHERE points IS NOT NULL;'
    ),
), core.triggers.Trigger(
    name='customerrelationship_update_listed',
    table='core_customerrelationship',
    event='UPDATE',
    body=(
        '    UPDATE core_customer_list l SET points = n.points, relationship_created = n.created, last_activity = n.last_activity\n'
        '    FROM new_rows n JOIN old_rows o ON o.appuser_id = n.appuser_id\n'
        '    WHERE l.id = n.appuser_id AND (n.points, n.created, n.last_activity) IS DISTINCT FROM (o.points, o.created, o.last_activity);\n'
        '    IF EXISTS (SELECT FROM old_rows o WHERE NOT EXISTS (SELECT FROM new_rows n WHERE n.appuser_id = o.appuser_id)) THEN\n'
        '        UPDATE core_customer_list l SET points = NULL, relationship_created = NULL, last_activity = NULL\n'
        '        FROM old_rows o WHERE l.id = o.appuser_id AND NOT EXISTS (SELECT FROM new_rows n WHERE n.appuser_id = o.appuser_id);\n'
        '        UPDATE core_customer_list l SET points = n.points, relationship_created = n.created, last_activity = n.last_activity\n'
        '        FROM new_rows n WHERE l.id = n.appuser_id AND NOT EXISTS (SELECT FROM old_rows o WHERE o.appuser_id = n.appuser_id);\n'
        '    END IF;'
    ),
)],
        ),
        migrations.RunSQL(
            "DROP FUNCTION core_customer_list_refresh(bigint[], boolean);",
            reverse_sql=HAND_WRITTEN.REFRESH,
        ),
    ]

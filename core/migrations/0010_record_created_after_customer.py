"""A loyalty record is created after its customer, and active since its creation.

The list relies on both (core.customers.selectors.IMPLIED_STARTS): a
customer who signed up after X has a record created after X, active since
then, so ``?created_from=X`` ordered by ``relationship__last_activity`` can
walk the activity index from X instead of testing every record active
before (1.67M records joined to their customers at 10M: past the 2 s
statement timeout). The activity is a check constraint; the creation order
spans two tables, so triggers keep it, whoever writes (the services and the
admin create the customer first; generate_data draws the record's creation
after the customer's, and its shadow tables get the triggers at the swap).
"""

from django.db import migrations, models

RECORD_ORDER_TRIGGERS = """
CREATE FUNCTION core_record_created_after_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.created < (SELECT created FROM core_appuser WHERE id = NEW.appuser_id) THEN
        RAISE EXCEPTION 'the loyalty record of customer % is created before the customer',
            NEW.appuser_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER relationship_created_after_customer
    BEFORE INSERT OR UPDATE OF created, appuser_id ON core_customerrelationship
    FOR EACH ROW EXECUTE FUNCTION core_record_created_after_customer();

CREATE FUNCTION core_customer_created_before_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM core_customerrelationship
        WHERE appuser_id = NEW.id AND created < NEW.created
    ) THEN
        RAISE EXCEPTION 'customer % would be created after their loyalty record', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER appuser_created_before_record
    BEFORE UPDATE OF created ON core_appuser
    FOR EACH ROW EXECUTE FUNCTION core_customer_created_before_record();
"""

# Rows written before the triggers existed: refuse to migrate rather than let
# the list leave out a customer whose record predates them.
RECORDS_IN_ORDER = """
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM core_customerrelationship r JOIN core_appuser u ON u.id = r.appuser_id
        WHERE r.created < u.created
    ) THEN
        RAISE EXCEPTION 'loyalty records created before their customers: fix them first '
            '(UPDATE core_customerrelationship r SET created = u.created FROM core_appuser u '
            'WHERE u.id = r.appuser_id AND r.created < u.created)';
    END IF;
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0009_updated_since_created"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="customerrelationship",
            constraint=models.CheckConstraint(
                condition=models.Q(("last_activity__gte", models.F("created"))),
                name="relationship_active_since_created",
            ),
        ),
        migrations.RunSQL(RECORDS_IN_ORDER, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(
            RECORD_ORDER_TRIGGERS,
            reverse_sql=(
                "DROP TRIGGER relationship_created_after_customer ON core_customerrelationship; "
                "DROP FUNCTION core_record_created_after_customer(); "
                "DROP TRIGGER appuser_created_before_record ON core_appuser; "
                "DROP FUNCTION core_customer_created_before_record();"
            ),
        ),
    ]

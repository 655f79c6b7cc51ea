from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations


class Migration(migrations.Migration):
    """pg_trgm: trigram GIN indexes for substring search (see core.models)."""

    initial = True
    dependencies = []
    operations = [TrigramExtension()]

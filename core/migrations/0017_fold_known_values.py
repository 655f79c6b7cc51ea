"""Known values looked up folded (core.folding): ``search=mueller`` finds Müller."""

import django.contrib.postgres.indexes
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0016_set_based_trigger_guards"),
    ]

    # core.folding.fold_function_sql() as it was: a later change to the
    # table is a new migration (core/tests/test_folding.py holds them equal).
    operations = [
        migrations.RunSQL(
            "CREATE OR REPLACE FUNCTION crm_fold(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT upper(translate(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace(replace($1, 'Ä', 'AE'), 'Ö', 'OE'), 'Ü', 'UE'), 'ẞ', 'SS'), 'Æ', 'AE'), 'Œ', 'OE'), 'ä', 'AE'), 'ö', 'OE'), 'ü', 'UE'), 'ß', 'SS'), 'æ', 'AE'), 'œ', 'OE'), 'ÀÁÂÃÅĀĂĄÇĆĈĊČĎĐÈÉÊËĒĔĖĘĚĜĞĠĢÌÍÎÏĨĪĬĮİĹĻĽĿŁÑŃŅŇÒÓÔÕØŌŎŐŔŖŘŚŜŞŠŢŤŦÙÚÛŨŪŬŮŰŲÝŸŶŹŻŽàáâãåāăąçćĉċčďđèéêëēĕėęěĝğġģìíîïĩīĭįĺļľŀłñńņňòóôõøōŏőŕŗřśŝşšţťŧùúûũūŭůűųýÿŷźżž', 'AAAAAAAACCCCCDDEEEEEEEEEGGGGIIIIIIIIILLLLLNNNNOOOOOOOORRRSSSSTTTUUUUUUUUUYYYZZZAAAAAAAACCCCCDDEEEEEEEEEGGGGIIIIIIIILLLLLNNNNOOOOOOOORRRSSSSTTTUUUUUUUUUYYYZZZ')) $$",
            reverse_sql="DROP FUNCTION crm_fold(text)",
        ),
        migrations.RemoveIndex(
            model_name="searchterm",
            name="search_term_trgm",
        ),
        migrations.AddIndex(
            model_name="searchterm",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.indexes.OpClass(
                    models.Func(
                        models.F("value"), function="crm_fold", output_field=models.TextField()
                    ),
                    name="gin_trgm_ops",
                ),
                name="search_term_fold",
            ),
        ),
    ]

"""``python manage.py import_customers FILE``: create and update customers from a file."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.api.serializers import validated_import_row
from core.customers.imports import MATCHES, ImportResult, UnreadableFile, customer_import
from core.history.context import Source, Writer, writing_as


class Command(BaseCommand):
    help = (
        "Import customers from a CSV (as /api/users/export/ writes it) or NDJSON file: "
        "new ones created, known ones (by customer_id, or e-mail) updated where they differ, "
        "in one transaction. Nothing is written if any row is invalid, unless --skip-invalid."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="the file ('-': standard input)")
        parser.add_argument(
            "--match",
            choices=MATCHES,
            default="customer_id",
            help="customer_id (the default: by customer_id, or by e-mail where it is empty) "
            "or email (by e-mail address only)",
        )
        parser.add_argument("--skip-invalid", action="store_true", help="write the valid rows")
        parser.add_argument("--dry-run", action="store_true", help="write nothing; say what")
        parser.add_argument(
            "--json", dest="as_json", action="store_true", help="the summary as JSON"
        )

    def handle(
        self,
        *args,
        file: Path,
        match: str,
        skip_invalid: bool,
        dry_run: bool,
        as_json: bool,
        **options,
    ) -> None:
        if str(file) == "-":
            stream, size = sys.stdin.buffer, None
        else:
            if not file.is_file():
                raise CommandError(f"{file}: no such file")
            stream, size = file.open("rb"), file.stat().st_size
        bar = tqdm(total=size, unit="B", unit_scale=True, disable=size is None, file=self.stderr)
        reading = _Counted(stream, bar.update)
        import_id = uuid.uuid4().hex
        try:
            with writing_as(Writer(Source.IMPORT, request_id=import_id)):
                result = customer_import(
                    reading,
                    validate_row=validated_import_row,
                    match=match,
                    skip_invalid=skip_invalid,
                    dry_run=dry_run,
                    import_id=import_id,
                    progress=lambda step: self.stderr.write(f"… {step}"),
                )
        except UnreadableFile as exc:
            bar.close()
            body = ImportResult(import_id, errors=exc.errors).as_json()
            self._report(body, as_json=as_json, read=False)
            raise CommandError("the file cannot be imported") from None
        finally:
            bar.close()
        self._report(result.as_json(), as_json=as_json)
        if result.invalid and not skip_invalid:
            raise CommandError(f"{result.invalid:,} invalid rows: nothing written")

    def _report(self, body: dict, *, as_json: bool, read: bool = True) -> None:
        if as_json:
            self.stdout.write(json.dumps(body, ensure_ascii=False))
            return
        for problem in body.get("errors", []):
            self.stdout.write(f"line {problem['line']}, {problem['field']}: {problem['message']}")
        if read:
            verb = "Imported" if body.get("written", True) else "Would import"
            self.stdout.write(
                f"{verb}: {body['created']:,} created, {body['updated']:,} updated, "
                f"{body['unchanged']:,} unchanged, {body['invalid']:,} invalid "
                f"(import {body['import_id']})"
            )


class _Counted:
    """A file whose reads are counted (the progress bar)."""

    def __init__(self, stream, counted) -> None:
        self.stream, self.counted = stream, counted

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.counted(len(data))
        return data

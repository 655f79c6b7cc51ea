"""``python manage.py readme_tables``: the README's benchmark tables, from the published CSVs."""

from __future__ import annotations

import difflib
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.readme_tables import FILES, regenerate


class Command(BaseCommand):
    help = (
        "Rewrite the benchmark tables of README.md and docs/ (between <!-- table:NAME --> and "
        "<!-- /table -->) from the CSV files published in docs/benchmarks/; with --check, "
        "only say which are out of date."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--check",
            action="store_true",
            help="change nothing; fail, showing the difference, if a table is out of date",
        )

    def handle(self, *args, check: bool, **options) -> None:
        stale = []
        for name in FILES:
            path = Path(settings.BASE_DIR) / name
            text = path.read_text(encoding="utf-8")
            fresh = regenerate(text, where=str(Path(name).parent))
            if fresh == text:
                continue
            stale.append(name)
            if check:
                self.stdout.writelines(
                    difflib.unified_diff(
                        text.splitlines(keepends=True),
                        fresh.splitlines(keepends=True),
                        f"{name} (committed)",
                        f"{name} (from docs/benchmarks/)",
                    )
                )
            else:
                path.write_text(fresh, encoding="utf-8")
                self.stdout.write(f"Rewrote the tables of {name}")
        if check and stale:
            raise CommandError(
                f"out of date: {', '.join(stale)}; run python manage.py readme_tables"
            )
        if not stale:
            self.stdout.write("Every table is current.")

"""``python manage.py bench_list``: baseline, optimized and floor side by side."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from bench import reports, runner, scenarios
from core import run_records


class Command(BaseCommand):
    help = (
        "Benchmark GET /api/users/ scenarios: the original's implementation (baseline), "
        "the product (optimized) and one hand-written SQL query (floor), interleaved in one run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repeat", type=int, default=20, help="timed runs per variant")
        parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
        parser.add_argument(
            "--scenario", action="append", default=None, help="run only these (repeatable)"
        )
        parser.add_argument(
            "--variant",
            action="append",
            choices=scenarios.VARIANTS,
            default=None,
            help=(
                "baseline, optimized, floor or uninstrumented (repeatable; default the first three)"
            ),
        )
        parser.add_argument(
            "--explain",
            action="store_true",
            help="write EXPLAIN (ANALYZE, BUFFERS) of each optimized scenario to OUTPUT/explain/",
        )
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help=(
                "report folder (default CRM_REPORTS_DIR, reports/, ignored by git; "
                "docs/benchmarks to publish, from a committed checkout)"
            ),
        )

    def handle(self, *args, repeat, warmup, scenario, variant, explain, output, **options):
        if repeat < 1 or warmup < 0:
            raise CommandError("--repeat must be at least 1 and --warmup at least 0")
        variants = [v for v in scenarios.VARIANTS if v in (variant or scenarios.DEFAULT_VARIANTS)]
        output = run_records.reports_dir(output)
        customers = scenarios.count_customers()
        if customers < scenarios.MINIMUM_CUSTOMERS:
            raise CommandError(
                f"only {customers} customers: load at least {scenarios.MINIMUM_CUSTOMERS} "
                "with generate_data first"
            )
        facts = scenarios.data_facts()
        chosen = scenarios.build_scenarios(facts)
        if scenario:
            unknown = set(scenario) - {s.name for s in chosen}
            if unknown:
                raise CommandError(
                    f"unknown scenario {', '.join(sorted(unknown))}; "
                    f"choose from {', '.join(s.name for s in chosen)}"
                )
            chosen = [s for s in chosen if s.name in scenario]
        self.stdout.write(
            f"{facts.customers:,} customers; {len(chosen)} scenarios x {', '.join(variants)}; "
            f"{warmup} warm-up + {repeat} timed runs each"
        )
        results = runner.run_benchmark(
            chosen, variants, repeat=repeat, warmup=warmup, progress=self.stdout.write
        )
        paths = reports.write_reports(
            results, output=output, repeat=repeat, customers=facts.customers
        )
        if explain and "optimized" in variants:
            runner.explain(chosen, output / "explain")
            paths["explain"] = output / "explain"
        self.stdout.write(paths["md"].read_text())
        self.stdout.write("Wrote " + ", ".join(str(p) for p in paths.values()))
        failed = [m for m in results if m.failure]
        if failed:
            raise CommandError(
                "wrong results: "
                + "; ".join(f"{m.scenario.name}/{m.variant}: {m.failure}" for m in failed)
            )

"""``python manage.py bench_matrix``: every filter with every ordering, sampled and checked."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench.matrix import charts, combinations, profiling, reports, running, summaries
from bench.matrix.oracle import Reference
from core import run_records

#: Below this, bands and a page 100 deep mean little.
MINIMUM_CUSTOMERS = 1000


class Command(BaseCommand):
    help = (
        "Benchmark GET /api/users/ over a deterministic sample of filter x ordering x page "
        "position combinations made from the data; check every answer; report the "
        "distribution, the worst combinations with their plans, and counts against the truth."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--sample", type=int, default=300, help="combinations (default 300)")
        parser.add_argument("--seed", type=int, default=1, help="chooses values and combinations")
        parser.add_argument("--repeat", type=int, default=7, help="timed rounds (default 7)")
        parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
        parser.add_argument("--worst", type=int, default=10, help="combinations to EXPLAIN")
        parser.add_argument("--label", default="matrix", help="names the run in matrix.csv")
        parser.add_argument(
            "--output",
            type=Path,
            default=None,
            help="report folder (default CRM_REPORTS_DIR, reports/; docs/benchmarks to publish)",
        )
        parser.add_argument(
            "--lock",
            type=Path,
            default=None,
            help="hold an exclusive flock on this file while timing (a machine shared with "
            "other benchmarks); profiling and checking run without it",
        )
        parser.add_argument(
            "--compare",
            nargs="+",
            metavar="RUN",
            default=None,
            help="instead of running: chart and tabulate these runs of OUTPUT/matrix.csv "
            "side by side (matrix-compare.png, matrix-compare.md)",
        )

    def handle(
        self, *args, sample, seed, repeat, warmup, worst, label, output, lock, compare, **options
    ):
        # reports/ unless told otherwise; docs/benchmarks/ only from a
        # committed checkout, and every run noted in the folder's runs.log.
        output = run_records.reports_dir(output)
        if compare:
            return self.compare(output, compare)
        if sample < 1 or repeat < 1 or warmup < 0 or worst < 0:
            raise CommandError(
                "--sample and --repeat must be at least 1, --warmup and --worst at least 0"
            )
        ref = Reference()
        try:
            customers = ref.value("SELECT count(*) FROM core_appuser")
            if customers < MINIMUM_CUSTOMERS:
                raise CommandError(
                    f"only {customers} customers: load at least {MINIMUM_CUSTOMERS} with "
                    "generate_data first"
                )
            self.stdout.write(f"{customers:,} customers; reading values off the data (seed {seed})")
            started = time.perf_counter()
            profile = profiling.profile_data(ref, seed, self.stdout.write)
            self.stdout.write(f"  ({time.perf_counter() - started:.0f} s)")
            served, refused = combinations.sample_combinations(profile, sample, seed)
            self.stdout.write(
                f"{len(served)} combinations to time, {len(refused)} refused orderings to check; "
                "true counts and page positions"
            )
            results = [running.Result(c) for c in served]
            # A 503 is recorded as a wrong answer of its combination; Django's
            # log line for each would bury the progress.
            request_log = logging.getLogger("django.request")
            with running.matrix_limits(), quiet(request_log):
                requester = running.Requester()
                running.prepare(results, ref, profile, requester, self.stdout.write)
                self.stdout.write("checking every answer")
                for result in results:
                    running.check_answer(result, requester, ref, profile)
                refusals = [(c.label, running.check_refusal(c, requester)) for c in refused]
                self.stdout.write(f"timing: {warmup} warm-up + {repeat} timed rounds")
                with timing_lock(lock, self.stdout.write):
                    running.run_matrix(
                        results,
                        requester,
                        repeat=repeat,
                        warmup=warmup,
                        seed=seed,
                        progress=self.stdout.write,
                    )
                    slowest = sorted(results, key=lambda r: -r.stat("p50"))[:worst]
                    for result in slowest:
                        result.explain = running.explain(result, requester)
                for result in results:
                    running.count_queries(result, requester)
                self.stdout.write("each plan forced, as raw SQL (regret)")
                with timing_lock(lock, self.stdout.write):
                    for number, result in enumerate(results, 1):
                        if result.failure is None:
                            running.time_plans(result, repeat=3)
                        if number % 50 == 0:
                            self.stdout.write(f"  {number}/{len(results)}")
        finally:
            ref.close()
        info = reports.run_info(
            label=label,
            seed=seed,
            repeat=repeat,
            warmup=warmup,
            customers=customers,
            exact_threshold=settings.CRM_EXACT_COUNT_THRESHOLD,
        )
        paths = reports.write_reports(
            results, refusals, profile, info, output=output, worst=slowest
        )
        paths["png"] = output / "matrix.png"
        charts.chart(results, paths["png"], info)
        report = paths["md"].read_text()
        self.stdout.write(report.split("\n## By dimension")[0])
        self.stdout.write("Wrote " + ", ".join(str(p) for p in paths.values()))
        wrong = [f"{r.combination.label}: {r.failure}" for r in results if r.failure]
        wrong += [f"{label}: {failure}" for label, failure in refusals if failure]
        if wrong:
            raise CommandError(f"{len(wrong)} wrong answers: " + "; ".join(wrong[:10]))

    def compare(self, output: Path, runs: list[str]) -> None:
        if not (output / "matrix.csv").exists():
            raise CommandError(f"no {output / 'matrix.csv'}: run bench_matrix first")
        try:
            data = charts.named_runs(output, runs)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        png = output / "matrix-compare.png"
        md = output / "matrix-compare.md"
        charts.compare_chart(data, png)
        md.write_text("\n".join(summaries.distribution_table(data)) + "\n")
        self.stdout.write(md.read_text())
        self.stdout.write(f"Wrote {md}, {png}")


@contextlib.contextmanager
def timing_lock(path: Path | None, progress):
    """An exclusive ``flock`` on ``path`` (as flock(1) takes it), or nothing."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        progress(f"  waiting for the lock on {path}")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet(logger: logging.Logger):
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)

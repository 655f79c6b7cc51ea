"""The generate_data command: bad arguments, its report row, its progress."""

from __future__ import annotations

import csv
import re

import pytest
from django.core.management import CommandError, call_command

from core.management.commands.generate_data import REPORT_COLUMNS

from .snapshots import table_digest
from .test_generation import AS_OF, generate

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "0"],
        ["--n", "-5"],
        ["--n", "many"],
        ["--n", "2.5"],
        ["--n", "10", "--chunk", "0"],
        ["--n", "10", "--chunk", "-1"],
        ["--n", "10", "--jobs", "0"],
        ["--n", "10", "--maintenance-work-mem", "lots"],
        ["--n", "10", "--maintenance-work-mem", "1TB"],
        ["--n", "10", "--maintenance-work-mem", "16MB"],
    ],
)
def test_bad_arguments_are_refused_and_leave_data_untouched(reports_dir, args):
    generate(50)
    before = table_digest()
    with pytest.raises(CommandError, match=r"--n|--chunk|--jobs|--maintenance-work-mem"):
        call_command("generate_data", *args)
    assert table_digest() == before


def test_appends_a_report_row_with_phase_timings(reports_dir):
    generate(300)
    generate(200)
    with (reports_dir / "generate_benchmarks.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert tuple(rows[0]) == REPORT_COLUMNS
    assert rows[1]["n"] == "200"
    assert float(rows[1]["total_s"]) > 0
    assert rows[1]["postgres_version"][:2] in {"15", "16", "17", "18"}


def test_progress_is_plain_lines_off_a_terminal_and_silent_when_quiet(reports_dir, capsys):
    call_command("generate_data", n=100, chunk=50, as_of=AS_OF)
    out = capsys.readouterr()
    assert "copy: 400/400 rows" in out.err
    assert re.search(r"^build: (\d+)/\1 steps", out.err, re.MULTILINE), out.err
    assert "swap: 1/1" in out.err
    assert "Loaded 100 customers" in out.out
    generate(100)
    out = capsys.readouterr()
    assert out.out == out.err == ""

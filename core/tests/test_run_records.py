"""Run records: a user's runs and published figures never share a folder."""

from __future__ import annotations

import subprocess

import pytest
from django.core.management.base import CommandError

from core import run_records


@pytest.fixture
def repository(tmp_path, settings, monkeypatch):
    """A git checkout with a committed file and a published folder."""
    settings.BASE_DIR = tmp_path
    published = tmp_path / "docs" / "benchmarks"
    published.mkdir(parents=True)
    monkeypatch.setattr(run_records, "PUBLISHED_DIR", published)
    monkeypatch.setattr(run_records, "_noted", set())
    (tmp_path / "code.py").write_text("1\n")
    (published / "load.csv").write_text("a\n")
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c"],
    ):
        subprocess.run(["git", *command], cwd=tmp_path, check=True)
    return tmp_path


def test_default_folder_is_ignored_by_git(settings):
    """Your own runs go where git does not look (CRM_REPORTS_DIR, reports/ by default)."""
    for path in ("reports/benchmarks.csv", "reports/screenshots/a.png"):
        check = subprocess.run(["git", "check-ignore", "-q", path], cwd=settings.BASE_DIR)
        assert check.returncode == 0, path


def test_a_run_is_noted_with_its_commit_and_command(repository, monkeypatch):
    monkeypatch.setattr("sys.argv", ["/x/manage.py", "bench_list", "--repeat", "2"])
    folder = run_records.reports_dir(repository / "reports")
    run_records.reports_dir(repository / "reports")
    (line,) = (folder / "runs.log").read_text().splitlines()
    _, commit, command = line.split("\t")
    assert commit == run_records.git_commit()
    assert not commit.endswith("-dirty")
    assert command == "python manage.py bench_list --repeat 2"


def test_publishing_from_uncommitted_code_is_refused(repository):
    (repository / "code.py").write_text("2\n")
    assert run_records.git_commit().endswith("-dirty")
    with pytest.raises(CommandError, match="commit your changes"):
        run_records.reports_dir(repository / "docs" / "benchmarks")
    # A user's own runs are not refused.
    run_records.reports_dir(repository / "reports")


def test_published_results_do_not_make_the_next_publication_dirty(repository):
    (repository / "docs" / "benchmarks" / "load.csv").write_text("a\nb\n")
    assert not run_records.git_commit().endswith("-dirty")
    assert run_records.reports_dir(repository / "docs" / "benchmarks").exists()

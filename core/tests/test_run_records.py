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
    (tmp_path / "code.py").write_text("1\n")
    (published / "load.csv").write_text("a\n")
    for command in (["init", "-q"], ["add", "-A"]):
        git(tmp_path, *command)
    commit(tmp_path)
    # Published from here on (its first file was written before the first commit).
    monkeypatch.setattr(run_records, "PUBLISHED_DIR", published)
    monkeypatch.setattr(run_records, "_noted", set())
    monkeypatch.setattr(run_records, "_publishing", None)
    return tmp_path


def git(repository, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repository, check=True)


def commit(repository) -> None:
    git(repository, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", "c")


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


def test_rows_never_land_under_another_versions_header(tmp_path):
    path = tmp_path / "runs.csv"
    run_records.append_csv(path, ["a", "b"], {"a": 1, "b": 2})
    run_records.append_csv(path, ["a", "b"], {"a": 3, "b": 4})
    run_records.append_csv(path, ["a", "b", "c"], {"a": 5, "b": 6, "c": 7})
    run_records.append_csv(path, ["a", "b", "c"], {"a": 8, "b": 9, "c": 10})
    assert path.read_text().splitlines() == ["a,b,c", "5,6,7", "8,9,10"]
    assert (tmp_path / "runs.1.csv").read_text().splitlines() == ["a,b", "1,2", "3,4"]


def test_a_file_written_once_the_checkout_is_dirty_is_refused(repository):
    """The checkout is checked when each file is written, not only when the
    folder is opened: a run takes long, and its report is written at the end."""
    folder = run_records.reports_dir(repository / "docs" / "benchmarks" / "run")
    (folder / "before.md").write_text("clean\n")
    (repository / "code.py").write_text("2\n")
    with pytest.raises(CommandError, match="commit your changes"):
        (folder / "report.md").write_text("figures\n")
    with pytest.raises(CommandError, match="commit your changes"):
        run_records.append_csv(folder / "rows.csv", ["a"], {"a": 1})
    with pytest.raises(CommandError, match="commit your changes"):
        (folder / "before.md").open("a")
    assert sorted(p.name for p in folder.iterdir()) == ["before.md", "runs.log"]
    # Reading is still allowed, and so is writing a user's own records.
    assert (folder / "before.md").read_text() == "clean\n"
    (repository / "reports").mkdir()
    (repository / "reports" / "report.md").write_text("figures\n")


def test_the_folders_guide_may_be_written_from_a_dirty_checkout(repository):
    """docs/benchmarks/README.md is prose and tables made from the files
    beside it (readme_tables): it names no run's commit. Nothing else is exempt."""
    (repository / "code.py").write_text("2\n")
    (repository / "docs" / "benchmarks" / "README.md").write_text("the guide\n")
    (repository / "docs" / "benchmarks" / "run").mkdir()
    with pytest.raises(CommandError, match="commit your changes"):
        (repository / "docs" / "benchmarks" / "run" / "README.md").write_text("figures\n")


def test_a_publishing_run_never_reads_a_dirty_commit(repository):
    """What the report quotes is read while it is written: a dirty checkout
    by then is refused, not named."""
    run_records.reports_dir(repository / "docs" / "benchmarks" / "run")
    (repository / "code.py").write_text("2\n")
    with pytest.raises(CommandError, match="commit your changes"):
        run_records.git_commit()


def test_a_commit_made_during_the_run_is_refused(repository):
    """The run's code is the commit its runs.log names, not a later one."""
    folder = run_records.reports_dir(repository / "docs" / "benchmarks" / "run")
    opened_at = run_records.git_commit()
    (repository / "code.py").write_text("2\n")
    commit(repository)
    with pytest.raises(CommandError, match=f"moved from {opened_at}"):
        (folder / "report.md").write_text("figures\n")
    assert not (folder / "report.md").exists()


def test_a_writer_that_never_opened_the_folder_is_checked_too(repository):
    (repository / "code.py").write_text("2\n")
    with pytest.raises(CommandError, match="commit your changes"):
        (repository / "docs" / "benchmarks" / "profile.md").write_text("figures\n")
    (repository / "code.py").write_text("1\n")
    (repository / "docs" / "benchmarks" / "profile.md").write_text("figures\n")


def test_a_checkout_reached_through_a_symlink_is_checked_too(
    repository, tmp_path_factory, monkeypatch, settings
):
    """Writers name the folder by its real path (reports_dir resolves it)."""
    link = tmp_path_factory.mktemp("elsewhere") / "checkout"
    link.symlink_to(repository)
    settings.BASE_DIR = link
    monkeypatch.setattr(run_records, "PUBLISHED_DIR", link / "docs" / "benchmarks")
    (repository / "code.py").write_text("2\n")
    with pytest.raises(CommandError, match="commit your changes"):
        (repository / "docs" / "benchmarks" / "report.md").write_text("figures\n")
    with pytest.raises(CommandError, match="commit your changes"):
        run_records.reports_dir(repository / "docs" / "benchmarks")

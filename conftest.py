"""Fixtures every test package shares (crm, core, bench)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--screenshots",
        type=Path,
        default=None,
        help=(
            "where the browser tests save screenshots (default: CRM_REPORTS_DIR/screenshots, "
            "ignored by git; docs/screenshots to publish them)"
        ),
    )


@pytest.fixture(scope="session")
def screenshots_dir(request) -> Path:
    """Where the browser tests save what they saw: your own folder unless asked to publish."""
    from django.conf import settings

    path = request.config.getoption("--screenshots") or (
        Path(settings.CRM_REPORTS_DIR) / "screenshots"
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True, scope="session")
def child_reports_dir(tmp_path_factory) -> Iterator[Path]:
    """Child processes (manage.py, gunicorn) write their reports into a
    temporary folder, never into the checkout's reports/."""
    path = tmp_path_factory.mktemp("child-reports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CRM_REPORTS_DIR", str(path))
        yield path


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing(django_test_environment) -> Iterator[None]:
    """The tests' users' passwords hashed with a thousandth of production's
    work (crm.tests.hashing: over a hundred hashes a run, 0.4 to 0.7 s each)."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["crm.tests.hashing.TestPasswordHasher"]):
        yield


@pytest.fixture
def reports_dir(settings, tmp_path) -> Path:
    """Send reports to a temporary folder instead of the checkout's reports/."""
    settings.CRM_REPORTS_DIR = tmp_path / "reports"
    return settings.CRM_REPORTS_DIR


@pytest.fixture
def reader(db):
    """A test client with the token of a read-only API user."""
    from core.tests.clients import api_client

    return api_client()


@pytest.fixture(autouse=True)
def fresh_rate_limit_counts(monkeypatch):
    """Each test starts with no rate-limit counts in this process; the shared
    counts live in the test's database, which each test starts afresh."""
    from core.security import throttling

    monkeypatch.setattr(throttling, "_counter", None)


@pytest.fixture(autouse=True)
def fresh_planning_sample():
    """Each test plans against its own data: the sample of the read table a
    process keeps for minutes (core.customers.sample) is read afresh, since
    tests replace their data in milliseconds, which production does not."""
    from core.customers.sample import samples

    samples.clear()


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers",
        "programs(*names): needs these system programs; skipped without them, "
        "failed without them in CI (crm.tests.processes.needs_programs)",
    )
    if (
        os.geteuid() == 0
        and not config.option.basetemp
        and "PYTEST_DEBUG_TEMPROOT" not in os.environ
    ):
        # As root, the tests' embedded servers run as their own system user in
        # data folders under pytest's temporary folders, whose root
        # (pytest-of-root) pytest makes private again when any session starts:
        # another checkout's test run on this machine would lock them out
        # (seen: pg_ctl "Permission denied" mid-run). A root per checkout.
        checkout = hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()
        root = Path(tempfile.gettempdir()) / f"crm-tests-{checkout[:10]}"
        root.mkdir(exist_ok=True)
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(root)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Mark the tests CI's second pass runs on PostgreSQL 15 (the rule is
    crm.tests.second_pass's), before ``-m`` selects by the mark."""
    from crm.tests import second_pass

    for item in items:
        if second_pass.choose_item(item)[0]:
            item.add_marker(second_pass.MARK)
    # Every collected test, selected or not, for crm/tests/test_second_pass.py.
    config.stash[second_pass.COLLECTED] = list(items)
    items[:] = slow_modules_first(items)


#: Marks of tests that start programs of their own (nginx, gunicorn, etcd,
#: Patroni, servers, Chromium): the suite's longest modules, up to a minute.
SLOW_MARKS = ("programs", "embedded_server", "browser")


def slow_modules_first(items: list) -> list:
    """``items`` with the modules that start programs first, each module's
    tests still together and in order. xdist hands whole modules to its
    workers in this order (``--dist loadfile``): a minute-long module
    handed out last keeps one worker busy while the other has nothing left.
    """
    slow = {
        item.module.__name__
        for item in items
        if any(item.get_closest_marker(mark) for mark in SLOW_MARKS)
    }
    return sorted(items, key=lambda item: item.module.__name__ not in slow)


def pytest_runtest_setup(item) -> None:
    """A test marked with ``programs`` (``needs_programs``) whose programs are
    missing: skipped on a laptop, a failure in CI (``CI=true``)."""
    from crm.tests.processes import missing_programs

    for marker in item.iter_markers("programs"):
        missing = missing_programs(*marker.args)
        if not missing:
            continue
        names = ", ".join(missing)
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(
                f"{names} not installed, and CI=true: CI must install them (.ci/run), "
                "not skip the tests that need them",
                pytrace=False,
            )
        pytest.skip(f"{names} not installed (apt-get install them; CI fails without them)")

"""CI's second pass (PostgreSQL 15) runs the tests of the project's own SQL, chosen by a rule
(crm/tests/second_pass.py): the rule's cases, its mark applied before ``-m``
selects, and no test that reaches PostgreSQL left out of it."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import textwrap
from functools import cache
from types import FunctionType, ModuleType

import pytest

from crm.tests import processes, second_pass
from crm.tests.processes import REPO

SQL = "core/tests/customers/test_plans.py"
API = "core/tests/api/test_list.py"

CASES = [
    # (path, fixtures, marks, chosen)
    (SQL, {"tmp_path"}, {}, False),
    (SQL, {"db"}, {}, True),
    (SQL, {"transactional_db"}, {}, True),
    (SQL, {"_django_db_helper"}, {}, True),  # a fixture of the test's that uses db
    (SQL, set(), {"django_db": ()}, True),
    (SQL, {"live_server"}, {}, True),
    (SQL, {"db"}, {"programs": ("nginx",)}, False),
    (SQL, {"db"}, {"programs": ("redis-server", "nginx")}, False),
    (SQL, {"db"}, {"programs": ("nginx", "pgbouncer")}, True),
    (SQL, {"db"}, {"programs": ("promtool",)}, True),
    (SQL, {"live_server"}, {"browser": (), "programs": ("chromium",)}, False),
    (SQL, {"db"}, {"programs": ("nginx",), "sql": ()}, True),
    (SQL, {"tmp_path"}, {"sql": ()}, True),
    (SQL, {"db"}, {"embedded_server": ()}, False),
    (SQL, {"tmp_path"}, {"embedded_server": (), "sql": ()}, False),
    (SQL, {"tmp_path"}, {"programs": ("nginx",)}, False),
    ("core/tests/history/test_erasure.py", {"db"}, {}, True),  # a folder of SQL subjects
    ("core/tests/test_models.py", {"db"}, {}, True),
    (API, {"db"}, {}, False),  # the API's requests: SQL the subjects' tests cover
    (API, set(), {"django_db": ()}, False),
    (API, {"db"}, {"sql": ()}, True),
    ("core/tests/test_models_extra.py", {"db"}, {}, False),  # a file, not a prefix
]


@pytest.mark.parametrize(("path", "fixtures", "marks", "chosen"), CASES)
def test_the_rule(path, fixtures, marks, chosen):
    assert second_pass.choose(path, fixtures, marks)[0] is chosen


def test_every_sql_subject_exists():
    for subject in second_pass.SQL_SUBJECTS:
        assert (REPO / subject).exists(), subject


#: The product's modules that write SQL of their own (``.execute(``, ``.copy(``).
def modules_writing_sql() -> list[str]:
    found = []
    for package in ("core", "crm"):
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if "/tests/" in relative or "/migrations/" in relative:
                continue
            source = path.read_text(encoding="utf-8")
            if ".execute(" in source or ".copy(" in source:
                found.append(relative)
    return found


#: Modules that write SQL whose tests are not SQL subjects, and why.
SQL_TESTED_ELSEWHERE = {
    "crm/postgres/embedded.py": "the embedded server's own tests start servers of their own",
    "crm/postgres/ha_cluster.py": "the failover test starts a Patroni cluster of its own, "
    "with the first pass's PostgreSQL",
    "crm/replicas.py": "the replica tests start embedded servers of their own",
    "core/management/commands/database_role_settings.py": "prints ALTER ROLE … SET "
    "(crm.postgres.config.role_settings_sql), the same statement on every version",
    "core/security/middleware.py": "the session's statement timeout: "
    "core/tests/security/test_timeouts.py, marked sql",
    "core/security/export_slots.py": "advisory locks: core/tests/security/test_export_limits.py",
    "core/triggers.py": "the triggers it installs: core/tests/test_read_table_declaration.py "
    "and core/tests/customers/test_read_table.py",
}


def test_every_module_writing_sql_has_its_tests_on_the_second_pass():
    """A module that writes SQL of its own has a test file among the SQL
    subjects named after it (core/customers/plans.py: test_plans.py, or the
    package's folder), or is listed with the reason it is tested elsewhere."""
    subjects = " ".join(second_pass.SQL_SUBJECTS)
    untested = []
    for module in modules_writing_sql():
        if module in SQL_TESTED_ELSEWHERE:
            continue
        *packages, name = module.split("/")[1:]
        named = f"test_{name.removesuffix('.py')}.py" in subjects
        if named or any(f"/{package}/" in subjects for package in packages):
            continue
        untested.append(module)
    assert not untested, untested


TESTS = """
import pytest
from crm.tests.processes import needs_programs

@pytest.fixture
def customers(db):
    return []

def test_pure():
    pass

def test_db(db):
    pass

@pytest.mark.django_db(transaction=True)
def test_marked():
    pass

def test_through_a_fixture(customers):
    pass

@pytest.mark.django_db
@needs_programs("sh")
def test_behind_a_program_that_is_not_in_front():
    pass

@pytest.mark.django_db
@needs_programs("sh", "nginx")
def test_behind_nginx():
    pass

@pytest.mark.django_db
@needs_programs("sh", "nginx")
@pytest.mark.sql
def test_behind_nginx_about_the_sql():
    pass

@pytest.mark.django_db
@pytest.mark.embedded_server
def test_own_servers():
    pass

@pytest.mark.sql
def test_marked_sql():
    pass
"""


def test_the_mark_is_set_before_m_selects(tmp_path):
    """``pytest -m postgres_version_sensitive``, as .ci/run runs it, collects the
    chosen tests of a file and only those."""
    (tmp_path / "test_kinds.py").write_text(TESTS)
    select = ["--collect-only", "-q", "-m", second_pass.MARK, str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *processes.nested_pytest(tmp_path), *select],
        cwd=REPO,
        env={**os.environ, "CI": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = {line.split("::")[1] for line in done.stdout.splitlines() if "::" in line}
    # A file outside the SQL subjects: only what is marked sql.
    assert collected == {"test_marked_sql", "test_behind_nginx_about_the_sql"}


def test_ci_selects_the_second_pass_by_the_mark():
    ci = (REPO / ".ci" / "run").read_text()
    second = ci[ci.index("PostgreSQL 15 over TCP") :]
    assert f"-m {second_pass.MARK}" in second


# -- no test reaches PostgreSQL unseen ------------------------------------------

#: How a test reaches PostgreSQL other than through pytest-django's connection
#: (which pytest-django refuses to a test without the database): a connection
#: of psycopg's own, or a child process handed the tests' database.
REACHES_POSTGRES = frozenset(
    {
        "psycopg",
        "child_environment",
        "database_url",
        "get_connection_params",
        "separate_connection",
    }
)


def is_project_code(obj) -> bool:
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:
        return False
    return bool(path) and path.startswith(str(REPO) + os.sep) and ".venv" not in path


@cache
def reaches_postgres(function) -> str | None:
    """The name by which ``function``, or project code it calls, reaches PostgreSQL."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
    namespace = getattr(function, "__globals__", None) or vars(inspect.getmodule(function))
    called = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in REACHES_POSTGRES:
            return node.id
        if isinstance(node, ast.Attribute) and node.attr in REACHES_POSTGRES:
            return node.attr
        if isinstance(node, ast.Call | ast.keyword):
            target = node.func if isinstance(node, ast.Call) else node.value
            called.append(resolve(target, namespace))
    for target in called:
        if target is not None and target is not function and is_project_code(target):
            found = reaches_postgres(target)
            if found:
                return f"{found} (in {target.__qualname__})"
    return None


def resolve(node: ast.expr, namespace: dict):
    """The function a call's ``f`` or ``module.f`` names, if it can be told."""
    if isinstance(node, ast.Name):
        found = namespace.get(node.id)
    elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        module = namespace.get(node.value.id)
        found = getattr(module, node.attr, None) if isinstance(module, ModuleType) else None
    else:
        return None
    if isinstance(found, FunctionType):
        return inspect.unwrap(found)  # a context manager's own function
    return found if isinstance(found, type) else None


def fixture_functions(item) -> list:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [
        inspect.unwrap(definitions[-1].func)
        for definitions in info.name2fixturedefs.values()
        if definitions and is_project_code(inspect.unwrap(definitions[-1].func))
    ]


#: Tests the check above would flag, and why they reach no database.
REACH_NO_DATABASE = {
    "crm/tests/test_gunicorn_conf.py::test_gunicorn_opens_no_control_socket": (
        "database_env={} (production_environment reaches child_environment only "
        "without it): its gunicorn serves /healthz, which needs no database"
    ),
    **{
        "crm/tests/test_gunicorn_conf.py::test_what_gunicorn_refuses_is_json_and_its_log_"
        f"keeps_no_request_line[{worker_class}]": (
            "database_env={}: what gunicorn refuses never reaches the application"
        )
        for worker_class in ("sync", "gthread")
    },
}


def test_no_test_reaches_postgresql_unseen(request):
    """Every collected test that reaches PostgreSQL (itself, through its
    fixtures or through project code they call) is one the second pass runs,
    or one that starts embedded servers of its own. Running the whole suite
    checks every test; running a few files checks those."""
    unseen = []
    for item in request.config.stash[second_pass.COLLECTED]:
        marks = second_pass.marks_of(item)
        if "embedded_server" in marks:
            continue
        if second_pass.uses_tests_database(item.fixturenames, marks):
            continue
        if item.nodeid in REACH_NO_DATABASE:
            continue
        for function in [inspect.unwrap(item.function), *fixture_functions(item)]:
            found = reaches_postgres(function)
            if found:
                unseen.append(f"{item.nodeid}: {found}")
                break
    assert not unseen, (
        "these tests reach PostgreSQL without pytest-django's database, so the "
        "second pass would leave them out: give them the db fixture (or "
        "@pytest.mark.django_db), or mark them sql:\n" + "\n".join(unseen)
    )


def test_the_suite_marks_by_the_rule(request):
    """The root conftest marked exactly the tests the rule chooses."""
    collected = request.config.stash[second_pass.COLLECTED]
    assert collected
    for item in collected:
        chosen = second_pass.choose_item(item)[0]
        marked = item.get_closest_marker(second_pass.MARK) is not None
        assert marked is chosen, item.nodeid


def hands_a_child_the_database():
    return processes.database_url("x")


def locks_a_table():
    with processes.table_locked():
        pass


def test_reaching_postgresql_is_found_through_helpers():
    """The check above finds a connection in a helper, one call deep or more."""
    assert reaches_postgres(hands_a_child_the_database) == "database_url"
    assert reaches_postgres(locks_a_table) == "get_connection_params (in table_locked)"
    assert reaches_postgres(test_the_rule) is None

"""Every setting the product reads from the environment is in the README's
Configuration table: a variable added to the code without a row fails here."""

from __future__ import annotations

import re

from crm.tests.processes import REPO

#: What a setting's name looks like, as a string literal in the code.
NAME = re.compile(r"\"((?:CRM|DATABASE|DJANGO|GUNICORN|REDIS|PROMETHEUS)_[A-Z0-9_]+)\"")
#: Read by Django and gunicorn themselves, not settings of this project.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def read_by_the_product() -> set[str]:
    names = set()
    for package in ("crm", "core"):
        for path in (REPO / package).rglob("*.py"):
            if "tests" in path.relative_to(REPO).parts:
                continue
            names |= set(NAME.findall(path.read_text(encoding="utf-8")))
    return names - NOT_SETTINGS


def configuration_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text[text.index("\n## Configuration") : text.index("\n## Layout")]


def test_every_setting_the_code_reads_has_a_row():
    names = read_by_the_product()
    assert {"CRM_LOCK_TIMEOUT_MS", "CRM_USER_CONCURRENCY", "DATABASE_URL"} <= names
    section = configuration_section()
    assert sorted(name for name in names if f"`{name}`" not in section) == []

"""Every README example works when pasted in order after ``make run``.

The examples are read from README.md itself, so they cannot rot: every fenced
block whose info string carries the word ``example`` (```` ```sh example ````,
```` ```console example ````) runs, in order, in one bash session, against a
real ``manage.py quickstart`` (what ``make run`` runs) on a free port, after
the ``T=… W=…`` line quickstart printed, exactly as the README tells a reader
to paste it. ``http://127.0.0.1:8000`` becomes that server's address and
``.venv/bin/python`` this interpreter; nothing else is changed.

* ``sh example``: every command must succeed, and every HTTP answer ``curl``
  gets must be below 400 (``curl`` itself exits 0 on a 401).
* ``console example``: lines starting with ``$ `` are commands, the lines
  after each are its expected output, where ``…`` stands for anything; the
  status is not checked (such a block may show an error on purpose).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
from django.db import connection

from core.tests.dev_server import quickstart_server
from crm.tests.processes import REPO

README = REPO / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
DOCUMENTED_SERVER = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Example:
    line: int  # where the block starts in README.md
    kind: str  # "sh" or "console"
    body: str

    def commands(self) -> list[tuple[str, list[str]]]:
        """A console block's commands, each with its expected output lines."""
        commands: list[tuple[str, list[str]]] = []
        for line in self.body.splitlines():
            if line.startswith("$ "):
                commands.append((line[2:], []))
            elif commands:
                commands[-1][1].append(line)
        return commands


def readme_examples(text: str) -> list[Example]:
    examples = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        if "example" in words[1:]:
            line = text.count("\n", 0, match.start()) + 1
            examples.append(Example(line, words[0], match["body"]))
    return examples


def matches(expected: list[str], actual: str) -> bool:
    """``actual`` is ``expected`` with each … standing for any text."""
    pattern = ".*".join(re.escape(part) for part in "\n".join(expected).strip().split("…"))
    return re.fullmatch(pattern, actual.strip(), re.DOTALL) is not None


def test_the_readme_marks_its_examples():
    kinds = [example.kind for example in readme_examples(README.read_text())]
    assert kinds.count("sh") >= 4
    assert "console" in kinds
    assert set(kinds) <= {"sh", "console"}


def test_matching_with_ellipses():
    assert matches(['{"a":["x, …"]}'], '{"a":["x, y, z"]}\n')
    assert not matches(['{"a":["x"]}'], '{"a":["y"]}')


@pytest.mark.django_db(transaction=True)
def test_every_readme_example_works_after_make_run(tmp_path):
    examples = readme_examples(README.read_text())
    with quickstart_server() as server:
        script = [
            "set -eu",
            # curl exits 0 on an HTTP error: note each answer's status on stderr.
            "curl() { command curl --show-error "
            "--write-out '%{stderr}@@http %{http_code} %{url_effective}\\n' \"$@\"; }",
            f"T={server.read_token} W={server.write_token}",
        ]
        for number, example in enumerate(examples):
            script.append(f"echo '@@block {number}'; echo '@@block {number}' >&2")
            if example.kind == "console":
                for index, (command, _) in enumerate(example.commands()):
                    script.append(f"echo '@@command {number}.{index}'")
                    script.append(runnable(command, server.url))
            else:
                script.append(runnable(example.body, server.url))
        done = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=tmp_path,
            env={**os.environ, **connection.child_environment()},
            capture_output=True,
            text=True,
            timeout=600,
        )
    stdout = done.stdout.split("@@block ")
    stderr = done.stderr.split("@@block ")
    failures = []
    for number, example in enumerate(examples):
        where = f"README.md line {example.line}"
        if number + 1 >= len(stdout):
            failures.append(f"{where}: never ran (an earlier command failed)")
            continue
        if example.kind == "console":
            outputs = stdout[number + 1].split("@@command ")[1:]
            for (command, expected), output in zip(example.commands(), outputs, strict=False):
                actual = output.split("\n", 1)[1] if "\n" in output else ""
                if not matches(expected, actual):
                    failures.append(f"{where}: `{command}` printed {actual.strip()[:300]!r}")
        else:
            for code, url in re.findall(r"@@http (\d+) (\S*)", stderr[number + 1]):
                if int(code) >= 400 or code == "000":
                    failures.append(f"{where}: HTTP {code} from {url}")
    if done.returncode != 0:
        failures.append(f"exit status {done.returncode}: {done.stderr[-1500:]}")
    assert failures == [], "\n".join(failures)


def runnable(command: str, url: str) -> str:
    """An example as this test runs it: this server, this interpreter."""
    manage = f"{sys.executable} {REPO / 'manage.py'}"
    return re.sub(
        r"(?<![\w/])\.venv/bin/python( manage\.py)?",
        lambda match: manage if match[1] else sys.executable,
        command.replace(DOCUMENTED_SERVER, url),
    )

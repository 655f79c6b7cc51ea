"""Every README example works when pasted, twice in a row, after ``make run``,
and leaves the checkout as it was.

The examples are read from README.md itself, so they cannot rot: every fenced
block whose info string carries the word ``example`` (```` ```sh example ````)
runs, in order, in one bash session in the checkout, against a real
``manage.py quickstart`` (what ``make run`` runs) on a free port, after the
``T=… W=…`` line quickstart printed, exactly as the README tells a reader to
paste it; then all of them once more, as a reader who pastes them again would.
``http://127.0.0.1:8000`` becomes that server's address and ``.venv/bin`` this
interpreter's folder; nothing else is changed. ``TMPDIR`` is the test's own
folder, where the examples write their files.

* Every command must succeed, and every HTTP answer ``curl`` gets must be
  below 400 (``curl`` itself exits 0 on a 401).
* An example followed at once by a block marked ``output``
  (```` ```json output ````) must print that, where ``…`` stands for any text;
  its status is not checked (such an example may show an error on purpose).
* No shell block carries a prompt (``$ curl …``): pasted, it would run ``$``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.db import connection

from core.tests.dev_server import quickstart_server
from crm.tests.processes import REPO

README = REPO / "README.md"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
DOCUMENTED_SERVER = "http://127.0.0.1:8000"
SHELLS = {"sh", "bash", "shell", "console"}
#: How many times the examples are pasted, one after the other.
PASTES = 2


@dataclass(frozen=True)
class Example:
    line: int  # where the block starts in README.md
    body: str
    tags: frozenset[str]  # the info string's words after the language
    output: str | None = None  # what the block marked ``output`` after it shows


def readme_examples(text: str) -> list[Example]:
    blocks = list(FENCE.finditer(text))
    examples = []
    for number, match in enumerate(blocks):
        words = match["info"].split()
        if "example" not in words[1:]:
            continue
        output = None
        following = blocks[number + 1] if number + 1 < len(blocks) else None
        if (
            following is not None
            and "output" in following["info"].split()[1:]
            and not text[match.end() : following.start()].strip()
        ):
            output = following["body"]
        line = text.count("\n", 0, match.start()) + 1
        examples.append(Example(line, match["body"], frozenset(words[1:]), output))
    return examples


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` with each … standing for any text."""
    pattern = ".*".join(re.escape(part) for part in expected.strip().split("…"))
    return re.fullmatch(pattern, actual.strip(), re.DOTALL) is not None


def test_the_readme_marks_its_examples_and_their_outputs():
    examples = readme_examples(README.read_text())
    assert len(examples) >= 8
    assert len([example for example in examples if example.output is not None]) >= 3


def test_no_readme_command_carries_a_prompt():
    """A ``$ `` before a command cannot be pasted (``$: command not found``)."""
    text = README.read_text()
    prompted = [
        f"README.md line {text.count(chr(10), 0, match.start()) + 1}"
        for match in FENCE.finditer(text)
        if (match["info"].split() or [""])[0] in SHELLS
        and any(line.startswith("$ ") for line in match["body"].splitlines())
    ]
    assert prompted == []


def test_matching_with_ellipses():
    assert matches('{"a":["x, …"]}', '{"a":["x, y, z"]}\n')
    assert not matches('{"a":["x"]}', '{"a":["y"]}')


def checkout_state() -> str:
    """What git sees changed or added in the checkout (ignored files aside)."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def paste(examples: list[Example], *, url: str, token_line: str, tmp_path: Path):
    """Every example in one bash session, ``PASTES`` times, marked for :func:`failures`."""
    script = [
        "set -eu",
        # curl exits 0 on an HTTP error: note each answer's status on stderr.
        "curl() { command curl --show-error "
        "--write-out '%{stderr}@@http %{http_code} %{url_effective}\\n' \"$@\"; }",
        token_line,
    ]
    for paste_number in range(PASTES):
        for number, example in enumerate(examples):
            mark = f"@@block {paste_number}.{number}"
            # On a line of its own, whatever the previous block printed last.
            script += [f"echo; echo '{mark}'; echo >&2; echo '{mark}' >&2"]
            script.append(runnable(example.body, url))
    return subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=REPO,
        env={**os.environ, **connection.child_environment(), "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=900,
    )


def failures(examples: list[Example], done: subprocess.CompletedProcess) -> list[str]:
    stdout = dict(
        re.findall(r"^@@block (\d+\.\d+)\n(.*?)(?=^@@block |\Z)", done.stdout, re.M | re.S)
    )
    stderr = dict(
        re.findall(r"^@@block (\d+\.\d+)\n(.*?)(?=^@@block |\Z)", done.stderr, re.M | re.S)
    )
    found = []
    for paste_number in range(PASTES):
        for number, example in enumerate(examples):
            key = f"{paste_number}.{number}"
            where = f"README.md line {example.line} (paste {paste_number + 1})"
            if key not in stdout:
                found.append(f"{where}: never ran (an earlier command failed)")
            elif example.output is not None:
                if not matches(example.output, stdout[key]):
                    found.append(f"{where}: printed {stdout[key].strip()[:300]!r}")
            else:
                for code, url in re.findall(r"@@http (\d+) (\S*)", stderr.get(key, "")):
                    if int(code) >= 400 or code == "000":
                        found.append(f"{where}: HTTP {code} from {url}")
    if done.returncode != 0:
        found.append(f"exit status {done.returncode}: {done.stderr[-1500:]}")
    return found


@pytest.mark.django_db(transaction=True)
def test_every_readme_example_works_twice_and_leaves_the_checkout_clean(tmp_path):
    examples = readme_examples(README.read_text())
    before = checkout_state()
    with quickstart_server() as server:
        done = paste(
            examples,
            url=server.url,
            token_line=f"T={server.read_token} W={server.write_token}",
            tmp_path=tmp_path,
        )
    assert failures(examples, done) == []
    assert checkout_state() == before, "an example wrote into the checkout"


def runnable(command: str, url: str) -> str:
    """An example as this test runs it: this server, this interpreter's tools."""
    manage = f"{sys.executable} {REPO / 'manage.py'}"
    tools = str(Path(sys.executable).parent)
    command = command.replace(DOCUMENTED_SERVER, url)
    command = re.sub(r"(?<![\w/])\.venv/bin/python manage\.py", lambda _: manage, command)
    return re.sub(r"(?<![\w/])(?:\$PWD/)?\.venv/bin(?![\w-])", lambda _: tools, command)

"""``make run``'s server in a real process: ``manage.py quickstart`` on a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import connection

from crm.tests.processes import REPO


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class DevServer:
    """A running quickstart: its base URL, what it printed, and the tokens it made."""

    url: str
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    read_token: str = ""
    write_token: str = ""

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def quickstart_server(*arguments: str, timeout: float = 240) -> Iterator[DevServer]:
    """Run ``manage.py quickstart`` (as ``make run`` does) against the tests' database.

    Yields once the server answers HTTP; stops it afterwards. Its output is
    drained continuously (runserver logs every request), so a long run never
    blocks on a full pipe.
    """
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "quickstart",
            "--addrport",
            f"127.0.0.1:{port}",
            *arguments,
        ],
        cwd=REPO,
        env={**os.environ, **connection.child_environment()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = DevServer(url=f"http://127.0.0.1:{port}", process=process)

    def drain() -> None:
        for line in process.stdout:
            server.lines.append(line.rstrip("\n"))

    threading.Thread(target=drain, daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not answers(server.url):
            if process.poll() is not None:
                raise AssertionError(f"quickstart exited {process.returncode}:\n{server.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"quickstart did not serve in {timeout} s:\n{server.output}")
            time.sleep(0.2)
        tokens = re.search(r"^\s*T=(\w+) W=(\w+)\s*$", server.output, re.MULTILINE)
        assert tokens, f"quickstart printed no T=… W=… line:\n{server.output}"
        server.read_token, server.write_token = tokens.groups()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/api/users/", timeout=2)
    except urllib.error.HTTPError:
        return True  # 401: it is serving
    except OSError:
        return False
    return True


def other_sessions() -> int:
    """Client sessions on the tests' database other than this process's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return cursor.fetchone()[0]

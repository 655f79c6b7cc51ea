"""The folder where one gunicorn's workers keep their slots' lock files
(core/security/local_slots.py), and its removal when gunicorn exits.

One folder per user and server (named after gunicorn's master, the workers'
parent process), so that two servers on one machine, a test stack beside
``make run`` say, never count each other. gunicorn's ``on_exit`` removes it
(crm/gunicorn_conf.py): a clean stop used to leave one behind per run in
the temporary folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def slots_folder(server_pid: int) -> Path:
    """The folder of the server whose master is ``server_pid``."""
    return Path(tempfile.gettempdir()) / f"crm-slots-{os.getuid()}-{server_pid}"


def remove_slots_folder(server_pid: int) -> None:
    """Remove the server's folder (its workers have exited: no lock is held)."""
    shutil.rmtree(slots_folder(server_pid), ignore_errors=True)

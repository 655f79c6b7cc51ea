"""prometheus-client's multiprocess mode under gunicorn: the workers' shared folder of metrics.

Each worker writes its metrics to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR``; ``/metrics`` reads them all. gunicorn's hooks
in ``crm/gunicorn_conf.py`` call these functions: the folder is made ready
before the first worker starts (a temporary one when the variable is unset,
removed when gunicorn exits; a given one is emptied, since files left from
an earlier run would add to this run's counts), and a worker that exits has
its live gauges dropped.

Nothing here imports prometheus-client at module level: the variable must be
set before it is first imported, which decides the mode once per process.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: The temporary folder this process made, to remove on exit.
_made: Path | None = None


def prepare_directory() -> Path:
    """Set up the folder for this server's workers (gunicorn's ``on_starting``)."""
    global _made
    values = sys.modules.get("prometheus_client.values")
    given = os.environ.get(VARIABLE)
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        # gunicorn's preload_app imported the application before this hook.
        raise RuntimeError(
            f"prometheus-client was imported before {VARIABLE} was set (preload_app?): "
            f"set {VARIABLE} to an empty folder in gunicorn's environment"
        )
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = _made = Path(tempfile.mkdtemp(prefix="crm-metrics-"))
        os.environ[VARIABLE] = str(directory)
    return directory


def mark_process_dead(pid: int) -> None:
    """Drop an exited worker's live gauges (gunicorn's ``child_exit``);
    its counters and histograms stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def remove_directory() -> None:
    """Remove the temporary folder, if this process made one (gunicorn's ``on_exit``)."""
    if _made is not None:
        shutil.rmtree(_made, ignore_errors=True)

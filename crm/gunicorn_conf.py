"""How this project is served: ``gunicorn -c python:crm.gunicorn_conf crm.wsgi``.

gunicorn reads this module as its configuration file; each setting may be
overridden on the command line (``--bind``, ``--workers``) or by the
environment variables below. The benchmarks and the fault tests start gunicorn
with exactly this file, so what they measure is what the README tells an
operator to run.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from crm import env
from crm.errors import ConfigurationError, SetupError
from crm.observability import multiprocess
from crm.slots_folder import remove_slots_folder


def stop(error: Exception) -> NoReturn:
    """End gunicorn with the error's one line, as ``manage.py`` does.

    gunicorn prints a failing configuration file's traceback, and each worker
    that cannot load the application prints its own: a placeholder secret key
    under three workers was 229 lines with the one that matters buried in them.
    """
    sys.stderr.write(f"error: {error}\n")
    sys.stderr.flush()
    sys.exit(1)


try:
    #: Where to listen. TLS ends at the proxy in front (see the README).
    bind = env.string("CRM_BIND", "127.0.0.1:8000")

    #: One worker per core, plus one to cover a worker waiting on I/O: these
    #: requests spend most of their time on the CPU, in Python or in PostgreSQL
    #: on the same machine (measured on 2 cores with 16 clients: p99 94 ms with 2
    #: workers, 110 ms with 3, 130 ms with 5, for the same throughput).
    workers = env.gunicorn_workers()

    #: Sync workers: nginx in front reads every request whole and every response
    #: at once (deploy/nginx/crm-proxy.conf), so no worker ever waits on a slow
    #: client, and a worker that serves one request at a time is the cheapest.
    #: GUNICORN_WORKER_CLASS=gthread and GUNICORN_THREADS exist for comparison
    #: (bench_http measures either). Both are gunicorn's own with its refusals
    #: answered in JSON and logged without the request (crm/gunicorn_workers.py).
    worker_class = env.string("GUNICORN_WORKER_CLASS", "sync")
    worker_class = {
        "sync": "crm.gunicorn_workers.SyncWorker",
        "gthread": "crm.gunicorn_workers.ThreadWorker",
    }.get(worker_class, worker_class)
    threads = env.integer("GUNICORN_THREADS", 1, minimum=1)

    #: A worker that stops answering gunicorn's heartbeat for this long is killed.
    #: A sync worker answers it only between requests, so this must outlast the
    #: longest request: an export or an import, which PostgreSQL cancels after
    #: CRM_EXPORT_TIMEOUT_MS or CRM_IMPORT_TIMEOUT_MS (an export's 0: never, and
    #: then neither does gunicorn). A shorter timeout would cut a slow reader's
    #: export at an arbitrary row. Other requests are bounded by
    #: CRM_STATEMENT_TIMEOUT_MS (a bulk update by CRM_BULK_TIMEOUT_MS) long before.
    _export_ms = env.integer("CRM_EXPORT_TIMEOUT_MS", 600_000, minimum=0)
    _import_ms = env.integer("CRM_IMPORT_TIMEOUT_MS", 600_000, minimum=1)
    timeout = -(-max(_export_ms, _import_ms) // 1000) + 30 if _export_ms else 0

    #: On a restart, requests under way get this long to finish.
    graceful_timeout = 5
except ConfigurationError as error:
    stop(error)

#: gunicorn 25.1+ opens a control socket by default at one path per user
#: ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): every gunicorn root runs
#: (the API's, the floor's, each test's) would unlink and take over the same
#: socket, and anyone who can reach it could resize or stop the server. This
#: project is managed by signals (HUP, TERM) and its supervisor; no socket.
control_socket_disable = True

#: gunicorn's limits on a request's head: a request line of 4 kB, a header
#: line of 4 kB, where nginx in front (deploy/nginx/crm-proxy.conf) lets
#: through 16 kB a line. Over HTTP/2 nginx cannot answer a header field
#: longer than its buffer (it ends the connection), and the request line of
#: HTTP/2 is not a line: nginx held it to no limit. Set here, behind nginx,
#: the limits are the same whichever protocol the client spoke, and their
#: refusals are JSON (crm/gunicorn_workers.py): 414 for the line, 431 for a
#: header. Any number of headers (32,768, gunicorn's most): nginx bounds
#: their total.
limit_request_line = 4094
limit_request_fields = 32768
limit_request_field_size = 4096


#: An access log (``--access-logfile``) names the path without its query,
#: whose values may be personal data, and the request's id. The application's
#: own request log (``CRM_ACCESS_LOG``) says more: database time, user, route.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'


# -- metrics of every worker (prometheus-client's multiprocess mode) ----------


def on_starting(server) -> None:
    """In the master, before any worker is forked: the settings are read once
    here, so a bad one stops gunicorn with its one line instead of every
    worker's traceback."""
    check_settings(server)
    multiprocess.prepare_directory()
    if any(address.startswith("unix:") for address in server.cfg.bind) and not env.integer(
        "CRM_NUM_PROXIES", 0, minimum=0
    ):
        # A Unix socket has a proxy in front; the application must be told,
        # or it cannot tell its clients apart (the workers say so too, once).
        server.log.warning(
            "gunicorn listens on a Unix socket, so a proxy is in front, but CRM_NUM_PROXIES "
            "is 0: set it to the number of proxies that set X-Forwarded-For (1 behind the "
            "README's nginx), or every client looks alike to the rate limits"
        )


def check_settings(server) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 (imports the settings module: reads every variable)
    except SetupError as error:
        if server.pidfile is not None:
            server.pidfile.unlink()
        stop(error)


def post_worker_init(worker) -> None:
    """In each worker, once it has loaded the application (which read what
    requests need, see crm.observability.health) and before it accepts a
    connection: what requests need is kept current from now on (the planning
    sample follows a load's swap)."""
    from crm.observability import health

    health.serve()


def child_exit(server, worker) -> None:
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    multiprocess.remove_directory()
    remove_slots_folder(os.getpid())

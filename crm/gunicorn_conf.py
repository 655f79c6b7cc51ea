"""How this project is served: ``gunicorn -c python:crm.gunicorn_conf crm.wsgi``.

gunicorn reads this module as its configuration file; each setting may be
overridden on the command line (``--bind``, ``--workers``) or by the
environment variables below. The benchmarks and the fault tests start gunicorn
with exactly this file, so what they measure is what the README tells an
operator to run.
"""

from __future__ import annotations

import os

from crm import env
from crm.observability import multiprocess

#: Where to listen. TLS ends at the proxy in front (see the README).
bind = env.string("CRM_BIND", "127.0.0.1:8000")

#: One worker per core, plus one to cover a worker waiting on I/O: these
#: requests spend most of their time on the CPU, in Python or in PostgreSQL
#: on the same machine (measured on 2 cores with 16 clients: p99 94 ms with 2
#: workers, 110 ms with 3, 130 ms with 5, for the same throughput).
workers = env.integer("GUNICORN_WORKERS", (os.cpu_count() or 1) + 1, minimum=1)

#: A worker that stops answering gunicorn's heartbeat for this long is killed.
timeout = 30

#: On a restart, requests under way get this long to finish.
graceful_timeout = 5


#: An access log (``--access-logfile``) names the path without its query,
#: whose values may be personal data, and the request's id. The application's
#: own request log (``CRM_ACCESS_LOG``) says more: database time, user, route.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms %({x-request-id}o)s'


# -- metrics of every worker (prometheus-client's multiprocess mode) ----------


def on_starting(server) -> None:
    multiprocess.prepare_directory()


def child_exit(server, worker) -> None:
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    multiprocess.remove_directory()

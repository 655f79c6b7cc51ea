"""WSGI entry point (gunicorn crm.wsgi)."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
# What django.core.wsgi.get_wsgi_application() does, with this project's handler.
django.setup(set_prefix=False)

from crm.handlers import ApiAwareHandler  # noqa: E402 (needs the apps loaded)
from crm.observability import health  # noqa: E402

application = ApiAwareHandler()  # what requests need is read as it is built
if sys.argv[1:2] == ["runserver"]:
    # Django's development server serves from this process: what requests
    # need is kept current too (gunicorn's workers: crm/gunicorn_conf.py's
    # post_worker_init). A test or a command that imports the application
    # to call it keeps no listening session open.
    health.serve()

"""WSGI entry point (gunicorn crm.wsgi)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
# What django.core.wsgi.get_wsgi_application() does, with this project's handler.
django.setup(set_prefix=False)

from crm.handlers import ApiAwareHandler  # noqa: E402 (needs the apps loaded)
from crm.observability import health  # noqa: E402

application = ApiAwareHandler()
# Every process that imports this serves (gunicorn's workers, runserver):
# what requests need is loaded before the first one, and kept current.
health.serve()

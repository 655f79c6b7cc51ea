"""Errors that stop the project from starting, each with one clear cause.

``manage.py`` prints them as a single line instead of a traceback, and the API
turns :class:`DatabaseUnavailable` into a JSON 503.
"""

from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError


class SetupError(Exception):
    """Base class: a setting is wrong, or the database cannot be started or reached."""


class ConfigurationError(SetupError, ImproperlyConfigured):
    """An environment variable (such as ``DATABASE_URL``) is malformed or missing."""


class EmbeddedPostgresError(SetupError):
    """The embedded PostgreSQL server cannot be initialised, started or stopped."""


class DatabaseUnavailable(SetupError, OperationalError):
    """A connection attempt failed.

    It subclasses Django's ``OperationalError`` so that code which already
    handles a lost database (Django's own test-database creation, the API's
    503 handler) handles this one too. Django's error wrapper passes it through
    unchanged because it is not a psycopg exception.
    """

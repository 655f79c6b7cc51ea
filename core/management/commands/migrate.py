"""``migrate`` with the autodetector of :mod:`core.management.commands.makemigrations`,
so that it too reports generated triggers no migration has frozen yet."""

from __future__ import annotations

from django.core.management.commands import migrate

from .makemigrations import TriggerAutodetector


class Command(migrate.Command):
    autodetector = TriggerAutodetector

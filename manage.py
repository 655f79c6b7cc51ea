#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crm.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from crm.errors import SetupError

    try:
        # Read every setting first: Django would set a bad one aside for some
        # commands (help, shell, an unknown command) and carry on without
        # settings, or print it inside a traceback.
        settings.INSTALLED_APPS  # noqa: B018
        execute_from_command_line(sys.argv)
    except SetupError as exc:
        # A bad setting, or a database that cannot be configured or reached, is
        # an operator's problem with one cause; a traceback would only hide it.
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()

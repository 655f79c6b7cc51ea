"""PostgreSQL for this project: the embedded server and the Django backend.

``ENGINE = "crm.postgres"`` is Django's own PostgreSQL backend with two
additions (see :mod:`crm.postgres.base`): it starts the embedded server on the
first connection when the project runs without ``DATABASE_URL``, and it turns
a failed connection into one sentence that names where the settings came from.
"""

"""The statement timeout: a slow query is a JSON 503, and the worker moves on."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from core.dataset.loader import customer_dataset_replace
from core.tests.clients import api_client

URL = "/api/users/"


@pytest.mark.django_db(transaction=True)
def test_a_query_over_the_statement_timeout_is_a_json_503(settings):

    customer_dataset_replace(n=50, chunk=50)
    settings.CRM_STATEMENT_TIMEOUT_MS = 300
    client = api_client()
    client.get(URL)
    params = connection.get_connection_params()
    blocker = psycopg.connect(
        host=params["host"], port=params.get("port"), user=params["user"], dbname=params["dbname"]
    )
    try:
        # Another session holds the table: the list's query waits, and the
        # timeout cancels it.
        blocker.execute("LOCK TABLE core_customer_list IN ACCESS EXCLUSIVE MODE")
        response = client.get(f"{URL}?count=none")
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert "longer than this server allows" in response.json()["detail"]
    assert response["Retry-After"] == "5"
    assert client.get(URL).status_code == 200, "the next request is served normally"

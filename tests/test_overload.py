"""A request that cannot get a database connection in time (the pool exhausted under overload, the database
restarting) is answered 503 with Retry-After — JSON on the API — never a 500: clients and peers' outboxes
retry a 503."""

import pytest
from django.db import OperationalError
from psycopg_pool import PoolTimeout

from units import api as units_api

pytestmark = pytest.mark.django_db


def _exhausted(*args, **kwargs):
    try:
        raise PoolTimeout("couldn't get a connection after 10.00 sec")
    except PoolTimeout as exc:
        raise OperationalError("couldn't get a connection after 10.00 sec") from exc


def test_an_exhausted_pool_is_a_503_with_retry_after(api_client_for, dispatcher, monkeypatch):
    monkeypatch.setattr(units_api.UnitListApi, "get", _exhausted)
    client = api_client_for(dispatcher)
    client.raise_request_exception = False
    response = client.get("/api/v1/units/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["code"] == "unavailable"


def test_any_other_error_is_still_a_500(api_client_for, dispatcher, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(units_api.UnitListApi, "get", broken)
    client = api_client_for(dispatcher)
    client.raise_request_exception = False
    assert client.get("/api/v1/units/").status_code == 500

"""Login throttling (django-axes): wrong passwords lock out that account from that address."""

import re

import pytest
from django.test import Client


@pytest.fixture
def throttled(settings):
    settings.AXES_ENABLED = True


def _login(password: str, address: str = "203.0.113.5"):
    client = Client(REMOTE_ADDR=address)
    response = client.post("/login/", {"username": "despachador", "password": password})
    return response, "sessionid" in client.cookies


def test_five_wrong_passwords_lock_the_account_out_from_that_address(throttled, make_user):
    make_user("dispatcher", "despachador", password="la-buena-2026")
    statuses = [_login("mala")[0].status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure locks out
    response, logged_in = _login("la-buena-2026")
    assert response.status_code == 429 and not logged_in  # locked out: even the right password
    _, logged_in = _login("la-buena-2026", address="198.51.100.8")
    assert logged_in  # the account itself still works from elsewhere


def test_a_success_resets_the_count(throttled, make_user):
    make_user("dispatcher", "despachador", password="la-buena-2026")
    for _ in range(4):
        _login("mala")
    assert _login("la-buena-2026")[1]
    for _ in range(4):
        _login("mala")
    assert _login("la-buena-2026")[1]


def test_a_logged_in_request_reads_the_user_with_the_centre_in_one_query(make_user):
    """accounts.backends: the session's user comes with its centre (the middleware and every centre-scoped view
    read it), not a second query per request."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_user("dispatcher", "despachador", password="la-buena-2026")
    client = Client()
    assert client.post("/login/", {"username": "despachador", "password": "la-buena-2026"}).status_code == 302
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/incidents/").status_code == 200
    user_reads = [q["sql"] for q in queries if re.search(r'FROM "?accounts_user"?\b', q["sql"])]
    assert len(user_reads) == 1 and "cad_center" in user_reads[0]
    assert not [q for q in queries if re.search(r'FROM "?cad_center"?\b', q["sql"])]

"""Login throttling (django-axes): wrong passwords lock out that account from that address."""

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

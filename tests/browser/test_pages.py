"""The server-rendered console pages (Django test client; no browser needed): who gets which page,
what each page carries, and the English catalogue."""

import json
import re

import pytest
from django.test import Client

from accounts.models import Role
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_as(center):
    def make(role: str, **kwargs) -> Client:
        client = Client()
        client.force_login(UserFactory(username=f"u-{role}", role=role, center=center, **kwargs))
        return client

    return make


@pytest.mark.parametrize(
    ("role", "target"),
    [
        (Role.CALL_TAKER, "/console/intake/"),
        (Role.DISPATCHER, "/console/"),
        (Role.SUPERVISOR, None),  # the dashboard when it exists, else the console
        (Role.ADMINISTRATOR, None),
    ],
)
def test_home_sends_each_role_to_its_screen(client_as, role, target):
    response = client_as(role).get("/")
    assert response.status_code == 302
    if target:
        assert response["Location"] == target
    else:
        assert response["Location"] in ("/dashboard/", "/console/")


def test_pages_require_login():
    for path in ("/", "/console/", "/console/intake/", "/console/intake/089/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path


@pytest.mark.parametrize("role", [Role.DEVICE, Role.PEER])
def test_service_accounts_get_no_screens(client_as, role):
    client = client_as(role)
    for path in ("/", "/console/", "/console/intake/", "/console/intake/089/"):
        assert client.get(path).status_code == 403, path


def test_console_page_carries_targets_and_config(client_as, settings):
    settings.CAD = {**settings.CAD, "TARGET_DISPATCH_S": 150}
    html = client_as(Role.DISPATCHER).get("/console/").content.decode()
    assert 'data-target-dispatch-s="150"' in html
    assert 'data-target-on-scene-s="600"' in html and 'data-target-minimum-data-s="90"' in html
    config = json.loads(
        re.search(r'<script id="cad-config" type="application/json">(.*?)</script>', html).group(1)
    )
    assert config["can_dispatch"] is True
    assert config["targets"]["dispatch_s"] == 150
    assert "dispatched" not in config["unit_transitions"]["available"]
    assert 'src="/static/console/console.js"' in html and 'type="module"' in html
    assert "Consola de despacho" in html


def test_call_taker_console_cannot_dispatch(client_as):
    html = client_as(Role.CALL_TAKER).get("/console/").content.decode()
    assert '"can_dispatch": false' in html
    assert 'id="d-recs"' not in html and 'id="close-form"' not in html


def test_911_intake_has_caller_fields_and_089_has_none(client_as):
    client = client_as(Role.CALL_TAKER)
    intake = client.get("/console/intake/").content.decode()
    assert 'id="caller_name"' in intake and 'id="callback_number"' in intake
    tip = client.get("/console/intake/089/").content.decode()
    for needle in ("caller_name", "callback_number", "Número de devolución", "Quien llama"):
        assert needle not in tip
    assert '"line": "089"' in tip


def test_english_is_selectable(client_as):
    client = client_as(Role.DISPATCHER)
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/console/"})
    assert response.status_code == 302
    html = client.get("/console/").content.decode()
    assert "Dispatch console" in html and "Unit board" in html
    assert '"conn_open": "Online"' in html
    spanish = client_as(Role.SUPERVISOR).get("/console/").content.decode()
    assert "Tablero de unidades" in spanish

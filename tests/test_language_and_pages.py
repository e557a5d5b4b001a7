"""Language (es-MX whatever the browser says; the user's choice remembered, on the user too), the centre's
time zone in server-rendered times, styled 403/404 pages in Spanish, and the favicon."""

from datetime import UTC, datetime

import pytest
from django.test import Client

from accounts.models import Role
from dashboard.models import RollupWatermark
from dashboard.rollups import WATERMARK
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def login(center):
    def make(role: str, username: str | None = None) -> tuple[Client, object]:
        user = UserFactory(username=username or f"u-{role}", role=role, center=center)
        client = Client(HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")  # an English workstation browser
        client.force_login(user)
        return client, user

    return make


def test_spanish_whatever_the_browser_says_and_the_choice_is_remembered(login):
    client, user = login(Role.DISPATCHER)
    page = client.get("/console/")
    assert '<html lang="es-mx">' in page.content.decode() and "Tablero de unidades" in page.content.decode()
    assert page["Content-Language"] == "es-mx"
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/console/"})
    assert response.status_code == 302 and response.cookies["cad_language"].value == "en"
    user.refresh_from_db()
    assert user.language == "en"
    assert "Unit board" in client.get("/console/").content.decode()
    # Another workstation (no cookie): the choice saved on the user applies.
    elsewhere = Client()
    elsewhere.force_login(user)
    assert "Unit board" in elsewhere.get("/console/").content.decode()


def test_styled_forbidden_and_not_found_pages_in_spanish(login):
    client, _user = login(Role.CALL_TAKER)
    forbidden = client.get("/dashboard/")
    html = forbidden.content.decode()
    assert forbidden.status_code == 403
    assert "Esta pantalla no corresponde a su rol" in html and 'class="topbar"' in html
    assert "favicon.svg" in html and "Ir a mi pantalla" in html
    missing = client.get("/no-existe/")
    assert missing.status_code == 404 and "No existe esta página" in missing.content.decode()
    favicon = client.get("/favicon.ico")
    assert favicon.status_code == 301 and favicon["Location"].endswith("favicon.svg")


def test_server_rendered_times_are_in_the_centres_time_zone(login, center):
    RollupWatermark.objects.create(
        name=WATERMARK,
        since=datetime(2026, 11, 1, tzinfo=UTC),
        last_run_at=datetime(2026, 11, 10, 12, 0, tzinfo=UTC),
    )
    client, _user = login(Role.SUPERVISOR)
    assert "10/11/2026 06:00:00 CST" in client.get("/dashboard/kpis/").content.decode()
    center.timezone = "America/Tijuana"
    center.save()
    assert "10/11/2026 04:00:00 PST" in client.get("/dashboard/kpis/").content.decode()


def test_logging_out_lands_on_a_login_page_that_says_so(login):
    client, _user = login(Role.DISPATCHER)
    response = client.post("/logout/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/login/")
    page = response.content.decode()
    assert "Sesión cerrada. Puede cerrar esta ventana o volver a entrar." in page
    # Said once: a later visit to the login page is the bare form again.
    assert "Sesión cerrada" not in client.get("/login/").content.decode()
    assert client.get("/console/").status_code == 302  # and the session is really gone

"""No 5xx on any input: each test is a reproduction from the hardening review, answered with a clear 4xx
(or accepted and normalised) instead of a 500."""

import csv
import io
from datetime import UTC, timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.tokens import issue_token
from tests.factories import UnitFactory, new_incident_call, open_incident
from units.models import AvlPosition

DEEP = "[" * 1000 + "]" * 1000


@pytest.fixture
def device_client(make_user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(make_user(Role.DEVICE, 'gps'))}")
    return client


@pytest.mark.parametrize("offset", ["+16:00", "+23:59", "-20:30"])
def test_avl_fix_with_an_offset_postgresql_rejects_is_stored_in_utc(db, center, device_client, offset):
    unit = UnitFactory(center=center)
    local = (timezone.now() - timedelta(minutes=5)).astimezone(UTC).replace(tzinfo=None, microsecond=0)
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = map(int, offset[1:].split(":"))
    shift = sign * timedelta(hours=hours, minutes=minutes)
    stamp = (local + shift).isoformat(timespec="seconds") + offset  # the same instant, written far from UTC
    fix = {"unit_id": unit.id, "lat": 19.3, "lon": -99.6, "recorded_at": stamp}
    response = device_client.post("/api/v1/avl/positions", {"positions": [fix]}, format="json")
    assert response.status_code == 202, response.content
    stored = AvlPosition.objects.get(unit=unit).recorded_at
    assert stored == local.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "path", ["/api/v1/kpis/?exact=true&from={t}", "/api/v1/exports/incidents.csv?from={t}"]
)
def test_kpis_and_the_export_accept_any_offset(supervisor, api_client_for, path):
    response = api_client_for(supervisor).get(path.format(t="2026-01-01T00:00:00%2B20:00"))
    assert response.status_code == 200
    if response.streaming:
        assert b"".join(response.streaming_content)  # the export answers (it never did)


@pytest.mark.parametrize("path", ["/api/v1/calls/", "/api/v1/avl/positions"])
def test_thousand_deep_json_is_a_400(call_taker, make_user, api_client_for, path):
    client = api_client_for(call_taker if "calls" in path else make_user(Role.DEVICE, "gps"))
    response = client.post(path, DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize("body", [b"{bad json", b'{"line": "911",}', b"\xff\xfe{}", b"[1, 2"])
def test_a_malformed_body_is_a_400_in_the_users_language(call_taker, api_client_for, body):
    response = api_client_for(call_taker).post("/api/v1/calls/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"message": "JSON inválido.", "code": "parse_error", "fields": {}}


@pytest.mark.parametrize("body", [b"null", b"[1, 2]", b'"texto"'])
def test_a_body_that_is_not_an_object_is_refused_in_spanish(
    center, dispatcher, accident_type, api_client_for, body
):
    """DRF's Spanish catalogue left "No data provided" in English and named Python's types ("es un list")."""
    from tests.factories import open_incident

    folio = open_incident(center=center, by=dispatcher, incident_type=accident_type).folio
    response = api_client_for(dispatcher).post(
        f"/api/v1/incidents/{folio}/notes", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"non_field_errors": ["Se espera un objeto JSON."]}


def test_a_session_request_over_the_body_limit_gets_the_json_error(call_taker, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = Client()
    client.force_login(call_taker)
    response = client.post("/api/v1/calls/", {"narrative": "x" * 5000}, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


@pytest.mark.parametrize("path", ["/api/v1/escalations/abc/accept", "/api/v1/no-such-thing/"])
def test_an_api_path_that_matches_no_route_is_a_json_404(supervisor, api_client_for, path):
    """Not Django's HTML page: a client of the API reads the same JSON shape as every other error."""
    response = api_client_for(supervisor).post(path, {}, format="json")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "message": "No existe el recurso solicitado.",
        "code": "not_found",
        "fields": {},
    }


def test_a_page_that_does_not_exist_is_still_an_html_404(supervisor):
    client = Client()
    client.force_login(supervisor)
    response = client.get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/api/v1/incidents/", "/api/v1/interstate/audit"])
@pytest.mark.parametrize(
    ("query", "field"), [("limit=abc", "limit"), ("limit=0", "limit"), ("offset=-1", "offset")]
)
def test_a_page_limit_or_offset_that_is_not_a_whole_number_is_a_400_naming_it(
    supervisor, api_client_for, path, query, field
):
    """DRF silently falls back to its defaults; a client that asked for something else should know."""
    response = api_client_for(supervisor).get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    minimum = 0 if field == "offset" else 1
    assert response.json()["fields"] == {field: [f"Número entero mayor o igual que {minimum}."]}
    assert api_client_for(supervisor).get(f"{path}?limit=2&offset=0").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/incidents/", "/api/v1/interstate/audit", "/api/v1/units/"])
def test_a_huge_page_limit_is_capped_not_a_database_error(supervisor, api_client_for, path):
    """`limit=10**20` reached PostgreSQL's LIMIT (bigint out of range: a 500) where no cap was set."""
    from interstate.models import PeerRequestLog

    PeerRequestLog.objects.create(peer_code="X", direction="inbound", method="GET", path="/", result="x")
    response = api_client_for(supervisor).get(f"{path}?limit={10**20}")
    assert response.status_code == 200, response.content


def test_the_incident_export_neutralises_spreadsheet_formulas(
    center, supervisor, api_client_for, accident_type
):
    incident = open_incident(center=center, by=supervisor, incident_type=accident_type)
    incident.disposition = '=HYPERLINK("http://evil.example","x")'  # free text a dispatcher typed
    incident.save()
    start = (timezone.now() - timedelta(days=1)).date().isoformat()
    response = api_client_for(supervisor).get(f"/api/v1/exports/incidents.csv?from={start}")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    assert "'" + incident.disposition in cells
    assert not any(cell.startswith(("=", "+", "@")) for cell in cells)


def test_the_api_body_of_a_new_call_still_works(call_taker, api_client_for, accident_type):
    """The parser swap keeps ordinary JSON bodies working."""
    assert api_client_for(call_taker).post("/api/v1/calls/", new_incident_call()).status_code == 201

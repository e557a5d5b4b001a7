"""Call intake over the API: 089 anonymity down to the table, duplicate suggestions, bad input."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from cad.models import Event
from incidents.models import Call, Incident, Line, TimelineEntry
from tests.factories import IncidentTypeFactory

pytestmark = pytest.mark.django_db

TOLUCA = (19.2826, -99.6557)


def _counts():
    return (
        Call.objects.count(),
        Incident.objects.count(),
        TimelineEntry.objects.count(),
        Event.objects.count(),
    )


def _post_call(client, **fields):
    body = {"line": "911", "disposition": "new_incident", "incident_type_code": "10104"}
    body.update(fields)
    return client.post("/api/v1/calls/", body, format="json")


# --- 089 anonymity ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["caller_name", "callback_number"])
def test_089_with_caller_identity_is_refused_and_nothing_written(
    field, call_taker, api_client_for, accident_type
):
    response = _post_call(api_client_for(call_taker), line="089", **{field: "5512345678"})
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert Call.objects.count() == 0
    assert Incident.objects.count() == 0


def test_089_refuses_even_empty_caller_keys(call_taker, api_client_for, accident_type):
    response = _post_call(api_client_for(call_taker), line="089", caller_name=None)
    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["caller_name"]
    assert Call.objects.count() == 0


def test_valid_089_stores_nulls_in_the_raw_table(call_taker, api_client_for, accident_type):
    response = _post_call(
        api_client_for(call_taker), line="089", narrative="Venta de droga en el parque", lat=19.3, lon=-99.6
    )
    assert response.status_code == 201, response.json()
    call = response.json()["call"]
    assert call["line"] == "089"
    assert "caller_name" not in call and "callback_number" not in call
    with connection.cursor() as cursor:
        cursor.execute("SELECT caller_name, callback_number FROM incidents_call")
        assert cursor.fetchall() == [(None, None)]

    folio = call["incident"]
    detail = api_client_for(call_taker).get(f"/api/v1/incidents/{folio}/").json()
    assert "caller_name" not in detail["calls"][0]
    assert "callback_number" not in detail["calls"][0]


def test_database_refuses_caller_identity_on_089(center, call_taker):
    with pytest.raises(IntegrityError), transaction.atomic():
        Call.objects.create(
            center=center,
            line=Line.ANONYMOUS,
            disposition="informational",
            arrived_at=timezone.now(),
            caller_name="Juan",
            call_taker=call_taker,
        )
    assert Call.objects.count() == 0


def test_911_keeps_caller_identity(call_taker, api_client_for, accident_type):
    response = _post_call(api_client_for(call_taker), caller_name="Ana", callback_number="+52 722 123 4567")
    assert response.status_code == 201
    assert Call.objects.get().caller_name == "Ana"


# --- Duplicate suggestions --------------------------------------------------------------------


def test_duplicates_offer_only_near_open_same_subtipo(call_taker, dispatcher, api_client_for, accident_type):
    IncidentTypeFactory(code="10105", name="Atropellamiento")  # same subtipo 101
    IncidentTypeFactory(code="30101", name="Robo a transeúnte", priority="MEDIA")  # other type
    client = api_client_for(call_taker)
    near = _post_call(client, lat=TOLUCA[0], lon=TOLUCA[1]).json()["call"]["incident"]
    far = _post_call(client, lat=TOLUCA[0] + 0.05, lon=TOLUCA[1]).json()["call"]["incident"]  # ~5.5 km
    other = _post_call(client, incident_type_code="30101", lat=TOLUCA[0], lon=TOLUCA[1]).json()["call"]
    closed = _post_call(client, lat=TOLUCA[0], lon=TOLUCA[1] + 0.0005).json()["call"]["incident"]
    assert (
        api_client_for(dispatcher).post(f"/api/v1/incidents/{closed}/close", {"disposition": "x"}).status_code
        == 200
    )

    # A new call ~100 m north of `near`.
    probe = {"lat": TOLUCA[0] + 0.0009, "lon": TOLUCA[1], "type": "10105"}
    response = client.get("/api/v1/calls/duplicates", probe)
    assert response.status_code == 200, response.json()
    candidates = response.json()["candidates"]
    assert [c["folio"] for c in candidates] == [near]
    assert 80 < candidates[0]["distance_m"] < 120
    assert far not in {c["folio"] for c in candidates}
    assert other["incident"] not in {c["folio"] for c in candidates}

    # The call intake answer carries the same suggestion.
    response = _post_call(
        client, incident_type_code="10105", disposition="informational", lat=probe["lat"], lon=probe["lon"]
    )
    assert response.status_code == 201, response.json()
    assert [c["folio"] for c in response.json()["duplicate_candidates"]] == [near]


def test_duplicates_query_is_validated(call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    assert client.get("/api/v1/calls/duplicates", {"lat": 95, "lon": -99}).status_code == 400
    assert client.get("/api/v1/calls/duplicates", {"lat": 19}).status_code == 400
    assert client.get("/api/v1/calls/duplicates", {"lat": 19, "lon": -99, "type": "99999"}).status_code == 400


# --- Bad input: 4xx and nothing written -------------------------------------------------------


def test_malformed_json_is_400(call_taker, api_client_for, accident_type):
    before = _counts()
    response = api_client_for(call_taker).post(
        "/api/v1/calls/", data='{"line": "911", "disposition": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert _counts() == before


@pytest.mark.parametrize(
    ("fields", "error_field"),
    [
        ({"lat": 95, "lon": -99.6}, "lat"),
        ({"lat": 19.3, "lon": -181}, "lon"),
        ({"lat": 19.3}, "lon"),
        ({"lat": True, "lon": -99.6}, "lat"),  # Python reads true as 1.0
        ({"lat": 19.3, "lon": False}, "lon"),
        ({"incident_type_code": "99999"}, "incident_type_code"),
        ({"incident_type_code": "1010"}, "incident_type_code"),
        ({"line": "066"}, "line"),
        ({"disposition": "lost"}, "disposition"),
        ({"arrived_at": "2999-01-01T00:00:00Z"}, "arrived_at"),
        ({"callback_number": "call me maybe"}, "callback_number"),
    ],
)
def test_bad_call_input_is_a_field_error(fields, error_field, call_taker, api_client_for, accident_type):
    before = _counts()
    response = _post_call(api_client_for(call_taker), **fields)
    assert response.status_code == 400, response.json()
    assert error_field in response.json()["fields"], response.json()
    assert _counts() == before


def test_inactive_type_is_refused(call_taker, api_client_for, accident_type):
    IncidentTypeFactory(code="10199", name="Retirado", active=False)
    before = _counts()
    response = _post_call(api_client_for(call_taker), incident_type_code="10199")
    assert response.status_code == 400
    assert "incident_type_code" in response.json()["fields"]
    assert _counts() == before


def test_improcedente_cannot_open_an_incident(call_taker, api_client_for, accident_type):
    IncidentTypeFactory(code="70101", name="Llamada de broma", tipo_name="Improcedente", priority="BAJA")
    client = api_client_for(call_taker)
    before = _counts()
    response = _post_call(client, incident_type_code="70101")
    assert 400 <= response.status_code < 500
    assert response.json()["code"] == "improcedente_not_dispatchable"
    assert _counts() == before

    ok = _post_call(client, incident_type_code="70101", disposition="improcedente")
    assert ok.status_code == 201
    assert ok.json()["call"]["incident"] is None
    assert Incident.objects.count() == 0


def test_answered_before_arrival_writes_nothing(call_taker, api_client_for, accident_type):
    now = timezone.now()
    before = _counts()
    response = _post_call(
        api_client_for(call_taker),
        arrived_at=now.isoformat(),
        answered_at=(now - timedelta(minutes=1)).isoformat(),
    )
    assert response.status_code == 400
    assert "answered_at" in response.json()["fields"]
    assert _counts() == before


def test_non_object_body_is_400(call_taker, api_client_for):
    response = api_client_for(call_taker).post("/api/v1/calls/", [1, 2], format="json")
    assert response.status_code == 400


# --- Linked disposition and release -----------------------------------------------------------


def test_linked_call_joins_the_incident_with_a_timeline_entry(call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    folio = _post_call(client, lat=19.3, lon=-99.6).json()["call"]["incident"]
    version = client.get(f"/api/v1/incidents/{folio}/").json()["version"]

    response = _post_call(client, line="089", disposition="linked", incident=folio, narrative="Otro testigo")
    assert response.status_code == 201, response.json()
    assert response.json()["call"]["incident"] == folio
    detail = client.get(f"/api/v1/incidents/{folio}/").json()
    assert [c["line"] for c in detail["calls"]] == ["911", "089"]
    assert detail["timeline"][-1]["kind"] == "call_linked"
    assert detail["version"] == version + 1

    missing = _post_call(client, disposition="linked", incident="MEX-2026-999999")
    assert missing.status_code == 404
    no_folio = _post_call(client, disposition="linked")
    assert no_folio.status_code == 400 and "incident" in no_folio.json()["fields"]
    assert Call.objects.count() == 2


def test_release_sets_released_at_once(call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    uid = _post_call(client).json()["call"]["uid"]
    first = client.post(f"/api/v1/calls/{uid}/release")
    assert first.status_code == 200
    released_at = first.json()["released_at"]
    assert released_at is not None
    assert client.post(f"/api/v1/calls/{uid}/release").json()["released_at"] == released_at
    assert Call.objects.get(uid=uid).released_at is not None
    assert client.post("/api/v1/calls/00000000-0000-0000-0000-000000000000/release").status_code == 404
    not_a_uuid = client.post("/api/v1/calls/abc/release")
    assert not_a_uuid.status_code == 404 and not_a_uuid.json()["code"] == "not_found"


def test_nul_bytes_are_client_errors_not_server_errors(make_user, accident_type):
    """PostgreSQL text cannot hold NUL: every path and parameter refuses it before the database sees it."""
    from rest_framework.test import APIClient

    from accounts.models import Role

    client = APIClient(raise_request_exception=False)
    client.force_authenticate(make_user(Role.ADMINISTRATOR, "adm"))
    fix = {"callsign": "A\x00", "lat": 1, "lon": 1, "recorded_at": timezone.now().isoformat()}
    statuses = {
        "folio": client.get("/api/v1/incidents/A%00B/").status_code,
        "close": client.post("/api/v1/incidents/A%00/close", {"disposition": "x"}).status_code,
        "cvegeo": client.get("/api/v1/jurisdictions/A%00B/").status_code,
        "type": client.get("/api/v1/incidents/?type=1%000").status_code,
        "jurisdiction": client.get("/api/v1/incidents/?jurisdiction=1%000").status_code,
        "agency": client.get("/api/v1/units/?agency=P%00E").status_code,
        "avl": client.post("/api/v1/avl/positions", {"positions": [fix]}, format="json").status_code,
        "link": _post_call(client, disposition="linked", incident="A\x00").status_code,
        "narrative": _post_call(client, narrative="a\x00b").status_code,
    }
    assert statuses == {
        "folio": 404,
        "close": 404,
        "cvegeo": 404,
        "type": 400,
        "jurisdiction": 400,
        "agency": 400,
        "avl": 400,
        "link": 400,
        "narrative": 400,
    }


def test_a_bad_callback_number_says_what_is_expected(call_taker, api_client_for, accident_type):
    """Not "Esta entrada no coincide con el formato requerido": the call-taker is told the format."""
    response = _post_call(api_client_for(call_taker), callback_number="cinco cinco")
    assert response.status_code == 400
    (message,) = response.json()["fields"]["callback_number"]
    assert "dígitos" in message and "55 1234 5678" in message

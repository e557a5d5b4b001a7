"""Units over the API: status transitions, optimistic locking, AVL batches, device tokens."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.tokens import issue_token
from cad.models import Event
from incidents.models import Assignment
from tests.factories import UnitFactory, new_incident_call
from units.models import AvlPosition, Unit, UnitStatus, UnitStatusChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def incident_folio(call_taker, api_client_for, accident_type):
    response = api_client_for(call_taker).post(
        "/api/v1/calls/",
        new_incident_call(),
    )
    return response.json()["call"]["incident"]


@pytest.fixture
def device_client(make_user):
    token = issue_token(make_user(Role.DEVICE, "avl-gateway"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def _fix(unit, minutes_ago=0.0, **overrides):
    fix = {
        "unit_id": unit.id,
        "lat": 19.30,
        "lon": -99.60,
        "recorded_at": (timezone.now() - timedelta(minutes=minutes_ago)).isoformat(),
        "speed_kmh": 42.5,
        "heading": 90,
    }
    fix.update(overrides)
    return fix


# --- Status transitions -----------------------------------------------------------------------


def test_available_to_on_scene_is_409(center, dispatcher, api_client_for):
    unit = UnitFactory(center=center)
    response = api_client_for(dispatcher).post(f"/api/v1/units/{unit.id}/status", {"status": "on_scene"})
    assert response.status_code == 409
    assert response.json()["code"] == "invalid_transition"
    unit.refresh_from_db()
    assert unit.status == UnitStatus.AVAILABLE
    assert not UnitStatusChange.objects.exists()


def test_dispatched_only_by_assignment(center, dispatcher, api_client_for):
    unit = UnitFactory(center=center)
    response = api_client_for(dispatcher).post(f"/api/v1/units/{unit.id}/status", {"status": "dispatched"})
    assert response.status_code == 409
    assert "status" in response.json()["fields"]


def test_out_of_service_unit_cannot_be_assigned(center, dispatcher, api_client_for, incident_folio):
    client = api_client_for(dispatcher)
    unit = UnitFactory(center=center)
    assert client.post(f"/api/v1/units/{unit.id}/status", {"status": "out_of_service"}).status_code == 200
    response = client.post(f"/api/v1/incidents/{incident_folio}/assignments", {"unit_id": unit.id})
    assert response.status_code == 409
    assert response.json()["code"] == "unit_not_available"
    assert not Assignment.objects.exists()


def test_assigning_an_unknown_unit_is_404(dispatcher, api_client_for, incident_folio):
    response = api_client_for(dispatcher).post(
        f"/api/v1/incidents/{incident_folio}/assignments", {"unit_id": 999999}
    )
    assert response.status_code == 404


def test_stale_if_match_is_412(center, dispatcher, api_client_for):
    client = api_client_for(dispatcher)
    unit = UnitFactory(center=center)
    first = client.post(f"/api/v1/units/{unit.id}/status", {"status": "off_duty"}, HTTP_IF_MATCH='"1"')
    assert first.status_code == 200, first.json()
    assert first["ETag"] == '"2"'
    stale = client.post(f"/api/v1/units/{unit.id}/status", {"status": "available"}, HTTP_IF_MATCH='"1"')
    assert stale.status_code == 412
    assert stale.json()["fields"]["version"] == ["2"]
    assert Unit.objects.get(pk=unit.id).status == UnitStatus.OFF_DUTY
    bad = client.post(f"/api/v1/units/{unit.id}/status", {"status": "available"}, HTTP_IF_MATCH="yesterday")
    assert bad.status_code == 400


def test_unit_list_reports_position_age_and_staleness(center, call_taker, api_client_for):
    fresh = UnitFactory(center=center, capabilities=["ambulance"])
    stale = UnitFactory(center=center, position_at=timezone.now() - timedelta(hours=2))
    client = api_client_for(call_taker)
    rows = {u["id"]: u for u in client.get("/api/v1/units/").json()}
    assert rows[fresh.id]["stale"] is False
    assert rows[fresh.id]["position_age_s"] < 60
    assert rows[stale.id]["stale"] is True
    assert rows[fresh.id]["capabilities"] == ["ambulance"]
    assert [u["id"] for u in client.get("/api/v1/units/", {"capability": "ambulance"}).json()] == [fresh.id]
    assert client.get("/api/v1/units/", {"status": "on_scene"}).json() == []
    assert client.get("/api/v1/units/", {"status": "flying"}).status_code == 400
    assert len(client.get("/api/v1/units/", {"agency": "PE"}).json()) == 2
    assert client.get(f"/api/v1/units/{fresh.id}/").json()["callsign"] == fresh.callsign
    assert client.get("/api/v1/units/999999/").status_code == 404


# --- AVL --------------------------------------------------------------------------------------


def test_avl_batch_moves_units_and_writes_track(center, device_client, call_taker, api_client_for):
    ten_minutes_ago = timezone.now() - timedelta(minutes=10)
    first = UnitFactory(center=center, position_at=ten_minutes_ago)
    second = UnitFactory(center=center, callsign="AMB-07", position_at=ten_minutes_ago)
    batch = [
        _fix(first, minutes_ago=2, lat=19.31),
        _fix(first, minutes_ago=1, lat=19.32),  # newest of `first`
        {"callsign": "AMB-07", "lat": 19.40, "lon": -99.50, "recorded_at": timezone.now().isoformat()},
    ]
    response = device_client.post("/api/v1/avl/positions", {"positions": batch}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json() == {"accepted": 3}
    assert AvlPosition.objects.count() == 3
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.lat, first.lon) == (19.32, -99.60)
    assert (second.lat, second.lon) == (19.40, -99.50)
    assert Event.objects.filter(type="units.positions", stream="avl").count() == 1

    track = api_client_for(call_taker).get(f"/api/v1/units/{first.id}/track", {"minutes": 60}).json()
    assert [p["lat"] for p in track["positions"]] == [19.31, 19.32]
    assert (
        api_client_for(call_taker).get(f"/api/v1/units/{first.id}/track", {"minutes": 5000}).status_code
        == 400
    )


def test_oversized_avl_batch_is_413_and_writes_nothing(center, device_client, settings):
    settings.CAD = {**settings.CAD, "AVL_MAX_BATCH": 10}
    unit = UnitFactory(center=center)
    response = device_client.post("/api/v1/avl/positions", {"positions": [_fix(unit)] * 11}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "batch_too_large"
    assert "10" in response.json()["message"]
    assert AvlPosition.objects.count() == 0


def test_bad_avl_coordinates_are_per_index_field_errors(center, device_client):
    unit = UnitFactory(center=center)
    before = (unit.lat, unit.lon)
    batch = [
        _fix(unit),
        _fix(unit),
        _fix(unit),
        _fix(unit, lat=95.0),
        _fix(unit, lon="west"),
        _fix(unit, recorded_at="2026-01-01T10:00:00"),  # no timezone
        _fix(unit, recorded_at=(timezone.now() + timedelta(minutes=5)).isoformat()),
        {"callsign": "NOPE", "lat": 19.3, "lon": -99.6, "recorded_at": timezone.now().isoformat()},
        _fix(unit, heading=400, speed_kmh=True),
        "not an object",
    ]
    response = device_client.post("/api/v1/avl/positions", {"positions": batch}, format="json")
    assert response.status_code == 400
    errors = response.json()["fields"]["positions"]
    assert set(errors) == {"3", "4", "5", "6", "7", "8", "9"}
    assert list(errors["3"]) == ["lat"]
    assert list(errors["4"]) == ["lon"]
    assert list(errors["5"]) == ["recorded_at"] and list(errors["6"]) == ["recorded_at"]
    assert list(errors["7"]) == ["callsign"]
    assert set(errors["8"]) == {"heading", "speed_kmh"}
    assert AvlPosition.objects.count() == 0
    unit.refresh_from_db()
    assert (unit.lat, unit.lon) == before


def test_avl_rejects_units_of_other_centres_and_bad_shapes(center, device_client):
    from tests.factories import CenterFactory

    foreign = UnitFactory(center=CenterFactory(code="CDMX"))
    response = device_client.post("/api/v1/avl/positions", {"positions": [_fix(foreign)]}, format="json")
    assert response.status_code == 400
    assert device_client.post("/api/v1/avl/positions", {"positions": "x"}, format="json").status_code == 400
    assert device_client.post("/api/v1/avl/positions", [1], format="json").status_code == 400
    assert AvlPosition.objects.count() == 0


def test_device_token_posts_positions_but_cannot_read_incidents(center, device_client, incident_folio):
    unit = UnitFactory(center=center)
    assert (
        device_client.post("/api/v1/avl/positions", {"positions": [_fix(unit)]}, format="json").status_code
        == 202
    )
    assert device_client.get("/api/v1/incidents/").status_code == 403
    assert device_client.get(f"/api/v1/incidents/{incident_folio}/").status_code == 403
    assert device_client.get("/api/v1/units/").status_code == 403


def test_odd_ids_and_versions_are_client_errors(center, dispatcher):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(dispatcher)
    unit = UnitFactory(center=center)
    assert client.get("/api/v1/units/%C2%B2/").status_code == 404  # "²" is a digit to str.isdigit
    assert client.get("/api/v1/units/-1/").status_code == 404
    assert client.get(f"/api/v1/units/{2**70}/track").status_code == 404
    assert client.get("/api/v1/units/", {"agency": "²"}).status_code == 200
    bad_version = client.post(f"/api/v1/units/{unit.id}/status", {"status": "off_duty"}, HTTP_IF_MATCH='"²"')
    assert bad_version.status_code == 400
    assert client.get("/api/v1/incidents/", {"limit": 10**30, "offset": 10**30}).status_code == 200

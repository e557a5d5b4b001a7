"""Dispatcher workflow rules over the REST API: coordinates checked (never a silent NULL), an incident
placed or corrected later, the incident lifecycle (attended, closed, reopen), recommendations that flag
far units, and manual dispatch of any available unit, several at once."""

import pytest

from geo.services import DATA_DIR, import_geojson_file
from incidents.models import Incident, IncidentStatus, TimelineEntry
from tests.factories import UnitFactory, new_incident_call
from units.models import UnitStatus

pytestmark = pytest.mark.django_db

TOLUCA = (19.2826, -99.6557)
TIJUANA = (32.5149, -117.0382)


@pytest.fixture
def edomex():
    """The centre's service area: Estado de México's INEGI boundary."""
    import_geojson_file(path=DATA_DIR / "15-estado-de-mexico.geojson")


@pytest.fixture
def client(dispatcher, api_client_for, accident_type, edomex):
    return api_client_for(dispatcher)


def _call(client, **overrides):
    return client.post("/api/v1/calls/", new_incident_call(**overrides), format="json")


@pytest.mark.parametrize(
    ("lat", "lon", "code", "fields"),
    [
        (99.5, -99.6, "invalid_coordinates", {"lat"}),
        (19.3, -199.6, "invalid_coordinates", {"lon"}),
        (-99.6557, 19.2826, "coordinates_swapped", {"lat", "lon"}),
        (19.2826, 99.6557, "missing_minus_sign", {"lon"}),
        (0, 0, "null_island", {"lat", "lon"}),
        (TIJUANA[0], TIJUANA[1], "outside_service_area", {"confirm_outside_area"}),
        (19.3, None, "invalid_coordinates", {"lon"}),
    ],
)
def test_bad_coordinates_are_field_errors_and_nothing_is_written(client, lat, lon, code, fields):
    response = _call(client, lat=lat, lon=lon)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == code
    assert set(body["fields"]) == fields
    assert Incident.objects.count() == 0


def test_an_out_of_area_point_says_where_it_lies_not_which_centre_this_is(client):
    """It read "fuera del área de servicio del centro (Ciudad de México)": as if this centre were CDMX's."""
    import_geojson_file(path=DATA_DIR / "09-ciudad-de-mexico.geojson")
    message = _call(client, lat=19.4326, lon=-99.1332).json()["message"]
    assert message == (
        "El punto (19.4326, -99.1332) cae en Ciudad de México, fuera del área de servicio de este centro. "
        "Confírmelo para continuar."
    )
    beyond = _call(client, lat=TIJUANA[0], lon=TIJUANA[1]).json()["message"]
    assert beyond.startswith(f"El punto ({TIJUANA[0]}, {TIJUANA[1]}) está fuera de los límites cargados")


def test_out_of_area_point_goes_through_once_confirmed_and_says_so(client):
    response = _call(client, lat=TIJUANA[0], lon=TIJUANA[1], confirm_outside_area=True)
    assert response.status_code == 201, response.json()
    assert response.json()["location"]["inside_service_area"] is False
    incident = Incident.objects.get()
    assert incident.outside_service_area and incident.lat == TIJUANA[0]
    assert incident.timeline.filter(kind=TimelineEntry.Kind.LOCATED, data__outside_service_area=True).exists()
    inside = _call(client, lat=TOLUCA[0], lon=TOLUCA[1]).json()
    assert inside["location"] == {
        "lat": TOLUCA[0],
        "lon": TOLUCA[1],
        "inside_service_area": True,
        "state": "Estado de México",
        "municipality": None,
    }


def test_a_device_outside_the_area_is_flagged_not_refused(center, dispatcher, accident_type, edomex):
    from incidents.models import Channel, LocationSource
    from incidents.services import take_call

    call = take_call(
        center=center,
        by=dispatcher,
        line="911",
        disposition="new_incident",
        incident_type=accident_type,
        channel=Channel.PANIC_BUTTON,
        lat=TIJUANA[0],
        lon=TIJUANA[1],
        location_source=LocationSource.SENSOR,
    )
    assert call.incident.outside_service_area and call.location_check.inside_service_area is False


def test_incident_without_coordinates_is_placed_later_and_recommendations_follow(client, center):
    folio = _call(client, lat=None, lon=None, address="Centro de Toluca").json()["call"]["incident"]
    no_location = client.get(f"/api/v1/incidents/{folio}/recommendations")
    assert no_location.status_code == 400 and no_location.json()["code"] == "no_location"
    UnitFactory(center=center, callsign="AMB-1", capabilities=["ambulance"])
    detail = client.get(f"/api/v1/incidents/{folio}/").json()
    bad = client.post(
        f"/api/v1/incidents/{folio}/location",
        {"lat": 0, "lon": 0, "source": "map", "version": detail["version"]},
        format="json",
    )
    assert bad.status_code == 400 and bad.json()["code"] == "null_island"
    placed = client.post(
        f"/api/v1/incidents/{folio}/location",
        {
            "lat": TOLUCA[0],
            "lon": TOLUCA[1],
            "source": "geocoder",
            "place": "Toluca de Lerdo",
            "version": detail["version"],
        },
        format="json",
    )
    assert placed.status_code == 200, placed.json()
    body = placed.json()
    assert (body["lat"], body["location_source"], body["state"]["cvegeo"]) == (TOLUCA[0], "geocoder", "15")
    assert any(e["kind"] == "located" and "Toluca de Lerdo" in e["text"] for e in body["timeline"])
    recs = client.get(f"/api/v1/incidents/{folio}/recommendations").json()
    assert recs["suggested_unit_ids"] and recs["incident_jurisdiction"]["state"] == "Estado de México"
    stale = client.post(
        f"/api/v1/incidents/{folio}/location",
        {"lat": 19.3, "lon": -99.6, "source": "map", "version": detail["version"]},
        format="json",
    )
    assert stale.status_code == 412
    patched = client.patch(
        f"/api/v1/incidents/{folio}/", {"lat": 99.5, "lon": -99.6, "version": body["version"]}, format="json"
    )
    assert patched.status_code == 400 and "lat" in patched.json()["fields"]


def test_far_units_are_flagged_never_suggested(client, center, settings):
    settings.CAD = {**settings.CAD, "RECOMMEND_MAX_ETA_S": 1800}
    folio = _call(client).json()["call"]["incident"]
    far = UnitFactory(center=center, callsign="AMB-9", capabilities=["ambulance"], lat=21.0, lon=-101.5)
    recs = client.get(f"/api/v1/incidents/{folio}/recommendations").json()
    ambulance = next(r for r in recs["requirements"] if r["capability"] == "ambulance")
    assert [c["unit_id"] for c in ambulance["candidates"]] == [far.id]
    assert ambulance["candidates"][0]["beyond_limit"] is True
    assert ambulance["candidates"][0]["limit_reason"] == "eta"
    assert ambulance["only_beyond_limit"] is True and ambulance["suggested"] == []
    assert far.id not in recs["suggested_unit_ids"]
    assert recs["limits"]["max_eta_s"] == 1800


def test_manual_dispatch_of_several_units_warns_about_capability(client, center):
    folio = _call(client).json()["call"]["incident"]
    patrol_2 = UnitFactory(center=center, callsign="PE-2", capabilities=["patrol"])
    patrol_10 = UnitFactory(center=center, callsign="PE-10", capabilities=["patrol"])
    fire = UnitFactory(center=center, callsign="BOM-3", capabilities=["fire_engine"])
    options = client.get(f"/api/v1/incidents/{folio}/dispatch-options?q=pe-").json()["units"]
    assert [o["callsign"] for o in options] == ["PE-2", "PE-10"]  # natural sort
    assert options[0]["distance_km"] is not None and options[0]["eta_s"] is not None
    fire_option = client.get(f"/api/v1/incidents/{folio}/dispatch-options?q=BOM").json()["units"][0]
    assert [w["code"] for w in fire_option["warnings"]] == ["missing_capability"]

    response = client.post(
        f"/api/v1/incidents/{folio}/dispatch",
        {"callsigns": ["bom-3"], "unit_ids": [patrol_2.id]},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert sorted(a["callsign"] for a in body["assignments"]) == ["BOM-3", "PE-2"]
    assert [w["code"] for w in body["warnings"]["BOM-3"]] == ["missing_capability"]
    assert Incident.objects.get(folio=folio).status == IncidentStatus.DISPATCHED

    # All or none: one busy unit refuses the whole request.
    refused = client.post(
        f"/api/v1/incidents/{folio}/dispatch", {"unit_ids": [patrol_10.id, fire.id]}, format="json"
    )
    assert refused.status_code == 409
    patrol_10.refresh_from_db()
    assert patrol_10.status == UnitStatus.AVAILABLE


def test_lifecycle_attended_closed_reopened(client, center, dispatcher):
    folio = _call(client).json()["call"]["incident"]
    unit = UnitFactory(center=center, callsign="AMB-1", capabilities=["ambulance"])
    client.post(f"/api/v1/incidents/{folio}/dispatch", {"unit_ids": [unit.id]}, format="json")
    for status in ("en_route", "on_scene", "available"):
        assert (
            client.post(f"/api/v1/units/{unit.id}/status", {"status": status}, format="json").status_code
            == 200
        )
    detail = client.get(f"/api/v1/incidents/{folio}/").json()
    assert detail["status"] == "attended"  # the last unit cleared: awaiting closure, not pending
    closed = client.post(
        f"/api/v1/incidents/{folio}/close", {"disposition": "Atendido"}, format="json"
    ).json()
    assert closed["status"] == "closed"
    refused = client.post(f"/api/v1/incidents/{folio}/dispatch", {"unit_ids": [unit.id]}, format="json")
    assert refused.status_code == 409 and refused.json()["code"] == "invalid_transition"
    assert client.post(f"/api/v1/incidents/{folio}/reopen", {"reason": " "}, format="json").status_code == 400
    reopened = client.post(
        f"/api/v1/incidents/{folio}/reopen",
        {"reason": "Vuelve a llamar", "version": closed["version"]},
        format="json",
    ).json()
    assert reopened["status"] == "pending" and reopened["closed_at"] is None
    assert reopened["timer_since"] == reopened["reopened_at"]
    assert reopened["first_on_scene_at"] == closed["first_on_scene_at"]  # history kept for the KPIs
    entry = reopened["timeline"][-1]
    assert (
        entry["kind"] == "reopened"
        and entry["by"] == dispatcher.username
        and "Vuelve a llamar" in entry["text"]
    )
    transitions = [
        (e.data["from"], e.data["to"])
        for e in TimelineEntry.objects.filter(
            incident__folio=folio, kind__in=["status", "closed", "reopened"]
        )
    ]
    assert transitions == [
        ("pending", "dispatched"),
        ("dispatched", "en_route"),
        ("en_route", "on_scene"),
        ("on_scene", "attended"),
        ("attended", "closed"),
        ("closed", "pending"),
    ]
    assert (
        client.post(f"/api/v1/incidents/{folio}/reopen", {"reason": "otra vez"}, format="json").status_code
        == 409
    )


def test_units_recalled_before_arrival_leave_the_incident_pending(client, center):
    folio = _call(client).json()["call"]["incident"]
    unit = UnitFactory(center=center)
    client.post(f"/api/v1/incidents/{folio}/dispatch", {"unit_ids": [unit.id]}, format="json")
    client.post(f"/api/v1/units/{unit.id}/status", {"status": "en_route"}, format="json")
    client.post(f"/api/v1/units/{unit.id}/status", {"status": "available"}, format="json")
    assert client.get(f"/api/v1/incidents/{folio}/").json()["status"] == "pending"


def test_transitions_table_refuses_what_it_does_not_declare():
    from cad.errors import InvalidTransition
    from incidents import lifecycle

    lifecycle.check_transition("pending", "dispatched")
    with pytest.raises(InvalidTransition):
        lifecycle.check_transition("on_scene", "pending")
    with pytest.raises(InvalidTransition):
        lifecycle.check_transition("closed", "on_scene")
    assert set(lifecycle.TRANSITIONS) == set(IncidentStatus.values)

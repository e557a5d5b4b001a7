"""The whole dispatch flow through the REST API: call → incident → recommendations → assignment →
en route → on scene → close, with every CAD interval timestamp and the event log checked."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from cad.models import Event, EventStream
from incidents.models import Assignment, Incident, TimelineEntry
from tests.factories import UnitFactory, new_incident_call
from units.models import Unit, UnitStatus

pytestmark = pytest.mark.django_db

SCENE = (19.2826, -99.6557)  # Toluca centre
KM_LAT = 1 / 111.0  # degrees of latitude per km


def _unit(center, capability, km_north, **kwargs):
    return UnitFactory(
        center=center,
        capabilities=[capability],
        lat=SCENE[0] + km_north * KM_LAT,
        lon=SCENE[1],
        **kwargs,
    )


def test_full_dispatch_flow_through_the_api(center, dispatcher, api_client_for, accident_type):
    client = api_client_for(dispatcher)
    now = timezone.now()
    arrived, answered = now - timedelta(seconds=40), now - timedelta(seconds=30)

    # 1. A 9-1-1 call opens an incident.
    response = client.post(
        "/api/v1/calls/",
        {
            "line": "911",
            "channel": "voice",
            "arrived_at": arrived.isoformat(),
            "answered_at": answered.isoformat(),
            "caller_name": "María López",
            "callback_number": "7221234567",
            "lat": SCENE[0],
            "lon": SCENE[1],
            "address": "Av. Independencia 100, Toluca",
            "location_source": "device",
            "narrative": "Choque con lesionados",
            "incident_type_code": "10104",
            "disposition": "new_incident",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    folio = body["call"]["incident"]
    assert re.fullmatch(r"MEX-\d{4}-000001", folio)
    assert body["call"]["caller_name"] == "María López"
    assert body["duplicate_candidates"] == []  # the incident it just opened is not its own duplicate

    # 2. Recommendations: right capability, nearest first; stale and busy units are skipped.
    near_amb = _unit(center, "ambulance", 0.5)
    far_amb = _unit(center, "ambulance", 3.0)
    _unit(center, "ambulance", 0.1, position_at=now - timedelta(hours=1))  # stale AVL
    _unit(center, "ambulance", 0.2, status=UnitStatus.EN_ROUTE)  # busy
    _unit(center, "fire_engine", 0.05)  # nearest, but not what the plan asks for
    patrol = _unit(center, "patrol", 1.0)

    response = client.get(f"/api/v1/incidents/{folio}/recommendations")
    assert response.status_code == 200, response.json()
    recs = response.json()
    assert recs["plan"] == {"ambulance": 1, "patrol": 1}
    by_capability = {r["capability"]: r for r in recs["requirements"]}
    assert [c["unit_id"] for c in by_capability["ambulance"]["candidates"]] == [near_amb.id, far_amb.id]
    assert [c["unit_id"] for c in by_capability["patrol"]["candidates"]] == [patrol.id]
    assert sorted(recs["suggested_unit_ids"]) == sorted([near_amb.id, patrol.id])  # jsonb reorders plans
    eta = by_capability["ambulance"]["candidates"]
    assert eta[0]["eta_s"] < eta[1]["eta_s"]

    # 3. Assign, then the unit reports en route and on scene.
    response = client.post(f"/api/v1/incidents/{folio}/assignments", {"unit_id": near_amb.id}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["callsign"] == near_amb.callsign
    statuses = [Incident.objects.get(folio=folio).status]
    for status in ("en_route", "on_scene"):
        response = client.post(f"/api/v1/units/{near_amb.id}/status", {"status": status}, format="json")
        assert response.status_code == 200, response.json()
        assert response.json()["status"] == status
        assert response.json()["incident"] == folio
        statuses.append(Incident.objects.get(folio=folio).status)
    assert statuses == ["dispatched", "en_route", "on_scene"]

    # 4. Detail (with ETag), then close with that version.
    detail = client.get(f"/api/v1/incidents/{folio}/")
    assert detail.status_code == 200
    version = detail.json()["version"]
    assert detail["ETag"] == f'"{version}"'
    assert detail.json()["assignments"][0]["status"] == "on_scene"
    assert detail.json()["calls"][0]["callback_number"] == "7221234567"
    response = client.post(
        f"/api/v1/incidents/{folio}/close",
        {"disposition": "Atendido, trasladado"},
        HTTP_IF_MATCH=f'"{version}"',
    )
    assert response.status_code == 200, response.json()
    closed = response.json()
    assert closed["status"] == "closed"
    assert closed["version"] > version

    # Every CAD interval timestamp is set, in order.
    incident = Incident.objects.get(folio=folio)
    stamps = [
        incident.call_arrived_at,
        incident.call_answered_at,
        incident.opened_at,
        incident.first_dispatched_at,
        incident.first_en_route_at,
        incident.first_on_scene_at,
        incident.closed_at,
    ]
    assert all(stamps), stamps
    assert stamps == sorted(stamps)
    assert abs(incident.call_arrived_at - arrived) < timedelta(milliseconds=1)
    assert closed["first_on_scene_at"] is not None and closed["closed_at"] is not None

    # The unit is free again; its assignment is cleared.
    assert Unit.objects.get(pk=near_amb.id).status == UnitStatus.AVAILABLE
    assert not Assignment.objects.filter(unit=near_amb, active=True).exists()

    # Timeline: created, assigned, each unit status and each incident transition it caused, closed.
    rows = list(TimelineEntry.objects.filter(incident=incident).values_list("kind", "data"))
    assert [kind for kind, _data in rows] == [
        "created",
        "assigned",
        "status",
        "unit_status",
        "status",
        "unit_status",
        "status",
        "closed",
    ]
    transitions = [(d["from"], d["to"]) for kind, d in rows if kind in ("status", "closed")]
    assert transitions == [
        ("pending", "dispatched"),
        ("dispatched", "en_route"),
        ("en_route", "on_scene"),
        ("on_scene", "closed"),
    ]
    timeline = closed["timeline"]
    assert [e["kind"] for e in timeline] == [kind for kind, _data in rows]
    assert {e["by"] for e in timeline} == {dispatcher.username}

    # The console stream recorded every change with contiguous seq.
    seqs = list(
        Event.objects.filter(center=center, stream=EventStream.Name.CONSOLE)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))
    types = set(Event.objects.filter(center=center).values_list("type", flat=True))
    assert {"call.created", "incident.created", "assignment.created", "unit.status_changed"} <= types
    assert "incident.closed" in types


def test_incident_list_orders_by_priority_then_age_and_filters(
    center, call_taker, api_client_for, accident_type
):
    from tests.factories import IncidentTypeFactory

    IncidentTypeFactory(code="30101", name="Robo a transeúnte", tipo_name="Seguridad", priority="MEDIA")
    client = api_client_for(call_taker)

    def open_call(code):
        response = client.post(
            "/api/v1/calls/",
            {
                "line": "911",
                "disposition": "new_incident",
                "incident_type_code": code,
                "lat": 19.3,
                "lon": -99.6,
            },
        )
        assert response.status_code == 201, response.json()
        return response.json()["call"]["incident"]

    medium, high = open_call("30101"), open_call("10104")
    response = client.get("/api/v1/incidents/?open=true")
    assert response.status_code == 200
    assert [i["folio"] for i in response.json()["results"]] == [high, medium]
    assert response.json()["count"] == 2

    assert [i["folio"] for i in client.get("/api/v1/incidents/?type=301").json()["results"]] == [medium]
    assert [i["folio"] for i in client.get("/api/v1/incidents/?priority=ALTA").json()["results"]] == [high]
    assert client.get("/api/v1/incidents/?status=closed").json()["count"] == 0
    assert client.get("/api/v1/incidents/?status=bogus").status_code == 400


def test_patch_requires_a_current_version(center, call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    response = client.post(
        "/api/v1/calls/",
        new_incident_call(),
    )
    folio = response.json()["call"]["incident"]
    detail = client.get(f"/api/v1/incidents/{folio}/")
    version = detail.json()["version"]

    assert client.patch(f"/api/v1/incidents/{folio}/", {"narrative": "x"}).status_code == 400
    ok = client.patch(
        f"/api/v1/incidents/{folio}/", {"narrative": "Dos vehículos"}, HTTP_IF_MATCH=f'"{version}"'
    )
    assert ok.status_code == 200, ok.json()
    assert ok.json()["narrative"] == "Dos vehículos"
    assert ok["ETag"] == f'"{version + 1}"'
    stale = client.patch(f"/api/v1/incidents/{folio}/", {"narrative": "otra", "version": version})
    assert stale.status_code == 412
    assert stale.json()["code"] == "stale_write"
    assert Incident.objects.get(folio=folio).narrative == "Dos vehículos"

    note = client.post(f"/api/v1/incidents/{folio}/notes", {"text": "Se reporta humo"})
    assert note.status_code == 201
    assert note.json()["by"] == call_taker.username


def test_incidents_are_scoped_to_the_users_centre(center, make_user, api_client_for, accident_type):
    from accounts.models import Role
    from tests.factories import CenterFactory

    mine = api_client_for(make_user(Role.DISPATCHER, "d-mex"))
    response = mine.post(
        "/api/v1/calls/",
        new_incident_call(),
    )
    folio = response.json()["call"]["incident"]
    other_center = CenterFactory(code="CDMX", name="C5 CDMX")
    theirs = api_client_for(make_user(Role.DISPATCHER, "d-cdmx", center=other_center))
    assert theirs.get(f"/api/v1/incidents/{folio}/").status_code == 404
    assert theirs.get("/api/v1/incidents/").json()["count"] == 0
    assert theirs.post(f"/api/v1/incidents/{folio}/close", {"disposition": "x"}).status_code == 404


def test_incident_type_typeahead_is_accent_and_case_insensitive(call_taker, api_client_for, accident_type):
    from tests.factories import IncidentTypeFactory

    IncidentTypeFactory(code="20301", name="Incendio en vehículo", tipo_name="Protección civil")
    IncidentTypeFactory(code="20302", name="Incendio de casa habitación", tipo_name="Protección civil")
    IncidentTypeFactory(code="20399", name="Incendio retirado", active=False)
    client = api_client_for(call_taker)
    found = client.get("/api/v1/incident-types/", {"q": "VEHICULO incendio"}).json()
    assert [t["code"] for t in found] == ["20301"]
    assert [t["code"] for t in client.get("/api/v1/incident-types/", {"q": "203"}).json()] == [
        "20301",
        "20302",
    ]
    all_203 = client.get("/api/v1/incident-types/", {"q": "incendio", "active": "false"}).json()
    assert [t["code"] for t in all_203] == ["20399"]
    assert len(client.get("/api/v1/incident-types/", {"limit": 1}).json()) == 1


def test_list_queries_do_not_grow_with_rows(center, dispatcher, api_client_for, accident_type):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = api_client_for(dispatcher)

    def queries(path):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured)

    def add_incident_with_unit():
        response = client.post(
            "/api/v1/calls/",
            new_incident_call(),
        )
        unit = UnitFactory(center=center)
        client.post(
            f"/api/v1/incidents/{response.json()['call']['incident']}/assignments", {"unit_id": unit.id}
        )

    add_incident_with_unit()
    one = (queries("/api/v1/incidents/?open=true"), queries("/api/v1/units/"))
    for _ in range(4):
        add_incident_with_unit()
    assert (queries("/api/v1/incidents/?open=true"), queries("/api/v1/units/")) == one


def test_patch_refuses_half_a_location(center, call_taker, api_client_for, accident_type):
    client = api_client_for(call_taker)
    folio = client.post("/api/v1/calls/", new_incident_call()).json()["call"]["incident"]
    response = client.patch(f"/api/v1/incidents/{folio}/", {"lat": 19.4, "version": 1})
    assert response.status_code == 400 and "lon" in response.json()["fields"]

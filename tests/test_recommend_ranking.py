"""The recommendation shortlist searches a growing box through the (center, status, lat, lon) index; its
answers must be exactly those of ranking every available unit (the ranking before the box existed) and of
a numpy full scan, on spread and clustered fleets with mixed speeds, capabilities, stale and busy units,
for incidents inside, beside and far from the fleet. The API answers the same and reads no timeline/calls."""

import json
import math
import random
from datetime import timedelta

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

import incidents.api as api_module
import units.selectors as selectors
from incidents import services
from incidents.api import RecommendationsOutput
from incidents.models import SubtypeResponsePlan
from tests.factories import (
    AgencyFactory,
    CapabilityFactory,
    IncidentTypeFactory,
    SubtypeResponsePlanFactory,
    UnitFactory,
    open_incident,
)
from units.models import Agency, Capability, Unit, UnitStatus
from units.routing import StraightLineEstimator, haversine_km
from units.selectors import _box, nearest_available_units, recommend_units

STATIONS = ((19.2826, -99.6557), (19.6018, -99.0507))  # Toluca, Ecatepec


class RoadEstimator(StraightLineEstimator):
    """Any estimator but the straight line itself: the shortlist is then SHORTLIST_FACTOR times longer."""


@pytest.fixture
def fleet(center):
    """150 units: half spread over 2° × 2°, half packed within ~2 km of two stations; three speeds."""
    rng = random.Random(7)
    now = timezone.now()
    agencies = [
        AgencyFactory(center=center, code="PE", speed_kmh=45.0),
        AgencyFactory(center=center, code="CRM", kind=Agency.Kind.AMBULANCE, speed_kmh=55.0),
        AgencyFactory(center=center, code="GN", kind=Agency.Kind.NATIONAL_GUARD, speed_kmh=80.0),
    ]
    CapabilityFactory(code="ambulance")
    CapabilityFactory(code="patrol")
    units = []
    for i in range(150):
        if i % 2:
            lat, lon = 19.3 + rng.uniform(-1.0, 1.0), -99.5 + rng.uniform(-1.0, 1.0)
        else:
            station = STATIONS[i % 4 // 2]
            lat, lon = station[0] + rng.uniform(-0.02, 0.02), station[1] + rng.uniform(-0.02, 0.02)
        unit = Unit.objects.create(
            center=center,
            agency=agencies[i % 3],
            callsign=f"R-{i:03d}",
            status=UnitStatus.DISPATCHED if i % 13 == 0 else UnitStatus.AVAILABLE,
            status_changed_at=now,
            lat=lat,
            lon=lon,
            position_at=now - timedelta(minutes=30 if i % 11 == 0 else 1),
        )
        codes = ["ambulance"] if i % 5 == 0 else ["patrol", "ambulance"] if i % 7 == 0 else ["patrol"]
        unit.capabilities.set(Capability.objects.filter(code__in=codes))
        units.append(unit)
    return units


def full_scan(units, *, lat, lon, capability, limit, exclude, now) -> list[int]:
    fresh_after = now - timedelta(seconds=300)
    rows = [
        u
        for u in units
        if u.status == UnitStatus.AVAILABLE
        and u.position_at >= fresh_after
        and u.id not in exclude
        and (capability is None or capability in {c.code for c in u.capabilities.all()})
    ]
    km = haversine_km(lat, lon, np.array([u.lat for u in rows]), np.array([u.lon for u in rows]))
    seconds = km * 1.35 / np.array([u.agency.speed_kmh for u in rows]) * 3600
    return [rows[i].id for i in np.argsort(seconds, kind="stable")[:limit]]


def unboxed(monkeypatch, **kwargs):
    """The same call ranking every available unit of the centre (no box): the ranking before the box."""
    with monkeypatch.context() as patch:
        patch.setattr(selectors, "LAST_BOX_KM", -1.0)
        return nearest_available_units(**kwargs)


# Inside the spread fleet, beside a station, and 60-150 km away from every unit (the box must grow).
PLACES = [(19.3, -99.5), (19.29, -99.64), (19.61, -99.06), (18.2, -100.9), (20.6, -98.2), (17.9, -99.5)]


@pytest.mark.parametrize("capability", [None, "ambulance", "patrol"])
def test_box_ranking_equals_full_ranking_and_full_scan(fleet, monkeypatch, capability):
    now = timezone.now()
    rng = random.Random(11)
    exclude = [fleet[1].id, fleet[2].id]
    units = list(Unit.objects.select_related("agency").prefetch_related("capabilities").order_by("id"))
    places = PLACES + [(19.3 + rng.uniform(-1.2, 1.2), -99.5 + rng.uniform(-1.2, 1.2)) for _ in range(10)]
    for lat, lon in places:
        for limit in (1, 5, 12):
            kwargs = {
                "center_id": fleet[0].center_id,
                "lat": lat,
                "lon": lon,
                "capability": capability,
                "limit": limit,
                "exclude": exclude,
                "now": now,
            }
            ranked = nearest_available_units(**kwargs)
            assert ranked == unboxed(monkeypatch, **kwargs)
            expected = full_scan(
                units, lat=lat, lon=lon, capability=capability, limit=limit, exclude=exclude, now=now
            )
            assert [c["unit_id"] for c in ranked] == expected
            assert all(c["eta_s"] <= d["eta_s"] for c, d in zip(ranked, ranked[1:], strict=False))


def test_other_estimators_rerank_a_longer_shortlist(fleet, settings, monkeypatch):
    settings.CAD = {**settings.CAD, "TRAVEL_TIME_ESTIMATOR": f"{__name__}.RoadEstimator"}
    kwargs = {"center_id": fleet[0].center_id, "capability": None, "limit": 5, "now": timezone.now()}
    for lat, lon in PLACES:
        assert nearest_available_units(lat=lat, lon=lon, **kwargs) == unboxed(
            monkeypatch, lat=lat, lon=lon, **kwargs
        )


def test_queries_read_a_box_first_and_grow_it_only_when_needed(fleet):
    now = timezone.now()
    center_id = fleet[0].center_id
    with CaptureQueriesContext(connection) as near:
        nearest_available_units(center_id=center_id, lat=19.29, lon=-99.64, capability=None, limit=3, now=now)
    assert len(near.captured_queries) == 1 and "BETWEEN" in near.captured_queries[0]["sql"]
    with CaptureQueriesContext(connection) as far:
        nearest_available_units(center_id=center_id, lat=17.9, lon=-99.5, capability=None, limit=3, now=now)
    assert 1 < len(far.captured_queries) <= 5


def test_box_holds_every_point_within_its_radius():
    rng = random.Random(3)
    for _ in range(300):
        lat, lon, radius = rng.uniform(-70, 70), rng.uniform(-170, 170), rng.uniform(0.1, 500)
        box = _box(lat, lon, radius)
        if box is None:
            continue
        for _ in range(20):  # points at exactly `radius` in random directions (the worst case)
            bearing, angle = rng.uniform(0, 2 * math.pi), radius / 6371.0088
            lat1, lon1 = math.radians(lat), math.radians(lon)
            lat2 = math.asin(
                math.sin(lat1) * math.cos(angle) + math.cos(lat1) * math.sin(angle) * math.cos(bearing)
            )
            lon2 = lon1 + math.atan2(
                math.sin(bearing) * math.sin(angle) * math.cos(lat1),
                math.cos(angle) - math.sin(lat1) * math.sin(lat2),
            )
            assert box[0] - 1e-9 <= math.degrees(lat2) <= box[1] + 1e-9
            assert box[2] - 1e-9 <= math.degrees(lon2) <= box[3] + 1e-9
    assert _box(89.9, 0.0, 50.0) is None and _box(0.0, 179.9, 50.0) is None


def test_database_ranking_returns_nothing_without_fresh_available_units(center):
    UnitFactory(center=center, position_at=timezone.now() - timedelta(hours=1))
    UnitFactory(center=center, status=UnitStatus.OUT_OF_SERVICE)
    assert nearest_available_units(center_id=center.id, lat=19.3, lon=-99.6, capability=None, limit=5) == []


def test_api_answers_the_full_ranking_without_reading_timeline_or_calls(
    fleet, dispatcher, api_client_for, monkeypatch
):
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1, "patrol": 2})
    accident = IncidentTypeFactory(code="10104")
    client = api_client_for(dispatcher)
    for lat, lon in PLACES:
        incident = open_incident(
            center=dispatcher.center, by=dispatcher, incident_type=accident, lat=lat, lon=lon
        )
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/api/v1/incidents/{incident.folio}/recommendations")
        assert response.status_code == 200, response.json()
        sql = " ".join(q["sql"] for q in captured.captured_queries)
        assert "incidents_timelineentry" not in sql and "incidents_call" not in sql
        with monkeypatch.context() as patch:
            patch.setattr(selectors, "LAST_BOX_KM", -1.0)
            expected = recommend_units(incident=incident)
        body = response.json()
        assert body["suggested_unit_ids"] == expected["suggested_unit_ids"]
        assert [[c["unit_id"] for c in r["candidates"]] for r in body["requirements"]] == [
            [c["unit_id"] for c in r["candidates"]] for r in expected["requirements"]
        ]


def typed(value):
    """A JSON value with the type of every scalar: 60 and 60.0, or 1 and True, then differ."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


def test_api_renders_the_answer_exactly_as_the_output_serializer_would(
    fleet, dispatcher, api_client_for, monkeypatch, settings
):
    """The view returns recommend_units' plain answer without RecommendationsOutput (the documented
    schema): both renderings must be the same JSON, types included (an int limit renders as a float)."""
    settings.CAD = {**settings.CAD, "RECOMMEND_MAX_DISTANCE_KM": 60, "RECOMMEND_MAX_ETA_S": 1800.0}
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1, "patrol": 2})
    accident = IncidentTypeFactory(code="10104")
    answers = []
    real = api_module.recommend_units
    monkeypatch.setattr(api_module, "recommend_units", lambda **kw: answers.append(real(**kw)) or answers[-1])
    client = api_client_for(dispatcher)
    incident = open_incident(
        center=dispatcher.center, by=dispatcher, incident_type=accident, lat=19.3, lon=-99.5
    )
    patrol = next(u for u in fleet if u.status == UnitStatus.AVAILABLE and u.callsign.endswith("1"))
    services.assign_unit(folio=incident.folio, center_id=incident.center_id, unit_id=patrol.id, by=dispatcher)
    for folio in (
        incident.folio,
        *(
            open_incident(
                center=dispatcher.center, by=dispatcher, incident_type=accident, lat=lat, lon=lon
            ).folio
            for lat, lon in PLACES[:3]
        ),
    ):
        response = client.get(f"/api/v1/incidents/{folio}/recommendations")
        assert response.status_code == 200, response.json()
        rendered = json.loads(JSONRenderer().render(RecommendationsOutput(answers[-1]).data))
        assert typed(response.json()) == typed(rendered)
    first = json.loads(JSONRenderer().render(RecommendationsOutput(answers[0]).data))
    assert {r["capability"]: r["assigned"] for r in first["requirements"]} == {"ambulance": 0, "patrol": 1}
    assert first["limits"] == {"max_eta_s": 1800, "max_distance_km": 60.0}


def test_api_reads_the_plan_and_the_working_units_with_the_incident(fleet, dispatcher, api_client_for):
    """One query for the incident, its subtipo's plan and whether units work it; then only the shortlist
    (no plan query; the working units' query only when some unit works the incident)."""
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1, "patrol": 1})
    accident = IncidentTypeFactory(code="10104")
    client = api_client_for(dispatcher)
    incident = open_incident(
        center=dispatcher.center, by=dispatcher, incident_type=accident, lat=19.3, lon=-99.5
    )

    def queries():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/api/v1/incidents/{incident.folio}/recommendations")
        assert response.status_code == 200, response.json()
        return response.json(), [q["sql"] for q in captured.captured_queries]

    body, sql = queries()
    assert "incidents_subtyperesponseplan" in sql[0] and "incidents_assignment" in sql[0]
    assert '"narrative"' not in sql[0] and '"definition"' not in sql[0]  # only what it reads (no lazy loads)
    assert all("incidents_subtyperesponseplan" not in q and "incidents_assignment" not in q for q in sql[1:])
    assert all("units_unit" in q and "BETWEEN" in q for q in sql[1:])
    assert body["plan"] == {"ambulance": 1, "patrol": 1}
    assert {r["capability"]: r["assigned"] for r in body["requirements"]} == {"ambulance": 0, "patrol": 0}

    wanted = next(r for r in body["requirements"] if r["capability"] == "ambulance")
    ambulance = next(u for u in fleet if u.id == wanted["suggested"][0]["unit_id"])
    services.assign_unit(
        folio=incident.folio, center_id=incident.center_id, unit_id=ambulance.id, by=dispatcher
    )
    body, sql = queries()
    assert sum("incidents_assignment" in q for q in sql[1:]) == 1  # the working units, now there are some
    assert {r["capability"]: r["assigned"] for r in body["requirements"]} == {"ambulance": 1, "patrol": 0}
    assert ambulance.id not in body["suggested_unit_ids"]

    # An operator's edit of the subtipo's plan is read by the next recommendation (nothing cached).
    SubtypeResponsePlan.objects.filter(subtipo_code="101").update(plan={"patrol": 2})
    body, _ = queries()
    assert body["plan"] == {"patrol": 2}


def sequential_recommendation(incident, *, plan, limit, exclude=()) -> tuple[list, list]:
    """The plan covered capability by capability, each ranked on its own (nearest_available_units, checked
    against a full scan above) with as many candidates as the suggestions before it could take."""
    candidates, suggested = [], []
    for capability, count in plan.items():
        ranked = nearest_available_units(
            center_id=incident.center_id,
            lat=incident.lat,
            lon=incident.lon,
            capability=capability or None,
            limit=max(limit, count + len(suggested)),
            exclude=exclude,
            now=timezone.now(),
        )
        picked = [c for c in ranked if c["unit_id"] not in suggested and not c["beyond_limit"]][:count]
        suggested.extend(c["unit_id"] for c in picked)
        candidates.append([c["unit_id"] for c in ranked[:limit]])
    return candidates, suggested


@pytest.mark.parametrize("estimator", ["straight", "road"])
def test_one_statement_reads_every_capability_and_answers_as_ranking_each_alone(
    fleet, dispatcher, settings, estimator
):
    """A plan's capabilities are read together (one statement per round of the growing box) with the
    longest shortlist each may need: the answer is what ranking each capability alone gives, even when the
    units suggested for the first capabilities are among the best of the next (units with both)."""
    if estimator == "road":
        settings.CAD = {**settings.CAD, "TRAVEL_TIME_ESTIMATOR": f"{__name__}.RoadEstimator"}
    plan = {"patrol": 3, "ambulance": 2, "": 2}
    SubtypeResponsePlanFactory(subtipo_code="101", plan=plan)
    accident = IncidentTypeFactory(code="10104")
    for lat, lon in PLACES:
        incident = open_incident(
            center=dispatcher.center, by=dispatcher, incident_type=accident, lat=lat, lon=lon
        )
        for limit in (1, 3):
            with CaptureQueriesContext(connection) as captured:
                answer = recommend_units(incident=incident, limit=limit)
            shortlists = [q["sql"] for q in captured.captured_queries if "eta_rank" in q["sql"]]
            assert answer["plan"] == plan
            candidates, suggested = sequential_recommendation(incident, plan=answer["plan"], limit=limit)
            assert [[c["unit_id"] for c in r["candidates"]] for r in answer["requirements"]] == candidates
            assert answer["suggested_unit_ids"] == suggested
            if (lat, lon) == STATIONS[0]:  # beside a station: every capability certified at once
                assert len(shortlists) == 1 and shortlists[0].count("UNION ALL") == len(plan) - 1
            assert len(shortlists) <= 5

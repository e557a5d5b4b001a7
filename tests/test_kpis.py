"""KPIs on a hand-built set of timestamps with known answers (unanswered calls, an improcedente, a cancelled
incident, an incident without a call, a multi-unit incident), exact in Python and in SQL, plus the APIs."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from accounts.models import Role
from dashboard.kpis import exact_kpis, rollup_kpis
from dashboard.rollups import refresh_rollups
from geo.models import Jurisdiction
from incidents.models import Assignment, Call, CallDisposition, Channel, Incident, IncidentStatus
from incidents.services import assign_unit, change_unit_status
from tests.factories import IncidentTypeFactory, UnitFactory, jurisdiction
from units.models import UnitStatus

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)  # 06:00 in Mexico City
RANGE = {"start": T0 - timedelta(hours=1), "end": T0 + timedelta(hours=2)}


def at(seconds):
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def _incident(
    center,
    user,
    itype,
    folio,
    *,
    arrived,
    answered,
    opened,
    dispatched=None,
    en_route=None,
    on_scene=None,
    closed=None,
    municipality=None,
):
    status = IncidentStatus.CLOSED if closed is not None else IncidentStatus.PENDING
    return Incident.objects.create(
        folio=folio,
        center=center,
        incident_type=itype,
        type_code=itype.code,
        type_name=itype.name,
        priority=itype.priority,
        priority_rank=1,
        status=status,
        call_arrived_at=at(arrived),
        call_answered_at=at(answered),
        opened_at=at(opened),
        first_dispatched_at=at(dispatched),
        first_en_route_at=at(en_route),
        first_on_scene_at=at(on_scene),
        closed_at=at(closed),
        state=municipality.parent if municipality else None,
        municipality=municipality,
        created_by=user,
    )


def _call(
    center, user, line, *, arrived, answered, disposition, incident=None, itype=None, channel=Channel.VOICE
):
    if incident is not None and disposition == CallDisposition.NEW_INCIDENT:  # as open_incident stores it
        Incident.objects.filter(pk=incident.pk).update(line=line)
    return Call.objects.create(
        center=center,
        channel=channel,
        line=line,
        arrived_at=at(arrived),
        answered_at=at(answered),
        disposition=disposition,
        incident=incident,
        incident_type=itype,
        call_taker=user,
    )


@pytest.fixture
def known_set(center, make_user):
    user = make_user(Role.CALL_TAKER)
    medical = IncidentTypeFactory(code="10104")
    prank = IncidentTypeFactory(code="70101", name="Llamada de broma", tipo_name="Improcedente")
    state = jurisdiction("15", "México", Jurisdiction.Kind.STATE)
    toluca = jurisdiction("15106", "Toluca", Jurisdiction.Kind.MUNICIPALITY, parent=state)
    # A: answered 10 s, processing 30, dispatch 60, turnout 30, travel 300, total 430 (Toluca).
    a = _incident(
        center,
        user,
        medical,
        "MEX-2026-000001",
        arrived=0,
        answered=10,
        opened=40,
        dispatched=100,
        en_route=130,
        on_scene=430,
        municipality=toluca,
    )
    # B: answered 20 s, processing 90, dispatch 120, turnout 60, travel 600, total 890.
    b = _incident(
        center,
        user,
        medical,
        "MEX-2026-000002",
        arrived=60,
        answered=80,
        opened=170,
        dispatched=290,
        en_route=350,
        on_scene=950,
    )
    # C: cancelled (closed, never on scene): processing 27, dispatch 70.
    c = _incident(
        center,
        user,
        medical,
        "MEX-2026-000003",
        arrived=300,
        answered=303,
        opened=330,
        dispatched=400,
        closed=500,
    )
    # D: opened by another state's request for service, still pending. Its interstate "call" is the request, not
    # a call this centre answered (the sender counted the real one): in no call figure.
    d = _incident(center, user, medical, "MEX-2026-000004", arrived=None, answered=None, opened=600)
    new = CallDisposition.NEW_INCIDENT
    _call(center, user, "911", arrived=0, answered=10, disposition=new, incident=a, itype=medical)
    _call(
        center,
        user,
        "911",
        arrived=30,
        answered=36,
        disposition=CallDisposition.LINKED,
        incident=a,
        itype=medical,
    )
    _call(center, user, "911", arrived=60, answered=80, disposition=new, incident=b, itype=medical)
    _call(center, user, "911", arrived=120, answered=None, disposition=CallDisposition.INFORMATIONAL)
    _call(
        center, user, "089", arrived=200, answered=205, disposition=CallDisposition.IMPROCEDENTE, itype=prank
    )
    _call(center, user, "911", arrived=300, answered=303, disposition=new, incident=c, itype=medical)
    _call(
        center,
        user,
        "911",
        arrived=600,
        answered=600,
        disposition=CallDisposition.NEW_INCIDENT,
        incident=d,
        itype=medical,
        channel=Channel.INTERSTATE,
    )
    Incident.objects.filter(pk=d.pk).update(line="")  # as before: a line of its own only from a call here
    return center


def _by_key(groups):
    return {tuple(g["key"]): g for g in groups}


def _check_totals(total):
    assert (total["calls"], total["unanswered"], total["improcedente"]) == (6, 1, 1)
    assert total["improcedente_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert (total["incidents"], total["cancelled"]) == (4, 1)
    m = total["metrics"]
    # answer: [10, 6, 20, 5, 3]; the unanswered call is neither a value nor in the denominator.
    assert (m["answer"]["n"], m["answer"]["missing"]) == (5, 1)
    assert (m["answer"]["p50"], m["answer"]["p90"], m["answer"]["p95"]) == (6.0, 16.0, 18.0)
    assert m["answer"]["mean"] == pytest.approx(8.8, abs=0.05)
    assert m["answer"]["compliance"]["answer_15s"]["share"] == pytest.approx(0.8)
    assert m["answer"]["compliance"]["answer_15s"]["met"] is False
    assert m["answer"]["compliance"]["answer_20s"]["share"] == 1.0  # 20 s exactly complies
    # processing [30, 90, 27] (D has no call), dispatch [60, 120, 70] (D not dispatched)
    assert (m["processing"]["n"], m["processing"]["missing"], m["processing"]["p50"]) == (3, 1, 30.0)
    assert m["processing"]["compliance"]["processing_60s"]["share"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["processing"]["compliance"]["minimum_data"]["share"] == 1.0
    assert (m["dispatch"]["n"], m["dispatch"]["p50"], m["dispatch"]["p90"]) == (3, 70.0, 110.0)
    # D, open and never dispatched long past the target, counts against dispatch compliance: 3 of 4.
    assert m["dispatch"]["compliance"]["dispatch"]["share"] == 0.75
    assert (
        m["dispatch"]["compliance"]["dispatch"]["n"],
        m["dispatch"]["compliance"]["dispatch"]["overdue"],
    ) == (4, 1)
    assert m["dispatch"]["insufficient"] is True  # n = 3 < CAD_KPI_MIN_SAMPLE
    # the cancelled incident has no turnout/travel/total: missing, not 0 s and not a breach
    assert (m["turnout"]["n"], m["turnout"]["missing"], m["turnout"]["p50"]) == (2, 2, 45.0)
    assert (m["travel"]["n"], m["travel"]["p50"]) == (2, 450.0)
    assert (m["total"]["n"], m["total"]["missing"], m["total"]["p50"]) == (2, 2, 660.0)
    assert m["total"]["compliance"]["on_scene"]["share"] == 0.5


@pytest.mark.parametrize("use_sql", [False, True], ids=["python", "sql"])
def test_exact_totals(known_set, use_sql):
    if use_sql and not settings.IS_POSTGRES:
        pytest.skip("percentile_cont needs PostgreSQL")
    [total] = exact_kpis(center_id=known_set.id, use_sql=use_sql, **RANGE)
    _check_totals(total)


@pytest.mark.parametrize("use_sql", [False, True], ids=["python", "sql"])
def test_exact_groupings(known_set, use_sql):
    if use_sql and not settings.IS_POSTGRES:
        pytest.skip("percentile_cont needs PostgreSQL")
    lines = _by_key(exact_kpis(center_id=known_set.id, group_by="line", use_sql=use_sql, **RANGE))
    assert set(lines) == {("911",), ("089",), ("",)}
    assert (lines[("911",)]["calls"], lines[("911",)]["incidents"]) == (5, 3)
    assert lines[("911",)]["metrics"]["answer"]["p50"] == 8.0  # [10, 6, 20, 3]
    assert lines[("089",)]["improcedente_rate"] == 1.0
    assert lines[("",)]["incidents"] == 1 and lines[("",)]["label"] == "Sin línea"
    assert lines[("089",)]["label"] == "089"

    tipos = _by_key(exact_kpis(center_id=known_set.id, group_by="tipo", use_sql=use_sql, **RANGE))
    assert tipos[("7",)]["improcedente"] == 1 and tipos[("7",)]["incidents"] == 0
    assert tipos[("",)]["unanswered"] == 1  # the unclassified, unanswered call

    places = _by_key(exact_kpis(center_id=known_set.id, group_by="jurisdiction", use_sql=use_sql, **RANGE))
    assert places[("15", "15106")]["incidents"] == 1
    assert places[("15", "15106")]["calls"] == 2  # both calls of incident A
    assert places[("15", "15106")]["label"] == "Toluca · México"
    assert places[("", "")]["incidents"] == 3

    hours = _by_key(exact_kpis(center_id=known_set.id, group_by="hour", use_sql=use_sql, **RANGE))
    assert list(hours) == [(6,)]  # 12:00 UTC is 06:00 in Mexico City
    assert hours[(6,)]["label"] == "06:00"


@pytest.mark.parametrize("use_sql", [False, True])
def test_hours_are_read_in_the_centres_own_zone(known_set, use_sql):
    """A centre in Quintana Roo (UTC-5 all year) reads 12:00 UTC as 07:00, not Mexico City's 06:00."""
    if use_sql and not settings.IS_POSTGRES:
        pytest.skip("percentile_cont needs PostgreSQL")
    known_set.timezone = "America/Cancun"
    known_set.save(update_fields=["timezone"])
    hours = _by_key(exact_kpis(center_id=known_set.id, group_by="hour", use_sql=use_sql, **RANGE))
    assert list(hours) == [(7,)]
    refresh_rollups()
    assert list(_by_key(rollup_kpis(center_id=known_set.id, group_by="hour", **RANGE))) == [(7,)]


def test_rollups_agree_with_exact_on_the_known_set(known_set):
    refresh_rollups()
    [total] = rollup_kpis(center_id=known_set.id, **RANGE)
    [exact] = exact_kpis(center_id=known_set.id, use_sql=False, **RANGE)
    for field in ("calls", "unanswered", "improcedente", "incidents", "cancelled"):
        assert total[field] == exact[field], field
    for metric, block in exact["metrics"].items():
        rolled = total["metrics"][metric]
        assert (rolled["n"], rolled["missing"]) == (block["n"], block["missing"]), metric
        assert rolled["compliance"] == block["compliance"], metric  # every target is on a bucket edge
        for q in ("p50", "p90", "p95"):
            assert rolled[q] == pytest.approx(block[q], abs=5.0), (metric, q)  # <= 5-s buckets here
    lines = _by_key(rollup_kpis(center_id=known_set.id, group_by="line", **RANGE))
    assert lines[("089",)]["improcedente"] == 1 and lines[("911",)]["calls"] == 5
    places = _by_key(rollup_kpis(center_id=known_set.id, group_by="jurisdiction", **RANGE))
    assert places[("15", "15106")]["calls"] == 2
    assert list(_by_key(rollup_kpis(center_id=known_set.id, group_by="hour", **RANGE))) == [(6,)]


def test_multi_unit_incident_counts_only_the_first_unit(center, dispatcher, accident_type):
    """Two units through the real services: the second unit's dispatch, en route and on scene never
    change the incident's intervals, and the incident counts once."""
    from incidents.services import take_call

    call = take_call(
        center=center,
        by=dispatcher,
        line="911",
        disposition="new_incident",
        incident_type=accident_type,
        lat=19.28,
        lon=-99.65,
    )
    folio = call.incident.folio
    first, second = UnitFactory(center=center), UnitFactory(center=center)
    assign_unit(folio=folio, center_id=center.id, unit_id=first.id, by=dispatcher)
    change_unit_status(unit_id=first.id, center_id=center.id, to=UnitStatus.EN_ROUTE, by=dispatcher)
    change_unit_status(unit_id=first.id, center_id=center.id, to=UnitStatus.ON_SCENE, by=dispatcher)
    incident = Incident.objects.get(folio=folio)
    firsts = (incident.first_dispatched_at, incident.first_en_route_at, incident.first_on_scene_at)
    # The second unit is dispatched, goes en route and arrives an hour later (backdated stamps).
    assign_unit(folio=folio, center_id=center.id, unit_id=second.id, by=dispatcher)
    change_unit_status(unit_id=second.id, center_id=center.id, to=UnitStatus.EN_ROUTE, by=dispatcher)
    change_unit_status(unit_id=second.id, center_id=center.id, to=UnitStatus.ON_SCENE, by=dispatcher)
    later = Assignment.objects.get(unit=second)
    Assignment.objects.filter(pk=later.pk).update(
        dispatched_at=later.dispatched_at + timedelta(hours=1),
        on_scene_at=later.on_scene_at + timedelta(hours=1),
    )
    incident.refresh_from_db()
    assert (incident.first_dispatched_at, incident.first_en_route_at, incident.first_on_scene_at) == firsts
    window = {
        "start": incident.opened_at - timedelta(hours=1),
        "end": incident.opened_at + timedelta(hours=1),
    }
    [total] = exact_kpis(center_id=center.id, use_sql=False, **window)
    assert total["incidents"] == 1
    assert total["metrics"]["dispatch"]["n"] == 1
    expected = (incident.first_on_scene_at - incident.call_arrived_at).total_seconds()
    assert total["metrics"]["total"]["p50"] == pytest.approx(expected, abs=0.05)
    assert total["metrics"]["total"]["p50"] < 60  # the hour-late second unit is not counted


def test_other_centres_are_not_counted(known_set, make_user):
    from tests.factories import CenterFactory

    other = CenterFactory(code="CDMX", name="C5 CDMX")
    [total] = exact_kpis(center_id=other.id, use_sql=False, **RANGE) or [None]
    assert total is None


# --- APIs ------------------------------------------------------------------------------------------
def test_kpi_api_requires_supervisor(known_set, api_client_for, make_user):
    for role, expected in (
        (Role.DISPATCHER, 403),
        (Role.CALL_TAKER, 403),
        (Role.SUPERVISOR, 200),
        (Role.ADMINISTRATOR, 200),
    ):
        client = api_client_for(make_user(role))
        assert client.get("/api/v1/kpis/?from=2026-11-10&to=2026-11-10").status_code == expected, role
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/kpis/").status_code in (401, 403)


def test_kpi_api_from_rollups_and_exact(known_set, api_client_for, supervisor):
    refresh_rollups()
    client = api_client_for(supervisor)
    body = client.get("/api/v1/kpis/?from=2026-11-10&to=2026-11-10&group_by=line").json()
    assert body["source"] == "rollup"
    assert body["total"]["calls"] == 6
    assert {tuple(g["key"]) for g in body["groups"]} == {("911",), ("089",), ("",)}
    assert body["targets"]["answer_15s"]["seconds"] == 15
    exact = client.get("/api/v1/kpis/?from=2026-11-10&to=2026-11-10&exact=true").json()
    assert exact["source"] == "exact"
    _check_totals(exact["total"])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-13-01", "from"),
        ("from=ayer", "from"),
        ("from=2026-11-10&to=2026-11-01", "to"),
        ("from=2024-01-01&to=2026-01-01", "to"),
        ("group_by=color", "group_by"),
        ("from=9998-12-01&to=9999-12-31", "to"),
        ("from=0001-01-01T00:00:00Z", "from"),
    ],
)
def test_kpi_api_rejects_bad_dates(api_client_for, supervisor, query, field):
    response = api_client_for(supervisor).get(f"/api/v1/kpis/?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and field in body["fields"], body


def test_incident_export_streams_every_incident_in_local_time(known_set, api_client_for, supervisor):
    response = api_client_for(supervisor).get("/api/v1/exports/incidents.csv?from=2026-11-10&to=2026-11-10")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], rows[1:]
    assert [r[0] for r in body] == [f"MEX-2026-00000{i}" for i in (1, 2, 3, 4)]
    a = dict(zip(header, body[0], strict=True))
    assert a["Llegada de la llamada"] == "2026-11-10 06:00:00"  # UTC 12:00 shown in Mexico City
    assert a["Línea"] == "911" and a["Municipio"] == "Toluca"
    assert (a["Contestación (s)"], a["Despacho (s)"], a["Respuesta total (s)"]) == ("10", "60", "430")
    c = dict(zip(header, body[2], strict=True))
    assert c["Traslado (s)"] == "" and c["Respuesta total (s)"] == ""  # cancelled


def test_monthly_export(known_set, api_client_for, supervisor):
    client = api_client_for(supervisor)
    response = client.get("/api/v1/exports/monthly.csv?month=2026-11")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode("utf-8").lstrip("\ufeff")
    rows = [dict(zip(*(lambda r: (r[0], row))(None), strict=False)) for row in []]  # placeholder
    rows = list(csv.DictReader(io.StringIO(text)))
    by_key = {(r["Clave CNIE"], r["Línea"]): r for r in rows}
    assert by_key[("10104", "911")]["Llamadas"] == "4"
    assert by_key[("10104", "911")]["Incidentes"] == "3"
    assert by_key[("70101", "089")]["Improcedentes"] == "1"
    assert by_key[("", "")]["Incidente"] == "Total" and by_key[("", "")]["Llamadas"] == "6"
    assert client.get("/api/v1/exports/monthly.csv?month=2026-13").status_code == 400
    assert client.get("/api/v1/exports/monthly.csv").json()["fields"]["month"]
    assert client.get("/api/v1/exports/incidents.csv?from=x").status_code == 400


def test_dashboard_pages_are_for_supervisors(known_set, client, make_user):
    refresh_rollups()
    for role, expected in (
        (Role.DISPATCHER, 403),
        (Role.CALL_TAKER, 403),
        (Role.SUPERVISOR, 200),
        (Role.ADMINISTRATOR, 200),
    ):
        client.force_login(make_user(role))
        for path in ("/dashboard/", "/dashboard/kpis/?from=2026-11-10&to=2026-11-10&group_by=line"):
            assert client.get(path).status_code == expected, (role, path)
    page = client.get(
        "/dashboard/kpis/?from=2026-11-10T00:00&to=2026-11-11T00:00&group_by=line"
    ).content.decode()
    assert "<svg" in page and "Contestación p90 por hora del día" in page
    assert all(f"meta {s} s" in page for s in (15, 120, 600))  # each chart's target line says its value
    assert "9-1-1" in page and "exports/monthly.csv?month=2026-11" in page
    client.logout()
    assert client.get("/dashboard/").status_code == 302  # to the login page


def test_map_snapshot_and_boundaries(known_set, api_client_for, supervisor, dispatcher):
    unit = UnitFactory(center=known_set)
    Incident.objects.filter(folio="MEX-2026-000004").update(lat=19.3, lon=-99.6)
    body = api_client_for(supervisor).get("/api/v1/dashboard/map").json()
    assert [row[0] for row in body["units"]] == [unit.id]
    assert {i["folio"] for i in body["incidents"]} == {
        "MEX-2026-000001",
        "MEX-2026-000002",
        "MEX-2026-000004",
    }
    assert {j["cvegeo"] for j in body["jurisdictions"]} == {"15", "15106"}
    # Another centre's filter lists every state but only its own state's municipalities.
    from tests.factories import CenterFactory, UserFactory

    cdmx = CenterFactory(code="CDMX", name="C5 CDMX", cve_ent="09")
    jurisdiction("09", "Ciudad de México", Jurisdiction.Kind.STATE)
    cdmx_supervisor = UserFactory(username="sup-cdmx", role=Role.SUPERVISOR, center=cdmx)
    theirs = api_client_for(cdmx_supervisor).get("/api/v1/dashboard/map").json()
    assert {j["cvegeo"] for j in theirs["jurisdictions"]} == {"09", "15"}
    boundaries = api_client_for(supervisor).get("/api/v1/dashboard/boundaries").json()
    assert boundaries["type"] == "FeatureCollection"
    assert api_client_for(dispatcher).get("/api/v1/dashboard/map").status_code == 403


def test_monthly_export_rejects_months_out_of_range(api_client_for, supervisor):
    response = api_client_for(supervisor).get("/api/v1/exports/monthly.csv?month=9999-12")
    assert response.status_code == 400 and "month" in response.json()["fields"]


def test_incidents_store_the_line_of_their_opening_call_and_old_rows_are_backfilled(center, call_taker):
    import importlib

    from django.apps import apps

    from incidents.models import Line
    from tests.factories import IncidentTypeFactory, open_incident

    incident = open_incident(center=center, by=call_taker, incident_type=IncidentTypeFactory(code="10104"))
    assert incident.line == Line.EMERGENCY
    Incident.objects.filter(pk=incident.pk).update(line="")  # as before the column existed
    importlib.import_module("incidents.migrations.0005_incident_line").backfill_line(apps, None)
    incident.refresh_from_db()
    assert incident.line == Line.EMERGENCY


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="percentile_cont needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_sql_statements_run_at_once_in_one_snapshot_and_agree_with_python(known_set):
    """Outside a transaction (committed rows) the report's statements run on separate connections sharing
    one exported snapshot; the figures are those of the numpy path."""
    from django.db import connection

    assert not connection.in_atomic_block
    for group_by in (None, "line", "jurisdiction"):
        sql = exact_kpis(center_id=known_set.id, group_by=group_by, use_sql=True, **RANGE)
        python = exact_kpis(center_id=known_set.id, group_by=group_by, use_sql=False, **RANGE)
        assert [g["key"] for g in sql] == [g["key"] for g in python]
        for a, b in zip(sql, python, strict=True):
            assert (a["calls"], a["incidents"], a["cancelled"]) == (
                b["calls"],
                b["incidents"],
                b["cancelled"],
            )
            for metric, block in a["metrics"].items():
                for q in ("p50", "p90", "p95", "mean"):
                    assert block[q] == pytest.approx(b["metrics"][metric][q]), (group_by, metric, q)

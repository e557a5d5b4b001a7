"""Rollups against the exact figures on a synthetic set, incremental refresh, and the periodic runner.

Stated tolerance: each rollup percentile is within the width of the histogram bucket holding the exact
value (1 s below 2 min, 5 s below 10 min, 30 s below 1 h); counts are equal; compliance within 0.5 %
(exact in fact: every default target is a bucket edge)."""

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from accounts.models import Role
from cad import periodic
from dashboard.kpis import bucket_width_at, exact_kpis, histogram_percentile, rollup_kpis
from dashboard.models import KpiRollup, RollupWatermark
from dashboard.rollups import refresh_rollups
from geo.models import Jurisdiction
from incidents.models import Call, CallDisposition, Incident, IncidentStatus
from tests.factories import IncidentTypeFactory, jurisdiction

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 1, tzinfo=UTC)
RANGE = {"start": START, "end": START + timedelta(days=3)}


@pytest.fixture
def synthetic(center, make_user):
    """~3,000 calls over 3 days: 5 % unanswered, 20 % improcedente, the rest open incidents with
    log-normal intervals; 10 % of incidents cancelled before arrival, 5 % never dispatched."""
    rng = np.random.default_rng(20261101)
    user = make_user(Role.CALL_TAKER)
    types = [IncidentTypeFactory(code=c) for c in ("10104", "20101", "30101")]
    prank = IncidentTypeFactory(code="70101", name="Broma")
    state = jurisdiction("15", "México", Jurisdiction.Kind.STATE)
    munis = [
        state,
        jurisdiction("15106", "Toluca", "municipality", state),
        jurisdiction("15033", "Ecatepec", "municipality", state),
    ]
    count = 3000
    arrivals = START + np.sort(rng.uniform(0, 3 * 86400, count)) * timedelta(seconds=1)
    answer = rng.lognormal(np.log(8), 0.6, count)
    processing = rng.lognormal(np.log(55), 0.5, count)
    dispatch = rng.lognormal(np.log(80), 0.6, count)
    turnout = rng.lognormal(np.log(40), 0.5, count)
    travel = rng.lognormal(np.log(420), 0.5, count)
    fate = rng.uniform(size=count)
    incidents, calls = [], []
    for i in range(count):
        arrived = arrivals[i]
        answered = None if fate[i] < 0.05 else arrived + timedelta(seconds=float(answer[i]))
        line = "089" if i % 10 == 0 else "911"
        if answered is None or fate[i] < 0.25:
            calls.append(
                Call(
                    center=center,
                    line=line,
                    arrived_at=arrived,
                    answered_at=answered,
                    call_taker=user,
                    disposition=CallDisposition.IMPROCEDENTE if answered else CallDisposition.INFORMATIONAL,
                    incident_type=prank if answered else None,
                )
            )
            continue
        itype = types[i % 3]
        opened = answered + timedelta(seconds=float(processing[i]))
        stamps = {"first_dispatched_at": None, "first_en_route_at": None, "first_on_scene_at": None}
        closed = None
        if fate[i] > 0.30:  # 5 % never dispatched
            stamps["first_dispatched_at"] = opened + timedelta(seconds=float(dispatch[i]))
            stamps["first_en_route_at"] = stamps["first_dispatched_at"] + timedelta(seconds=float(turnout[i]))
            if fate[i] < 0.38:  # ~10 % cancelled en route
                closed = stamps["first_en_route_at"] + timedelta(seconds=60)
            else:
                stamps["first_on_scene_at"] = stamps["first_en_route_at"] + timedelta(
                    seconds=float(travel[i])
                )
        muni = munis[i % 3]
        incident = Incident(
            folio=f"MEX-2026-{i:06d}",
            center=center,
            incident_type=itype,
            type_code=itype.code,
            type_name=itype.name,
            priority=itype.priority,
            priority_rank=1,
            status=IncidentStatus.CLOSED if closed else IncidentStatus.PENDING,
            call_arrived_at=arrived,
            call_answered_at=answered,
            opened_at=opened,
            closed_at=closed,
            state=state,
            municipality=None if muni is state else muni,
            created_by=user,
            **stamps,
        )
        incidents.append(incident)
        calls.append(
            Call(
                center=center,
                line=line,
                arrived_at=arrived,
                answered_at=answered,
                call_taker=user,
                disposition=CallDisposition.NEW_INCIDENT,
                incident_type=itype,
                incident=incident,
            )
        )
    Incident.objects.bulk_create(incidents, batch_size=1000)
    for call in calls:
        call.incident_id = call.incident.pk if call.incident else None
    Call.objects.bulk_create(calls, batch_size=1000)
    return center


def _assert_close(rolled, exact, where):
    for field in ("calls", "unanswered", "improcedente", "incidents", "cancelled"):
        assert rolled[field] == exact[field], (where, field)
    for metric, block in exact["metrics"].items():
        got = rolled["metrics"][metric]
        assert (got["n"], got["missing"]) == (block["n"], block["missing"]), (where, metric)
        for q in ("p50", "p90", "p95"):
            if block[q] is None:
                assert got[q] is None
                continue
            tolerance = bucket_width_at(block[q]) + 0.1  # + rounding to 0.1 s
            assert abs(got[q] - block[q]) <= tolerance, (where, metric, q, got[q], block[q])
        for key, compliance in block["compliance"].items():
            if compliance["share"] is None:
                assert got["compliance"][key]["share"] is None
                continue
            assert abs(got["compliance"][key]["share"] - compliance["share"]) <= 0.005, (where, key)


def test_rollups_match_exact_within_bucket_width(synthetic):
    result = refresh_rollups()
    assert result["hours"] in (72, 73)  # the last incidents may open in hour 73
    [exact] = exact_kpis(center_id=synthetic.id, use_sql=False, **RANGE)
    [rolled] = rollup_kpis(center_id=synthetic.id, **RANGE)
    assert exact["calls"] == 3000 and exact["cancelled"] > 100 and exact["unanswered"] > 100
    _assert_close(rolled, exact, "total")
    for group_by in ("line", "tipo", "state", "jurisdiction", "hour"):
        exact_groups = {
            tuple(g["key"]): g for g in exact_kpis(center_id=synthetic.id, group_by=group_by, **RANGE)
        }
        rolled_groups = {
            tuple(g["key"]): g for g in rollup_kpis(center_id=synthetic.id, group_by=group_by, **RANGE)
        }
        assert set(rolled_groups) == set(exact_groups), group_by
        for key, group in exact_groups.items():
            _assert_close(rolled_groups[key], group, (group_by, key))
    # A sub-range (one day) sums only its hours.
    day = {"start": START + timedelta(days=1), "end": START + timedelta(days=2)}
    _assert_close(
        rollup_kpis(center_id=synthetic.id, **day)[0], exact_kpis(center_id=synthetic.id, **day)[0], "day"
    )


def test_refresh_is_incremental_and_idempotent(synthetic):
    refresh_rollups()
    before = sorted(
        KpiRollup.objects.values_list(
            "hour", "metric", "line", "tipo", "state", "municipality", "n", "missing", "hist"
        )
    )
    # Nothing changed: re-running (even over everything) rewrites identical rows.
    refresh_rollups(since=START - timedelta(days=1))
    after = sorted(
        KpiRollup.objects.values_list(
            "hour", "metric", "line", "tipo", "state", "municipality", "n", "missing", "hist"
        )
    )
    assert after == before
    # A never-dispatched incident gets a unit there: only its hour is recomputed, and the figure moves.
    incident = Incident.objects.filter(first_dispatched_at__isnull=True, closed_at__isnull=True).first()
    hour = incident.opened_at.replace(minute=0, second=0, microsecond=0)
    n_before = KpiRollup.objects.get(
        grain="h", hour=hour, metric="total", line="*", tipo="*", state="*", municipality="*"
    ).n
    RollupWatermark.objects.update(since=datetime.now(tz=UTC) - timedelta(seconds=1))
    incident.first_dispatched_at = incident.opened_at + timedelta(seconds=30)
    incident.first_en_route_at = incident.opened_at + timedelta(seconds=60)
    incident.first_on_scene_at = incident.opened_at + timedelta(seconds=400)
    incident.save()
    result = refresh_rollups()
    assert result["hours"] == 1
    n_after = KpiRollup.objects.get(
        grain="h", hour=hour, metric="total", line="*", tipo="*", state="*", municipality="*"
    ).n
    assert n_after == n_before + 1
    [exact] = exact_kpis(center_id=synthetic.id, use_sql=False, **RANGE)
    [rolled] = rollup_kpis(center_id=synthetic.id, **RANGE)
    _assert_close(rolled, exact, "after change")


def test_histogram_percentile_error_is_bounded_by_the_bucket():
    rng = np.random.default_rng(7)
    values = rng.lognormal(np.log(300), 1.0, 20000)
    from dashboard.kpis import histogram_of

    hist = histogram_of(values)
    for q in (50, 90, 95, 99):
        exact = float(np.percentile(values, q))
        assert abs(histogram_percentile(hist, q) - exact) <= bucket_width_at(exact)


@pytest.mark.django_db(transaction=True)  # jobs close stale connections, as a worker thread does
def test_periodic_registry_runs_the_rollup_job(synthetic):
    job = periodic.REGISTRY["dashboard.refresh_kpi_rollups"]
    assert job.every == 60 and job.task == "dashboard.tasks.refresh_kpi_rollups"
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["dashboard.refresh_kpi_rollups"]["schedule"] == 60
    job.next_run = 0
    assert "dashboard.refresh_kpi_rollups" in periodic.run_due(now=1.0)
    assert KpiRollup.objects.exists()
    assert periodic.run_due(now=2.0) == []  # not due again for 60 s


calls_seen = threading.Event()


def _mark():
    calls_seen.set()


def test_embedded_scheduler_thread_runs_jobs_and_stops(settings):
    settings.CELERY_BROKER_URL = ""
    saved = dict(periodic.REGISTRY)
    periodic.REGISTRY.clear()
    try:
        periodic.register("test.mark", task="tests.test_rollups._mark", every=0.05)
        assert periodic.start(tick=0.02)
        assert periodic.start()  # idempotent
        assert calls_seen.wait(5)
        periodic.stop()
        assert not periodic.is_running()
        settings.CELERY_BROKER_URL = "redis://example.invalid/0"
        assert periodic.start() is False  # beat owns the schedule when a broker is configured
    finally:
        periodic.stop()
        periodic.REGISTRY.clear()
        periodic.REGISTRY.update(saved)
        settings.CELERY_BEAT_SCHEDULE.pop("test.mark", None)

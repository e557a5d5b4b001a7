"""Benchmark: unit recommendation latency over a large fleet.

    python bench/recommend.py [--units 10000] [--incidents 600]

Runs against a dedicated bench database derived from DATABASE_URL (PostgreSQL: `<db>_bench_recommend`,
created and migrated; SQLite/none: a temporary file). Seeds the fleet with `seed_demo --units N`, refreshes
every unit's position (available, fresh), creates incidents of random CNIE types at random points of the
state, and times `units.selectors.recommend_units` for each → recommend_p50_ms / recommend_p99_ms
(floor: p99 < 50 ms). Baseline in the same run: a brute-force full scan of every available unit per
required capability (no bounding box), whose top candidate must agree with the recommendation.
"""

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, percentile, progress, report, setup_django  # noqa: E402

# Estado de México, approximate bounding box (used when INEGI boundaries are not loaded).
STATE_BBOX = (18.37, -100.61, 20.29, -98.60)  # min_lat, min_lon, max_lat, max_lon
P99_FLOOR_MS = 50.0


def use_bench_database(suffix: str) -> str:
    """Point DATABASE_URL at a dedicated bench database before Django loads; returns a description."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import environ
        import psycopg

        cfg = environ.Env.db_url_config(url)
        name = f"{cfg['NAME']}_bench_{suffix}"
        connect = {
            "host": cfg["HOST"] or None,
            "port": cfg["PORT"] or None,
            "user": cfg["USER"] or None,
            "password": cfg["PASSWORD"] or None,
        }
        with psycopg.connect(dbname="postgres", autocommit=True, **connect) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + "/" + name
        return f"postgresql:{name}"
    path = Path(tempfile.gettempdir()) / f"cad_bench_{suffix}.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{path}"
    return f"sqlite:{path}"


def prepare(*, units: int, incidents: int, seed: int):
    """Migrate, seed the fleet, refresh positions, create the incidents; returns the incidents."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Role, User
    from cad.models import Center
    from geo.models import Jurisdiction
    from incidents.catalogue import response_plan_for
    from incidents.models import PRIORITY_RANK, Incident, IncidentType
    from units.models import Unit, UnitStatus

    progress("migrate")
    call_command("migrate", verbosity=0)
    progress(f"seed_demo --units {units}")
    call_command("seed_demo", units=units, stdout=open(os.devnull, "w"))  # noqa: SIM115
    center = Center.objects.get(code="MEX")
    now = timezone.now()
    fleet = Unit.objects.filter(center=center).update(
        status=UnitStatus.AVAILABLE, position_at=now, status_changed_at=now
    )
    progress(f"{fleet} units available with fresh positions")

    state = Jurisdiction.objects.filter(kind=Jurisdiction.Kind.STATE, cve_ent=center.cve_ent or "15").first()
    bbox = (state.min_lat, state.min_lon, state.max_lat, state.max_lon) if state else STATE_BBOX
    types = [t for t in IncidentType.objects.filter(active=True) if response_plan_for(t)]
    if not types:
        sys.exit("No incident types with a response plan: is the CNIE catalogue loaded (seed_demo)?")
    user = User.objects.filter(center=center, role=Role.ADMINISTRATOR).first()
    rng = random.Random(seed)
    run = f"B{int(time.time())}"
    rows = []
    for i in range(incidents):
        itype = rng.choice(types)
        rows.append(
            Incident(
                folio=f"MEX-BENCH-{run}-{i:05d}",
                center=center,
                incident_type=itype,
                type_code=itype.code,
                type_name=itype.name,
                priority=itype.priority,
                priority_rank=PRIORITY_RANK[itype.priority],
                lat=rng.uniform(bbox[0], bbox[2]),
                lon=rng.uniform(bbox[1], bbox[3]),
                opened_at=now,
                created_by=user,
            )
        )
    Incident.objects.bulk_create(rows, batch_size=1000)
    if connection.vendor == "postgresql":  # fresh planner statistics, as autovacuum keeps them in service
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    progress(f"{incidents} incidents at random points of {state.name if state else 'the state bbox'}")
    return list(
        Incident.objects.filter(folio__startswith=f"MEX-BENCH-{run}-")
        .select_related("incident_type")
        .order_by("folio")
    )


def full_scan(*, incident, plan: dict, now) -> dict[str, int | None]:
    """Baseline: per capability, load every available fresh unit (no box) and rank them all by ETA."""
    from datetime import timedelta

    import numpy as np
    from django.conf import settings

    from units.models import Unit, UnitStatus
    from units.routing import get_estimator

    fresh_after = now - timedelta(seconds=settings.CAD["AVL_STALE_SECONDS"])
    best = {}
    for capability in plan:
        rows = Unit.objects.filter(
            center_id=incident.center_id, status=UnitStatus.AVAILABLE, position_at__gte=fresh_after
        ).exclude(lat__isnull=True)
        if capability:
            rows = rows.filter(capabilities__code=capability)
        rows = list(rows.values_list("id", "lat", "lon", "agency__speed_kmh"))
        if not rows:
            best[capability] = None
            continue
        data = np.array([r[1:] for r in rows], dtype=float)
        _, seconds = get_estimator().estimate(
            origin=(incident.lat, incident.lon), lats=data[:, 0], lons=data[:, 1], speeds_kmh=data[:, 2]
        )
        best[capability] = rows[int(np.argmin(seconds))][0]
    return best


class BoxGrowingEstimator:
    """The straight-line estimator under another class: units.selectors then takes its estimator-agnostic
    path (bounding boxes grown in turn, ranked in Python) — the pre-optimisation algorithm, as a baseline."""

    def __init__(self):
        from units.routing import StraightLineEstimator

        self._inner = StraightLineEstimator()

    def estimate(self, **kwargs):
        return self._inner.estimate(**kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=10000)
    parser.add_argument("--incidents", type=int, default=600)
    parser.add_argument(
        "--baseline-incidents", type=int, default=100, help="incidents timed by the full scan"
    )
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.incidents < 500:
        parser.error("--incidents must be at least 500 for a meaningful p99")

    database = use_bench_database("recommend")
    progress(f"bench database {database}")
    setup_django()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from incidents.catalogue import response_plan_for
    from units.selectors import recommend_units

    incidents = prepare(units=args.units, incidents=args.incidents, seed=args.seed)
    now = timezone.now()

    # Warm-up (connection, estimator import, query plans): not timed; also counts queries.
    with CaptureQueriesContext(connection) as captured:
        for incident in incidents[:20]:
            recommend_units(incident=incident, now=now)
    queries_per_call = len(captured.captured_queries) / 20

    progress(f"timing recommend_units on {len(incidents)} incidents")
    timings, results = [], {}
    for incident in incidents:
        started = time.perf_counter()
        result = recommend_units(incident=incident, now=now)
        timings.append((time.perf_counter() - started) * 1000)
        results[incident.pk] = result

    progress(f"timing the full-scan baseline on {args.baseline_incidents} incidents")
    baseline, agree, compared = [], 0, 0
    for incident in incidents[: args.baseline_incidents]:
        plan = response_plan_for(incident.incident_type)
        started = time.perf_counter()
        best = full_scan(incident=incident, plan=plan, now=now)
        baseline.append((time.perf_counter() - started) * 1000)
        for requirement in results[incident.pk]["requirements"]:
            expected = best.get(requirement["capability"] or "")
            got = requirement["candidates"][0]["unit_id"] if requirement["candidates"] else None
            compared += 1
            agree += expected == got

    progress(f"timing the bounding-box baseline on {args.baseline_incidents} incidents")
    from django.conf import settings

    settings.CAD["TRAVEL_TIME_ESTIMATOR"] = "bench.recommend.BoxGrowingEstimator"
    boxed, bbox_disagreements = [], 0
    for incident in incidents[: args.baseline_incidents]:
        started = time.perf_counter()
        boxed_result = recommend_units(incident=incident, now=now)
        boxed.append((time.perf_counter() - started) * 1000)
        bbox_disagreements += boxed_result["suggested_unit_ids"] != results[incident.pk]["suggested_unit_ids"]
    settings.CAD["TRAVEL_TIME_ESTIMATOR"] = "units.routing.StraightLineEstimator"

    p50, p99 = percentile(timings, 50), percentile(timings, 99)
    base_p50 = median(baseline)
    results_out = {
        "recommend_p50_ms": p50,
        "recommend_p99_ms": p99,
        "recommend_max_ms": max(timings),
        "queries_per_recommend": queries_per_call,
        "baseline_fullscan_p50_ms": base_p50,
        "speedup_vs_fullscan_p50": base_p50 / p50 if p50 else float("nan"),
        "baseline_bbox_p50_ms": median(boxed),
        "baseline_bbox_p99_ms": percentile(boxed, 99),
        "speedup_vs_bbox_p99": percentile(boxed, 99) / p99 if p99 else float("nan"),
        "top_candidate_agreement": f"{agree}/{compared}",
        "bbox_suggestion_disagreements": bbox_disagreements,
        "p99_floor_ms": P99_FLOOR_MS,
        "p99_under_floor": p99 < P99_FLOOR_MS,
    }
    report(
        "recommend",
        {"units": args.units, "incidents": len(incidents), "baseline_incidents": len(baseline)},
        results_out,
    )
    if agree != compared or bbox_disagreements:
        sys.exit(
            f"recommendation disagrees with the full scan on {compared - agree} requirements "
            f"and with the bounding-box path on {bbox_disagreements} incidents"
        )


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_DEBUG", "false")
    main()

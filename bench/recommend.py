"""Benchmark: unit recommendations through the HTTP API, against the raw nearest-unit query in the same run.

    python bench/recommend.py [--units 10000] [--incidents 600] [--fleet spread|stations] [--sweep]

Recreates a dedicated database (`<DATABASE_URL name>_bench_recommend`; SQLite: a temporary file), seeds the
fleet with `seed_demo --units N` and makes every unit available with a fresh position:

* `--fleet spread` (default): positions uniform over the state's bounding box, like the incidents — a
  fleet on patrol;
* `--fleet stations`: the seed's positions, every unit within ~2 km of one of 8 stations (a parking lot;
  the worst case for any spatial index: an incident far from the stations must rank a whole station).

Creates `--incidents` incidents of random CNIE types at random points of the state, starts the server
(`python -m cad.serve --procs 1`) and, from one keep-alive client authenticated with the dispatcher's
token, GETs `/api/v1/incidents/<folio>/recommendations` for each incident in turn:
`recommend_api_p50_ms`, `recommend_api_p99_ms` (floor: p99 < 10 ms at 10,000 units).

In the same run:
* `raw_nearest_p50_ms` / `raw_nearest_p99_ms`: the physical baseline — psycopg on a prepared statement,
  the nearest 5 available units (any capability) by a box on the (center, status, lat, lon) btree plus
  haversine, the box grown until certified exactly as the service does; `api_vs_raw_p99` is the ratio;
* `recommend_service_p99_ms`: units.selectors.recommend_units in this process (no HTTP);
* correctness: every API answer equals recommend_units with the box turned off (every available unit
  ranked, as before the box existed: `answers_identical`), and each requirement's first candidate equals a
  numpy full scan (`top_candidate_agreement`). Any difference fails the run.

`--sweep` repeats the API and raw timings for 1k, 3k, 10k, 30k and 100k units (adding units step by step;
~5 min in all) and writes docs/bench/recommend_sweep.csv and .png.
"""

import argparse
import logging
import math
import os
import random
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Server,
    bench_database,
    percentile,
    progress,
    report,
    setup_django,
    write_sweep,
)

# Estado de México, approximate bounding box (used when INEGI boundaries are not loaded).
STATE_BBOX = (18.37, -100.61, 20.29, -98.60)  # min_lat, min_lon, max_lat, max_lon
P99_FLOOR_MS = 10.0
SWEEP = (1_000, 3_000, 10_000, 30_000, 100_000)
RAW_LIMIT = 5


def state_bbox(center) -> tuple[float, float, float, float]:
    from geo.models import Jurisdiction

    state = Jurisdiction.objects.filter(kind=Jurisdiction.Kind.STATE, cve_ent=center.cve_ent or "15").first()
    return (state.min_lat, state.min_lon, state.max_lat, state.max_lon) if state else STATE_BBOX


def prepare_fleet(*, units: int, fleet: str, seed: int) -> None:
    """Seed (or grow) the fleet to `units`; every unit available with a fresh position (spread or as seeded)."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from cad.models import Center
    from units.models import Unit, UnitStatus

    progress(f"seed_demo --units {units}")
    call_command("seed_demo", units=units, stdout=open(os.devnull, "w"))  # noqa: SIM115
    center = Center.objects.get(code="MEX")
    now = timezone.now()
    Unit.objects.filter(center=center).update(
        status=UnitStatus.AVAILABLE, position_at=now, status_changed_at=now
    )
    if fleet == "spread":
        bbox = state_bbox(center)
        rng = random.Random(seed)
        ids = list(Unit.objects.filter(center=center).order_by("id").values_list("id", flat=True))
        rows = [(rng.uniform(bbox[0], bbox[2]), rng.uniform(bbox[1], bbox[3]), uid) for uid in ids]
        with connection.cursor() as cursor:
            cursor.executemany(f"UPDATE {Unit._meta.db_table} SET lat = %s, lon = %s WHERE id = %s", rows)  # noqa: S608
    if connection.vendor == "postgresql":  # fresh planner statistics, as autovacuum keeps them in service
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    progress(f"{units} units available with fresh positions ({fleet})")


def make_incidents(*, count: int, seed: int) -> list:
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Role, User
    from cad.models import Center
    from incidents.catalogue import response_plan_for
    from incidents.models import PRIORITY_RANK, Incident, IncidentType

    center = Center.objects.get(code="MEX")
    bbox = state_bbox(center)
    types = [t for t in IncidentType.objects.filter(active=True) if response_plan_for(t)]
    if not types:
        sys.exit("No incident types with a response plan: is the CNIE catalogue loaded (seed_demo)?")
    user = User.objects.filter(center=center, role=Role.ADMINISTRATOR).first()
    rng = random.Random(seed)
    run = f"B{int(time.time())}"
    now = timezone.now()
    rows = []
    for i in range(count):
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
    if connection.vendor == "postgresql":  # as in prepare_fleet: the folio lookup then uses its index
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Incident._meta.db_table}")
    progress(f"{count} incidents at random points of the state")
    return list(
        Incident.objects.filter(folio__startswith=f"MEX-BENCH-{run}-")
        .select_related("incident_type")
        .order_by("folio")
    )


def time_api(*, base: str, token: str, incidents: list) -> tuple[list[float], dict[str, dict]]:
    """GET every incident's recommendations in turn on one keep-alive connection (after a warm-up)."""
    import httpx

    timings, answers = [], {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}, timeout=30) as client:
        for incident in incidents[:30]:  # warm-up: connection, imports, plans; not timed
            client.get(f"/api/v1/incidents/{incident.folio}/recommendations").raise_for_status()
        for incident in incidents:
            started = time.perf_counter()
            response = client.get(f"/api/v1/incidents/{incident.folio}/recommendations")
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
            answers[incident.folio] = response.json()
    return timings, answers


RAW_SQL = """
SELECT u.id,
       ASIN(SQRT(LEAST(SIN((RADIANS(u.lat) - %(lat_r)s) / 2) ^ 2
                       + %(cos_lat)s * COS(RADIANS(u.lat)) * SIN((RADIANS(u.lon) - %(lon_r)s) / 2) ^ 2, 1.0)))
         / GREATEST(a.speed_kmh, 1.0) AS eta_rank
  FROM units_unit u JOIN units_agency a ON a.id = u.agency_id
 WHERE u.center_id = %(center)s AND u.status = 'available' AND u.position_at >= %(fresh)s
   AND u.lat BETWEEN %(min_lat)s AND %(max_lat)s AND u.lon BETWEEN %(min_lon)s AND %(max_lon)s
 ORDER BY eta_rank, u.id
 LIMIT %(limit)s
"""


def time_raw_nearest(*, url: str, incidents: list, fresh_after) -> tuple[list[float], float]:
    """The nearest RAW_LIMIT available units per incident straight from psycopg (prepared statement), the
    box grown until certified as in units.selectors; returns per-incident ms and queries per answer."""
    import psycopg

    from units.routing import EARTH_RADIUS_KM
    from units.selectors import FIRST_BOX_KM, _box

    timings, queries = [], 0
    with psycopg.connect(url, autocommit=True) as conn:
        center_id = incidents[0].center_id
        fastest = conn.execute(
            "SELECT MAX(speed_kmh) FROM units_agency WHERE center_id = %s", [center_id]
        ).fetchone()[0]
        for round_ in range(2):  # the first round warms the prepared statement and the cache
            for incident in incidents:
                started = time.perf_counter()
                lat_r, lon_r = math.radians(incident.lat), math.radians(incident.lon)
                params = {
                    "lat_r": lat_r,
                    "lon_r": lon_r,
                    "cos_lat": math.cos(lat_r),
                    "center": center_id,
                    "fresh": fresh_after,
                    "limit": RAW_LIMIT,
                }
                radius = FIRST_BOX_KM
                while True:
                    box = _box(incident.lat, incident.lon, radius) or (-90.0, 90.0, -180.0, 180.0)
                    params.update(zip(("min_lat", "max_lat", "min_lon", "max_lon"), box, strict=True))
                    rows = conn.execute(RAW_SQL, params, prepare=True).fetchall()
                    queries += round_
                    if len(rows) < RAW_LIMIT:
                        if box[0] == -90.0:
                            break
                        radius *= math.sqrt(2 * RAW_LIMIT / len(rows)) if rows else 3.0
                        continue
                    bound = radius / (2 * EARTH_RADIUS_KM) / max(fastest, 1.0)
                    if rows[-1][1] < bound * (1 - 1e-9) or box[0] == -90.0:
                        break
                    radius = max(
                        rows[-1][1] * max(fastest, 1.0) * 2 * EARTH_RADIUS_KM * (1 + 1e-6), radius * 1.2
                    )
                if round_:
                    timings.append((time.perf_counter() - started) * 1000)
    return timings, queries / len(incidents)


def full_scan_best(*, incident, plan: dict, now) -> dict[str, int | None]:
    """Independent check: per capability, load every available fresh unit and pick the best ETA in numpy."""
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
        rows = sorted(rows.values_list("id", "lat", "lon", "agency__speed_kmh"))
        if not rows:
            best[capability] = None
            continue
        data = np.array([r[1:] for r in rows], dtype=float)
        _, seconds = get_estimator().estimate(
            origin=(incident.lat, incident.lon), lats=data[:, 0], lons=data[:, 1], speeds_kmh=data[:, 2]
        )
        best[capability] = rows[int(np.argmin(seconds))][0]
    return best


def check_answers(*, incidents: list, answers: dict[str, dict]) -> tuple[bool, str]:
    """Every API answer against recommend_units ranking every unit (no box), and a numpy full scan."""
    from django.utils import timezone

    import units.selectors as selectors
    from incidents.catalogue import response_plan_for

    now = timezone.now()
    saved, selectors.LAST_BOX_KM = selectors.LAST_BOX_KM, -1.0  # every query ranks the whole centre
    try:
        unboxed = {i.folio: selectors.recommend_units(incident=i, now=now) for i in incidents}
    finally:
        selectors.LAST_BOX_KM = saved

    def ranking(answer):
        return [
            [(c["unit_id"], c["eta_s"]) for c in r["candidates"]] for r in answer["requirements"]
        ], answer["suggested_unit_ids"]

    different = [f for f, answer in answers.items() if ranking(answer) != ranking(unboxed[f])]
    agree = compared = 0
    for incident in incidents[:100]:
        best = full_scan_best(incident=incident, plan=response_plan_for(incident.incident_type), now=now)
        for requirement in answers[incident.folio]["requirements"]:
            got = requirement["candidates"][0]["unit_id"] if requirement["candidates"] else None
            compared += 1
            agree += best.get(requirement["capability"] or "") == got
    return not different and agree == compared, f"{agree}/{compared}" + (
        f"; {len(different)} answers differ from the full ranking, e.g. {different[:3]}" if different else ""
    )


def time_service(incidents: list) -> list[float]:
    from django.utils import timezone

    from units.selectors import recommend_units

    now = timezone.now()
    for incident in incidents[:20]:
        recommend_units(incident=incident, now=now)
    timings = []
    for incident in incidents:
        started = time.perf_counter()
        recommend_units(incident=incident, now=now)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure(*, server, token: str, url: str, incidents: list) -> dict:
    from django.conf import settings
    from django.utils import timezone

    api, answers = time_api(base=server.base, token=token, incidents=incidents)
    fresh_after = timezone.now() - timedelta(seconds=settings.CAD["AVL_STALE_SECONDS"])
    raw, raw_queries = time_raw_nearest(url=url, incidents=incidents, fresh_after=fresh_after)
    return {"api": api, "answers": answers, "raw": raw, "raw_queries": raw_queries}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=10000)
    parser.add_argument("--incidents", type=int, default=600)
    parser.add_argument("--fleet", choices=("spread", "stations"), default="spread")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--sweep", action="store_true", help=f"also time {SWEEP} units (~5 min)")
    args = parser.parse_args()
    if args.incidents < 500:
        parser.error("--incidents must be at least 500 for a meaningful p99")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("recommend measures the production path: set DATABASE_URL (PostgreSQL) and REDIS_URL")

    url = bench_database("recommend")
    os.environ["DATABASE_URL"] = url
    progress(f"bench database {url.rsplit('/', 1)[-1]}")
    setup_django()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command
    from django.db import connections

    from accounts.models import User
    from accounts.tokens import issue_token

    call_command("migrate", verbosity=0)
    prepare_fleet(units=args.units, fleet=args.fleet, seed=args.seed)
    incidents = make_incidents(count=args.incidents, seed=args.seed)
    token = issue_token(User.objects.get(username="despachador"))
    connections.close_all()
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SECURE_COOKIES": "false", "LOG_LEVEL": "WARNING"}
    sweep_rows = []
    log = Path(tempfile.mkdtemp(prefix="cad-bench-")) / "serve.log"
    progress(f"server log: {log}")
    with Server(1, env, log, start_timeout=90) as server:
        progress(f"timing GET …/recommendations for {len(incidents)} incidents through {server.base}")
        main_run = measure(server=server, token=token, url=url, incidents=incidents)
        service = time_service(incidents)
        identical, agreement = check_answers(incidents=incidents, answers=main_run["answers"])
        if args.sweep:
            for units in SWEEP:
                if units == args.units:
                    run = main_run
                else:
                    prepare_fleet(units=units, fleet=args.fleet, seed=args.seed)
                    connections.close_all()
                    run = measure(server=server, token=token, url=url, incidents=incidents)
                row = {
                    "units": units,
                    "recommend_api_p50_ms": round(percentile(run["api"], 50), 3),
                    "recommend_api_p99_ms": round(percentile(run["api"], 99), 3),
                    "raw_nearest_p99_ms": round(percentile(run["raw"], 99), 3),
                }
                progress(f"sweep {row}")
                sweep_rows.append(row)

    api_p99, raw_p99 = percentile(main_run["api"], 99), percentile(main_run["raw"], 99)
    results = {
        "recommend_api_p50_ms": percentile(main_run["api"], 50),
        "recommend_api_p99_ms": api_p99,
        "recommend_api_max_ms": max(main_run["api"]),
        "recommend_service_p50_ms": percentile(service, 50),
        "recommend_service_p99_ms": percentile(service, 99),
        "raw_nearest_p50_ms": percentile(main_run["raw"], 50),
        "raw_nearest_p99_ms": raw_p99,
        "raw_queries_per_answer": main_run["raw_queries"],
        "api_vs_raw_p99": api_p99 / raw_p99 if raw_p99 else float("nan"),
        "answers_identical": identical,
        "top_candidate_agreement": agreement,
        "p99_floor_ms": P99_FLOOR_MS,
        "p99_under_floor": api_p99 < P99_FLOOR_MS,
    }
    if sweep_rows:
        results["sweep_csv"], _png = write_sweep(
            "recommend_sweep",
            sweep_rows,
            x="units",
            series={
                "recommend_api_p50_ms": "API p50",
                "recommend_api_p99_ms": "API p99",
                "raw_nearest_p99_ms": "raw nearest p99",
            },
            xlabel="units (available, fresh)",
            ylabel="ms",
            floor=P99_FLOOR_MS,
        )
        results["largest_fleet_under_floor"] = max(
            (r["units"] for r in sweep_rows if r["recommend_api_p99_ms"] < P99_FLOOR_MS), default=None
        )
    report(
        "recommend",
        {
            "units": args.units,
            "incidents": len(incidents),
            "fleet": args.fleet,
            "server": "cad.serve --procs 1",
        },
        results,
    )
    if not identical:
        sys.exit(f"recommendations differ from the full ranking: {agreement}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_DEBUG", "false")
    main()

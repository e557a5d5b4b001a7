"""KPI benchmark: a synthetic month in PostgreSQL, the rollup refresh, the dashboard's month query and the
exact monthly report.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cad python bench/kpi.py --calls 1000000 [--sweep]
    python bench/kpi.py --calls 100000          # quick run

Recreates `<DATABASE_URL name>_bench_kpi` (dropped at the end unless --keep), migrates it, loads `--calls`
calls of November 2026 with COPY (~40 % improcedente, ~3 % unanswered, the rest opening incidents with
log-normal intervals; ~8 % of incidents cancelled before arrival, ~2 % settled without a unit, those of
the last hour still open), then measures:

* `refresh_ms`: refresh_rollups() rebuilding every hour of the month;
* `kpi_month_ms`: the dashboard's KPI query for the month (rollups: total + by line), median of runs
  (floor < 100 ms at 1,000,000 calls);
* `kpi_month_exact_ms`: the exact monthly report — the same figures from the rows (percentile_cont in SQL,
  total + by line), median of runs (floor < 4,000 ms at 1,000,000 calls);
* baseline in the same run: `raw_scan_ms`, one bare `SELECT count(*), sum(answer interval)` over the
  month's calls and incidents (what reading the rows costs at all), and `exact_vs_scan_ratio`;
and checks the rollups and the exact figures agree (p90 within the bucket width).

`--sweep` repeats the load and the measures for 100k, 300k, 1M and 2M calls (~8 min on 2 cores; 5M needs
`--sweep-max 5000000` and ~20 min more) and writes docs/bench/kpi_sweep.csv and .png.
"""

import argparse
import io
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import (  # noqa: E402
    bench_database,
    drop_bench_database,
    median,
    progress,
    report,
    write_sweep,
)

MONTH_START = np.datetime64("2026-11-01T06:00:00")  # 00:00 in Mexico City, as UTC
MONTH_SECONDS = 30 * 86400
TYPES = [  # code, name, tipo name, priority
    ("10104", "Accidente de vehículo automotor con lesionados", "Médico", "ALTA"),
    ("10203", "Persona inconsciente", "Médico", "ALTA"),
    ("20101", "Incendio de casa habitación", "Protección civil", "ALTA"),
    ("30101", "Robo a transeúnte", "Seguridad", "MEDIA"),
    ("30405", "Riña", "Seguridad", "MEDIA"),
    ("40101", "Persona extraviada", "Servicios públicos", "BAJA"),
    ("50101", "Ruido excesivo", "Faltas cívicas", "BAJA"),
    ("70101", "Llamada de broma", "Improcedente", "BAJA"),
]
MUNICIPALITIES = ["15106", "15033", "15058", "15104", "15057", "15054", "15121", "15099", "15031", "15081"]


def _ts(values: np.ndarray) -> np.ndarray:
    """datetime64[us] (NaT allowed) → COPY text ('\\N' for NaT)."""
    text = np.datetime_as_string(values, unit="us")
    return np.where(np.isnat(values), "\\N", np.char.add(text, "+00"))


def _copy(cursor, table: str, columns: list[str], rows: list[np.ndarray], label: str) -> None:
    size = len(rows[0])
    chunk = 100_000
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for start in range(0, size, chunk):
            block = [column[start : start + chunk].astype(str) for column in rows]
            buffer = io.StringIO()
            for row in zip(*block, strict=True):
                buffer.write("\t".join(row))
                buffer.write("\n")
            copy.write(buffer.getvalue())
            progress(f"{label}: {min(start + chunk, size):,}/{size:,}")


def load(calls: int, seed: int = 2026) -> dict:
    """Reference rows through the ORM, then calls and incidents with COPY. Returns ids."""
    from django.db import connection

    from accounts.models import Role, User
    from cad.models import Center
    from geo.models import Jurisdiction
    from incidents.models import IncidentType

    center = Center.objects.create(code="MEX", name="Estado de México C5", cve_ent="15")
    user = User.objects.create(username="bench", role=Role.CALL_TAKER, center=center)
    types = [
        IncidentType.objects.create(
            code=code,
            name=name,
            tipo_code=code[0],
            tipo_name=tipo,
            subtipo_code=code[:3],
            subtipo_name=tipo,
            priority=priority,
        )
        for code, name, tipo, priority in TYPES
    ]
    square = {
        "type": "Polygon",
        "coordinates": [[[-99.7, 19.2], [-99.6, 19.2], [-99.6, 19.3], [-99.7, 19.2]]],
    }
    state = Jurisdiction.objects.create(
        kind="state",
        cvegeo="15",
        cve_ent="15",
        name="México",
        geometry=square,
        min_lat=18.3,
        min_lon=-100.6,
        max_lat=20.3,
        max_lon=-98.6,
    )
    munis = [
        Jurisdiction.objects.create(
            kind="municipality",
            cvegeo=code,
            cve_ent="15",
            name=f"Municipio {code}",
            parent=state,
            geometry=square,
            min_lat=19.2,
            min_lon=-99.7,
            max_lat=19.3,
            max_lon=-99.6,
        )
        for code in MUNICIPALITIES
    ]

    rng = np.random.default_rng(seed)
    us = np.timedelta64(1, "us")

    def seconds(values):
        return (values * 1e6).astype(np.int64) * us

    arrived = MONTH_START + seconds(np.sort(rng.uniform(0, MONTH_SECONDS, calls)))
    fate = rng.uniform(size=calls)
    unanswered = fate < 0.03
    improcedente = (fate >= 0.03) & (fate < 0.43)
    opens = fate >= 0.43
    answered = arrived + seconds(rng.lognormal(np.log(7), 0.7, calls))
    answered[unanswered] = np.datetime64("NaT")
    line = np.where(rng.uniform(size=calls) < 0.08, "089", "911")
    type_index = np.where(improcedente, len(types) - 1, rng.integers(0, len(types) - 1, calls))

    # Incidents: one per opening call.
    n_inc = int(opens.sum())
    inc_calls = np.flatnonzero(opens)
    ids = np.arange(1, n_inc + 1)
    opened = answered[inc_calls] + seconds(rng.lognormal(np.log(50), 0.5, n_inc))
    dispatched = opened + seconds(rng.lognormal(np.log(75), 0.6, n_inc))
    en_route = dispatched + seconds(rng.lognormal(np.log(45), 0.5, n_inc))
    on_scene = en_route + seconds(rng.lognormal(np.log(480), 0.5, n_inc))
    fate_inc = rng.uniform(size=n_inc)
    never_dispatched = fate_inc < 0.02
    cancelled = (fate_inc >= 0.02) & (fate_inc < 0.10)
    nat = np.datetime64("NaT")
    dispatched[never_dispatched] = nat
    en_route[never_dispatched] = nat
    on_scene[never_dispatched | cancelled] = nat
    closed = np.where(
        cancelled, en_route + seconds(np.full(n_inc, 120.0)), on_scene + seconds(np.full(n_inc, 1800.0))
    )
    # Never dispatched: settled without a unit 10 min after opening, but those of the month's last hour are
    # still open (as at any month end: a handful of incidents waiting for a unit).
    closed[never_dispatched] = opened[never_dispatched] + seconds(np.full(int(never_dispatched.sum()), 600.0))
    closed[never_dispatched & (opened > MONTH_START + seconds(np.array(MONTH_SECONDS - 3600.0)))] = nat
    status = np.where(np.isnat(closed), "pending", "closed")
    muni_ids = np.array([m.id for m in munis])[rng.integers(0, len(munis), n_inc)]
    type_ids = np.array([t.id for t in types])
    type_codes = np.array([t.code for t in types])
    type_names = np.array([t.name for t in types])
    priorities = np.array([t.priority for t in types])
    inc_types = type_index[inc_calls]
    folios = np.char.add("MEX-2026-", np.char.zfill(ids.astype(str), 7))

    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # the psycopg cursor (COPY)
        started = time.monotonic()
        _copy(
            cursor,
            "incidents_incident",
            [
                "id",
                "folio",
                "center_id",
                "incident_type_id",
                "type_code",
                "type_name",
                "priority",
                "priority_rank",
                "status",
                "lat",
                "lon",
                "address",
                "state_id",
                "municipality_id",
                "narrative",
                "line",
                "call_arrived_at",
                "call_answered_at",
                "opened_at",
                "first_dispatched_at",
                "first_en_route_at",
                "first_on_scene_at",
                "closed_at",
                "disposition",
                "created_by_id",
                "updated_at",
                "version",
                "origin_center",
                "origin_folio",
                "location_source",
                "outside_service_area",
            ],
            [
                ids,
                folios,
                np.full(n_inc, center.id),
                type_ids[inc_types],
                type_codes[inc_types],
                type_names[inc_types],
                priorities[inc_types],
                np.full(n_inc, 1),
                status,
                np.full(n_inc, 19.28),
                np.full(n_inc, -99.65),
                np.full(n_inc, ""),
                np.full(n_inc, state.id),
                muni_ids,
                np.full(n_inc, ""),
                line[inc_calls],
                _ts(arrived[inc_calls]),
                _ts(answered[inc_calls]),
                _ts(opened),
                _ts(dispatched),
                _ts(en_route),
                _ts(on_scene),
                _ts(closed),
                np.full(n_inc, ""),
                np.full(n_inc, user.id),
                _ts(opened),
                np.full(n_inc, 1),
                np.full(n_inc, ""),
                np.full(n_inc, ""),
                np.full(n_inc, ""),
                np.full(n_inc, "f"),
            ],
            "incidents",
        )
        incident_of_call = np.full(calls, "\\N", dtype=object)
        incident_of_call[inc_calls] = ids.astype(str)
        disposition = np.where(opens, "new_incident", np.where(improcedente, "improcedente", "informational"))
        call_type = np.where(unanswered, "\\N", type_ids[type_index].astype(str))
        _copy(
            cursor,
            "incidents_call",
            [
                "uid",
                "center_id",
                "line",
                "channel",
                "arrived_at",
                "answered_at",
                "address",
                "location_source",
                "narrative",
                "incident_type_id",
                "disposition",
                "incident_id",
                "call_taker_id",
                "created_at",
            ],
            [
                np.array([str(uuid.uuid4()) for _ in range(calls)]),
                np.full(calls, center.id),
                line,
                np.full(calls, "voice"),
                _ts(arrived),
                _ts(answered),
                np.full(calls, ""),
                np.full(calls, ""),
                np.full(calls, ""),
                call_type,
                disposition,
                incident_of_call,
                np.full(calls, user.id),
                _ts(arrived),
            ],
            "calls",
        )
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('incidents_incident', 'id'), (SELECT max(id) FROM incidents_incident))"
        )
        cursor.execute("ANALYZE incidents_call; ANALYZE incidents_incident")
        progress(f"loaded {calls:,} calls and {n_inc:,} incidents in {time.monotonic() - started:.1f} s")
    return {"center_id": center.id, "incidents": n_inc}


SCAN_SQL = """
SELECT (SELECT count(*) + sum(date_part('epoch', answered_at - arrived_at)) FROM incidents_call
         WHERE center_id = %(center)s AND arrived_at >= %(start)s AND arrived_at < %(end)s),
       (SELECT count(*) + sum(date_part('epoch', first_on_scene_at - opened_at)) FROM incidents_incident
         WHERE center_id = %(center)s AND opened_at >= %(start)s AND opened_at < %(end)s)
"""
SWEEP = (100_000, 300_000, 1_000_000, 2_000_000)
EXACT_FLOOR_MS, DASHBOARD_FLOOR_MS = 4000.0, 100.0


def measure(*, calls: int, runs: int, keep: bool, user_url: str) -> dict:
    """Recreate the bench database (named after `user_url`'s), load `calls`, refresh the rollups and time
    the three queries."""
    from datetime import UTC, datetime

    from django.core.management import call_command
    from django.db import connection, connections

    from dashboard.kpis import bucket_width_at, exact_kpis, rollup_kpis
    from dashboard.rollups import refresh_rollups

    connections.close_all()
    os.environ["DATABASE_URL"] = user_url
    url = bench_database("kpi")  # the database Django already points at, recreated
    os.environ["DATABASE_URL"] = url
    progress(f"recreated {url.rsplit('/', 1)[-1]}; loading {calls:,} calls")
    call_command("migrate", verbosity=0)
    ids = load(calls)
    progress("refreshing rollups (whole month)")
    started = time.monotonic()
    refreshed = refresh_rollups()
    refresh_ms = (time.monotonic() - started) * 1000
    progress(f"rollups: {refreshed['hours']} hours, {refreshed['rows']:,} rows in {refresh_ms:.0f} ms")

    scope = {
        "center_id": ids["center_id"],
        "start": datetime(2026, 11, 1, 6, tzinfo=UTC),
        "end": datetime(2026, 12, 1, 6, tzinfo=UTC),
    }

    def timed(query, times: int) -> tuple[list[float], object]:
        timings, result = [], None
        for _ in range(times):
            began = time.monotonic()
            result = query()
            timings.append((time.monotonic() - began) * 1000)
        return timings, result

    dashboard_ms, (rolled, _) = timed(
        lambda: (rollup_kpis(**scope), rollup_kpis(**scope, group_by="line")), runs
    )
    exact_ms, (exact, _) = timed(
        lambda: (exact_kpis(**scope, use_sql=True), exact_kpis(**scope, group_by="line", use_sql=True)),
        max(3, runs // 2),
    )

    def scan():
        with connection.cursor() as cursor:
            cursor.execute(
                SCAN_SQL, {"center": scope["center_id"], "start": scope["start"], "end": scope["end"]}
            )
            return cursor.fetchone()

    scan_ms, _ = timed(scan, max(3, runs // 2))
    progress(
        f"dashboard (rollups) ms: {[round(t) for t in dashboard_ms]}; exact ms: {[round(t) for t in exact_ms]}"
    )

    worst = 0.0
    for metric, block in exact[0]["metrics"].items():
        for q in ("p50", "p90", "p95"):
            if block[q] is None:
                continue
            error = abs(rolled[0]["metrics"][metric][q] - block[q])
            assert error <= bucket_width_at(block[q]) + 0.1, (metric, q, error)
            worst = max(worst, error)
    assert rolled[0]["calls"] == exact[0]["calls"] == calls
    connections.close_all()
    if not keep:
        drop_bench_database(url)
    return {
        "incidents": ids["incidents"],
        "refresh_ms": round(refresh_ms),
        "rollup_rows": refreshed["rows"],
        "kpi_month_ms": round(median(dashboard_ms), 1),
        "kpi_month_exact_ms": round(median(exact_ms), 1),
        "raw_scan_ms": round(median(scan_ms), 1),
        "max_percentile_error_s": round(worst, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--sweep", action="store_true", help=f"also {SWEEP} calls (~8 min)")
    parser.add_argument("--sweep-max", type=int, default=SWEEP[-1], help="largest sweep size (e.g. 5000000)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("kpi measures PostgreSQL: set DATABASE_URL")

    user_url = os.environ["DATABASE_URL"]
    os.environ["DATABASE_URL"] = bench_database("kpi")
    os.environ.pop("REDIS_URL", None)
    os.environ["DB_POOL_MAX_SIZE"] = "0"  # one thread; the database is recreated under it
    from bench.common import setup_django

    setup_django()
    result = measure(calls=args.calls, runs=args.runs, keep=args.keep, user_url=user_url)
    results = {
        **{k: v for k, v in result.items() if k != "incidents"},
        "exact_vs_scan_ratio": round(result["kpi_month_exact_ms"] / result["raw_scan_ms"], 2),
        "floor_kpi_month_ms_lt_100": "pass" if result["kpi_month_ms"] < DASHBOARD_FLOOR_MS else "FAIL",
        "floor_kpi_month_exact_ms_lt_4000": "pass"
        if result["kpi_month_exact_ms"] < EXACT_FLOOR_MS
        else "FAIL",
    }
    if args.sweep:
        sizes = sorted({*(c for c in SWEEP if c <= args.sweep_max), args.sweep_max, args.calls})
        rows = []
        for calls in sizes:
            point = (
                result if calls == args.calls else measure(calls=calls, runs=3, keep=False, user_url=user_url)
            )
            rows.append(
                {
                    "calls": calls,
                    **{k: point[k] for k in ("kpi_month_ms", "kpi_month_exact_ms", "raw_scan_ms")},
                }
            )
            progress(f"sweep {rows[-1]}")
        results["sweep_csv"], _png = write_sweep(
            "kpi_sweep",
            rows,
            x="calls",
            series={
                "kpi_month_exact_ms": "exact monthly report",
                "kpi_month_ms": "dashboard month (rollups)",
                "raw_scan_ms": "raw scan of the rows",
            },
            xlabel="calls in the month",
            ylabel="ms",
            floor=EXACT_FLOOR_MS,
        )
    report("kpi", {"calls": args.calls, "incidents": result["incidents"], "runs": args.runs}, results)


if __name__ == "__main__":
    main()

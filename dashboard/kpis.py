"""Response-time KPIs: plain functions over the timestamps stored on calls and incidents.

Intervals (seconds, never negative: clock skew clamps to 0)

| metric     | from                          | to                           | anchored on (range, hour) |
|------------|-------------------------------|------------------------------|---------------------------|
| answer     | call arrival                  | call answered                | call.arrived_at           |
| processing | call answered                 | incident opened              | incident.opened_at        |
| dispatch   | incident opened               | FIRST unit dispatched        | incident.opened_at        |
| turnout    | first dispatch                | FIRST unit en route          | incident.opened_at        |
| travel     | first en route                | FIRST unit on scene          | incident.opened_at        |
| total      | call arrival                  | FIRST unit on scene          | incident.opened_at        |

Edge cases, by definition:

* Unanswered calls (answered_at null) are not in the answer percentiles nor in the compliance denominator;
  they are counted as `unanswered` (and in `calls`). Improcedente rate = improcedente calls / all calls.
* Cancelled incidents (closed without a unit on scene) have no travel/total interval: they are counted as
  `cancelled` and in `missing` of those metrics, never as 0 s or as a breach. The same holds for incidents
  still open, not yet dispatched, or without a call (processing/total need the call's times).
* Open incidents not yet dispatched count AGAINST dispatch compliance once older than a dispatch target:
  each adds one to that target's denominator (`overdue`), never to its numerator, so "Despacho: 100 %"
  cannot show while calls wait unattended. They have no dispatch interval yet, so percentiles ignore them.
  An incident another centre took over (`handled_by_center`: it accepted our request for service) is not
  overdue here: that centre runs its dispatch clock.
* A request for service from another centre opens a call of channel `interstate` here: it is not a call this
  centre answered (the sender counted the real one), so it is in no call figure (calls, answer, improcedente
  rate). The incident it opened is this centre's work and counts like any other, but for processing: it was
  not a call answered here (its `call_answered_at` is empty), so its processing is missing, not 0 s.
* A block measured on fewer than CAD_KPI_MIN_SAMPLE values says so (`insufficient`): "datos insuficientes".
* Multi-unit incidents: only the FIRST dispatch / en route / on scene count (the incident's `first_*`
  columns, written once by incidents.services), so a second ambulance never worsens or improves a figure.
  Turnout and travel are therefore "first dispatch → first en route (any unit)" etc.
* Percentiles are continuous (linear interpolation, PostgreSQL `percentile_cont`, numpy's default).

Two ways to compute the same figures:

* `exact_kpis` reads the rows: `percentile_cont` in SQL on PostgreSQL, numpy on SQLite. Reports, exports and
  short ranges use it.
* `rollup_kpis` sums the hourly histograms of dashboard.models.KpiRollup: percentiles are within one bucket
  width of the exact ones (1 s up to 120 s), compliance exact for thresholds on bucket edges.

An incident's line is the line of the call that opened it, stored on the incident ("" when no call did,
e.g. opened by another state).
"""

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from psycopg import sql as sql_text

from cad.db import read_alias
from dashboard.targets import kpi_targets
from incidents.models import Call, CallDisposition, Channel, Incident, IncidentStatus, IncidentType, Line

CALL_METRICS = ("answer",)
INCIDENT_METRICS = ("processing", "dispatch", "turnout", "travel", "total")
METRICS = CALL_METRICS + INCIDENT_METRICS
METRIC_LABELS = {
    "answer": gettext_lazy("Contestación"),
    "processing": gettext_lazy("Procesamiento"),
    "dispatch": gettext_lazy("Despacho"),
    "turnout": gettext_lazy("Salida"),
    "travel": gettext_lazy("Traslado"),
    "total": gettext_lazy("Respuesta total"),
}
INCIDENT_INTERVALS = {
    "processing": ("call_answered_at", "opened_at"),
    "dispatch": ("opened_at", "first_dispatched_at"),
    "turnout": ("first_dispatched_at", "first_en_route_at"),
    "travel": ("first_en_route_at", "first_on_scene_at"),
    "total": ("call_arrived_at", "first_on_scene_at"),
}
PERCENTILES = (50, 90, 95)
# Dimensions a result can be grouped by, and the row columns each one keys on.
DIMENSIONS = {
    "line": ("line",),
    "tipo": ("tipo",),
    "type": ("type",),
    "state": ("state",),
    "jurisdiction": ("state", "municipality"),
    "hour": ("hour",),
}
ROLLUP_GROUPINGS = ("line", "tipo", "state", "jurisdiction", "hour")

# --- Histogram buckets ----------------------------------------------------------------------------
# Upper edges (seconds). Bucket 0 is [0, 1]; bucket i is (UPPER[i-1], UPPER[i]]; the last bucket (index
# len(UPPER)) holds everything above 4 h. 1-s buckets to 2 min, 5 s to 10 min, 30 s to 1 h, 5 min to 4 h.
UPPER_EDGES = np.array(
    [*range(1, 121), *range(125, 601, 5), *range(630, 3601, 30), *range(3900, 14401, 300)], dtype=float
)
N_BUCKETS = len(UPPER_EDGES) + 1


def bucket_of(seconds: np.ndarray) -> np.ndarray:
    """Bucket index of each (non-negative) interval: the first bucket whose upper edge is >= it."""
    return np.searchsorted(UPPER_EDGES, seconds, side="left")


def bucket_bounds(index: int) -> tuple[float, float]:
    lower = 0.0 if index == 0 else float(UPPER_EDGES[index - 1])
    upper = float(UPPER_EDGES[index]) if index < len(UPPER_EDGES) else lower
    return lower, upper


def bucket_width_at(seconds: float) -> float:
    lower, upper = bucket_bounds(int(bucket_of(np.array([seconds]))[0]))
    return upper - lower


def histogram_of(seconds: np.ndarray) -> np.ndarray:
    return np.bincount(bucket_of(seconds), minlength=N_BUCKETS)


def _order_statistic(hist: np.ndarray, cumulative: np.ndarray, j: int) -> float:
    """Estimate of the j-th smallest value (0-based): placed uniformly inside its bucket."""
    index = int(np.searchsorted(cumulative, j, side="right"))
    before = float(cumulative[index - 1]) if index else 0.0
    lower, upper = bucket_bounds(index)
    return lower + (upper - lower) * (j - before + 0.5) / float(hist[index])


def histogram_percentile(hist: np.ndarray, q: float) -> float | None:
    """Percentile q (0-100) of the values summarised by `hist`, with percentile_cont's definition (linear
    between the order statistics around rank q/100·(n-1)), each order statistic estimated inside its
    bucket. Error <= the widest bucket involved (beyond 4 h: the 4 h edge)."""
    n = int(hist.sum())
    if n == 0:
        return None
    rank = q / 100.0 * (n - 1)
    low = int(math.floor(rank))
    cumulative = np.cumsum(hist)
    value = _order_statistic(hist, cumulative, low)
    if rank > low:
        value += (rank - low) * (_order_statistic(hist, cumulative, low + 1) - value)
    return value


def histogram_within(hist: np.ndarray, seconds: float) -> float:
    """How many values are <= `seconds`: exact on a bucket edge, else linear within the bucket."""
    index = int(bucket_of(np.array([float(seconds)]))[0])
    count = float(hist[:index].sum())
    lower, upper = bucket_bounds(index)
    if index < len(hist) and upper > lower:
        count += float(hist[index]) * (seconds - lower) / (upper - lower)
    return count


# --- Result shapes --------------------------------------------------------------------------------
def _round(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(value, 1)


def _compliance(target: dict, *, n: int, within: float, overdue: int = 0) -> dict:
    measured = n + overdue
    share = within / measured if measured else None
    return {
        "seconds": target["seconds"],
        "goal": target["goal"],
        "n": int(measured),
        "within": round(float(within), 1),
        "overdue": int(overdue),
        "share": None if share is None else round(share, 4),
        "met": None if share is None else share >= target["goal"],
    }


def _metric_block(*, metric, n, missing, percentiles, mean, within: dict[str, float]) -> dict:
    compliance = {
        key: _compliance(target, n=n, within=within[key])
        for key, target in kpi_targets().items()
        if target["metric"] == metric
    }
    return {
        "n": int(n),
        "missing": int(missing),
        "insufficient": int(n) < settings.CAD["KPI_MIN_SAMPLE"],
        **{f"p{q}": _round(v) for q, v in zip(PERCENTILES, percentiles, strict=True)},
        "mean": _round(mean),
        "compliance": compliance,
    }


def _group_result(key: tuple, *, calls, unanswered, improcedente, incidents, cancelled, metrics) -> dict:
    calls, improcedente = int(calls), int(improcedente)
    return {
        "key": list(key),
        "calls": int(calls),
        "unanswered": int(unanswered),
        "improcedente": int(improcedente),
        "improcedente_rate": round(improcedente / calls, 4) if calls else None,
        "incidents": int(incidents),
        "cancelled": int(cancelled),
        "metrics": metrics,
    }


def _targets_for(metric: str) -> dict[str, float]:
    return {key: t["seconds"] for key, t in kpi_targets().items() if t["metric"] == metric}


# --- Exact: Python over rows (SQLite, and any backend for tests) -----------------------------------
def _epoch(values) -> np.ndarray:
    return np.array([v.timestamp() if v is not None else np.nan for v in values], dtype=float)


def _interval(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.maximum(end - start, 0.0)  # nan where either end is missing; skew clamps to 0


def centre_zone(center_id: int | None) -> ZoneInfo:
    """The zone KPI hours are read in: the centre's own (Center.timezone), else settings.TIME_ZONE."""
    from cad.models import Center

    center = Center.objects.filter(pk=center_id).first() if center_id is not None else None
    return center.zone if center else ZoneInfo(settings.TIME_ZONE)


def _local_hours(anchor: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Hour of day (0-23) in zone `tz` of each UTC epoch (computed once per distinct hour)."""
    if not len(anchor):
        return np.array([], dtype=int)
    utc_hours, inverse = np.unique(np.floor(anchor / 3600.0).astype(np.int64), return_inverse=True)
    local = np.array([datetime.fromtimestamp(int(h) * 3600, tz=tz).hour for h in utc_hours], dtype=int)
    return local[inverse]


def _str_array(values) -> np.ndarray:
    return np.array([v or "" for v in values], dtype=object)


def call_rows(*, start: datetime, end: datetime, center_id: int | None = None) -> dict[str, np.ndarray]:
    """Columns of the calls that arrived in [start, end): anchor (epoch), answer (s, nan if unanswered),
    dimensions, improcedente flag, center."""
    qs = Call.objects.filter(arrived_at__gte=start, arrived_at__lt=end).exclude(channel=Channel.INTERSTATE)
    if center_id is not None:
        qs = qs.filter(center_id=center_id)
    rows = list(
        qs.values_list(
            "center_id",
            "arrived_at",
            "answered_at",
            "line",
            "incident_type__tipo_code",
            "incident_type__code",
            "incident__state__cvegeo",
            "incident__municipality__cvegeo",
            "disposition",
        )
    )
    columns = list(zip(*rows, strict=True)) if rows else [()] * 9
    anchor = _epoch(columns[1])
    return {
        "center": np.array(columns[0], dtype=np.int64),
        "anchor": anchor,
        "answer": _interval(anchor, _epoch(columns[2])),
        "line": _str_array(columns[3]),
        "tipo": _str_array(columns[4]),
        "type": _str_array(columns[5]),
        "state": _str_array(columns[6]),
        "municipality": _str_array(columns[7]),
        "hour": _local_hours(anchor, centre_zone(center_id)),
        "improcedente": np.array([d == CallDisposition.IMPROCEDENTE for d in columns[8]], dtype=bool),
    }


def incident_rows(
    *, start: datetime, end: datetime, center_id: int | None = None, undispatched_open: bool = False
) -> dict[str, np.ndarray]:
    """Columns of the incidents opened in [start, end) (only the open ones never dispatched, with
    `undispatched_open`): anchor, one interval column per incident metric (nan when not measurable),
    dimensions, cancelled flag, center."""
    qs = Incident.objects.filter(opened_at__gte=start, opened_at__lt=end)
    if undispatched_open:
        # Another centre that took an incident over runs its dispatch clock, not us.
        qs = qs.filter(first_dispatched_at__isnull=True, handled_by_center="").exclude(
            status=IncidentStatus.CLOSED
        )
    if center_id is not None:
        qs = qs.filter(center_id=center_id)
    stamps = [
        "call_arrived_at",
        "call_answered_at",
        "opened_at",
        "first_dispatched_at",
        "first_en_route_at",
        "first_on_scene_at",
        "closed_at",
    ]
    rows = list(
        qs.values_list("center_id", *stamps, "line", "type_code", "state__cvegeo", "municipality__cvegeo")
    )
    columns = list(zip(*rows, strict=True)) if rows else [()] * 12
    epochs = {name: _epoch(columns[1 + i]) for i, name in enumerate(stamps)}
    types = _str_array(columns[9])
    result = {
        "center": np.array(columns[0], dtype=np.int64),
        "anchor": epochs["opened_at"],
        "line": _str_array(columns[8]),
        "tipo": np.array([t[:1] for t in types], dtype=object),
        "type": types,
        "state": _str_array(columns[10]),
        "municipality": _str_array(columns[11]),
        "hour": _local_hours(epochs["opened_at"], centre_zone(center_id)),
        "cancelled": ~np.isnan(epochs["closed_at"]) & np.isnan(epochs["first_on_scene_at"]),
    }
    for metric, (begin, finish) in INCIDENT_INTERVALS.items():
        result[metric] = _interval(epochs[begin], epochs[finish])
    return result


def _group_indices(rows: dict[str, np.ndarray], columns: tuple[str, ...]) -> dict[tuple, np.ndarray]:
    size = len(rows["anchor"])
    if not columns:
        return {(): np.arange(size)} if size else {}
    groups: dict[tuple, list[int]] = defaultdict(list)
    keyed = zip(*(rows[c].tolist() for c in columns), strict=True)
    for index, key in enumerate(keyed):
        groups[key].append(index)
    return {key: np.array(indices) for key, indices in groups.items()}


def _values_block(metric: str, values: np.ndarray) -> dict:
    measured = values[~np.isnan(values)]
    n = len(measured)
    percentiles = [float(np.percentile(measured, q)) for q in PERCENTILES] if n else [None] * 3
    within = {key: float((measured <= seconds).sum()) for key, seconds in _targets_for(metric).items()}
    return _metric_block(
        metric=metric,
        n=n,
        missing=len(values) - n,
        percentiles=percentiles,
        mean=float(measured.mean()) if n else None,
        within=within,
    )


def _empty_block(metric: str) -> dict:
    return _values_block(metric, np.array([], dtype=float))


def _exact_python(*, center_id, start, end, group_by: tuple[str, ...]) -> dict[tuple, dict]:
    columns = tuple(c for dim in group_by for c in DIMENSIONS[dim])
    calls = call_rows(start=start, end=end, center_id=center_id)
    incidents = incident_rows(start=start, end=end, center_id=center_id)
    call_groups = _group_indices(calls, columns)
    incident_groups = _group_indices(incidents, columns)
    results = {}
    for key in sorted(set(call_groups) | set(incident_groups), key=_sort_key):
        ci = call_groups.get(key, np.array([], dtype=int))
        ii = incident_groups.get(key, np.array([], dtype=int))
        answer = calls["answer"][ci]
        metrics = {"answer": _values_block("answer", answer)}
        metrics.update({m: _values_block(m, incidents[m][ii]) for m in INCIDENT_METRICS})
        results[key] = _group_result(
            key,
            calls=len(ci),
            unanswered=int(np.isnan(answer).sum()),
            improcedente=int(calls["improcedente"][ci].sum()),
            incidents=len(ii),
            cancelled=int(incidents["cancelled"][ii].sum()),
            metrics=metrics,
        )
    return results


# --- Exact: SQL on PostgreSQL (percentile_cont) ---------------------------------------------------
# The rows the SQL aggregates: each dimension's column and the joins it needs, only those of the grouping
# asked for (an ungrouped month reads the calls alone).
_CALL_JOINS = {
    "it": "LEFT JOIN incidents_incidenttype it ON it.id = c.incident_type_id",
    "i": "LEFT JOIN incidents_incident i ON i.id = c.incident_id",
    "js": "LEFT JOIN geo_jurisdiction js ON js.id = i.state_id",
    "jm": "LEFT JOIN geo_jurisdiction jm ON jm.id = i.municipality_id",
}
_CALL_COLUMNS = {
    "line": ("c.line", ()),
    "tipo": ("COALESCE(it.tipo_code, '')", ("it",)),
    "type": ("COALESCE(it.code, '')", ("it",)),
    "state": ("COALESCE(js.cvegeo, '')", ("i", "js")),
    "municipality": ("COALESCE(jm.cvegeo, '')", ("i", "jm")),
    "hour": ("EXTRACT(HOUR FROM c.arrived_at AT TIME ZONE %(tz)s)::int", ()),
}
_INCIDENT_JOINS = {
    "js": "LEFT JOIN geo_jurisdiction js ON js.id = i.state_id",
    "jm": "LEFT JOIN geo_jurisdiction jm ON jm.id = i.municipality_id",
}
_INCIDENT_COLUMNS = {
    "line": ("i.line", ()),
    "tipo": ("LEFT(i.type_code, 1)", ()),
    "type": ("i.type_code", ()),
    "state": ("COALESCE(js.cvegeo, '')", ("js",)),
    "municipality": ("COALESCE(jm.cvegeo, '')", ("jm",)),
    "hour": ("EXTRACT(HOUR FROM i.opened_at AT TIME ZONE %(tz)s)::int", ()),
}
_CALLS_SQL = """
SELECT {keys}
       -- GREATEST ignores NULLs: guard so an unanswered call stays NULL (not 0 s)
       CASE WHEN c.answered_at IS NOT NULL
            THEN GREATEST(date_part('epoch', c.answered_at - c.arrived_at), 0) END AS answer,
       (c.disposition = %(improcedente)s) AS improcedente
  FROM incidents_call c {joins}
 WHERE c.center_id = %(center)s AND c.arrived_at >= %(start)s AND c.arrived_at < %(end)s
   AND c.channel <> %(interstate)s
"""
_INCIDENTS_SQL = """
SELECT {keys}
       {intervals},
       (i.closed_at IS NOT NULL AND i.first_on_scene_at IS NULL) AS cancelled
  FROM incidents_incident i {joins}
 WHERE i.center_id = %(center)s AND i.opened_at >= %(start)s AND i.opened_at < %(end)s
"""


def _rows_sql(template: str, columns: list[str], dimensions: dict, joins: dict, **extra) -> str:
    """`template` with the key columns of `columns` (aliased by name) and only the joins they need."""
    needed = {join for column in columns for join in dimensions[column][1]}
    return template.format(
        keys="".join(f"{dimensions[column][0]} AS {column}, " for column in columns),
        joins=" ".join(sql for name, sql in joins.items() if name in needed),
        **extra,
    )


def _sql_metric_columns(metric: str) -> tuple[list[str], dict]:
    """Aggregates of one metric: n, percentiles, mean, one FILTER count per target."""
    params = {}
    parts = [
        f"count({metric})",
        f"percentile_cont(ARRAY[0.5, 0.9, 0.95]) WITHIN GROUP (ORDER BY {metric})",
        f"avg({metric})",
    ]
    for key, seconds in _targets_for(metric).items():
        name = f"t_{metric}_{key}"
        params[name] = float(seconds)
        parts.append(f"count(*) FILTER (WHERE {metric} <= %({name})s)")
    return parts, params


def _exact_postgres(*, center_id, start, end, group_by: tuple[str, ...]) -> dict[tuple, dict]:
    columns = [c for dim in group_by for c in DIMENSIONS[dim]]
    select_keys = ", ".join(columns)
    group_clause = f"GROUP BY {select_keys}" if columns else ""
    base = {
        "tz": centre_zone(center_id).key,
        "center": center_id,
        "start": start,
        "end": end,
        "improcedente": CallDisposition.IMPROCEDENTE.value,
        "interstate": Channel.INTERSTATE.value,
    }
    answer_parts, answer_params = _sql_metric_columns("answer")
    call_sql = (
        f"SELECT {select_keys + ', ' if columns else ''}count(*), "  # noqa: S608 - identifiers are ours
        f"count(*) FILTER (WHERE improcedente), {', '.join(answer_parts)} "
        f"FROM ({_rows_sql(_CALLS_SQL, columns, _CALL_COLUMNS, _CALL_JOINS)}) x {group_clause}"
    )
    intervals = ",\n       ".join(
        f"CASE WHEN i.{finish} IS NOT NULL AND i.{begin} IS NOT NULL "
        f"THEN GREATEST(date_part('epoch', i.{finish} - i.{begin}), 0) END AS {metric}"
        for metric, (begin, finish) in INCIDENT_INTERVALS.items()
    )
    # The incident metrics in two statements: with the calls' one, three sorts-heavy statements that run at
    # once on separate connections (PostgreSQL does not parallelise percentile_cont within one statement).
    statements, spans = [(call_sql, {**base, **answer_params})], {}
    for metrics in (INCIDENT_METRICS[:2], INCIDENT_METRICS[2:]):
        incident_parts, incident_params = [], {}
        for metric in metrics:
            parts, params = _sql_metric_columns(metric)
            spans[metric] = (len(statements), len(incident_parts), len(parts))
            incident_parts += parts
            incident_params.update(params)
        rows = _rows_sql(_INCIDENTS_SQL, columns, _INCIDENT_COLUMNS, _INCIDENT_JOINS, intervals=intervals)
        statements.append(
            (
                f"SELECT {select_keys + ', ' if columns else ''}count(*), "  # noqa: S608 - identifiers are ours
                f"count(*) FILTER (WHERE cancelled), {', '.join(incident_parts)} FROM ({rows}) x {group_clause}",
                {**base, **incident_params},
            )
        )
    width = len(columns)
    call_stats, *incident_stats = (
        {tuple(row[:width]): row[width:] for row in rows} for rows in _run_in_one_snapshot(statements)
    )

    def block(metric, total, values):
        n, percentiles, mean, *counts = values
        keys = list(_targets_for(metric))
        return _metric_block(
            metric=metric,
            n=n,
            missing=total - n,
            percentiles=list(percentiles) if n else [None] * 3,
            mean=float(mean) if mean is not None else None,
            within={k: float(c) for k, c in zip(keys, counts, strict=True)},
        )

    results = {}
    for key in sorted(set(call_stats) | set(incident_stats[0]), key=_sort_key):
        metrics = {}
        calls, improcedente = 0, 0
        unanswered = 0
        if key in call_stats:
            calls, improcedente, *answer = call_stats[key]
            metrics["answer"] = block("answer", calls, answer)
            unanswered = calls - answer[0]
        else:
            metrics["answer"] = _empty_block("answer")
        incidents, cancelled = 0, 0
        if key in incident_stats[0]:
            incidents, cancelled = incident_stats[0][key][:2]
            for metric in INCIDENT_METRICS:
                statement, offset, size = spans[metric]
                values = incident_stats[statement - 1][key][2 + offset : 2 + offset + size]
                metrics[metric] = block(metric, incidents, values)
        else:
            metrics.update({m: _empty_block(m) for m in INCIDENT_METRICS})
        results[key] = _group_result(
            key,
            calls=calls,
            unanswered=unanswered,
            improcedente=improcedente,
            incidents=incidents,
            cancelled=cancelled,
            metrics=metrics,
        )
    return results


def _run_in_one_snapshot(statements: list[tuple[str, dict]]) -> list[list[tuple]]:
    """Rows of each read-only statement, run at once on separate connections of the reporting database, all
    in one snapshot (the first transaction exports it, the others import it, as `pg_dump --jobs` does), with
    sort memory enough not to spill (CAD["REPORT_WORK_MEM"], these transactions only). Inside a caller's
    transaction (whose uncommitted rows other connections cannot see) they run there, one after another."""
    alias = read_alias()

    def run(cursor, sql, params):
        cursor.execute("SELECT set_config('work_mem', %s, true)", [settings.CAD["REPORT_WORK_MEM"]])
        cursor.execute(sql, params)
        return cursor.fetchall()

    if connections[alias].in_atomic_block or len(statements) == 1:
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            return [run(cursor, sql, params) for sql, params in statements]

    def imported(snapshot, sql, params):
        try:
            with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # A utility statement takes no bind parameters (server-side binding): quoted by psycopg.
                cursor.execute(sql_text.SQL("SET TRANSACTION SNAPSHOT {}").format(sql_text.Literal(snapshot)))
                return run(cursor, sql, params)
        finally:
            connections[alias].close()  # this thread's connection (back to the pool)

    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = cursor.fetchone()[0]
        with ThreadPoolExecutor(max_workers=len(statements) - 1) as pool:
            others = [pool.submit(imported, snapshot, sql, params) for sql, params in statements[1:]]
            first = run(cursor, *statements[0])
            return [first, *(future.result() for future in others)]


def _sort_key(key: tuple):
    return tuple((0, k) if isinstance(k, int) else (1, str(k)) for k in key)


def _normalise_group_by(group_by) -> tuple[str, ...]:
    if not group_by:
        return ()
    dims = (group_by,) if isinstance(group_by, str) else tuple(group_by)
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s): {unknown}")
    return dims


def exact_kpis(
    *, center_id: int, start: datetime, end: datetime, group_by=None, use_sql: bool | None = None
) -> list[dict]:
    """KPIs for calls arriving / incidents opened in [start, end), read from the rows.

    `group_by`: None (one group), a dimension name, or a tuple of them (e.g. ("type", "line")).
    PostgreSQL computes percentiles in SQL (`percentile_cont`); other backends in numpy."""
    dims = _normalise_group_by(group_by)
    if use_sql is None:
        use_sql = connections[read_alias()].vendor == "postgresql"
    compute = _exact_postgres if use_sql else _exact_python
    results = compute(center_id=center_id, start=start, end=end, group_by=dims)
    _count_overdue(results, center_id=center_id, start=start, end=end, group_by=dims)
    return _labelled(dims, results)


def _count_overdue(results: dict[tuple, dict], *, center_id, start, end, group_by, now=None) -> None:
    """Add the open, never-dispatched incidents older than each dispatch target to that target's
    denominator (see the module docstring), creating the groups that only they populate."""
    now = now or timezone.now()
    columns = tuple(c for dim in group_by for c in DIMENSIONS[dim])
    rows = incident_rows(start=start, end=end, center_id=center_id, undispatched_open=True)
    targets = {key: t for key, t in kpi_targets().items() if t["metric"] == "dispatch"}
    for key, indices in _group_indices(rows, columns).items():
        waited = now.timestamp() - rows["anchor"][indices]
        overdue = {k: int((waited > t["seconds"]).sum()) for k, t in targets.items()}
        if not any(overdue.values()):
            continue
        if key not in results:
            results[key] = _group_result(
                key,
                calls=0,
                unanswered=0,
                improcedente=0,
                incidents=0,
                cancelled=0,
                metrics={m: _empty_block(m) for m in METRICS},
            )
        block = results[key]["metrics"]["dispatch"]
        for k, count in overdue.items():
            current = block["compliance"][k]
            block["compliance"][k] = _compliance(
                targets[k],
                n=current["n"] - current["overdue"],
                within=current["within"],
                overdue=current["overdue"] + count,
            )
    for key in sorted(results, key=_sort_key):  # keep the groups in key order
        results[key] = results.pop(key)


# --- Rollups --------------------------------------------------------------------------------------
ALL = "*"
# Which rollup rows answer each grouping (rollups store grouping sets, see dashboard.models.KpiRollup).
_ROLLUP_FILTERS = {
    (): {"line": ALL, "tipo": ALL, "state": ALL, "municipality": ALL},
    ("line",): {"tipo": ALL, "state": ALL, "municipality": ALL},
    ("tipo",): {"line": ALL, "state": ALL, "municipality": ALL},
    ("state",): {"line": ALL, "tipo": ALL, "municipality": ALL},
    ("jurisdiction",): {"line": ALL, "tipo": ALL},
    ("hour",): {"line": ALL, "tipo": ALL, "state": ALL, "municipality": ALL},
}


def rollup_kpis(*, center_id: int, start: datetime, end: datetime, group_by=None) -> list[dict]:
    """KPIs for the whole UTC hours in [floor(start), end) summed from the hourly rollup histograms.

    Percentiles are within one bucket width of `exact_kpis`; counts and on-edge compliance are exact
    (provided the rollups are fresh: see dashboard.rollups.refresh_rollups)."""
    from dashboard.models import KpiRollup

    dims = _normalise_group_by(group_by)
    if dims not in _ROLLUP_FILTERS:
        raise ValueError(f"rollups cannot group by {dims}")
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    filters = _ROLLUP_FILTERS[dims]
    hour_grain, day_grain = KpiRollup.Grain.HOUR, KpiRollup.Grain.DAY
    span = Q(grain=hour_grain, hour__gte=start, hour__lt=end)
    if dims != ("hour",):  # whole UTC days from day rows, the edges from hour rows
        first_day = (start + timedelta(hours=23)).replace(hour=0)
        last_day = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if first_day < last_day:
            span = (
                Q(grain=day_grain, hour__gte=first_day, hour__lt=last_day)
                | Q(grain=hour_grain, hour__gte=start, hour__lt=first_day)
                | Q(grain=hour_grain, hour__gte=last_day, hour__lt=end)
            )
    rows = KpiRollup.objects.filter(span, center_id=center_id, **filters)
    columns = DIMENSIONS[dims[0]] if dims else ()
    if dims == ("jurisdiction",):
        rows = rows.exclude(municipality=ALL)
    elif dims and dims != ("hour",):
        rows = rows.exclude(**{columns[0]: ALL})
    tz = centre_zone(center_id)
    hists: dict[tuple, np.ndarray] = {}
    counts: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(5, dtype=np.int64))
    sums: dict[tuple, float] = defaultdict(float)
    fields = ["hour", "metric", *(c for c in columns if c != "hour")]
    for values in rows.values_list(*fields, "n", "missing", "improcedente", "cancelled", "sum_s", "hist"):
        hour, metric, *key_values = values[: len(fields)]
        n, missing, improcedente, cancelled, sum_s, hist = values[len(fields) :]
        key = (hour.astimezone(tz).hour,) if dims == ("hour",) else tuple(key_values)
        slot = (key, metric)
        bucket = hists.get(slot)
        if bucket is None:
            bucket = hists[slot] = np.zeros(N_BUCKETS, dtype=np.int64)
        if hist:
            bucket[: len(hist)] += np.asarray(hist, dtype=np.int64)
        counts[slot] += (n, missing, improcedente, cancelled, 1)
        sums[slot] += sum_s

    results = {}
    for key in sorted({k for k, _m in hists}, key=_sort_key):
        metrics = {}
        for metric in METRICS:
            slot = (key, metric)
            if slot not in hists:
                metrics[metric] = _empty_block(metric)
                continue
            hist, (n, missing, *_rest) = hists[slot], counts[slot]
            metrics[metric] = _metric_block(
                metric=metric,
                n=n,
                missing=missing,
                percentiles=[histogram_percentile(hist, q) for q in PERCENTILES],
                mean=sums[slot] / n if n else None,
                within={k: histogram_within(hist, s) for k, s in _targets_for(metric).items()},
            )
        answer = counts.get((key, "answer"), np.zeros(5, dtype=np.int64))
        incident = counts.get((key, "dispatch"), np.zeros(5, dtype=np.int64))
        results[key] = _group_result(
            key,
            calls=answer[0] + answer[1],
            unanswered=answer[1],
            improcedente=answer[2],
            incidents=incident[0] + incident[1],
            cancelled=incident[3],
            metrics=metrics,
        )
    _count_overdue(results, center_id=center_id, start=start, end=end, group_by=dims)
    return _labelled(dims, results)


# --- Labels ---------------------------------------------------------------------------------------
def _labelled(dims: tuple[str, ...], results: dict[tuple, dict]) -> list[dict]:
    columns = [c for dim in dims for c in DIMENSIONS[dim]]
    tipo_names = dict(IncidentType.objects.values_list("tipo_code", "tipo_name").distinct())
    type_names = {}
    if "type" in columns:
        type_names = dict(IncidentType.objects.values_list("code", "name"))
    place_names = {}
    if "state" in columns or "municipality" in columns:
        from geo.models import Jurisdiction

        codes = {k for result in results.values() for k in result["key"] if isinstance(k, str) and k}
        place_names = dict(Jurisdiction.objects.filter(cvegeo__in=codes).values_list("cvegeo", "name"))
    line_names = dict(Line.choices)

    def label(column, value):
        if column == "hour":
            return f"{int(value):02d}:00"
        if value in ("", None):
            return {
                "line": _("Sin línea"),
                "state": _("Sin entidad"),
                "municipality": _("Sin municipio"),
            }.get(column, _("Sin clasificar"))
        if column == "line":
            return str(line_names.get(value, value))
        if column == "tipo":
            return f"{value} {tipo_names.get(value, '')}".strip()
        if column == "type":
            return f"{value} {type_names.get(value, '')}".strip()
        return place_names.get(value, value)

    out = []
    for key, result in results.items():
        if columns:
            parts = [label(c, v) for c, v in zip(columns, key, strict=True)]
            if dims == ("jurisdiction",) and len(parts) == 2:
                parts = [parts[1], parts[0]] if key[1] else [parts[0]]
            result["label"] = " · ".join(parts)
        else:
            result["label"] = _("Total")
        out.append(result)
    return out

"""Rebuild the hourly KPI rollups (dashboard.models.KpiRollup) of the hours that changed.

`refresh_rollups` finds the UTC hours touched since the watermark — calls created (by arrival hour),
incidents updated (by opening hour) and the calls of updated incidents (their jurisdiction comes from the
incident) — and recomputes each of those hours from the rows, in one transaction per batch of hours,
replacing the hour's rollup rows. Recomputing (never incrementing) makes it idempotent: running it twice,
or concurrently (batches lock the watermark row), gives the same rows.

The watermark moves to the run's start minus `OVERLAP`, so a write whose transaction committed up to that
long after it stamped `updated_at` / `created_at` is still picked up by the next run.
"""

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import numpy as np
from django.db import transaction
from django.db.models.functions import TruncHour
from django.utils import timezone

from dashboard.kpis import (
    INCIDENT_METRICS,
    N_BUCKETS,
    bucket_of,
    call_rows,
    incident_rows,
)
from dashboard.models import KpiRollup, RollupWatermark
from incidents.models import Call, Incident

logger = logging.getLogger(__name__)

WATERMARK = "kpi"
OVERLAP = timedelta(minutes=2)
BATCH_HOURS = 24
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ALL = KpiRollup.ALL
# Grouping sets stored per (hour, metric): the dimensions kept, the rest are "*".
GROUPING_SETS = ((), ("line",), ("tipo",), ("state",), ("state", "municipality"))


def touched_hours(*, since: datetime) -> set[datetime]:
    """UTC hours whose rollups may have changed since `since`."""
    hours: set[datetime] = set()
    queries = (
        Call.objects.filter(created_at__gte=since).annotate(h=TruncHour("arrived_at", tzinfo=UTC)),
        Incident.objects.filter(updated_at__gte=since).annotate(h=TruncHour("opened_at", tzinfo=UTC)),
        Call.objects.filter(incident__updated_at__gte=since).annotate(h=TruncHour("arrived_at", tzinfo=UTC)),
    )
    for query in queries:
        hours.update(h.astimezone(UTC) for h in query.values_list("h", flat=True).distinct())
    return hours


def _batches(hours: Iterable[datetime], span: int) -> list[list[datetime]]:
    """Sorted hours split into runs that each fit in a window of `span` hours (one range query each)."""
    batches: list[list[datetime]] = []
    for hour in sorted(hours):
        if batches and hour - batches[-1][0] < timedelta(hours=span):
            batches[-1].append(hour)
        else:
            batches.append([hour])
    return batches


def _aggregate(
    rows: dict[str, np.ndarray], *, metric: str, values: np.ndarray, flags: dict[str, np.ndarray]
) -> list[KpiRollup]:
    """Rollup rows of one metric for every (center, hour) and grouping set present in `rows`."""
    size = len(values)
    if not size:
        return []
    hour_codes = np.floor(rows["anchor"] / 3600.0).astype(np.int64)
    measured = ~np.isnan(values)
    buckets = np.where(measured, bucket_of(np.nan_to_num(values)), 0)
    factors = {"center": np.unique(rows["center"], return_inverse=True)}
    factors["hour"] = np.unique(hour_codes, return_inverse=True)
    for dim in ("line", "tipo", "state", "municipality"):
        factors[dim] = np.unique(rows[dim].astype(str), return_inverse=True)
    out = []
    for grouping in GROUPING_SETS:
        # One int64 code per row combining the factor codes of the grouping's columns.
        code = np.zeros(size, dtype=np.int64)
        for column in ("center", "hour", *grouping):
            uniques, inverse_codes = factors[column]
            code = code * len(uniques) + inverse_codes
        _codes, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        groups = len(first)
        index_of = {
            tuple(factors[c][0][factors[c][1][row]] for c in ("center", "hour", *grouping)): g
            for g, row in enumerate(first.tolist())
        }
        inverse = inverse.reshape(-1)
        n = np.bincount(inverse, weights=measured, minlength=groups)
        sums = np.bincount(inverse[measured], weights=values[measured], minlength=groups)
        hist = np.bincount(
            inverse[measured] * N_BUCKETS + buckets[measured], minlength=groups * N_BUCKETS
        ).reshape(groups, N_BUCKETS)
        totals = np.bincount(inverse, minlength=groups)
        zeros = np.zeros(groups)
        flag_counts = {
            name: np.bincount(inverse, weights=flag.astype(float), minlength=groups)
            for name, flag in flags.items()
        }
        for key, g in index_of.items():
            center_id, hour_code, *dim_values = (v.item() if hasattr(v, "item") else v for v in key)
            dims = dict(zip(grouping, dim_values, strict=True))
            nonzero = np.flatnonzero(hist[g])
            trimmed = hist[g][: nonzero[-1] + 1].tolist() if len(nonzero) else []
            out.append(
                KpiRollup(
                    center_id=center_id,
                    hour=datetime.fromtimestamp(hour_code * 3600, tz=UTC),
                    metric=metric,
                    line=dims.get("line", ALL),
                    tipo=dims.get("tipo", ALL),
                    state=dims.get("state", ALL),
                    municipality=dims.get("municipality", ALL),
                    n=int(n[g]),
                    missing=int(totals[g] - n[g]),
                    improcedente=int(flag_counts.get("improcedente", zeros)[g]),
                    cancelled=int(flag_counts.get("cancelled", zeros)[g]),
                    sum_s=float(sums[g]),
                    hist=trimmed,
                )
            )
    return out


def _select(rows: dict[str, np.ndarray], hours: set[datetime]) -> dict[str, np.ndarray]:
    codes = {int(h.timestamp()) // 3600 for h in hours}
    keep = np.isin(np.floor(rows["anchor"] / 3600.0).astype(np.int64), list(codes))
    return {name: column[keep] for name, column in rows.items()}


def compute_rollups(*, hours: set[datetime]) -> list[KpiRollup]:
    """Rollup rows (unsaved) for the given UTC hours, all centres."""
    if not hours:
        return []
    start, end = min(hours), max(hours) + timedelta(hours=1)
    calls = _select(call_rows(start=start, end=end), hours)
    incidents = _select(incident_rows(start=start, end=end), hours)
    out = _aggregate(
        calls, metric="answer", values=calls["answer"], flags={"improcedente": calls["improcedente"]}
    )
    for metric in INCIDENT_METRICS:
        out += _aggregate(
            incidents, metric=metric, values=incidents[metric], flags={"cancelled": incidents["cancelled"]}
        )
    return out


def _day(hour: datetime) -> datetime:
    return hour.replace(hour=0, minute=0, second=0, microsecond=0)


def _rebuild_days(days: set[datetime]) -> int:
    """Replace the day rows of `days` by the sums of their hour rows (inside the caller's transaction)."""
    sums: dict[tuple, dict] = {}
    keys = ("center_id", "metric", "line", "tipo", "state", "municipality")
    for day in days:
        rows = KpiRollup.objects.filter(
            grain=KpiRollup.Grain.HOUR, hour__gte=day, hour__lt=day + timedelta(days=1)
        ).values_list(*keys, "n", "missing", "improcedente", "cancelled", "sum_s", "hist")
        for row in rows:
            key = (day, *row[: len(keys)])
            n, missing, improcedente, cancelled, sum_s, hist = row[len(keys) :]
            slot = sums.get(key)
            if slot is None:
                slot = sums[key] = {
                    "counts": np.zeros(4, dtype=np.int64),
                    "sum_s": 0.0,
                    "hist": np.zeros(N_BUCKETS, dtype=np.int64),
                }
            slot["counts"] += (n, missing, improcedente, cancelled)
            slot["sum_s"] += sum_s
            if hist:
                slot["hist"][: len(hist)] += np.asarray(hist, dtype=np.int64)
    KpiRollup.objects.filter(grain=KpiRollup.Grain.DAY, hour__in=list(days)).delete()
    out = []
    for (day, center_id, metric, line, tipo, state, municipality), slot in sums.items():
        nonzero = np.flatnonzero(slot["hist"])
        n, missing, improcedente, cancelled = (int(v) for v in slot["counts"])
        out.append(
            KpiRollup(
                grain=KpiRollup.Grain.DAY,
                center_id=center_id,
                hour=day,
                metric=metric,
                line=line,
                tipo=tipo,
                state=state,
                municipality=municipality,
                n=n,
                missing=missing,
                improcedente=improcedente,
                cancelled=cancelled,
                sum_s=slot["sum_s"],
                hist=slot["hist"][: nonzero[-1] + 1].tolist() if len(nonzero) else [],
            )
        )
    KpiRollup.objects.bulk_create(out, batch_size=2000)
    return len(out)


def refresh_rollups(*, since: datetime | None = None, now: datetime | None = None) -> dict:
    """Recompute the rollups of every hour touched since `since` (default: the stored watermark; the
    first run rebuilds everything). One transaction per batch of up to BATCH_HOURS hours. Returns
    {"hours": n, "rows": n, "ms": n}."""
    started = time.monotonic()
    now = now or timezone.now()
    watermark, _created = RollupWatermark.objects.get_or_create(name=WATERMARK, defaults={"since": EPOCH})
    since = since if since is not None else watermark.since
    hours = touched_hours(since=since)
    written = 0
    for batch in _batches(hours, BATCH_HOURS):
        with transaction.atomic():
            RollupWatermark.objects.select_for_update().get(pk=watermark.pk)
            rollups = compute_rollups(hours=set(batch))
            KpiRollup.objects.filter(grain=KpiRollup.Grain.HOUR, hour__in=batch).delete()
            KpiRollup.objects.bulk_create(rollups, batch_size=2000)
            written += len(rollups) + _rebuild_days({_day(h) for h in batch})
    elapsed_ms = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        current = RollupWatermark.objects.select_for_update().get(pk=watermark.pk)
        current.since = max(current.since, now - OVERLAP)
        current.last_run_at = now
        current.last_hours = len(hours)
        current.last_duration_ms = elapsed_ms
        current.save()
    logger.info("kpi rollups refreshed", extra={"hours": len(hours), "rows": written, "ms": elapsed_ms})
    return {"hours": len(hours), "rows": written, "ms": elapsed_ms}


def rollup_status() -> dict:
    watermark = RollupWatermark.objects.filter(name=WATERMARK).first()
    if watermark is None:
        return {"last_run_at": None, "since": None, "last_hours": 0, "last_duration_ms": 0}
    return {
        "last_run_at": watermark.last_run_at.isoformat() if watermark.last_run_at else None,
        "since": watermark.since.isoformat(),
        "last_hours": watermark.last_hours,
        "last_duration_ms": watermark.last_duration_ms,
    }

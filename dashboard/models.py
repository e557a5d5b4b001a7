"""KPI rollups: hourly histograms of every response interval, so any range's percentiles are a sum."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from dashboard.kpis import METRICS


class KpiRollup(models.Model):
    """One hour (UTC) of one metric for one centre, for one grouping set.

    Rows are grouping sets, not a full cube: for each (hour, metric) there is a row for the total
    (all keys "*"), one per line, one per CNIE tipo, one per state and one per (state, municipality).
    A month's dashboard therefore reads hours × keys-of-one-dimension rows, whatever the fleet size.
    `hist[i]` counts measured intervals in bucket i of dashboard.kpis.UPPER_EDGES (trailing zeros
    trimmed); `n` measured intervals, `missing` rows where the interval cannot be measured (unanswered
    calls, incidents not yet / never on scene…), `improcedente` (answer rows) and `cancelled` (incident
    rows) flags. Rebuilt per hour by dashboard.rollups.refresh_rollups; never incremented in place.
    """

    ALL = "*"

    class Grain(models.TextChoices):
        HOUR = "h", _("hora")
        DAY = "d", _("día (UTC)")

    center = models.ForeignKey("cad.Center", on_delete=models.CASCADE, related_name="+")
    grain = models.CharField(max_length=1, choices=Grain.choices, default=Grain.HOUR)
    hour = models.DateTimeField(_("inicio (UTC)"))
    metric = models.CharField(_("indicador"), max_length=16, choices=[(m, m) for m in METRICS])
    line = models.CharField(_("línea"), max_length=3, default=ALL)
    tipo = models.CharField(_("tipo CNIE"), max_length=1, default=ALL)
    state = models.CharField(_("entidad"), max_length=16, default=ALL)
    municipality = models.CharField(_("municipio"), max_length=16, default=ALL)
    n = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    improcedente = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    sum_s = models.FloatField(default=0.0)
    hist = models.JSONField(default=list)

    class Meta:
        verbose_name = _("acumulado horario de indicadores")
        verbose_name_plural = _("acumulados horarios de indicadores")
        constraints = [
            models.UniqueConstraint(
                fields=["center", "grain", "hour", "metric", "line", "tipo", "state", "municipality"],
                name="uniq_kpi_rollup_bucket",
            )
        ]
        indexes = [models.Index(fields=["center", "grain", "hour"], name="kpi_rollup_hour")]


class RollupWatermark(models.Model):
    """Where the next refresh starts: rows changed at or after `since` are re-read. Locked FOR UPDATE by
    each refresh batch, which serialises concurrent refreshes."""

    name = models.CharField(max_length=32, unique=True)
    since = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_hours = models.PositiveIntegerField(default=0)
    last_duration_ms = models.PositiveIntegerField(default=0)

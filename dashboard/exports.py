"""CSV exports (reads only): every incident with its intervals, and the monthly summary.

Times are written in the display time zone (America/Mexico_City) as `YYYY-MM-DD HH:MM:SS`; intervals in
whole seconds (empty when not measurable). Rows are generated lazily so a year streams in constant memory.
"""

import csv
from collections.abc import Iterator
from datetime import datetime

from django.utils import timezone
from django.utils.translation import gettext as _

from dashboard.kpis import INCIDENT_INTERVALS, METRIC_LABELS, METRICS, PERCENTILES, exact_kpis
from dashboard.targets import kpi_targets
from incidents.models import Incident


class _Echo:
    """A file-like object whose write returns the line, for csv.writer over a streaming response."""

    def write(self, value: str) -> str:
        return value


def _local(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return str(max(0, round((end - start).total_seconds())))


def incident_export_rows(*, center_id: int, start: datetime, end: datetime) -> Iterator[list[str]]:
    """Header, then one row per incident opened in [start, end), oldest first."""
    yield [
        _("Folio"),
        _("Clave CNIE"),
        _("Incidente"),
        _("Tipo"),
        _("Prioridad"),
        _("Línea"),
        _("Estado del incidente"),
        _("Entidad"),
        _("Municipio"),
        _("Llegada de la llamada"),
        _("Contestación"),
        _("Apertura"),
        _("Primer despacho"),
        _("Primera unidad en camino"),
        _("Primera unidad en el lugar"),
        _("Cierre"),
        _("Resolución"),
        *(f"{METRIC_LABELS[m]} (s)" for m in METRICS),
    ]
    incidents = (
        Incident.objects.filter(center_id=center_id, opened_at__gte=start, opened_at__lt=end)
        .with_places()
        .order_by("opened_at", "id")
    )
    for incident in incidents.iterator(chunk_size=2000):
        intervals = {
            metric: _seconds(getattr(incident, begin), getattr(incident, finish))
            for metric, (begin, finish) in INCIDENT_INTERVALS.items()
        }
        yield [
            incident.folio,
            incident.type_code,
            incident.type_name,
            incident.type_code[:1],
            incident.get_priority_display(),
            incident.line,
            incident.get_status_display(),
            incident.state.name if incident.state_id else "",
            incident.municipality.name if incident.municipality_id else "",
            _local(incident.call_arrived_at),
            _local(incident.call_answered_at),
            _local(incident.opened_at),
            _local(incident.first_dispatched_at),
            _local(incident.first_en_route_at),
            _local(incident.first_on_scene_at),
            _local(incident.closed_at),
            incident.disposition,
            _seconds(incident.call_arrived_at, incident.call_answered_at),
            *(intervals[m] for m in METRICS[1:]),
        ]


def monthly_summary_rows(*, center_id: int, start: datetime, end: datetime) -> Iterator[list[str]]:
    """Header, then one row per (CNIE type, line) with counts, p50/p90 of each interval and compliance,
    computed exactly (exact_kpis), then a total row."""
    targets = kpi_targets()
    header = [
        _("Clave CNIE"),
        _("Incidente"),
        _("Línea"),
        _("Llamadas"),
        _("Sin contestar"),
        _("Improcedentes"),
        _("Incidentes"),
        _("Cancelados"),
    ]
    for metric in METRICS:
        header += [f"{METRIC_LABELS[metric]} p{q} (s)" for q in PERCENTILES[:2]]
    header += [str(t["label"]) for t in targets.values()]
    yield header

    def row(code, name, line, group):
        cells = [
            code,
            name,
            line,
            group["calls"],
            group["unanswered"],
            group["improcedente"],
            group["incidents"],
            group["cancelled"],
        ]
        for metric in METRICS:
            block = group["metrics"][metric]
            cells += ["" if block[f"p{q}"] is None else block[f"p{q}"] for q in PERCENTILES[:2]]
        for key, target in targets.items():
            share = group["metrics"][target["metric"]]["compliance"].get(key, {}).get("share")
            cells.append("" if share is None else f"{share * 100:.1f}%")
        return [str(c) for c in cells]

    for group in exact_kpis(center_id=center_id, start=start, end=end, group_by=("type", "line")):
        code, line = group["key"]
        name = group["label"].split(" · ")[0].removeprefix(code).strip() if code else _("Sin clasificar")
        yield row(code, name, line, group)
    for group in exact_kpis(center_id=center_id, start=start, end=end):
        yield row("", _("Total"), "", group)


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value):
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading
    apostrophe (OWASP "CSV injection"); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def csv_stream(rows: Iterator[list]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield "\ufeff"  # BOM: spreadsheet software then reads the accents right
    for row in rows:
        yield writer.writerow([spreadsheet_safe(cell) for cell in row])

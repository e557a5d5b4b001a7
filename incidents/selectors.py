"""Incident reads: what each screen needs, with its joins decided here."""

from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import BooleanField, Prefetch, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from cad.errors import NotFound
from incidents.models import Assignment, Incident, IncidentStatus, IncidentType, SubtypeResponsePlan
from units.routing import haversine_km


def incident_list_for_console(*, center_id: int) -> QuerySet[Incident]:
    """Open incidents, most urgent first: priority, then age."""
    return (
        Incident.objects.filter(center_id=center_id)
        .exclude(status=IncidentStatus.CLOSED)
        .with_places()
        .prefetch_related(
            Prefetch("assignments", Assignment.objects.filter(active=True).select_related("unit"))
        )
        .order_by("priority_rank", "opened_at")
    )


def _incident_or_404(incidents: QuerySet[Incident], *, folio: str, center_id: int) -> Incident:
    try:
        return incidents.get(folio=folio, center_id=center_id)
    except Incident.DoesNotExist:
        raise NotFound(f"No existe el incidente {folio}.") from None


def incident_get(*, folio: str, center_id: int) -> Incident:
    """One incident with everything its detail view shows (timeline, calls, assignments)."""
    return _incident_or_404(
        Incident.objects.select_related("incident_type", "created_by")
        .with_places()
        .prefetch_related("timeline__by", "calls", "assignments__unit__agency"),
        folio=folio,
        center_id=center_id,
    )


def incident_get_for_recommendation(*, folio: str, center_id: int) -> Incident:
    """One incident with its type only, and only what a recommendation reads of them (no timeline, calls
    or assignments; any other field is loaded on access).

    In the same query: its subtipo's response plan (`subtype_response_plan`, for response_plan_for) and
    whether units are working it (`has_active_assignments`: when not, recommend_units skips their query).
    Both are RawSQL: as Subquery/Exists they cost the ORM twice the CPU of the rest of the query."""
    incidents = (
        Incident.objects.select_related("incident_type")
        .only(*_FOR_RECOMMENDATION)
        .annotate(
            subtype_response_plan=RawSQL(_SUBTYPE_PLAN_SQL, (), output_field=_PLAN_FIELD),  # noqa: S611
            has_active_assignments=RawSQL(_WORKED_SQL, (), output_field=BooleanField()),  # noqa: S611
        )
    )
    return _incident_or_404(incidents, folio=folio, center_id=center_id)


quote_name = connection.ops.quote_name


def _column(model, name: str) -> str:
    return f"{quote_name(model._meta.db_table)}.{quote_name(model._meta.get_field(name).column)}"


# Constants from the models' metadata (no input). The joined tables keep their own names as aliases (the
# query above joins each once).
_PLAN_FIELD = SubtypeResponsePlan._meta.get_field("plan")
# What a recommendation (and a manual dispatch's options) read of the incident and its type: the ORM builds
# a query of some 50 columns otherwise, and that compilation cost more than the recommendation's own SQL.
_FOR_RECOMMENDATION = (
    "id",
    "folio",
    "center_id",
    "lat",
    "lon",
    "handled_by_center",
    "incident_type",
    "incident_type__code",
    "incident_type__tipo_code",
    "incident_type__subtipo_code",
    "incident_type__response_plan",
)
_SUBTYPE_PLAN_SQL = (
    f"SELECT p.{quote_name('plan')} FROM {quote_name(SubtypeResponsePlan._meta.db_table)} p"  # noqa: S608
    f" WHERE p.{quote_name('subtipo_code')} = {_column(IncidentType, 'subtipo_code')} LIMIT 1"
)
_WORKED_SQL = (
    f"EXISTS (SELECT 1 FROM {quote_name(Assignment._meta.db_table)} a"  # noqa: S608
    f" WHERE a.{quote_name('incident_id')} = {_column(Incident, 'id')} AND a.{quote_name('active')})"
)


def _compatible(candidate: Incident, incident_type: IncidentType | None, match: str) -> bool:
    if incident_type is None or match == "any":
        return True
    if match == "tipo":
        return candidate.type_code[:1] == incident_type.tipo_code
    return candidate.type_code[:3] == incident_type.subtipo_code


def duplicate_candidates(
    *, center_id: int, lat: float, lon: float, incident_type: IncidentType | None = None, now=None
) -> list[dict]:
    """Open incidents near (lat, lon), opened within the window, of a compatible type, nearest first.

    Radius, window and what "compatible" means (same subtipo, same tipo, any) are settings."""
    now = now or timezone.now()
    radius_m = settings.CAD["DUPLICATE_RADIUS_M"]
    window = timedelta(minutes=settings.CAD["DUPLICATE_WINDOW_MIN"])
    match = settings.CAD["DUPLICATE_MATCH"]
    half_width = radius_m / 1000.0 / 111.0 * 1.5
    lon_width = half_width / max(np.cos(np.radians(lat)), 0.2)
    nearby = list(
        Incident.objects.filter(
            center_id=center_id,
            opened_at__gte=now - window,
            lat__gte=lat - half_width,
            lat__lte=lat + half_width,
            lon__gte=lon - lon_width,
            lon__lte=lon + lon_width,
        ).exclude(status=IncidentStatus.CLOSED)
    )
    nearby = [i for i in nearby if _compatible(i, incident_type, match)]
    if not nearby:
        return []
    distances = (
        haversine_km(lat, lon, np.array([i.lat for i in nearby]), np.array([i.lon for i in nearby])) * 1000
    )
    found = [
        {
            "folio": incident.folio,
            "type_code": incident.type_code,
            "type_name": incident.type_name,
            "priority": incident.priority,
            "status": incident.status,
            "address": incident.address,
            "opened_at": incident.opened_at.isoformat(),
            "distance_m": round(float(distance), 1),
        }
        for incident, distance in zip(nearby, distances, strict=True)
        if distance <= radius_m
    ]
    return sorted(found, key=lambda c: c["distance_m"])

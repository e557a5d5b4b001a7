"""Unit reads: board lists and dispatch recommendations."""

from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import DomainError
from units.models import Agency, Unit, UnitStatus
from units.routing import get_estimator

KM_PER_DEGREE = 111.0
# Bounding boxes tried in turn (half-width in degrees); None = the whole centre.
_SEARCH_BOXES = (0.05, 0.15, 0.5, 1.5, None)


def unit_list_for_board(*, center_id: int) -> QuerySet[Unit]:
    return (
        Unit.objects.filter(center_id=center_id)
        .select_related("agency", "station")
        .prefetch_related("capabilities")
        .order_by("agency__name", "callsign")
    )


def _candidates_in_box(*, center_id, capability, lat, lon, half_width, fresh_after, exclude):
    rows = Unit.objects.filter(
        center_id=center_id, status=UnitStatus.AVAILABLE, position_at__gte=fresh_after, lat__isnull=False
    )
    if capability:
        rows = rows.filter(capabilities__code=capability)
    if half_width is not None:
        lon_width = half_width / max(np.cos(np.radians(lat)), 0.2)
        rows = rows.filter(
            lat__gte=lat - half_width,
            lat__lte=lat + half_width,
            lon__gte=lon - lon_width,
            lon__lte=lon + lon_width,
        )
    if exclude:
        rows = rows.exclude(id__in=exclude)
    return list(
        rows.values_list("id", "callsign", "lat", "lon", "position_at", "agency__name", "agency__speed_kmh")
    )


def nearest_available_units(
    *, center_id: int, lat: float, lon: float, capability: str | None, limit: int, exclude=(), now=None
) -> list[dict]:
    """The `limit` available units with a fresh position, fastest first by estimated travel time.

    Grows a bounding box until the slowest of the best `limit` ETAs is inside what the box guarantees
    (no unit outside it could arrive sooner), so the answer equals a full scan."""
    now = now or timezone.now()
    fresh_after = now - timedelta(seconds=settings.CAD["AVL_STALE_SECONDS"])
    estimator = get_estimator()
    max_speed = Agency.objects.filter(center_id=center_id).aggregate(m=Max("speed_kmh"))["m"] or 60.0
    for half_width in _SEARCH_BOXES:
        rows = _candidates_in_box(
            center_id=center_id,
            capability=capability,
            lat=lat,
            lon=lon,
            half_width=half_width,
            fresh_after=fresh_after,
            exclude=exclude,
        )
        if not rows:
            continue
        lats = np.fromiter((r[2] for r in rows), float, len(rows))
        lons = np.fromiter((r[3] for r in rows), float, len(rows))
        speeds = np.fromiter((r[6] for r in rows), float, len(rows))
        distance_km, seconds = estimator.estimate(origin=(lat, lon), lats=lats, lons=lons, speeds_kmh=speeds)
        order = np.argsort(seconds, kind="stable")[:limit]
        if half_width is not None:
            guaranteed_km = half_width * KM_PER_DEGREE
            guaranteed_s = guaranteed_km * settings.CAD["ROAD_FACTOR"] / max_speed * 3600.0
            if len(order) < limit or seconds[order[-1]] > guaranteed_s:
                continue
        return [
            {
                "unit_id": rows[i][0],
                "callsign": rows[i][1],
                "agency": rows[i][5],
                "lat": rows[i][2],
                "lon": rows[i][3],
                "distance_km": round(float(distance_km[i]), 3),
                "eta_s": round(float(seconds[i]), 1),
                "position_age_s": round((now - rows[i][4]).total_seconds(), 1),
            }
            for i in order
        ]
    return []


def recommend_units(*, incident, limit: int | None = None, now=None) -> dict:
    """For each capability of the incident's response plan, the nearest available units by ETA, and a
    suggested set that satisfies the plan without using a unit twice."""
    from incidents.catalogue import response_plan_for

    if incident.lat is None or incident.lon is None:
        raise DomainError(
            _("El incidente no tiene ubicación; capture coordenadas para recomendar unidades."),
            code="no_location",
            fields={"lat": [_("Requerido para recomendar.")]},
        )
    if incident.incident_type.is_improcedente:
        raise DomainError(_("Los improcedentes no se despachan."), code="improcedente_not_dispatchable", status=409)
    limit = limit or settings.CAD["RECOMMEND_LIMIT"]
    plan = response_plan_for(incident.incident_type) or {"": 1}
    busy_ids = set(incident.assignments.filter(active=True).values_list("unit_id", flat=True))
    requirements, suggested = [], []
    for capability, count in plan.items():
        candidates = nearest_available_units(
            center_id=incident.center_id,
            lat=incident.lat,
            lon=incident.lon,
            capability=capability or None,
            limit=max(limit, count + len(suggested)),
            exclude=busy_ids,
            now=now,
        )
        picked = [c for c in candidates if c["unit_id"] not in suggested][:count]
        suggested.extend(c["unit_id"] for c in picked)
        requirements.append(
            {
                "capability": capability or None,
                "count": count,
                "candidates": candidates[:limit],
                "suggested": picked,
            }
        )
    return {
        "folio": incident.folio,
        "plan": plan,
        "requirements": requirements,
        "suggested_unit_ids": suggested,
    }

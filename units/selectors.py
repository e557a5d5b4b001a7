"""Unit reads: board lists and dispatch recommendations."""

from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db.models import ExpressionWrapper, F, FloatField, QuerySet, Value
from django.db.models.functions import ASin, Cos, Greatest, Least, Radians, Sin, Sqrt
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import DomainError
from units.models import Unit, UnitStatus
from units.routing import StraightLineEstimator, get_estimator

# Road-routing estimators re-rank a straight-line shortlist this many times larger than the answer.
SHORTLIST_FACTOR = 4


def unit_list_for_board(*, center_id: int) -> QuerySet[Unit]:
    return (
        Unit.objects.filter(center_id=center_id)
        .select_related("agency", "station")
        .prefetch_related("capabilities")
        .order_by("agency__name", "callsign")
    )


def _shortlist_by_straight_line_eta(*, center_id, capability, lat, lon, limit, fresh_after, exclude):
    """The `limit` best available units by straight-line ETA, ranked in the database (one query).

    The ORDER BY is the haversine distance ÷ max(speed, 1): StraightLineEstimator's formula less its
    constant factors, so for that estimator this equals a full scan without shipping every unit."""
    rows = Unit.objects.filter(
        center_id=center_id, status=UnitStatus.AVAILABLE, position_at__gte=fresh_after, lat__isnull=False
    )
    if capability:
        rows = rows.filter(capabilities__code=capability)
    if exclude:
        rows = rows.exclude(id__in=exclude)
    lat_r, lon_r = float(np.radians(lat)), float(np.radians(lon))
    half_dlat = Sin((Radians(F("lat")) - Value(lat_r)) / Value(2.0))
    half_dlon = Sin((Radians(F("lon")) - Value(lon_r)) / Value(2.0))
    a = half_dlat * half_dlat + Value(float(np.cos(lat_r))) * Cos(Radians(F("lat"))) * half_dlon * half_dlon
    eta_rank = ASin(Sqrt(Least(a, Value(1.0)))) / Greatest(F("agency__speed_kmh"), Value(1.0))
    rows = rows.annotate(eta_rank=ExpressionWrapper(eta_rank, output_field=FloatField()))
    return list(
        rows.order_by("eta_rank", "id").values_list(
            "id", "callsign", "lat", "lon", "position_at", "agency__name", "agency__speed_kmh"
        )[:limit]
    )


def nearest_available_units(
    *, center_id: int, lat: float, lon: float, capability: str | None, limit: int, exclude=(), now=None
) -> list[dict]:
    """The `limit` available units with a fresh position, fastest first by estimated travel time.

    The database shortlists by straight-line ETA; the configured estimator (straight line by default, or
    a road-routing engine) computes the ETAs and the final order of that shortlist."""
    now = now or timezone.now()
    fresh_after = now - timedelta(seconds=settings.CAD["AVL_STALE_SECONDS"])
    estimator = get_estimator()
    shortlist = limit if type(estimator) is StraightLineEstimator else limit * SHORTLIST_FACTOR
    rows = _shortlist_by_straight_line_eta(
        center_id=center_id,
        capability=capability,
        lat=lat,
        lon=lon,
        limit=shortlist,
        fresh_after=fresh_after,
        exclude=exclude,
    )
    if not rows:
        return []
    lats = np.fromiter((r[2] for r in rows), float, len(rows))
    lons = np.fromiter((r[3] for r in rows), float, len(rows))
    speeds = np.fromiter((r[6] for r in rows), float, len(rows))
    distance_km, seconds = estimator.estimate(origin=(lat, lon), lats=lats, lons=lons, speeds_kmh=speeds)
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
        for i in np.argsort(seconds, kind="stable")[:limit]
    ]


def recommend_units(*, incident, limit: int | None = None, now=None) -> dict:
    """For each capability of the incident's response plan, the nearest available units by ETA, and a
    suggested set that completes the plan (less the units already assigned) without using a unit twice."""
    from incidents.catalogue import response_plan_for

    if incident.lat is None or incident.lon is None:
        raise DomainError(
            _("El incidente no tiene ubicación; capture coordenadas para recomendar unidades."),
            code="no_location",
            fields={"lat": [_("Requerido para recomendar.")]},
        )
    if incident.incident_type.is_improcedente:
        raise DomainError(
            _("Los improcedentes no se despachan."), code="improcedente_not_dispatchable", status=409
        )
    limit = limit or settings.CAD["RECOMMEND_LIMIT"]
    plan = response_plan_for(incident.incident_type) or {"": 1}
    # Units already working the incident count toward the plan (each unit toward one capability).
    working = {
        unit.id: {c.code for c in unit.capabilities.all()}
        for unit in Unit.objects.filter(
            assignments__incident=incident, assignments__active=True
        ).prefetch_related("capabilities")
    }
    requirements, suggested, counted = [], [], set()
    for capability, count in plan.items():
        covering = [
            uid
            for uid, codes in working.items()
            if uid not in counted and (not capability or capability in codes)
        ]
        assigned = covering[:count]
        counted.update(assigned)
        outstanding = count - len(assigned)
        candidates = nearest_available_units(
            center_id=incident.center_id,
            lat=incident.lat,
            lon=incident.lon,
            capability=capability or None,
            limit=max(limit, outstanding + len(suggested)),
            exclude=list(working),
            now=now,
        )
        picked = [c for c in candidates if c["unit_id"] not in suggested][:outstanding]
        suggested.extend(c["unit_id"] for c in picked)
        requirements.append(
            {
                "capability": capability or None,
                "count": count,
                "assigned": len(assigned),
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

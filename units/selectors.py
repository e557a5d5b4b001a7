"""Unit reads: board lists, dispatch recommendations and the options of a manual dispatch."""

import math
import re
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import DomainError, NotFound
from geo.locator import places_of
from units.models import Agency, Capability, Unit, UnitStatus
from units.routing import EARTH_RADIUS_KM, StraightLineEstimator, get_estimator

# Road-routing estimators re-rank a straight-line shortlist this many times larger than the answer.
SHORTLIST_FACTOR = 4


def natural_key(callsign: str) -> tuple:
    """BOM-2 before BOM-10: digit runs compare as numbers."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part.casefold())
        for part in re.split(r"(\d+)", callsign)
        if part
    )


def limit_flags(*, distance_km: float | None, eta_s: float | None) -> dict:
    """Whether a unit is beyond the configured ETA or distance for an incident, and why (never silent)."""
    max_eta, max_km = settings.CAD["RECOMMEND_MAX_ETA_S"], settings.CAD["RECOMMEND_MAX_DISTANCE_KM"]
    reason = None
    if eta_s is not None and eta_s > max_eta:
        reason = "eta"
    elif distance_km is not None and distance_km > max_km:
        reason = "distance"
    return {"beyond_limit": reason is not None, "limit_reason": reason}


def unit_ids_for_callsigns(*, center_id: int, callsigns: list[str]) -> list[int]:
    """Unit ids of callsigns typed by a dispatcher (case-insensitive); NotFound names the first unknown."""
    wanted = {c.strip().casefold(): c for c in callsigns if c.strip()}
    rows = Unit.objects.annotate(folded=Lower("callsign")).filter(
        center_id=center_id, folded__in=list(wanted)
    )
    found = {callsign.casefold(): pk for pk, callsign in rows.values_list("id", "callsign")}
    unknown = [raw for key, raw in wanted.items() if key not in found]
    if unknown:
        raise NotFound(
            _("No existe la unidad %(id)s.") % {"id": unknown[0]}, fields={"callsigns": [unknown[0]]}
        )
    return [found[key] for key in wanted]


def unit_list_for_board(*, center_id: int) -> QuerySet[Unit]:
    return (
        Unit.objects.filter(center_id=center_id)
        .select_related("agency", "station")
        .prefetch_related("capabilities")
        .order_by("agency__name", "callsign")
    )


# The shortlist searches a box around the incident first and grows it until the answer is provably the
# same as ranking every available unit (see _shortlist_by_straight_line_eta).
FIRST_BOX_KM = 8.0
# Past this radius (fewer than `limit` units within it) the query ranks the whole centre instead.
LAST_BOX_KM = 250.0
# Float rounding between Python's box and the database's haversine: certify with this much to spare.
CERTIFY_MARGIN = 1e-9


def _box(lat: float, lon: float, radius_km: float) -> tuple[float, float, float, float] | None:
    """(min_lat, max_lat, min_lon, max_lon) in degrees holding every point within `radius_km` of (lat, lon)
    on the sphere (J. P. Matuschek, "Finding Points Within a Distance of a Latitude/Longitude Using
    Bounding Coordinates"); None when it would reach a pole or cross the antimeridian."""
    delta = radius_km / EARTH_RADIUS_KM
    lat_r, lon_r = math.radians(lat), math.radians(lon)
    min_lat, max_lat = lat_r - delta, lat_r + delta
    if min_lat <= -math.pi / 2 or max_lat >= math.pi / 2 or math.sin(delta) >= math.cos(lat_r):
        return None
    dlon = math.asin(math.sin(delta) / math.cos(lat_r))
    if lon_r - dlon <= -math.pi or lon_r + dlon >= math.pi:
        return None
    return (
        math.degrees(min_lat),
        math.degrees(max_lat),
        math.degrees(lon_r - dlon),
        math.degrees(lon_r + dlon),
    )


# The rank is the haversine half-angle ÷ max(speed, 1) (StraightLineEstimator's order: its constant factors
# left out), written with portable SQL: PostgreSQL has these functions, Django registers them on SQLite.
_SHORTLIST_SQL = """
SELECT id, callsign, lat, lon, position_at, agency_name, speed_kmh,
       ASIN(SQRT(CASE WHEN hav < 1.0 THEN hav ELSE 1.0 END))
         / (CASE WHEN speed_kmh > 1.0 THEN speed_kmh ELSE 1.0 END) AS eta_rank,
       (SELECT MAX(speed_kmh) FROM {agency} WHERE center_id = %(center)s) AS fastest_kmh
  FROM (SELECT u.id, u.callsign, u.lat, u.lon, u.position_at, a.name AS agency_name, a.speed_kmh,
               SIN((RADIANS(u.lat) - %(lat_r)s) / 2.0) * SIN((RADIANS(u.lat) - %(lat_r)s) / 2.0)
                 + %(cos_lat)s * COS(RADIANS(u.lat))
                   * SIN((RADIANS(u.lon) - %(lon_r)s) / 2.0) * SIN((RADIANS(u.lon) - %(lon_r)s) / 2.0) AS hav
          FROM {unit} u JOIN {agency} a ON a.id = u.agency_id
         WHERE u.center_id = %(center)s AND u.status = %(status)s AND u.position_at >= %(fresh_after)s
           AND u.lat IS NOT NULL {box} {capability} {exclude}) candidates
 ORDER BY eta_rank, id
 LIMIT %(limit)s
"""
_SHORTLIST_BOX = "AND u.lat BETWEEN %(min_lat)s AND %(max_lat)s AND u.lon BETWEEN %(min_lon)s AND %(max_lon)s"
# EXISTS on the capability's id (looked up once per statement): PostgreSQL's plan then does not hash every
# unit of the capability (two thirds of the fleet are patrols) on each query, as `u.id IN (…)` did.
_SHORTLIST_CAPABILITY = (
    "AND EXISTS (SELECT 1 FROM {unit_capability} uc WHERE uc.unit_id = u.id"
    " AND uc.capability_id = (SELECT c.id FROM {capability} c WHERE c.code = %(capability)s))"
)


def _shortlist_sql(*, boxed: bool, capability: bool, excluded: int) -> str:
    through = Unit.capabilities.through._meta.db_table
    return _SHORTLIST_SQL.format(
        unit=Unit._meta.db_table,
        agency=Agency._meta.db_table,
        box=_SHORTLIST_BOX if boxed else "",
        capability=(
            _SHORTLIST_CAPABILITY.format(unit_capability=through, capability=Capability._meta.db_table)
            if capability
            else ""
        ),
        exclude=(
            "AND u.id NOT IN ({})".format(", ".join(f"%(x{i})s" for i in range(excluded))) if excluded else ""
        ),
    )


def _shortlist_by_straight_line_eta(*, center_id, capability, lat, lon, limit, fresh_after, exclude):
    """The `limit` best available units by straight-line ETA, ranked in the database (ties by id).

    Each query reads only a box around the incident through the (center, status, lat, lon) index. A unit
    outside a box of radius r is farther than r, so it ranks above r ÷ (the centre's fastest agency): once
    the box holds `limit` units ranked below that, no unit outside can enter the answer, which is then
    exactly what ranking every available unit gives. Otherwise the box grows — straight to the radius the
    `limit`-th unit found calls for, once there are that many — and the query repeats."""
    lat_r, lon_r = math.radians(lat), math.radians(lon)
    params = {
        "center": center_id,
        "status": UnitStatus.AVAILABLE.value,
        "fresh_after": connection.ops.adapt_datetimefield_value(fresh_after),
        "lat_r": lat_r,
        "lon_r": lon_r,
        "cos_lat": math.cos(lat_r),
        "capability": capability,
        "limit": limit,
        **{f"x{i}": unit_id for i, unit_id in enumerate(exclude)},
    }
    shape = {"capability": bool(capability), "excluded": len(exclude)}
    # Raw rows carry the driver's datetime (SQLite: naive text); the field's converter makes it aware.
    position_at = Unit._meta.get_field("position_at")
    converters = [c for c in connection.ops.get_db_converters(position_at.cached_col) if c]

    def shortlisted(rows):
        out = []
        for row in rows:
            at = row[4]
            for convert in converters:
                at = convert(at, position_at.cached_col, connection)
            out.append((*row[:4], at, *row[5:7]))
        return out

    radius_km = FIRST_BOX_KM
    with connection.cursor() as cursor:
        while True:
            box = _box(lat, lon, radius_km) if radius_km <= LAST_BOX_KM else None
            if box is None:  # too wide (or over a pole or the antimeridian): rank the whole centre
                cursor.execute(_shortlist_sql(boxed=False, **shape), params)
                return shortlisted(cursor.fetchall())
            params.update(zip(("min_lat", "max_lat", "min_lon", "max_lon"), box, strict=True))
            cursor.execute(_shortlist_sql(boxed=True, **shape), params)
            found = cursor.fetchall()
            if len(found) < limit:  # too few in the box: grow it (by area, when it holds some already)
                radius_km *= math.sqrt(2 * limit / len(found)) if found else 3.0
                continue
            worst, fastest_kmh = found[-1][7], max(found[-1][8], 1.0)
            if worst < radius_km / (2 * EARTH_RADIUS_KM) / fastest_kmh * (1 - CERTIFY_MARGIN):
                return shortlisted(found)
            # The radius within which a unit of the fastest agency would rank as the `limit`-th found.
            radius_km = max(worst * fastest_kmh * 2 * EARTH_RADIUS_KM * (1 + 1e-6), radius_km * 1.2)


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
            **limit_flags(distance_km=float(distance_km[i]), eta_s=float(seconds[i])),
        }
        for i in np.argsort(seconds, kind="stable")[:limit]
    ]


def recommend_units(*, incident, limit: int | None = None, now=None) -> dict:
    """For each capability of the incident's response plan, the nearest available units by ETA, and a
    suggested set that completes the plan (less the units already assigned) without using a unit twice.

    A unit beyond CAD_RECOMMEND_MAX_ETA_S or CAD_RECOMMEND_MAX_DISTANCE_KM is listed flagged (with the
    reason) and never suggested. Every candidate carries its jurisdiction, to compare with the incident's.

    The answer is plain JSON types, exactly what RecommendationsOutput renders (the API returns it as is).
    An incident read by incident_get_for_recommendation carries its subtipo's plan and whether units work
    it, which saves their queries here."""
    from incidents.catalogue import NOT_READ, response_plan_for

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
    subtype_plan = getattr(incident, "subtype_response_plan", NOT_READ)
    plan = response_plan_for(incident.incident_type, subtype_plan=subtype_plan) or {"": 1}
    # Units already working the incident count toward the plan (each unit toward one capability).
    # One query (unit, capability) pairs, in the units' board order (callsign), as the plan is covered in it.
    working: dict[int, set[str]] = {}
    if getattr(incident, "has_active_assignments", True):
        for unit_id, code in (
            Unit.objects.filter(assignments__incident=incident, assignments__active=True)
            .order_by("callsign", "id")
            .values_list("id", "capabilities__code")
        ):
            working.setdefault(unit_id, set()).update([code] if code else [])
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
        picked = [c for c in candidates if c["unit_id"] not in suggested and not c["beyond_limit"]][
            :outstanding
        ]
        suggested.extend(c["unit_id"] for c in picked)
        requirements.append(
            {
                "capability": capability or None,
                "count": count,
                "assigned": len(assigned),
                "candidates": candidates[:limit],
                "suggested": picked,
                "only_beyond_limit": bool(candidates) and all(c["beyond_limit"] for c in candidates),
            }
        )
    # The jurisdictions of every listed candidate and of the incident, in one look-up.
    listed = [c for r in requirements for c in r["candidates"]]
    *places, incident_place = places_of(
        [(c["lat"], c["lon"]) for c in listed] + [(incident.lat, incident.lon)]
    )
    for candidate, place in zip(listed, places, strict=True):
        candidate["jurisdiction"] = place
    return {
        "folio": incident.folio,
        "plan": plan,
        "requirements": requirements,
        "suggested_unit_ids": suggested,
        "limits": _limits(),
        "incident_jurisdiction": incident_place,
    }


def _limits() -> dict:
    return {
        "max_eta_s": int(settings.CAD["RECOMMEND_MAX_ETA_S"]),
        "max_distance_km": float(settings.CAD["RECOMMEND_MAX_DISTANCE_KM"]),
    }


def dispatch_options(*, incident, q: str = "", limit: int = 20, unit_ids=None, now=None) -> dict:
    """Available units a dispatcher may send by hand (any of them, recommended or not): callsigns matching
    `q` (or the given `unit_ids`), naturally sorted, each with distance and ETA to the incident (when both
    have a position), its jurisdiction, and warnings: beyond the ETA/distance limit, no or stale position,
    lacking every capability the incident's plan asks for."""
    from incidents.catalogue import response_plan_for

    now = now or timezone.now()
    stale_after = settings.CAD["AVL_STALE_SECONDS"]
    rows = (
        Unit.objects.filter(center_id=incident.center_id, status=UnitStatus.AVAILABLE)
        .select_related("agency")
        .prefetch_related("capabilities")
    )
    if unit_ids is not None:
        rows = rows.filter(id__in=list(unit_ids))
    elif q.strip():
        rows = rows.filter(callsign__icontains=q.strip())
    units = sorted(rows, key=lambda u: natural_key(u.callsign))[:limit]
    plan = response_plan_for(incident.incident_type)
    names = dict(Capability.objects.values_list("code", "name"))
    located = [u for u in units if u.lat is not None and u.lon is not None]
    estimates = {}
    if located and incident.lat is not None and incident.lon is not None:
        distance_km, seconds = get_estimator().estimate(
            origin=(incident.lat, incident.lon),
            lats=np.array([u.lat for u in located]),
            lons=np.array([u.lon for u in located]),
            speeds_kmh=np.array([u.agency.speed_kmh for u in located]),
        )
        estimates = {
            u.id: (float(d), float(t)) for u, d, t in zip(located, distance_km, seconds, strict=True)
        }
    options = []
    places = places_of([(unit.lat, unit.lon) for unit in units] + [(incident.lat, incident.lon)])
    for unit, place in zip(units, places, strict=False):
        codes = sorted(c.code for c in unit.capabilities.all())
        distance, eta = estimates.get(unit.id, (None, None))
        age = (now - unit.position_at).total_seconds() if unit.position_at else None
        flags = limit_flags(distance_km=distance, eta_s=eta)
        warnings = []
        if flags["beyond_limit"]:
            warnings.append(
                {
                    "code": "beyond_limit",
                    "message": _("Más lejos que el límite (%(reason)s).")
                    % {"reason": _("tiempo estimado") if flags["limit_reason"] == "eta" else _("distancia")},
                }
            )
        if age is None or unit.lat is None:
            warnings.append({"code": "no_position", "message": _("Sin posición AVL: distancia desconocida.")})
        elif age > stale_after:
            warnings.append({"code": "stale_position", "message": _("Posición AVL antigua.")})
        needed = [c for c in plan if c]
        if needed and not set(needed) & set(codes):
            warnings.append(
                {
                    "code": "missing_capability",
                    "message": _("No tiene la capacidad requerida (%(needed)s).")
                    % {"needed": ", ".join(str(_(names.get(c, c))) for c in needed)},
                }
            )
        options.append(
            {
                "unit_id": unit.id,
                "callsign": unit.callsign,
                "agency": unit.agency.name,
                "capabilities": codes,
                "lat": unit.lat,
                "lon": unit.lon,
                "distance_km": None if distance is None else round(distance, 3),
                "eta_s": None if eta is None else round(eta, 1),
                "position_age_s": None if age is None else round(age, 1),
                **flags,
                "jurisdiction": place,
                "warnings": warnings,
            }
        )
    return {
        "folio": incident.folio,
        "plan": plan,
        "limits": _limits(),
        "incident_jurisdiction": places[-1],
        "units": options,
    }

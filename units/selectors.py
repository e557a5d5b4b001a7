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
# same as ranking every available unit (see _shortlists_by_straight_line_eta).
FIRST_BOX_KM = 12.0
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
# One shortlist per capability (`part`, its parameters suffixed with that number: its box and limit); one
# statement reads several (UNION ALL, see _shortlists_statement).
_SHORTLIST_SQL = """
SELECT {part} AS part, id, callsign, lat, lon, position_at, agency_name, speed_kmh,
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
 LIMIT %(limit{part})s
"""
_SHORTLIST_BOX = (
    "AND u.lat BETWEEN %(min_lat{part})s AND %(max_lat{part})s"
    " AND u.lon BETWEEN %(min_lon{part})s AND %(max_lon{part})s"
)
# EXISTS on the capability's id (looked up once per statement): PostgreSQL's plan then does not hash every
# unit of the capability (two thirds of the fleet are patrols) on each query, as `u.id IN (…)` did.
_SHORTLIST_CAPABILITY = (
    "AND EXISTS (SELECT 1 FROM {unit_capability} uc WHERE uc.unit_id = u.id"
    " AND uc.capability_id = (SELECT c.id FROM {capability} c WHERE c.code = %(capability{part})s))"
)
_BOX_KEYS = ("min_lat", "max_lat", "min_lon", "max_lon")


def _shortlist_sql(*, part: int, boxed: bool, capability: bool, excluded: int) -> str:
    through = Unit.capabilities.through._meta.db_table
    return _SHORTLIST_SQL.format(
        part=part,
        unit=Unit._meta.db_table,
        agency=Agency._meta.db_table,
        box=_SHORTLIST_BOX.format(part=part) if boxed else "",
        capability=(
            _SHORTLIST_CAPABILITY.format(
                unit_capability=through, capability=Capability._meta.db_table, part=part
            )
            if capability
            else ""
        ),
        exclude=(
            "AND u.id NOT IN ({})".format(", ".join(f"%(x{i})s" for i in range(excluded))) if excluded else ""
        ),
    )


def _shortlists_statement(shortlists: list[str]) -> str:
    """One shortlist as is; several in one statement, each wrapped as a subquery (SQLite takes ORDER BY and
    LIMIT in a subquery, not in a UNION ALL member), rows in part order."""
    if len(shortlists) == 1:
        return shortlists[0]
    members = " UNION ALL ".join(
        f"SELECT * FROM ({sql}) shortlist{part}"  # noqa: S608 - the shortlists built above, no input
        for part, sql in enumerate(shortlists)
    )
    return f"{members} ORDER BY part, eta_rank, id"


def _shortlists_by_straight_line_eta(*, center_id, lat, lon, limits: dict, fresh_after, exclude) -> dict:
    """For each capability of `limits` (None: any), its `limit` best available units by straight-line ETA,
    ranked in the database (ties by id); one statement per round for every capability still searching.

    Each query reads only a box around the incident through the (center, status, lat, lon) index. A unit
    outside a box of radius r is farther than r, so it ranks above r ÷ (the centre's fastest agency): once
    the box holds `limit` units ranked below that, no unit outside can enter the answer, which is then
    exactly what ranking every available unit gives. Otherwise the box grows — straight to the radius the
    `limit`-th unit found calls for, once there are that many — and the capability is read again in the
    next round (the others, certified, are not)."""
    lat_r, lon_r = math.radians(lat), math.radians(lon)
    params = {
        "center": center_id,
        "status": UnitStatus.AVAILABLE.value,
        "fresh_after": connection.ops.adapt_datetimefield_value(fresh_after),
        "lat_r": lat_r,
        "lon_r": lon_r,
        "cos_lat": math.cos(lat_r),
        **{f"x{i}": unit_id for i, unit_id in enumerate(exclude)},
    }
    capabilities = list(limits)
    for part, capability in enumerate(capabilities):
        params[f"capability{part}"], params[f"limit{part}"] = capability, limits[capability]
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

    radius_km = dict.fromkeys(range(len(capabilities)), FIRST_BOX_KM)
    shortlists = {}
    with connection.cursor() as cursor:
        while radius_km:
            boxed, statements = {}, []
            for part, radius in radius_km.items():
                # Too wide (or over a pole or the antimeridian): rank the whole centre.
                box = _box(lat, lon, radius) if radius <= LAST_BOX_KM else None
                if box is not None:
                    params.update({f"{key}{part}": value for key, value in zip(_BOX_KEYS, box, strict=True)})
                boxed[part] = box is not None
                statements.append(
                    _shortlist_sql(
                        part=part,
                        boxed=boxed[part],
                        capability=capabilities[part] is not None,
                        excluded=len(exclude),
                    )
                )
            cursor.execute(_shortlists_statement(statements), params)
            found = {part: [] for part in radius_km}
            for row in cursor.fetchall():
                found[row[0]].append(row[1:])
            for part, rows in found.items():
                limit = limits[capabilities[part]]
                if not boxed[part]:
                    shortlists[capabilities[part]] = shortlisted(rows)
                    del radius_km[part]
                elif len(rows) < limit:  # too few in the box: grow it (by area, when it holds some already)
                    radius_km[part] *= math.sqrt(2 * limit / len(rows)) if rows else 3.0
                else:
                    worst, fastest_kmh = rows[-1][7], max(rows[-1][8], 1.0)
                    if worst < radius_km[part] / (2 * EARTH_RADIUS_KM) / fastest_kmh * (1 - CERTIFY_MARGIN):
                        shortlists[capabilities[part]] = shortlisted(rows)
                        del radius_km[part]
                    else:  # the radius within which a unit of the fastest agency would rank `limit`-th
                        radius_km[part] = max(
                            worst * fastest_kmh * 2 * EARTH_RADIUS_KM * (1 + 1e-6), radius_km[part] * 1.2
                        )
    return shortlists


def _shortlist_length(limit: int, estimator) -> int:
    """Straight-line ETAs rank the shortlist as the estimator does; other estimators re-rank a longer one."""
    return limit if type(estimator) is StraightLineEstimator else limit * SHORTLIST_FACTOR


def _estimated(rows: list, *, lat: float, lon: float, limit: int, estimator, now) -> list[dict]:
    """The `limit` fastest of a shortlist's first rows (as many as `limit` calls for), by the estimator."""
    rows = rows[: _shortlist_length(limit, estimator)]
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


def _fresh_after(now):
    return now - timedelta(seconds=settings.CAD["AVL_STALE_SECONDS"])


def nearest_available_units(
    *, center_id: int, lat: float, lon: float, capability: str | None, limit: int, exclude=(), now=None
) -> list[dict]:
    """The `limit` available units with a fresh position, fastest first by estimated travel time.

    The database shortlists by straight-line ETA; the configured estimator (straight line by default, or
    a road-routing engine) computes the ETAs and the final order of that shortlist."""
    now = now or timezone.now()
    estimator = get_estimator()
    shortlist = _shortlists_by_straight_line_eta(
        center_id=center_id,
        lat=lat,
        lon=lon,
        limits={capability: _shortlist_length(limit, estimator)},
        fresh_after=_fresh_after(now),
        exclude=exclude,
    )[capability]
    return _estimated(shortlist, lat=lat, lon=lon, limit=limit, estimator=estimator, now=now)


def recommend_units(*, incident, limit: int | None = None, now=None) -> dict:
    """For each capability of the incident's response plan, the nearest available units by ETA, and a
    suggested set that completes the plan (less the units already assigned) without using a unit twice.

    A unit beyond CAD_RECOMMEND_MAX_ETA_S or CAD_RECOMMEND_MAX_DISTANCE_KM is listed flagged (with the
    reason) and never suggested. Nor is any unit while another centre handles the incident (it accepted our
    request for service: `handled_by_center`): its units cover the plan; ours are listed for a dispatcher who
    sends support. Every candidate carries its jurisdiction, to compare with the incident's.

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
    handled_by = incident.handled_by_center
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
    # What each capability of the plan still needs, in the plan's order.
    needs, counted = [], set()
    for capability, count in plan.items():
        covering = [
            uid
            for uid, codes in working.items()
            if uid not in counted and (not capability or capability in codes)
        ]
        assigned = covering[:count]
        counted.update(assigned)
        needs.append((capability, count, len(assigned)))
    # Each capability lists `limit` candidates, or more when the units suggested before it could be among
    # its best. One read of every shortlist, each as long as the most the loop below can ask of it (the
    # units suggested before, at most what the capabilities before still needed); the loop then takes the
    # first rows it asks for, which are exactly the shorter shortlist's.
    now = now or timezone.now()
    estimator = get_estimator()
    most, before = {}, 0
    for capability, count, assigned in needs:
        most[capability or None] = _shortlist_length(max(limit, count - assigned + before), estimator)
        before += count - assigned
    shortlists = _shortlists_by_straight_line_eta(
        center_id=incident.center_id,
        lat=incident.lat,
        lon=incident.lon,
        limits=most,
        fresh_after=_fresh_after(now),
        exclude=list(working),
    )
    requirements, suggested = [], []
    for capability, count, assigned in needs:
        outstanding = count - assigned
        candidates = _estimated(
            shortlists[capability or None],
            lat=incident.lat,
            lon=incident.lon,
            limit=max(limit, outstanding + len(suggested)),
            estimator=estimator,
            now=now,
        )
        eligible = [] if handled_by else candidates
        picked = [c for c in eligible if c["unit_id"] not in suggested and not c["beyond_limit"]][
            :outstanding
        ]
        suggested.extend(c["unit_id"] for c in picked)
        requirements.append(
            {
                "capability": capability or None,
                "count": count,
                "assigned": assigned,
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
        "handled_by_center": handled_by,
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

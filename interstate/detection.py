"""Which peers an incident location concerns: inside a peer's service area, or within its `border_km`.

Peers' areas are held in a module-level snapshot of prepared shapely geometries, replaced whole when a cheap
fingerprint of the enabled peers (count, last change) differs — one small query per check, so a disabled or
edited peer takes effect on the next incident.
"""

import math
import threading
from dataclasses import dataclass

import shapely
from django.db import connection
from shapely import ops
from shapely.geometry import Point, shape

from interstate.models import Peer
from units.routing import haversine_km

KM_PER_DEGREE_LAT = 111.0


@dataclass(frozen=True)
class _Area:
    peer_id: int
    code: str
    name: str
    border_km: float
    geometry: object  # prepared shapely geometry
    bounds: tuple[float, float, float, float]  # min_lon, min_lat, max_lon, max_lat


_snapshot: tuple[tuple, tuple[_Area, ...]] | None = None
_lock = threading.Lock()


def enabled_areas() -> tuple[_Area, ...]:
    """The enabled peers' prepared service areas (one query to check the cached copy is current)."""
    global _snapshot
    enabled = Peer.objects.filter(enabled=True, service_area__isnull=False)
    with connection.cursor() as cursor:  # plain SQL: this runs for every incident created or moved
        cursor.execute(
            "SELECT count(*), max(updated_at) FROM interstate_peer WHERE enabled AND service_area IS NOT NULL"
        )
        fingerprint = tuple(cursor.fetchone())
    snapshot = _snapshot
    if snapshot is not None and snapshot[0] == fingerprint:
        return snapshot[1]
    with _lock:
        areas = []
        for peer in enabled.only("id", "code", "name", "border_km", "service_area"):
            try:
                geometry = shape(peer.service_area)
            except (ValueError, TypeError, AttributeError, KeyError, shapely.errors.ShapelyError):
                continue
            shapely.prepare(geometry)
            areas.append(_Area(peer.id, peer.code, peer.name, peer.border_km, geometry, geometry.bounds))
        _snapshot = (fingerprint, tuple(areas))
    return _snapshot[1]


def _near_bounds(area: _Area, lat: float, lon: float) -> bool:
    margin_lat = area.border_km / KM_PER_DEGREE_LAT
    margin_lon = margin_lat / max(math.cos(math.radians(lat)), 0.2)
    min_lon, min_lat, max_lon, max_lat = area.bounds
    return (
        min_lat - margin_lat <= lat <= max_lat + margin_lat
        and min_lon - margin_lon <= lon <= max_lon + margin_lon
    )


def flags_for(
    lat: float | None,
    lon: float | None,
    *,
    exclude_codes: tuple[str, ...] = (),
    areas: tuple[_Area, ...] | None = None,
) -> list[dict]:
    """`[{peer, name, reason: inside|near_border, distance_km}]`, nearest first. `areas`: enabled_areas(), when
    the caller flags many locations."""
    if lat is None or lon is None:
        return []
    point = Point(lon, lat)
    found = []
    for area in enabled_areas() if areas is None else areas:
        if area.code in exclude_codes or not _near_bounds(area, lat, lon):
            continue
        if area.geometry.contains(point):
            found.append({"peer": area.code, "name": area.name, "reason": "inside", "distance_km": 0.0})
            continue
        nearest = ops.nearest_points(area.geometry, point)[0]
        distance = float(haversine_km(lat, lon, nearest.y, nearest.x))
        if distance <= area.border_km:
            found.append(
                {
                    "peer": area.code,
                    "name": area.name,
                    "reason": "near_border",
                    "distance_km": round(distance, 2),
                }
            )
    return sorted(found, key=lambda flag: (flag["distance_km"], flag["peer"]))

"""Point-in-polygon lookup of the state and municipality of a coordinate.

Boundaries are held in a module-level snapshot (shapely STRtree + prepared geometries), shared by all
threads and replaced whole, never mutated. The snapshot is rebuilt after `invalidate()` (called by the
import) or when a cheap fingerprint of the table (count, max imported_at) changes; the fingerprint is
checked at most every `CHECK_SECONDS`.
"""

import copy
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from django.db.models import Count, Max
from shapely import STRtree
from shapely.geometry import Point, shape

from geo.models import Jurisdiction

CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class _Snapshot:
    fingerprint: tuple
    checked_at: float
    tree: STRtree | None
    geometries: tuple  # prepared shapely geometries, index-aligned with the tree
    jurisdictions: tuple[Jurisdiction, ...]  # without geometry (deferred)
    by_cvegeo: dict[str, int]  # cvegeo → index


_snapshot: _Snapshot | None = None
_lock = threading.Lock()


def invalidate() -> None:
    """Forget the cached boundaries; the next `locate` reloads them."""
    global _snapshot
    _snapshot = None


def _fingerprint() -> tuple:
    row = Jurisdiction.objects.aggregate(count=Count("id"), last=Max("imported_at"))
    return (row["count"], row["last"])


def _build(fingerprint: tuple) -> _Snapshot:
    jurisdictions, geometries = [], []
    for jurisdiction in Jurisdiction.objects.order_by("kind", "cvegeo"):
        try:
            geometry = shape(jurisdiction.geometry)
        except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError):
            continue
        shapely.prepare(geometry)
        jurisdiction.geometry = None  # the snapshot keeps the shapely copy only
        jurisdictions.append(jurisdiction)
        geometries.append(geometry)
    tree = STRtree(geometries) if geometries else None
    by_cvegeo = {j.cvegeo: index for index, j in enumerate(jurisdictions)}
    return _Snapshot(fingerprint, time.monotonic(), tree, tuple(geometries), tuple(jurisdictions), by_cvegeo)


def _current() -> _Snapshot:
    global _snapshot
    snapshot = _snapshot
    now = time.monotonic()
    if snapshot is not None and now - snapshot.checked_at < CHECK_SECONDS:
        return snapshot
    with _lock:
        snapshot = _snapshot
        if snapshot is not None and time.monotonic() - snapshot.checked_at < CHECK_SECONDS:
            return snapshot
        fingerprint = _fingerprint()
        if snapshot is not None and snapshot.fingerprint == fingerprint:
            snapshot = _Snapshot(
                fingerprint,
                time.monotonic(),
                snapshot.tree,
                snapshot.geometries,
                snapshot.jurisdictions,
                snapshot.by_cvegeo,
            )
        else:
            snapshot = _build(fingerprint)
        _snapshot = snapshot
        return snapshot


def _pick(snapshot: _Snapshot, covering) -> tuple[Jurisdiction | None, Jurisdiction | None]:
    """(state, municipality) of a point from the indices of the boundaries covering it, ascending: the first
    of each kind, the state being the municipality's when the first state covering is another one."""
    state = municipality = None
    for index in covering:
        jurisdiction = snapshot.jurisdictions[index]
        if jurisdiction.kind == Jurisdiction.Kind.STATE:
            state = state or jurisdiction
        else:
            municipality = municipality or jurisdiction
    if municipality is not None and (state is None or state.cve_ent != municipality.cve_ent):
        state = next(
            (
                j
                for j in snapshot.jurisdictions
                if j.kind == Jurisdiction.Kind.STATE and j.cve_ent == municipality.cve_ent
            ),
            state,
        )
    return state, municipality


def locate(lat: float, lon: float) -> tuple[Jurisdiction | None, Jurisdiction | None]:
    """(state, municipality) containing the point, or None for each that no loaded boundary covers.
    The returned instances are copies (without geometry) that callers may keep or assign to FKs."""
    snapshot = _current()
    if snapshot.tree is None or lat is None or lon is None:
        return None, None
    point = Point(float(lon), float(lat))
    covering = (i for i in sorted(snapshot.tree.query(point)) if snapshot.geometries[i].covers(point))
    state, municipality = _pick(snapshot, covering)
    return (copy.copy(state) if state else None, copy.copy(municipality) if municipality else None)


def _place(state: Jurisdiction | None, municipality: Jurisdiction | None) -> dict:
    return {
        "state": state.name if state else None,
        "state_cvegeo": state.cvegeo if state else None,
        "municipality": municipality.name if municipality else None,
        "municipality_cvegeo": municipality.cvegeo if municipality else None,
    }


def places_of(points: Sequence[tuple[float | None, float | None]]) -> list[dict]:
    """place_of of each (lat, lon), all in one vectorised look-up (bounding boxes in the tree, then the
    prepared boundaries' `covers` over every candidate pair at once)."""
    snapshot = _current()
    located = [i for i, (lat, lon) in enumerate(points) if lat is not None and lon is not None]
    covering: dict[int, list[int]] = {i: [] for i in located}
    if snapshot.tree is not None and located:
        geometries = shapely.points([(float(points[i][1]), float(points[i][0])) for i in located])
        inputs, candidates = snapshot.tree.query(geometries)
        covered = shapely.covers(snapshot.tree.geometries[candidates], geometries[inputs])
        order = np.lexsort((candidates, inputs))  # by point, then boundary index (as locate)
        for position in order[covered[order]]:
            covering[located[inputs[position]]].append(int(candidates[position]))
    return [_place(*_pick(snapshot, covering.get(i, ()))) for i in range(len(points))]


def place_of(lat: float | None, lon: float | None) -> dict:
    """{state, state_cvegeo, municipality, municipality_cvegeo} of a point (None values where unknown)."""
    return places_of([(lat, lon)])[0]


def within(cvegeo: str, lat: float, lon: float, *, margin_km: float = 0.0) -> bool | None:
    """Whether the point lies in the jurisdiction `cvegeo` or within `margin_km` of its boundary; None when
    that boundary is not loaded."""
    snapshot = _current()
    index = snapshot.by_cvegeo.get(cvegeo)
    if index is None:
        return None
    point = Point(float(lon), float(lat))
    geometry = snapshot.geometries[index]
    if geometry.covers(point):
        return True
    # A degree of latitude is ≈ 111 km: good enough for a margin of a few km along a boundary.
    return margin_km > 0 and bool(shapely.dwithin(geometry, point, margin_km / 111.0))

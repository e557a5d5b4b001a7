"""Geographic reads: the boundaries as a map's vector base layer."""

from django.core.cache import cache
from django.db.models import Max, Q
from shapely.geometry import mapping, shape

from geo.models import Jurisdiction

BOUNDARY_TOLERANCE_DEG = 0.0005  # ~50 m: plenty for a base layer, a fraction of the raw INEGI size


def boundaries_geojson(*, municipalities_of: str | None = None) -> dict:
    """The loaded jurisdictions as one simplified GeoJSON FeatureCollection (the vector base layer when no
    tile server is configured): every state and every municipality, or only the municipalities of the
    state `municipalities_of`. Cached until the boundaries are re-imported."""
    stamp = Jurisdiction.objects.aggregate(latest=Max("imported_at"))["latest"]
    key = (
        f"geo:boundaries:{municipalities_of or '*'}:{Jurisdiction.objects.count()}:"
        f"{stamp.timestamp() if stamp else 0}"
    )
    cached = cache.get(key)
    if cached is not None:
        return cached
    rows = Jurisdiction.objects.order_by("kind", "cvegeo")
    if municipalities_of:
        rows = rows.filter(Q(kind=Jurisdiction.Kind.STATE) | Q(cve_ent=municipalities_of))
    features = []
    for cvegeo, kind, name, geometry in rows.values_list("cvegeo", "kind", "name", "geometry"):
        try:
            simplified = mapping(shape(geometry).simplify(BOUNDARY_TOLERANCE_DEG, preserve_topology=True))
        except (ValueError, TypeError, AttributeError, IndexError):
            continue  # an empty or malformed boundary is skipped, not fatal to the map
        features.append(
            {
                "type": "Feature",
                "properties": {"cvegeo": cvegeo, "kind": kind, "name": name},
                "geometry": simplified,
            }
        )
    collection = {"type": "FeatureCollection", "features": features}
    cache.set(key, collection, 3600)
    return collection

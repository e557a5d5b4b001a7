"""Reads for the supervisor map: compact snapshots sized for thousands of markers."""

from geo.models import Jurisdiction
from incidents.models import Incident, IncidentStatus
from units.models import Agency, Unit


def map_snapshot(*, center_id: int) -> dict:
    """Units as [id, callsign, agency_id, status, lat, lon, position_at] rows, open incidents, agencies and
    jurisdictions (with bbox) for the filters. Four queries whatever the fleet size."""
    units = [
        [uid, callsign, agency_id, status, lat, lon, at.isoformat() if at else None]
        for uid, callsign, agency_id, status, lat, lon, at in Unit.objects.filter(center_id=center_id)
        .order_by("id")
        .values_list("id", "callsign", "agency_id", "status", "lat", "lon", "position_at")
    ]
    incidents = [
        {
            "folio": folio,
            "status": status,
            "priority": priority,
            "type_code": type_code,
            "type_name": type_name,
            "lat": lat,
            "lon": lon,
            "address": address,
            "state": state,
            "municipality": municipality,
            "opened_at": opened_at.isoformat(),
        }
        for folio, status, priority, type_code, type_name, lat, lon, address, state, municipality, opened_at in (
            Incident.objects.filter(center_id=center_id)
            .exclude(status=IncidentStatus.CLOSED)
            .order_by("priority_rank", "opened_at")
            .values_list(
                "folio",
                "status",
                "priority",
                "type_code",
                "type_name",
                "lat",
                "lon",
                "address",
                "state__name",
                "municipality__name",
                "opened_at",
            )
        )
    ]
    agencies = list(
        Agency.objects.filter(center_id=center_id).order_by("name").values("id", "code", "name", "kind")
    )
    jurisdictions = [
        {"cvegeo": cvegeo, "kind": kind, "name": name, "bbox": [min_lon, min_lat, max_lon, max_lat]}
        for cvegeo, kind, name, min_lon, min_lat, max_lon, max_lat in Jurisdiction.objects.order_by(
            "cvegeo"
        ).values_list("cvegeo", "kind", "name", "min_lon", "min_lat", "max_lon", "max_lat")
    ]
    return {"units": units, "incidents": incidents, "agencies": agencies, "jurisdictions": jurisdictions}

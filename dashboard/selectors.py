"""Reads for the supervisor map: compact snapshots sized for thousands of markers."""

from django.db.models import Q, Subquery

from cad.models import Center
from geo.models import Jurisdiction
from incidents.models import Incident, IncidentStatus
from incidents.summary import incident_summaries
from units.models import Agency, Unit


def map_snapshot(*, center_id: int) -> dict:
    """Units as [id, callsign, agency_id, status, lat, lon, position_at] rows, open incidents (the incident
    summary), agencies and jurisdictions (with bbox) for the filters. Four queries whatever the fleet size."""
    units = [
        [uid, callsign, agency_id, status, lat, lon, at.isoformat() if at else None]
        for uid, callsign, agency_id, status, lat, lon, at in Unit.objects.filter(center_id=center_id)
        .order_by("id")
        .values_list("id", "callsign", "agency_id", "status", "lat", "lon", "position_at")
    ]
    incidents = incident_summaries(
        Incident.objects.filter(center_id=center_id)
        .exclude(status=IncidentStatus.CLOSED)
        .with_places()
        .order_by("priority_rank", "opened_at")
    )
    agencies = list(
        Agency.objects.filter(center_id=center_id).order_by("name").values("id", "code", "name", "kind")
    )
    # Every state, and the municipalities of the centre's own state (CDMX's filter listed Estado de México's).
    own_state = Center.objects.filter(pk=center_id).values("cve_ent")[:1]
    jurisdictions = [
        {"cvegeo": cvegeo, "kind": kind, "name": name, "bbox": [min_lon, min_lat, max_lon, max_lat]}
        for cvegeo, kind, name, min_lon, min_lat, max_lon, max_lat in Jurisdiction.objects.filter(
            Q(kind=Jurisdiction.Kind.STATE) | Q(cve_ent=Subquery(own_state))
        )
        .order_by("cvegeo")
        .values_list("cvegeo", "kind", "name", "min_lon", "min_lat", "max_lon", "max_lat")
    ]
    return {"units": units, "incidents": incidents, "agencies": agencies, "jurisdictions": jurisdictions}

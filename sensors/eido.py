"""Vehicles of plate hits for the EIDOs the interstate app sends (listed in CAD_INTERSTATE_EIDO_SOURCES):
an incident opened from a hit, or joined by later hits, carries the listed vehicle in its
`vehicleComponent` when it is shared with a peer state."""

from sensors.models import Hotlist, LprHit

RELATIONSHIP = {
    Hotlist.Kind.STOLEN: "Stolen",
    Hotlist.Kind.CARGO_THEFT: "Stolen",
    Hotlist.Kind.BOLO: "Suspect",
}


def hit_vehicles(incident) -> dict:
    """{"vehicles": [VehicleFacts]} (interstate/eido.py), one per listed plate, stable keys."""
    vehicles = {}
    for hit in LprHit.objects.filter(incident=incident).order_by("created_at", "id"):
        if hit.plate in vehicles:
            continue
        facts = {
            "key": f"lpr-{hit.plate}",
            "relationship": RELATIONSHIP.get(hit.hotlist_kind, "Involved"),
            "at": hit.created_at,
            "plate": hit.plate,
            "colour": hit.vehicle.get("color", ""),
            "make": hit.vehicle.get("make", ""),
            "model": hit.vehicle.get("model", ""),
        }
        if str(hit.vehicle.get("year", "")).isdigit():
            facts["year"] = int(hit.vehicle["year"])
        vehicles[hit.plate] = {k: v for k, v in facts.items() if v != ""}
    return {"vehicles": list(vehicles.values())}

"""Hotlists across states, on interstate's vehicle alerts (docs/interstate.md §3.1, issue 11 "Across states").

* Ours: entries of a hotlist marked `shared` (and active) are published to the peers as vehicle alerts
  (`interstate.vehicles.publish_vehicle_alerts`, in the transaction of the change); removing an entry, or
  unsharing / deactivating its list, withdraws them. A peer's read of one comes back as a sighting:
  `PeerHotlists.sighting_reported` raises it as a hit of our entry with `origin` = the peer (the console's
  «Alertas de placas» and the plate's track on the dashboard map).
* A peer's: its alerts are kept as entries of a hotlist per (peer, kind) (`Hotlist.peer`), so LPR ingest
  matches them with the same batched lookup as ours; a hit on one alerts here (`list_owner` = the peer) and
  reports the sighting to the owner (`raise_hit` → `interstate.vehicles.report_vehicle_sighting`).

Layering: sensors imports interstate's public functions; interstate never imports sensors — it hands what peers
send to `PeerHotlists`, registered at start-up (SensorsConfig.ready). incidents/ and units/ know neither.
"""

from collections.abc import Iterable

from django.db import transaction

from interstate import vehicles
from interstate.models import Peer
from sensors.models import Hotlist, HotlistEntry
from sensors.plates import plate_key

SOURCE_PREFIX = "hotlist-entry:"
_CHUNK = 5000


def source_key(entry: HotlistEntry) -> str:
    return f"{SOURCE_PREFIX}{entry.id}"


def _alert(entry: HotlistEntry, kind: str) -> vehicles.AlertFacts:
    vehicle = {"colour": entry.vehicle.get("color", "")}
    vehicle.update({k: entry.vehicle[k] for k in ("make", "model", "year") if entry.vehicle.get(k)})
    return {
        "source_key": source_key(entry),
        "plate": entry.plate,
        "list_kind": kind,
        "reason": entry.reason,
        "valid_until": entry.valid_until,
        "vehicle": vehicle,
    }


def publishes(hotlist: Hotlist) -> bool:
    return hotlist.shared and hotlist.active and not hotlist.peer


def publish_entries(hotlist: Hotlist, entries: Iterable[HotlistEntry]) -> int:
    """Publish (or republish) entries of a shared list, in the caller's transaction."""
    if not publishes(hotlist):
        return 0
    return vehicles.publish_vehicle_alerts(alerts=[_alert(entry, hotlist.kind) for entry in entries])


def withdraw_entries(entry_ids: Iterable[int]) -> int:
    """The entries left their list (or it stopped being shared): withdraw what was published of them."""
    return vehicles.withdraw_vehicle_alerts(source_keys=[f"{SOURCE_PREFIX}{pk}" for pk in entry_ids])


def sync_hotlist_sharing(*, hotlist_id: int) -> int:
    """After a list was shared / unshared / (de)activated: publish all its entries, or withdraw them, in
    chunks (one transaction each; a million-row list does not hold one transaction)."""
    hotlist = Hotlist.objects.get(pk=hotlist_id)
    ids = HotlistEntry.objects.filter(hotlist=hotlist).order_by("id").values_list("id", flat=True)
    written, last = 0, 0
    while chunk := list(ids.filter(id__gt=last)[:_CHUNK]):
        last = chunk[-1]
        with transaction.atomic():
            if publishes(hotlist):
                written += publish_entries(hotlist, HotlistEntry.objects.filter(id__in=chunk).order_by("id"))
            else:
                written += withdraw_entries(chunk)
    return written


class PeerHotlists:
    """interstate.vehicles.VehicleAlertReceiver: peers' alerts as their hotlists here, sightings of ours as
    hits."""

    def _list(self, peer: Peer, kind: str) -> Hotlist:
        if kind not in Hotlist.Kind.values:
            kind = Hotlist.Kind.BOLO  # a category we do not have: still a vehicle to look out for
        hotlist, _created = Hotlist.objects.get_or_create(
            center_id=peer.service_user.center_id,
            peer=peer.code,
            kind=kind,
            defaults={
                "name": f"{peer.code}: {Hotlist.Kind(kind).label}",
                "source": peer.name[:120],
                "owner": peer.service_user,
            },
        )
        return hotlist

    def alerts_published(self, *, peer: Peer, alerts: list[dict]) -> None:
        from sensors.hotlists import upsert_entries

        by_kind: dict[str, list[HotlistEntry]] = {}
        for alert in alerts:
            hotlist = self._list(peer, alert["list_kind"])
            vehicle = alert["vehicle"]
            by_kind.setdefault(hotlist.kind, []).append(
                HotlistEntry(
                    hotlist=hotlist,
                    plate=alert["plate"][:16],
                    plate_key=plate_key(alert["plate"])[:16],
                    reason=alert["reason"][:300],
                    owner=peer.code,
                    source_ref=alert["alert_id"][:120],
                    valid_from=hotlist.created_at,
                    valid_until=alert["valid_until"],
                    vehicle={
                        "color" if k == "colour" else k: str(v)[:60]
                        for k, v in vehicle.items()
                        if k in ("make", "model", "colour", "year")
                    },
                    remote_id=alert["alert_id"],
                )
            )
        for entries in by_kind.values():
            upsert_entries(entries)

    def alerts_ended(self, *, peer: Peer, alert_ids: list[str], action: str) -> None:
        HotlistEntry.objects.filter(hotlist__peer=peer.code, remote_id__in=alert_ids).delete()

    def sighting_reported(self, *, peer: Peer, source_key: str, sighting: dict) -> None:
        from sensors.lpr import raise_hit

        entry_id = source_key.removeprefix(SOURCE_PREFIX)
        entry = (
            HotlistEntry.objects.select_related("hotlist").filter(pk=int(entry_id)).first()
            if entry_id.isdigit()
            else None
        )
        if entry is None:
            return  # removed meanwhile: its withdrawal is on its way to the peer
        vehicle = sighting["vehicle"]
        raise_hit(
            center_id=entry.hotlist.center_id,
            entry=entry,
            read_plate=sighting["read_plate"][:16],
            read_at=sighting["read_at"],
            lat=sighting["lat"],
            lon=sighting["lon"],
            place=sighting["place"][:300],
            by=peer.service_user,
            vehicle={
                "color" if k == "colour" else k: v
                for k, v in vehicle.items()
                if k in ("make", "model", "colour")
            },
            origin=peer.code,
        )

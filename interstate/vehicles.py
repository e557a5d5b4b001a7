"""Vehicle alerts shared across centres, and sightings of them (docs/interstate.md §3.1).

Owner side: an app that keeps vehicles of interest (sensors' shared hotlists) calls `publish_vehicle_alerts`
and `withdraw_vehicle_alerts` in its own transaction; each becomes a `VehicleAlert` row and `vehicleAlert`
messages (the vehicles as EIDO vehicleComponents) on each enabled peer's `vehicles` outbox stream. The sweeper
ends alerts whose validity passed (`expire`). A peer's `vehicleSighting` of one of our alerts is handed to the
receiver registered below (sensors raises it as a hit on the console and the plate's track).

Receiving side: a peer's published / ended alerts are handed to the same receiver (sensors keeps them as the
peer's hotlist, matched by LPR ingest like ours); `report_vehicle_sighting` sends a read of one back to its
owner. Layering: the apps that use this import it; interstate never imports them — they register a
`VehicleAlertReceiver` at start-up (AppConfig.ready) for what comes in from peers.
"""

from datetime import datetime
from typing import Protocol, TypedDict

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from cad.errors import DomainError
from interstate import eido, outbox
from interstate.models import OutboxMessage, OutboxStream, Peer, VehicleAlert, new_request_id
from interstate.services import WIRE_KEY, MessageRefused, home_center

ALERT = OutboxMessage.Kind.VEHICLE_ALERT
SIGHTING = OutboxMessage.Kind.VEHICLE_SIGHTING
PUBLISH, WITHDRAW, EXPIRE = "publish", "withdraw", "expire"
# List kind -> EIDO Vehicle Relationship Type of the alert's vehicle.
RELATIONSHIP = {"stolen": "Stolen", "cargo_theft": "Stolen", "bolo": "Suspect"}


class AlertFacts(TypedDict, total=False):
    source_key: str  # the publishing app's stable key (≤ 64 characters)
    plate: str
    list_kind: str  # stolen | cargo_theft | bolo (or another category of the publishing app)
    reason: str
    valid_until: datetime | None
    vehicle: dict  # eido.VehicleFacts without key/relationship/at (make, model, colour, year, vin)


class VehicleAlertReceiver(Protocol):
    """What an app does with the vehicle messages peers send us (registered with `register_receiver`). Called in
    the transaction that records the message: raise MessageRefused to refuse it (nothing is written)."""

    def alerts_published(self, *, peer: Peer, alerts: list[dict]) -> None:
        """`alerts`: [{alert_id, plate, list_kind, reason, valid_until, vehicle}] — new or changed."""

    def alerts_ended(self, *, peer: Peer, alert_ids: list[str], action: str) -> None:
        """The peer withdrew them, or their validity ended (`action`: withdraw | expire)."""

    def sighting_reported(self, *, peer: Peer, source_key: str, sighting: dict) -> None:
        """The peer read the vehicle of our alert `source_key`: `sighting` = {alert_id, plate, read_plate,
        read_at, lat, lon, place, reader: {code, name, direction}, vehicle}."""


_receiver: VehicleAlertReceiver | None = None


def register_receiver(receiver: VehicleAlertReceiver) -> None:
    global _receiver
    _receiver = receiver


def _the_receiver() -> VehicleAlertReceiver:
    if _receiver is None:
        raise MessageRefused(
            _("Este centro no recibe alertas de vehículos."), code="unsupported_kind", status=422
        )
    return _receiver


# --- Owner side -------------------------------------------------------------------------------
def _vehicle_stream(peer: Peer) -> OutboxStream:
    return outbox.stream_for(peer, OutboxStream.VEHICLES)


def _vehicle_facts(alert: VehicleAlert) -> eido.VehicleFacts:
    facts = {
        "key": alert.alert_id.removeprefix("urn:uuid:"),
        "relationship": RELATIONSHIP.get(alert.list_kind, "Involved"),
        "at": alert.updated_at,
        "plate": alert.plate,
        **{k: v for k, v in alert.vehicle.items() if k in ("vin", "colour", "make", "model")},
    }
    if str(alert.vehicle.get("year", "")).isdigit():
        facts["year"] = int(alert.vehicle["year"])
    return facts


def _alert_body(peer: Peer, action: str, alerts: list[VehicleAlert], sequence: int) -> dict:
    request_id = new_request_id()
    items = [{"alertId": alert.alert_id} for alert in alerts]
    body = {
        WIRE_KEY[ALERT]: {"action": action, "alerts": items},
        "requestId": request_id,
        "sequence": sequence,
    }
    if action == PUBLISH:
        body["eido"] = eido.build_vehicle_eido(
            document_key=request_id.removeprefix("urn:uuid:"),
            center_code=home_center().code,
            peer_code=peer.code,
            peer_role="Notified",
            vehicles=[_vehicle_facts(alert) for alert in alerts],
        )
        for item, alert, component in zip(items, alerts, body["eido"]["vehicleComponent"], strict=True):
            item.update(
                vehicle=component["$id"],
                plate=alert.plate,
                listKind=alert.list_kind,
                reason=alert.reason,
                validUntil=alert.valid_until.isoformat() if alert.valid_until else None,
            )
    return body


def _send_alerts(action: str, alerts: list[VehicleAlert], *, only: str | None = None) -> int:
    """`action` messages about `alerts` to each of their peers (enabled or paused; `only`: to that one), in
    batches; returns how many."""
    by_peer: dict[str, list[VehicleAlert]] = {}
    for alert in alerts:
        for code in alert.peers:
            if only in (None, code):
                by_peer.setdefault(code, []).append(alert)
    batch = settings.CAD_INTERSTATE_VEHICLE_BATCH
    written = 0
    for peer in Peer.objects.filter(code__in=by_peer):
        stream = _vehicle_stream(peer)
        mine = by_peer[peer.code]
        for start in range(0, len(mine), batch):
            chunk = mine[start : start + batch]
            sequence = outbox.next_sequence(stream)
            body = _alert_body(peer, action, chunk, sequence)
            outbox.append(stream, ALERT, lambda _key, body=body: body, seq=sequence)
            written += 1
    return written


def _validated(alert: AlertFacts) -> AlertFacts:
    problems = {}
    if not str(alert.get("source_key") or "") or len(alert["source_key"]) > 64:
        problems["source_key"] = [_("Requerida, hasta 64 caracteres.")]
    if not str(alert.get("plate") or "") or len(alert["plate"]) > 16:
        problems["plate"] = [_("Requerida, hasta 16 caracteres.")]
    if not str(alert.get("list_kind") or ""):
        problems["list_kind"] = [_("Requerido.")]
    if problems:
        raise DomainError(_("Alerta de vehículo inválida."), code="invalid_vehicle_alert", fields=problems)
    return alert


@transaction.atomic
def publish_vehicle_alerts(*, alerts: list[AlertFacts]) -> int:
    """Publish (or republish, changed) vehicle alerts to every enabled peer, in the caller's transaction. Returns
    the number of messages written. An alert published before keeps its alert id."""
    if not alerts:
        return 0
    peers = sorted(Peer.objects.filter(enabled=True).values_list("code", flat=True))
    facts = {a["source_key"]: _validated(a) for a in alerts}
    rows = [
        VehicleAlert(
            source_key=key,
            plate=a["plate"],
            list_kind=a["list_kind"],
            reason=(a.get("reason") or "")[:300],
            vehicle={k: str(v)[:60] for k, v in (a.get("vehicle") or {}).items() if v not in (None, "")},
            valid_until=a.get("valid_until"),
            state=VehicleAlert.State.ACTIVE,
            peers=peers,
        )
        for key, a in facts.items()
    ]
    VehicleAlert.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["source_key"],
        update_fields=[
            "plate",
            "list_kind",
            "reason",
            "vehicle",
            "valid_until",
            "state",
            "peers",
            "updated_at",
        ],
    )
    stored = list(VehicleAlert.objects.filter(source_key__in=facts).order_by("id"))
    return _send_alerts(PUBLISH, stored)


@transaction.atomic
def withdraw_vehicle_alerts(*, source_keys: list[str], action: str = WITHDRAW) -> int:
    """End the active alerts with these keys (the vehicle left the list, or its validity passed: `expire`) and
    tell the peers they were published to. Unknown or already ended keys are ignored. Returns messages written."""
    ended = list(
        VehicleAlert.objects.select_for_update()
        .filter(source_key__in=source_keys, state=VehicleAlert.State.ACTIVE)
        .order_by("id")
    )
    if not ended:
        return 0
    state = VehicleAlert.State.EXPIRED if action == EXPIRE else VehicleAlert.State.WITHDRAWN
    VehicleAlert.objects.filter(pk__in=[a.pk for a in ended]).update(state=state, updated_at=timezone.now())
    return _send_alerts(action, ended)


def share_active_alerts(*, peer_id: int, chunk: int = 5000) -> int:
    """Publish to a peer every active alert it has not had (it was registered, or enabled, after they were
    published), a chunk per transaction. Returns the number of messages written."""
    peer = Peer.objects.filter(pk=peer_id, enabled=True).first()
    if peer is None:
        return 0
    written, last = 0, 0
    active = VehicleAlert.objects.filter(state=VehicleAlert.State.ACTIVE).order_by("id")
    while ids := list(active.filter(id__gt=last).values_list("id", flat=True)[:chunk]):
        last = ids[-1]
        with transaction.atomic():
            missing = [a for a in active.select_for_update().filter(id__in=ids) if peer.code not in a.peers]
            for alert in missing:
                alert.peers = sorted([*alert.peers, peer.code])
            VehicleAlert.objects.bulk_update(missing, ["peers"])
            written += _send_alerts(PUBLISH, missing, only=peer.code)
    return written


def expire_vehicle_alerts(*, now: datetime | None = None) -> int:
    """Alerts whose validity passed are ended (`expire` to their peers). Run by the outbox sweeper."""
    now = now or timezone.now()
    keys = list(
        VehicleAlert.objects.filter(state=VehicleAlert.State.ACTIVE, valid_until__lte=now).values_list(
            "source_key", flat=True
        )[:5000]
    )
    return withdraw_vehicle_alerts(source_keys=keys, action=EXPIRE) if keys else 0


# --- Sightings (receiving side sends, owner side receives) -------------------------------------
def report_vehicle_sighting(
    *,
    peer_code: str,
    alert_id: str,
    vehicle: eido.VehicleFacts,
    read_plate: str,
    read_at: datetime,
    lat: float,
    lon: float,
    place: str,
    reader: dict,
) -> OutboxMessage | None:
    """Tell the owner of alert `alert_id` that our reader read its vehicle (in the caller's transaction).
    `reader`: {code, name, direction}. Nothing is sent to an unknown peer."""
    peer = Peer.objects.filter(code=peer_code).first()
    if peer is None:
        return None
    key = f"{alert_id.removeprefix('urn:uuid:')}.{int(read_at.timestamp())}"
    note = _("Leída por el arco %(name)s (%(code)s) a las %(at)s.") % {
        "name": reader.get("name", ""),
        "code": reader.get("code", ""),
        "at": read_at.isoformat(),
    }
    document = eido.build_vehicle_eido(
        document_key=key,
        center_code=home_center().code,
        peer_code=peer.code,
        peer_role="Requesting",
        vehicles=[{**vehicle, "key": key, "at": read_at}],
        sighting={"lat": lat, "lon": lon, "place": place, "note": note},
    )
    body = {
        WIRE_KEY[SIGHTING]: {
            "alertId": alert_id,
            "readPlate": read_plate,
            "readAt": read_at.isoformat(),
            "reader": {k: str(reader.get(k) or "")[:300] for k in ("code", "name", "direction")},
        },
        "requestId": alert_id,
        "eido": document,
    }
    return outbox.append(_vehicle_stream(peer), SIGHTING, lambda _key: body)


def _answer(request_id: str, text: str) -> dict:
    return {"requestId": request_id, "responseCode": 200, "responseText": text, "incident": ""}


def receive_vehicle_alert(peer: Peer, message: dict) -> tuple[int, dict]:
    """A peer's vehicleAlert (validated): applied in sequence order per peer, stale ones ignored."""
    receiver = _the_receiver()
    sequence = message["sequence"]
    if not Peer.objects.filter(pk=peer.pk, vehicle_in_seq__lt=sequence).update(vehicle_in_seq=sequence):
        return 200, _answer(message["requestId"], "stale")
    inner = message[WIRE_KEY[ALERT]]
    if inner["action"] != PUBLISH:
        receiver.alerts_ended(
            peer=peer, alert_ids=[a["alertId"] for a in inner["alerts"]], action=inner["action"]
        )
        return 200, _answer(message["requestId"], inner["action"])
    vehicles = {v["$id"]: v for v in message["eido"].get("vehicleComponent") or []}
    alerts, missing = [], []
    for index, item in enumerate(inner["alerts"]):
        component = vehicles.get(item["vehicle"])
        if component is None:
            missing.append(f"vehicleAlert/alerts/{index}/vehicle: {item['vehicle']}")
            continue
        valid_until = parse_datetime(item["validUntil"]) if item.get("validUntil") else None
        alerts.append(
            {
                "alert_id": item["alertId"],
                "plate": item["plate"],
                "list_kind": item["listKind"],
                "reason": item.get("reason") or "",
                "valid_until": valid_until,
                "vehicle": eido.vehicle_facts(component),
            }
        )
    if missing:
        raise MessageRefused(
            _("Alertas sin su vehículo en el EIDO."), code="invalid_message", fields={"schema": missing}
        )
    receiver.alerts_published(peer=peer, alerts=alerts)
    return 200, _answer(message["requestId"], "published")


def receive_vehicle_sighting(peer: Peer, message: dict) -> tuple[int, dict]:
    """A peer read the vehicle of one of our alerts published to it: the registered receiver raises it."""
    receiver = _the_receiver()
    inner = message[WIRE_KEY[SIGHTING]]
    alert = VehicleAlert.objects.filter(alert_id=inner["alertId"]).first()
    if alert is None or peer.code not in alert.peers:
        raise MessageRefused(
            _("No hay alerta %(id)s compartida con %(peer)s.") % {"id": inner["alertId"], "peer": peer.code},
            code="not_shared",
            status=404,
        )
    if alert.state != VehicleAlert.State.ACTIVE:
        return 200, _answer(message["requestId"], "ignored: alert ended")
    facts = eido.read_eido(message["eido"])
    read_at = parse_datetime(inner["readAt"])
    if read_at is None or facts.lat is None:
        raise MessageRefused(
            _("Avistamiento sin hora o sin ubicación."),
            code="invalid_message",
            fields={"readAt": [inner["readAt"]], "eido/locationComponent": [_("Se espera un punto.")]},
        )
    receiver.sighting_reported(
        peer=peer,
        source_key=alert.source_key,
        sighting={
            "alert_id": alert.alert_id,
            "plate": alert.plate,
            "read_plate": inner["readPlate"],
            "read_at": read_at,
            "lat": facts.lat,
            "lon": facts.lon,
            "place": facts.address or inner["reader"]["name"],
            "reader": inner["reader"],
            "vehicle": facts.vehicles[0] if facts.vehicles else {},
        },
    )
    return 200, _answer(message["requestId"], "sighting recorded")

"""Hotlists across states (issue 11 "Across states"; docs/interstate.md §3.1): entries of a shared list are
published to peers as vehicleAlert messages (the vehicles as validated EIDO vehicleComponents, on the peer's
ordered `vehicles` outbox stream), withdrawn and expired; a peer's alerts become its hotlist here, matched by
LPR ingest like ours; a hit on one alerts locally and sends a vehicleSighting to the owner; the owner raises the
sighting as a hit of its entry (origin = the peer) on the console and on the plate's track.

Here we are MEX (the home centre) and CDMX is the registered peer; its messages are signed POSTs."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Role
from cad.models import Event
from interstate import vehicles
from interstate.models import OutboxMessage, PeerRequestLog, VehicleAlert
from interstate.tasks import sweep_outbox
from interstate.validation import validate_message
from sensors.hotlists import add_entry, import_csv, remove_entry
from sensors.models import Hotlist, HotlistEntry, LprHit, LprReader
from sensors.selectors import plate_track
from tests.interstate_support import post_message, register_cdmx

pytestmark = pytest.mark.django_db


@pytest.fixture
def cdmx(center):
    return register_cdmx()


@pytest.fixture
def shared_list(center, supervisor):
    return Hotlist.objects.create(
        center=center,
        kind="cargo_theft",
        name="Robo a transporte",
        source="FGJEM",
        owner=supervisor,
        shared=True,
    )


@pytest.fixture
def reader(center):
    return LprReader.objects.create(
        center=center, code="ARCO-07", name="Arco Indios Verdes", lat=19.49, lon=-99.12, direction="N"
    )


def _vehicle_messages(kind: str | None = None):
    messages = OutboxMessage.objects.filter(stream__key="vehicles").order_by("id")
    return list(messages.filter(kind=kind) if kind else messages)


def _add_truck(shared_list, supervisor, **fields):
    return add_entry(
        hotlist_id=shared_list.id,
        center_id=shared_list.center_id,
        by=supervisor,
        plate="LF-12-345",
        reason="Tractocamión robado con carga",
        vehicle={"make": "Kenworth", "model": "T680", "color": "Blanco", "year": "2022"},
        **fields,
    )


def test_a_shared_entry_is_published_withdrawn_and_expired(cdmx, shared_list, supervisor, center):
    entry = _add_truck(shared_list, supervisor)
    [published] = _vehicle_messages()
    validate_message("vehicleAlert", published.body)  # envelope + the EIDO against NENA's schema
    inner = published.body["vehicleAlert"]
    assert (published.peer.code, published.seq, inner["action"]) == ("CDMX", 1, "publish")
    [alert] = inner["alerts"]
    assert (alert["plate"], alert["listKind"]) == ("LF12345", "cargo_theft")
    [vehicle] = published.body["eido"]["vehicleComponent"]
    assert vehicle["$id"] == alert["vehicle"] and vehicle["vehicleRelationshipType"] == ["Stolen"]
    assert vehicle["ncVehicleComponent"]["makeName"] == [{"value": "Kenworth"}]
    assert VehicleAlert.objects.get().peers == ["CDMX"]

    # Not shared: nothing leaves.
    private = Hotlist.objects.create(center=center, kind="stolen", name="Local", source="x", owner=supervisor)
    add_entry(hotlist_id=private.id, center_id=center.id, by=supervisor, plate="ABC1234")
    assert len(_vehicle_messages()) == 1

    remove_entry(hotlist_id=shared_list.id, center_id=center.id, plate=entry.plate, by=supervisor)
    withdrawn = _vehicle_messages()[-1]
    assert withdrawn.body["vehicleAlert"] == {"action": "withdraw", "alerts": [{"alertId": alert["alertId"]}]}
    assert withdrawn.seq == 2 and "eido" not in withdrawn.body
    validate_message("vehicleAlert", withdrawn.body)

    _add_truck(shared_list, supervisor, valid_until=timezone.now() + timedelta(hours=1))
    VehicleAlert.objects.filter(state="active").update(valid_until=timezone.now() - timedelta(seconds=1))
    sweep_outbox()
    expired = _vehicle_messages()[-1]
    assert (expired.body["vehicleAlert"]["action"], expired.seq) == ("expire", 4)
    assert not VehicleAlert.objects.filter(state="active").exists()


def test_a_shared_csv_import_is_published_in_batches(cdmx, shared_list, settings):
    settings.CAD_INTERSTATE_VEHICLE_BATCH = 2
    lines = ["plate,reason,make", "AAA1001,robo,Volvo", "AAA1002,robo,Volvo", "AAA1003,robo,Volvo"]
    assert import_csv(hotlist=shared_list, lines=lines) == (3, [])
    batches = [m.body["vehicleAlert"]["alerts"] for m in _vehicle_messages()]
    assert [[a["plate"] for a in batch] for batch in batches] == [["AAA1001", "AAA1002"], ["AAA1003"]]


def _cdmx_alert(peer, *, sequence=1, plate="XYZ9876", action="publish", alert_id="urn:uuid:cdmx-alert-1"):
    """A vehicleAlert as CDMX's CAD sends it (the product's own builder)."""
    alert = VehicleAlert(
        alert_id=alert_id,
        plate=plate,
        list_kind="stolen",
        reason="Robo con violencia",
        vehicle={"make": "Nissan", "colour": "Rojo"},
        updated_at=timezone.now(),
    )
    return vehicles._alert_body(peer, action, [alert], sequence)


def test_a_peers_alert_is_matched_by_ingest_alerts_here_and_goes_back_as_a_sighting(
    cdmx, client, reader, make_user, api_client_for
):
    peer, secret = cdmx
    response = post_message(client, peer, secret, _cdmx_alert(peer))
    assert response.status_code == 200, response.json()
    assert response.json()["responseText"] == "published"
    entry = HotlistEntry.objects.select_related("hotlist").get(remote_id="urn:uuid:cdmx-alert-1")
    assert (entry.hotlist.peer, entry.hotlist.kind, entry.plate, entry.vehicle["color"]) == (
        "CDMX",
        "stolen",
        "XYZ9876",
        "Rojo",
    )
    device = api_client_for(make_user(Role.DEVICE, "lpr-gw"))
    read_at = timezone.now().replace(microsecond=0)
    reads = [
        {"reader": "ARCO-07", "plate": "XYZ-9876", "read_at": read_at.isoformat()},
        {"reader": "ARCO-07", "plate": "QQQ1111", "read_at": read_at.isoformat()},
    ]
    answer = device.post("/api/v1/lpr/reads", {"reads": reads}, format="json").json()
    assert (answer["accepted"], answer["hits"]) == (2, 1)
    hit = LprHit.objects.get()
    assert (hit.list_owner, hit.origin, hit.reason) == ("CDMX", "", "Robo con violencia")
    event = Event.objects.get(type="lpr.hit")
    assert event.payload["list_owner"] == "CDMX"
    [sighting] = _vehicle_messages("vehicleSighting")
    validate_message("vehicleSighting", sighting.body)
    assert sighting.peer.code == "CDMX" and sighting.body["requestId"] == "urn:uuid:cdmx-alert-1"
    assert sighting.body["vehicleSighting"]["reader"] == {
        "code": "ARCO-07",
        "name": "Arco Indios Verdes",
        "direction": "N",
    }
    location = sighting.body["eido"]["locationComponent"][0]
    assert "19.490000 -99.120000" in location["locationByValue"]

    # A stale alert message (lower sequence) is ignored; a withdrawal removes the entry.
    assert post_message(client, peer, secret, _cdmx_alert(peer, sequence=1)).json()["responseText"] == "stale"
    withdraw = _cdmx_alert(peer, sequence=2, action="withdraw")
    assert post_message(client, peer, secret, withdraw).json()["responseText"] == "withdraw"
    assert not HotlistEntry.objects.filter(remote_id="urn:uuid:cdmx-alert-1").exists()
    assert set(PeerRequestLog.objects.values_list("action", flat=True)) == {"vehicleAlert"}


def test_a_peer_alert_without_its_vehicle_is_refused_with_nothing_written(cdmx, client):
    peer, secret = cdmx
    message = _cdmx_alert(peer)
    del message["eido"]
    response = post_message(client, peer, secret, message)
    assert response.status_code == 400 and response.json()["code"] == "invalid_message"
    message = _cdmx_alert(peer)
    message["eido"]["vehicleComponent"][0]["vehicleRelationshipType"] = []  # minItems 1
    response = post_message(client, peer, secret, message)
    assert response.status_code == 400 and "schema" in response.json()["fields"]
    assert not HotlistEntry.objects.exists()


def _sighting_from_cdmx(alert_id: str, plate: str = "LF12345"):
    """A vehicleSighting as CDMX's CAD sends it, built by the product's own function there."""
    message = vehicles.report_vehicle_sighting(
        peer_code="CDMX",
        alert_id=alert_id,
        vehicle={"plate": plate, "make": "Kenworth"},
        read_plate=plate,
        read_at=timezone.now().replace(microsecond=0),
        lat=19.4326,
        lon=-99.1332,
        place="Arco Periférico Norte",
        reader={"code": "CDMX-ARCO-3", "name": "Arco Periférico Norte", "direction": "S"},
    )
    body = message.body
    message.delete()
    return body


def test_the_owner_gets_a_peers_sighting_as_an_alert_and_a_track_point(
    cdmx, client, shared_list, supervisor, center
):
    peer, secret = cdmx
    entry = _add_truck(shared_list, supervisor)
    alert_id = VehicleAlert.objects.get().alert_id
    response = post_message(client, peer, secret, _sighting_from_cdmx(alert_id))
    assert response.status_code == 200, response.json()
    hit = LprHit.objects.get()
    assert (hit.entry_id, hit.origin, hit.list_owner, hit.place) == (
        entry.id,
        "CDMX",
        "",
        "Arco Periférico Norte",
    )
    assert (hit.lat, hit.lon) == (19.4326, -99.1332)
    event = Event.objects.get(type="lpr.hit")
    assert (event.payload["origin"], event.payload["plate"]) == ("CDMX", "LF12345")
    [point] = plate_track(plate="LF-12-345", center_id=center.id)
    assert (point["origin"], point["lat"]) == ("CDMX", 19.4326)
    assert not _vehicle_messages("vehicleSighting")  # our own entry: nothing goes back

    # Only a peer the alert was published to may report it; an unknown alert is not shared.
    response = post_message(client, peer, secret, _sighting_from_cdmx("urn:uuid:not-ours"))
    assert response.status_code == 404 and response.json()["code"] == "not_shared"
    VehicleAlert.objects.update(peers=[])
    response = post_message(client, peer, secret, _sighting_from_cdmx(alert_id))
    assert response.status_code == 404
    assert LprHit.objects.count() == 1


def test_a_peer_registered_later_gets_the_active_alerts_once(center, shared_list, supervisor):
    _add_truck(shared_list, supervisor)  # no peer yet: kept, sent to nobody
    assert VehicleAlert.objects.get().peers == [] and not _vehicle_messages()
    peer, _secret = register_cdmx()
    assert vehicles.share_active_alerts(peer_id=peer.id) == 1
    [published] = _vehicle_messages()
    assert published.body["vehicleAlert"]["alerts"][0]["plate"] == "LF12345"
    assert VehicleAlert.objects.get().peers == ["CDMX"]
    assert vehicles.share_active_alerts(peer_id=peer.id) == 0  # already has them

"""The peer-facing endpoints: HMAC authentication and its refusals (all audited), request for service creating
a linked local incident, dedupe by idempotency key, sequence-ordered updates, notes merged by $id, invalid
EIDO refused with the schema's reasons and nothing written, reading only what is shared, the well-known
document, and the OpenAPI description of all of it."""

import re
import time
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from geo.services import DATA_DIR, import_geojson_file
from incidents import services as incident_services
from incidents.models import Call, Incident, TimelineEntry
from interstate.models import Escalation, InboundMessage, OutboxMessage, PeerRequestLog
from interstate.services import peer_set_enabled
from tests.interstate_support import cdmx_incident, message, post_message, register_cdmx, signed

pytestmark = pytest.mark.django_db


@pytest.fixture
def cdmx(center):
    return register_cdmx()


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def remote(accident_type, cdmx):
    """An incident at CDMX (the peer), with a note."""
    incident, user = cdmx_incident(accident_type, address="Plaza de la Constitución")
    incident_services.add_note(
        folio=incident.folio, center_id=incident.center_id, text="Dos heridos", by=user
    )
    return incident


def _rfs(client, cdmx, remote, request_id=None, key=None):
    peer, secret = cdmx
    request_id = request_id or f"urn:uuid:{uuid.uuid4()}"
    return request_id, post_message(
        client, peer, secret, message("requestForService", request_id, source=remote), key=key
    )


def _last_audit():
    return PeerRequestLog.objects.order_by("-id").first()


def test_request_for_service_creates_a_linked_incident_in_the_queue(client, cdmx, remote, center, dispatcher):
    request_id, response = _rfs(client, cdmx, remote)
    assert response.status_code == 202, response.content
    answer = response.json()
    assert answer["responseCode"] == 182 and answer["requestId"] == request_id
    local = Incident.objects.get(folio=answer["incident"])
    assert local.center == center and local.status == "pending"
    assert (local.origin_center, local.origin_folio) == ("CDMX", remote.folio)
    assert local.type_code == "10104" and round(local.lat, 4) == 19.4326
    assert local.calls.get().channel == "interstate"
    # Not a call answered here: no processing interval for the KPIs (it read 0 s); the response clock runs.
    assert local.call_answered_at is None and local.call_arrived_at is not None
    assert list(local.timeline.filter(kind="note").values_list("text", flat=True)) == ["Dos heridos"]
    escalation = Escalation.objects.get(incident=local)
    assert (escalation.direction, escalation.state, escalation.request_id) == (
        "inbound",
        "pending",
        request_id,
    )
    assert escalation.remote_folio == remote.folio
    # The emergency's age: when the call reached CDMX, beside when it reached us.
    remote_call = remote.calls.get()
    assert abs((escalation.remote_call_at - remote_call.arrived_at).total_seconds()) < 1
    shown = APIClient()
    shown.force_authenticate(dispatcher)
    [summary] = shown.get(f"/api/v1/incidents/{local.folio}/interstate").json()["escalations"]
    assert summary["remote_call_at"] == escalation.remote_call_at.isoformat()
    types = list(local.center.events.values_list("type", flat=True))
    assert "incident.created" in types and "interstate.escalation" in types
    assert not OutboxMessage.objects.filter(escalation=escalation).exists()  # nothing echoed back
    audit = _last_audit()
    assert (audit.direction, audit.action, audit.status_code, audit.result) == (
        "inbound",
        "requestForService",
        202,
        "ok",
    )
    assert (
        audit.peer_code == "CDMX" and audit.incident_folio == local.folio and audit.request_id == request_id
    )


def test_the_same_message_twice_creates_one_incident_and_answers_the_same(client, cdmx, remote):
    key = str(uuid.uuid4())
    request_id, first = _rfs(client, cdmx, remote, key=key)
    _, again = _rfs(client, cdmx, remote, request_id=request_id, key=key)
    assert again.status_code == first.status_code == 202
    assert again.json() == first.json()
    assert Incident.objects.filter(origin_folio=remote.folio).count() == 1
    assert InboundMessage.objects.count() == 1
    assert PeerRequestLog.objects.filter(direction="inbound").count() == 2  # both audited


def test_updates_apply_in_sequence_and_stale_ones_are_discarded(client, cdmx, remote, accident_type):
    peer, secret = cdmx
    request_id, created = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=created.json()["incident"])
    user = remote.created_by
    incident_services.add_note(
        folio=remote.folio, center_id=remote.center_id, text="Llegó la patrulla", by=user
    )
    second = message("update", request_id, source=remote, sequence=2)
    incident_services.add_note(
        folio=remote.folio, center_id=remote.center_id, text="Traslado al hospital", by=user
    )
    third = message("update", request_id, source=remote, sequence=3)
    answers = [post_message(client, peer, secret, m).json()["responseText"] for m in (third, second)]
    assert answers == [
        "applied",
        "stale",
    ]  # 2 arrives after 3: discarded, nothing lost (3 is a full snapshot)
    notes = list(local.timeline.filter(kind="note").values_list("text", flat=True))
    assert notes == ["Dos heridos", "Llegó la patrulla", "Traslado al hospital"]  # merged by $id: no repeats
    escalation = Escalation.objects.get(incident=local)
    assert escalation.in_seq == 3


def test_a_relocation_outside_our_area_is_followed(client, cdmx, remote):
    import_geojson_file(path=DATA_DIR / "15-estado-de-mexico.geojson")  # our service area: Estado de México
    """The peer moved its incident (a pursuit, a corrected point): our copy follows even outside our service
    area (the peer reports where it is; nobody here is there to confirm). It was refused 400, which failed
    the share for good."""
    peer, secret = cdmx
    request_id, created = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=created.json()["incident"])
    incident_services.update_incident(
        folio=remote.folio,
        center_id=remote.center_id,
        by=remote.created_by,
        expected_version=None,
        confirm_outside_area=True,
        lat=19.4000,
        lon=-99.1500,
    )
    remote.refresh_from_db()
    response = post_message(client, peer, secret, message("update", request_id, source=remote, sequence=1))
    assert response.status_code == 200, response.content
    local.refresh_from_db()
    assert (round(local.lat, 4), round(local.lon, 4)) == (19.4, -99.15)
    assert local.outside_service_area


def test_a_note_that_arrives_late_says_when_it_was_written(client, cdmx, remote, accident_type):
    """A note held up by an outage got the arrival time only: nothing said it was 10 minutes old."""
    peer, secret = cdmx
    request_id, created = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=created.json()["incident"])
    entry = incident_services.add_note(
        folio=remote.folio, center_id=remote.center_id, text="Menor herido", by=remote.created_by
    )
    written = timezone.now() - timedelta(minutes=10)
    TimelineEntry.objects.filter(pk=entry.pk).update(at=written)
    update = message("update", request_id, source=remote, sequence=1)
    assert post_message(client, peer, secret, update).json()["responseText"] == "applied"
    (text,) = local.timeline.filter(kind="note", text__startswith="Menor herido").values_list(
        "text", flat=True
    )
    assert text == (
        f"Menor herido (escrita a las {timezone.localtime(written).strftime('%H:%M:%S')}; llegó 10 min después)"
    )
    # The request's own notes are history, not late: "Dos heridos" came as it was.
    assert local.timeline.filter(kind="note", text="Dos heridos").exists()


def test_the_narrative_reaches_the_peer_first_and_again_when_edited(client, cdmx, accident_type):
    """What the call-taker heard travels as the first note; an edited narrative arrives as a new note."""
    peer, secret = cdmx
    remote, user = cdmx_incident(accident_type, narrative="Choque de moto contra auto, un lesionado")
    incident_services.add_note(folio=remote.folio, center_id=remote.center_id, text="Dos heridos", by=user)
    request_id, created = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=created.json()["incident"])

    def notes():
        return list(local.timeline.filter(kind="note").order_by("id").values_list("text", flat=True))

    assert notes() == ["Narrativa: Choque de moto contra auto, un lesionado", "Dos heridos"]
    # Signed with the peer centre's name, not its service account's ("peer-cdmx").
    from incidents.api import TimelineEntryOutput

    entry = local.timeline.filter(kind="note").select_related("by").first()
    assert TimelineEntryOutput(entry).data["by"] == "C5 Ciudad de México"
    incident_services.update_incident(
        folio=remote.folio,
        center_id=remote.center_id,
        by=user,
        expected_version=None,
        narrative="Choque de moto contra auto, dos lesionados",
    )
    update = message("update", request_id, source=remote, sequence=1)
    assert post_message(client, peer, secret, update).json()["responseText"] == "applied"
    assert notes()[1:] == ["Dos heridos", "Narrativa: Choque de moto contra auto, dos lesionados"]


def test_a_long_narrative_arrives_whole(client, cdmx, accident_type):
    """A narrative may hold 10,000 characters (the intake's limit): the peer keeps all of it, not the first
    4,000 (a note typed on the console is capped at 4,000; a peer's is not cut to that)."""
    peer, secret = cdmx
    narrative = "El reportante describe. " * 400  # 9,600 characters
    remote, _user = cdmx_incident(accident_type, narrative=narrative.strip())
    _request_id, created = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=created.json()["incident"])
    (text,) = local.timeline.filter(kind="note").values_list("text", flat=True)
    assert text == f"Narrativa: {narrative.strip()}"


def test_closure_and_resources_flow_back_to_the_sender(client, cdmx, center, dispatcher, accident_type):
    """We (MEX) escalated; CDMX answers accept, then updates with its units and finally its closure."""
    from interstate import services
    from tests.factories import open_incident

    peer, secret = cdmx
    ours = open_incident(center=center, by=dispatcher, incident_type=accident_type, lat=19.43, lon=-99.13)
    escalation = services.escalate_incident(
        folio=ours.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )
    theirs, cdmx_user = cdmx_incident(accident_type)
    accepted = message("response", escalation.request_id, code=200, text="accepted", incident=theirs.folio)
    assert post_message(client, peer, secret, accepted).status_code == 200
    # CDMX took it over: our incident says so, and our dispatch clock stops judging it.
    ours.refresh_from_db()
    assert ours.handled_by_center == "CDMX"
    assert ours.timeline.filter(
        kind="status", text="Lo atiende C5 Ciudad de México: aquí no corre el reloj de despacho"
    ).exists()
    from tests.factories import UnitFactory

    unit = UnitFactory(
        center=theirs.center, callsign="CDMX-P1", agency__code="SSC", agency__center=theirs.center
    )
    incident_services.assign_unit(
        folio=theirs.folio, center_id=theirs.center_id, unit_id=unit.id, by=cdmx_user
    )
    post_message(client, peer, secret, message("update", escalation.request_id, source=theirs, sequence=1))
    escalation.refresh_from_db()
    assert escalation.state == "accepted" and escalation.remote_folio == theirs.folio
    assert [(r["name"].split()[0], r["status"]) for r in escalation.remote_resources] == [
        ("CDMX-P1", "Dispatched")
    ]
    incident_services.close_incident(
        folio=theirs.folio, center_id=theirs.center_id, disposition="Atendido", by=cdmx_user
    )
    post_message(client, peer, secret, message("update", escalation.request_id, source=theirs, sequence=2))
    escalation.refresh_from_db()
    assert escalation.state == "closed" and escalation.remote_status == "closed"
    texts = list(ours.timeline.filter(kind="note").values_list("text", flat=True))
    assert any("aceptó" in text for text in texts) and any("Atendido" in text for text in texts)
    # CDMX had taken it over and no unit of ours is on it: ours closes with CDMX's disposition, by CDMX.
    ours.refresh_from_db()
    assert ours.status == "closed"
    assert ours.disposition == f"Atendido por C5 Ciudad de México (folio {theirs.folio}): Atendido"
    assert ours.timeline.get(kind="closed").by == peer.service_user
    # what we applied from CDMX is not sent back to CDMX
    assert list(escalation.outbox.values_list("kind", flat=True)) == ["requestForService"]


def test_a_handed_over_incident_stays_open_while_a_unit_of_ours_is_on_it(
    client, cdmx, center, dispatcher, accident_type
):
    """CDMX took our incident over, but one of our units was helping: CDMX's closure is noted, ours is ours
    alone again and closing it is left to our dispatcher, who can also escalate it to CDMX again."""
    from interstate import services
    from tests.factories import UnitFactory, open_incident

    peer, secret = cdmx
    ours = open_incident(center=center, by=dispatcher, incident_type=accident_type, lat=19.43, lon=-99.13)
    unit = UnitFactory(center=center)
    incident_services.assign_unit(folio=ours.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    escalation = services.escalate_incident(
        folio=ours.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )
    theirs, cdmx_user = cdmx_incident(accident_type)
    accepted = message("response", escalation.request_id, code=200, text="accepted", incident=theirs.folio)
    assert post_message(client, peer, secret, accepted).status_code == 200
    incident_services.close_incident(
        folio=theirs.folio, center_id=theirs.center_id, disposition="Atendido", by=cdmx_user
    )
    post_message(client, peer, secret, message("update", escalation.request_id, source=theirs, sequence=1))
    escalation.refresh_from_db()
    ours.refresh_from_db()
    assert escalation.state == "closed"
    assert ours.status != "closed" and ours.assignments.filter(active=True).count() == 1
    # It is ours alone again: not handled by CDMX. Our unit was sent already: no dispatch clock to run again.
    assert ours.handled_by_center == ""
    said = ours.timeline.filter(text__contains="ya no lo atiende").values_list("text", flat=True)
    assert list(said) == ["C5 Ciudad de México ya no lo atiende: queda a cargo de este centro"]
    # And it can go to CDMX again (it flared up): a new request on the same share, under a new request id.
    old_request = escalation.request_id
    again = services.escalate_incident(
        folio=ours.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )
    assert again.pk == escalation.pk and again.request_id != old_request
    assert again.state == "pending" and again.remote_folio == "" and again.remote_resources == []
    # Its response times start again: the old request's answer is not this one's.
    assert again.answered_at is None and again.requested_at > escalation.answered_at
    sent = list(again.outbox.order_by("id").values_list("kind", "body__requestId"))
    assert sent[0] == ("requestForService", old_request) and sent[-1] == (
        "requestForService",
        again.request_id,
    )
    # While that share is live, a third escalation is refused as before.
    with pytest.raises(services.Conflict):
        services.escalate_incident(
            folio=ours.folio, center_id=center.id, peer_code="CDMX", kind="request_awareness", by=dispatcher
        )


def test_an_invalid_eido_is_refused_with_the_schemas_reasons_and_nothing_written(client, cdmx, remote):
    peer, secret = cdmx
    bad = message("requestForService", "urn:uuid:x", source=remote)
    del bad["eido"]["agencyComponent"]
    bad["eido"]["incidentComponent"]["incidentTypeCommonRegistryText"] = 7
    incidents_before = Incident.objects.count()
    response = post_message(client, peer, secret, bad)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_message"
    assert "eido/<root>: 'agencyComponent' is a required property" in body["fields"]["schema"]
    assert (
        "eido/incidentComponent/incidentTypeCommonRegistryText: 7 is not of type 'string'"
        in body["fields"]["schema"]
    )
    assert Incident.objects.count() == incidents_before
    assert (
        not Escalation.objects.exists()
        and not InboundMessage.objects.exists()
        and not Call.objects.filter(channel="interstate").exists()
    )
    assert _last_audit().result == "invalid_message"


def _break_location(eido, value):
    eido["locationComponent"][0]["locationByValue"] = value


@pytest.mark.parametrize(
    ("breaking", "field"),
    [
        (lambda e: e.pop("incidentComponent"), "eido.incidentComponent.internalIncidentId"),
        (
            lambda e: e["incidentComponent"].update(internalIncidentId="F" * 5000),
            "eido.incidentComponent.internalIncidentId",
        ),
        (lambda e: _break_location(e, "garbage <"), "eido.locationComponent[0].locationByValue"),
        (
            lambda e: _break_location(
                e, e["locationComponent"][0]["locationByValue"].replace("<gml:pos>", "<gml:pos>999 abc ")
            ),
            "eido.locationComponent[0].locationByValue",
        ),
        (
            lambda e: e["incidentComponent"].update(lastUpdateTimeStamp="yesterday"),
            "eido.incidentComponent.lastUpdateTimeStamp",
        ),
    ],
    ids=["no-incident-component", "huge-folio", "not-xml", "bad-coordinates", "bad-time"],
)
def test_an_eido_the_schema_lets_through_but_we_cannot_read_is_refused_naming_the_field(
    client, cdmx, remote, breaking, field
):
    """NENA's schema leaves nearly everything optional and checks no formats: a request whose folio,
    location or times we could not read was taken as an incident with that part missing (202). It is a 400
    naming the field, and nothing is written."""
    peer, secret = cdmx
    bad = message("requestForService", "urn:uuid:broken", source=remote)
    assert "<gml:pos>" in bad["eido"]["locationComponent"][0]["locationByValue"]
    breaking(bad["eido"])
    incidents_before = Incident.objects.count()
    response = post_message(client, peer, secret, bad)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid_message" and field in body["fields"], body
    assert Incident.objects.count() == incidents_before and not Escalation.objects.exists()
    assert _last_audit().result == "invalid_message"


def test_updates_and_reads_of_what_is_not_shared_are_refused(client, cdmx, remote):
    peer, secret = cdmx
    response = post_message(
        client, peer, secret, message("update", "urn:uuid:nope", source=remote, sequence=1)
    )
    assert response.status_code == 404 and response.json()["code"] == "not_shared"
    path = "/api/v1/interstate/incidents/urn:uuid:nope"
    response = client.get(path, **signed(peer, secret, "GET", path))
    assert response.status_code == 404 and response.json()["code"] == "not_shared"
    audit = _last_audit()
    assert (audit.action, audit.status_code, audit.result, audit.peer_code) == (
        "read",
        404,
        "not_shared",
        "CDMX",
    )


def test_a_request_waiting_for_our_answer_keeps_its_incident_open(client, cdmx, remote, dispatcher):
    """Closed unanswered, the requester would wait for an answer that never comes: answer first (a rejection,
    with its reason, closes it)."""
    _, response = _rfs(client, cdmx, remote)
    folio = response.json()["incident"]
    console = APIClient()
    console.force_authenticate(dispatcher)
    closing = console.post(f"/api/v1/incidents/{folio}/close", {"disposition": "Atendido"}, format="json")
    assert closing.status_code == 409, closing.content
    assert "responda la solicitud de" in closing.json()["message"]
    assert Incident.objects.get(folio=folio).status == "pending"
    escalation = Escalation.objects.get(incident__folio=folio)
    rejected = console.post(
        f"/api/v1/escalations/{escalation.id}/reject", {"reason": "Duplicado de CDMX-1"}, format="json"
    )
    assert rejected.status_code == 200, rejected.content
    assert Incident.objects.get(folio=folio).status == "closed"


def test_the_reason_of_a_request_reaches_the_receivers_dispatcher(client, cdmx, remote):
    peer, secret = cdmx
    body = message(
        "requestForService", f"urn:uuid:{uuid.uuid4()}", source=remote, reason="La patrulla no llega"
    )
    response = post_message(client, peer, secret, body)
    assert response.status_code == 202, response.content
    local = Incident.objects.get(folio=response.json()["incident"])
    # Kept on the share: the console shows it where the dispatcher answers (and in the arrival banner).
    assert Escalation.objects.get(incident=local).reason == "La patrulla no llega"


def test_null_characters_are_refused_with_their_paths_and_audited(client, cdmx, remote):
    """Valid JSON that PostgreSQL cannot store: a clear 400 (a 5xx would have the sender retry it for ever),
    audited, nothing written."""
    peer, secret = cdmx
    request_id = f"urn:uuid:{uuid.uuid4()}"
    body = message("requestForService", request_id, source=remote)
    body["eido"]["notesComponent"][0]["notesActionComments"] = "hola\x00mundo"
    incidents = Incident.objects.count()
    response = post_message(client, peer, secret, body)
    assert response.status_code == 400 and response.json()["code"] == "invalid_message", response.content
    assert list(response.json()["fields"]) == ["eido/notesComponent/0/notesActionComments"]
    assert Incident.objects.count() == incidents
    assert (_last_audit().status_code, _last_audit().result) == (400, "invalid_message")
    response = post_message(client, peer, secret, message("cancel", "a\x00b"))
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"requestId", "cancelREequest/requestId"}
    path = "/api/v1/interstate/incidents/a%00b"
    response = client.get(path, **signed(peer, secret, "GET", "/api/v1/interstate/incidents/a\x00b"))
    assert response.status_code in (401, 404), response.content
    assert _last_audit().status_code == response.status_code


def test_a_new_request_after_a_cancel_comes_back_to_our_open_copy(client, cdmx, remote):
    """The peer cancelled its request and asks again (the same incident): one copy here, not two open ones
    (a dispatcher could send units twice)."""
    peer, secret = cdmx
    first_id, first = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=first.json()["incident"])
    post_message(client, peer, secret, message("cancel", first_id, reason="Error de captura"))
    second_id, second = _rfs(client, cdmx, remote)
    assert second.status_code == 202 and second.json()["incident"] == local.folio, second.content
    assert Incident.objects.filter(origin_folio=remote.folio).count() == 1
    states = dict(Escalation.objects.filter(incident=local).values_list("request_id", "state"))
    assert states == {first_id: "cancelled", second_id: "pending"}
    assert "vuelve a compartir su incidente" in local.timeline.filter(kind="note").last().text
    # Closed here in between: a new request opens a new copy.
    post_message(client, peer, secret, message("cancel", second_id))
    incident_services.close_incident(
        folio=local.folio, center_id=local.center_id, disposition="Atendido", by=local.created_by
    )
    _, third = _rfs(client, cdmx, remote)
    assert third.status_code == 202 and third.json()["incident"] != local.folio


def test_a_cancel_that_overtakes_its_request_is_kept_and_the_request_refused(client, cdmx, remote):
    """The sender timed out on its request and cancelled it; the cancel got here first (or the request never
    does): answered 200, and the request, if it arrives after all, opens nothing."""
    peer, secret = cdmx
    request_id = f"urn:uuid:{uuid.uuid4()}"
    cancel = post_message(client, peer, secret, message("cancel", request_id, reason="Lo atendemos aquí"))
    assert cancel.status_code == 200, cancel.content
    assert cancel.json()["responseText"] == "nothing to cancel"
    incidents = Incident.objects.count()
    _, late = _rfs(client, cdmx, remote, request_id=request_id)
    assert late.status_code == 409 and late.json()["code"] == "cancelled", late.content
    assert Incident.objects.count() == incidents and not Escalation.objects.filter(request_id=request_id)
    assert (_last_audit().status_code, _last_audit().result) == (409, "cancelled")
    # Another request id is not affected.
    assert _rfs(client, cdmx, remote)[1].status_code == 202


def test_the_peer_reads_the_current_eido_of_what_is_shared_with_it(client, cdmx, remote):
    peer, secret = cdmx
    request_id, created = _rfs(client, cdmx, remote)
    path = f"/api/v1/interstate/incidents/{request_id}"
    response = client.get(path, **signed(peer, secret, "GET", path))
    assert response.status_code == 200, response.content
    document = response.json()
    assert document["incidentComponent"]["internalIncidentId"] == created.json()["incident"]
    assert "Dos heridos" not in response.content.decode()  # CDMX's own note is not echoed to CDMX


@pytest.mark.parametrize(
    ("tamper", "status", "code"),
    [
        ("forged_signature", 401, "bad_signature"),
        ("unknown_key", 401, "unknown_key"),
        ("stale_timestamp", 401, "stale_timestamp"),
        ("unsigned", 401, "not_signed"),
    ],
)
def test_bad_signatures_are_refused_and_audited(client, cdmx, remote, tamper, status, code):
    peer, secret = cdmx
    override = {
        "forged_signature": {"X-CAD-Signature": "0" * 64},
        "unknown_key": {"X-CAD-Key-Id": "somebody-else"},
        "stale_timestamp": {},
        "unsigned": {"X-CAD-Signature": ""},
    }[tamper]
    if tamper == "stale_timestamp":  # correctly signed, ten minutes ago
        from interstate import signing

        override = signing.sign(
            key_id=peer.inbound_key_id,
            secret=secret,
            method="GET",
            path="/.well-known/cad-peer",
            now=time.time() - 600,
        )
    headers = signed(peer, secret, "GET", "/.well-known/cad-peer", **override)
    response = client.get("/.well-known/cad-peer", **headers)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    audit = _last_audit()
    assert (audit.direction, audit.status_code, audit.result, audit.action) == (
        "inbound",
        status,
        code,
        "well-known",
    )
    assert audit.peer_code == ("somebody-else" if tamper == "unknown_key" else "CDMX")


def test_a_replayed_request_is_refused(client, cdmx):
    peer, secret = cdmx
    headers = signed(peer, secret, "GET", "/.well-known/cad-peer")
    assert client.get("/.well-known/cad-peer", **headers).status_code == 200
    replay = client.get("/.well-known/cad-peer", **headers)
    assert replay.status_code == 409 and replay.json()["code"] == "replayed"
    assert _last_audit().result == "replayed"


def test_disabling_a_peer_cuts_its_access_at_once(client, cdmx, remote):
    peer, secret = cdmx
    peer_set_enabled(code="CDMX", enabled=False)
    _, response = _rfs(client, cdmx, remote)
    assert response.status_code == 403 and response.json()["code"] == "peer_disabled"
    assert not Escalation.objects.exists()
    assert _last_audit().result == "peer_disabled"


def test_well_known_document_publishes_our_identity(client, cdmx, settings):
    settings.CAD_PUBLIC_URL = "https://cad.c5.edomex.example"
    peer, secret = cdmx
    response = client.get("/.well-known/cad-peer", **signed(peer, secret, "GET", "/.well-known/cad-peer"))
    assert response.status_code == 200
    document = response.json()
    assert (document["center"], document["agency_id"], document["base_url"]) == (
        "MEX",
        "mex.c4.mx",
        "https://cad.c5.edomex.example",
    )
    assert document["protocol"] == "c4cad-interstate/1"


def test_a_089_request_creates_an_anonymous_call(client, cdmx, accident_type):
    peer, secret = cdmx
    tip, _ = cdmx_incident(accident_type, line="089", narrative="Venta de droga")
    response = post_message(client, peer, secret, message("requestAwareness", "urn:uuid:t1", source=tip))
    assert response.status_code == 202, response.content
    local = Incident.objects.get(folio=response.json()["incident"])
    call = local.calls.get()
    assert call.line == "089" and call.caller_name is None and call.callback_number is None
    assert Escalation.objects.get(incident=local).state == "accepted"


def test_openapi_describes_the_peer_endpoints(api_client_for, supervisor):
    schema = api_client_for(supervisor).get("/api/v1/schema/?format=json").json()
    post = schema["paths"]["/api/v1/interstate/messages"]["post"]
    headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
    assert {"X-CAD-Key-Id", "X-CAD-Timestamp", "X-CAD-Nonce", "X-CAD-Signature", "Idempotency-Key"} <= headers
    assert {"peerSignature": []} in post["security"]
    assert {"200", "202", "400", "401", "403", "404", "409"} <= set(post["responses"])
    assert "/api/v1/interstate/incidents/{request_id}" in schema["paths"]
    assert "/.well-known/cad-peer" in schema["paths"]
    assert "peerSignature" in schema["components"]["securitySchemes"]
    assert "TimelineEntry" not in str(post["requestBody"])  # the envelope, not some other body
    assert TimelineEntry  # imported for the note kinds above


def test_an_update_without_its_sequence_is_refused(client, cdmx, remote):
    peer, secret = cdmx
    request_id, _ = _rfs(client, cdmx, remote)
    update = message("update", request_id, source=remote, sequence=1)
    del update["sequence"]
    response = post_message(client, peer, secret, update)
    assert response.status_code == 400 and response.json()["code"] == "invalid_message"
    assert set(response.json()["fields"]) == {"sequence"}


def test_a_peer_note_beyond_the_bound_is_cut_out_loud():
    from interstate.services import PEER_NOTE_MAX_CHARS, _bounded

    text = "x" * (PEER_NOTE_MAX_CHARS + 123)
    kept = _bounded(text)
    assert kept.startswith("x" * PEER_NOTE_MAX_CHARS)
    assert kept.endswith("[recortada: 123 caracteres más en el centro de origen]")
    assert _bounded("corta") == "corta"


def test_cancelling_an_accepted_request_gives_the_incident_back(
    client, cdmx, center, dispatcher, accident_type
):
    """While CDMX attends our incident it is not overdue in our KPIs; cancelled, it is ours again."""
    from dashboard import kpis
    from interstate import services
    from tests.factories import open_incident

    peer, secret = cdmx
    long_ago = timezone.now() - timedelta(hours=1)
    ours = open_incident(center=center, by=dispatcher, incident_type=accident_type, lat=19.43, lon=-99.13)
    Incident.objects.filter(pk=ours.pk).update(opened_at=long_ago, call_arrived_at=long_ago)

    def overdue() -> int:
        rows = kpis.incident_rows(
            start=long_ago - timedelta(minutes=1),
            end=timezone.now(),
            center_id=center.id,
            undispatched_open=True,
        )
        return len(rows["anchor"])

    assert overdue() == 1
    escalation = services.escalate_incident(
        folio=ours.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )
    accepted = message("response", escalation.request_id, code=200, text="accepted", incident="CDMX-1")
    assert post_message(client, peer, secret, accepted).status_code == 200
    assert overdue() == 0
    services.escalation_cancel(
        escalation_id=escalation.pk, center_id=center.id, reason="Ya no", by=dispatcher
    )
    ours.refresh_from_db()
    assert ours.handled_by_center == ""
    assert overdue() == 1
    assert ours.timeline.filter(
        kind="status", text__startswith="C5 Ciudad de México ya no lo atiende"
    ).exists()
    # The cancellation is signed by who cancelled it here, not by the peer's account.
    cancelled = ours.timeline.get(kind="note", text="Escalamiento a C5 Ciudad de México cancelado: Ya no")
    assert cancelled.by == dispatcher


def test_accepting_a_request_is_on_our_own_timeline_with_who_accepted(client, cdmx, remote, dispatcher):
    from interstate import services

    _request_id, response = _rfs(client, cdmx, remote)
    local = Incident.objects.get(folio=response.json()["incident"])
    escalation = Escalation.objects.get(incident=local)
    services.escalation_accept(escalation_id=escalation.pk, center_id=local.center_id, by=dispatcher)
    note = local.timeline.filter(kind="note").order_by("-id").first()
    assert (note.text, note.by) == (
        "Solicitud de C5 Ciudad de México aceptada: este centro lo atiende",
        dispatcher,
    )
    # A note about the share: never sent to the peer as one of ours (it has the answer already).
    assert note.data["peer"] == "CDMX"


def test_a_peer_account_made_beforehand_signs_with_the_peers_name(db, center):
    """The demo seed makes peer-cdmx before registering the peer: its notes said "peer-cdmx"."""
    from accounts.models import Role, User
    from tests.interstate_support import register_cdmx

    User.objects.create(username="peer-cdmx", role=Role.PEER, center=center)
    peer, _secret = register_cdmx()
    assert peer.service_user.signature == "C5 Ciudad de México"


def test_an_idempotency_key_over_80_characters_is_told_apart_from_a_missing_one(client, cdmx, remote):
    peer, secret = cdmx
    request = message("requestForService", "urn:uuid:long-key", source=remote)
    response = post_message(client, peer, secret, request, key="k" * 81)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "idempotency_key_required"
    assert body["message"] == "El encabezado Idempotency-Key pasa de 80 caracteres (81)."
    assert body["fields"] == {"Idempotency-Key": ["Requerido, de 1 a 80 caracteres."]}
    assert not Incident.objects.filter(origin_folio=remote.folio).exists()


def test_a_message_over_the_body_limit_is_413_audited_and_writes_nothing(
    client, cdmx, remote, settings, caplog
):
    """Refused inside the view like every other refusal: the peer is named in the audit, and the log has a
    warning, not an ERROR with a traceback (Django's own answer to an oversized body, before any view)."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    peer, secret = cdmx
    request_id = f"urn:uuid:{uuid.uuid4()}"
    document = message("requestForService", request_id, source=remote)
    document["padding"] = "x" * 3000
    incidents = Incident.objects.count()
    response = post_message(client, peer, secret, document)
    assert response.status_code == 413, response.content
    assert response.json()["code"] == "request_too_large"
    assert "2000 bytes" in response.json()["message"]
    audit = _last_audit()
    assert (audit.peer_id, audit.direction, audit.status_code, audit.result) == (
        peer.id,
        "inbound",
        413,
        "request_too_large",
    )
    assert Incident.objects.count() == incidents
    assert not InboundMessage.objects.exists()
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


def test_response_times_between_centres_per_peer_and_direction(
    client, cdmx, remote, center, dispatcher, supervisor, accident_type, api_client_for, monkeypatch
):
    """The issue's "response times measured" between centres: ours to CDMX (delivery, then CDMX's answer) and
    CDMX's to us (our answer), for supervisors (API and the Otros centros page)."""
    import httpx

    from interstate import delivery, services
    from tests.factories import open_incident

    peer, secret = cdmx
    taken = {"requestId": "", "responseCode": 182, "responseText": "queued", "incident": "CDMX-2026-000009"}
    transport = httpx.MockTransport(lambda request: httpx.Response(202, json=taken))  # the edge: CDMX's HTTP
    monkeypatch.setattr(delivery, "_http_client", httpx.Client(transport=transport))
    ours = open_incident(center=center, by=dispatcher, incident_type=accident_type, lat=19.43, lon=-99.13)
    outbound = services.escalate_incident(
        folio=ours.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )
    delivery.drain_escalation(escalation_id=outbound.id)
    accepted = message(
        "response", outbound.request_id, code=200, text="accepted", incident="CDMX-2026-000009"
    )
    assert post_message(client, peer, secret, accepted).status_code == 200
    outbound.refresh_from_db()
    assert outbound.requested_at <= outbound.delivered_at <= outbound.answered_at

    _request_id, response = _rfs(client, cdmx, remote)
    inbound = Escalation.objects.get(direction="inbound")
    assert inbound.delivered_at is None and inbound.answered_at is None
    services.escalation_accept(escalation_id=inbound.id, center_id=center.id, by=dispatcher)
    inbound.refresh_from_db()
    assert inbound.answered_at >= inbound.requested_at

    # Known intervals: CDMX took ours in 2 s and accepted it 30 s after the request; we answered theirs in 45 s.
    start = timezone.now() - timedelta(minutes=10)
    Escalation.objects.filter(pk=outbound.pk).update(
        requested_at=start,
        delivered_at=start + timedelta(seconds=2),
        answered_at=start + timedelta(seconds=30),
    )
    Escalation.objects.filter(pk=inbound.pk).update(
        requested_at=start, answered_at=start + timedelta(seconds=45)
    )
    supervisors = api_client_for(supervisor)
    rows = {row["direction"]: row for row in supervisors.get("/api/v1/interstate/response-times").json()}
    assert rows["outbound"] == {
        "peer": "CDMX",
        "peer_name": peer.name,
        "direction": "outbound",
        "escalations": 1,
        "requests": 1,
        "accepted": 1,
        "rejected": 0,
        "unanswered": 0,
        "withdrawn": 0,
        "delivery_p50_s": 2.0,
        "delivery_p90_s": 2.0,
        "answer_p50_s": 30.0,
        "answer_p90_s": 30.0,
    }
    assert (rows["inbound"]["delivery_p50_s"], rows["inbound"]["answer_p50_s"]) == (None, 45.0)
    # Outside the window, nothing; a window that is not a number of hours is a 400 naming it.
    Escalation.objects.update(requested_at=timezone.now() - timedelta(hours=30))
    assert supervisors.get("/api/v1/interstate/response-times").json() == []
    assert len(supervisors.get("/api/v1/interstate/response-times", {"hours": 48}).json()) == 2
    refused = supervisors.get("/api/v1/interstate/response-times", {"hours": "0"})
    assert refused.status_code == 400 and "hours" in refused.json()["fields"]
    assert api_client_for(dispatcher).get("/api/v1/interstate/response-times").status_code == 403

    Escalation.objects.filter(pk=outbound.pk).update(requested_at=start)
    page = Client()
    page.force_login(supervisor)
    html = page.get("/dashboard/interstate/").content.decode()
    row = re.search(r'<tr data-peer="CDMX" data-direction="outbound">(.*?)</tr>', html, re.S).group(1)
    assert "Enviado" in row and "2 s · 2 s" in row and "30 s · 30 s" in row


def test_a_notice_the_sender_turns_into_a_request_for_service_waits_for_our_answer(
    client, cdmx, remote, center, dispatcher
):
    """requestForService under the requestId of a notice we hold: the same incident becomes a request our
    dispatchers answer (docs/interstate.md §3), not a second copy; a second one is a duplicate as before."""
    from interstate import services

    peer, secret = cdmx
    request_id = f"urn:uuid:{uuid.uuid4()}"
    notice = post_message(client, peer, secret, message("requestAwareness", request_id, source=remote))
    assert notice.status_code == 202, notice.content
    escalation = Escalation.objects.get(request_id=request_id)
    assert (escalation.kind, escalation.state) == ("request_awareness", "accepted")
    incidents = Incident.objects.count()

    upgraded = post_message(client, peer, secret, message("requestForService", request_id, source=remote))
    assert upgraded.status_code == 202, upgraded.content
    assert upgraded.json()["incident"] == escalation.incident.folio
    assert Incident.objects.count() == incidents
    escalation.refresh_from_db()
    assert (escalation.kind, escalation.state, escalation.answered_at) == (
        "request_for_service",
        "pending",
        None,
    )
    assert escalation.incident.timeline.filter(
        text__contains="pide ahora que este centro lo atienda"
    ).exists()
    services.escalation_accept(escalation_id=escalation.id, center_id=center.id, by=dispatcher)

    again = post_message(client, peer, secret, message("requestForService", request_id, source=remote))
    assert again.status_code == 409 and again.json()["code"] == "duplicate_request"

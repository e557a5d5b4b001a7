"""Sender side: escalations and their messages written in the transaction of the change (transactional
outbox), detection and auto-escalation, delivery in order under a lease with retries, the sweeper, the
console API with its permissions, the peer management command and admin. The peer's HTTP endpoint is the
edge, replaced by httpx.MockTransport here (tests/test_interstate_worker.py uses a real one)."""

import io
import json
import re

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from cad.models import Event
from incidents import services as incident_services
from interstate import delivery, services
from interstate.models import (
    AutoEscalationPolicy,
    Escalation,
    OutboxMessage,
    OutboxStream,
    Peer,
    PeerRequestLog,
)
from interstate.selectors import escalations_for_incident, response_times
from interstate.tasks import deliver_stream, sweep_outbox
from interstate.validation import validate_message
from tests.factories import UnitFactory, open_incident
from tests.interstate_support import FAR_FROM_CDMX, INSIDE_CDMX, NEAR_CDMX, register_cdmx

pytestmark = pytest.mark.django_db


@pytest.fixture
def cdmx(center):
    return register_cdmx()[0]


@pytest.fixture
def peer_http(monkeypatch):
    """The peer's HTTP endpoint: records requests, answers from `answers` (a status or a callable), else 202."""

    class Fake:
        requests: list[dict] = []
        answers: list = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        Fake.requests.append({"path": request.url.path, "headers": request.headers, "body": body})
        answer = Fake.answers.pop(0) if Fake.answers else 202
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        if answer >= 400:
            return httpx.Response(answer, json={"message": "no", "code": "refused", "fields": {}})
        return httpx.Response(
            answer,
            json={
                "requestId": body.get("requestId"),
                "responseCode": 182,
                "responseText": "queued",
                "incident": "CDMX-2026-000007",
            },
        )

    monkeypatch.setattr(delivery, "_http_client", httpx.Client(transport=httpx.MockTransport(handler)))
    Fake.requests, Fake.answers = [], []
    return Fake


def _inside(center, user, incident_type):
    return open_incident(
        center=center, by=user, incident_type=incident_type, lat=INSIDE_CDMX[0], lon=INSIDE_CDMX[1]
    )


def _escalate(incident, user, kind="request_for_service"):
    return services.escalate_incident(
        folio=incident.folio,
        center_id=incident.center_id,
        peer_code="CDMX",
        kind=kind,
        reason="cruza a CDMX",
        by=user,
    )


def test_escalation_and_its_message_are_written_in_the_transaction(
    cdmx, center, dispatcher, accident_type, django_capture_on_commit_callbacks
):
    incident = _inside(center, dispatcher, accident_type)
    with django_capture_on_commit_callbacks() as callbacks:
        escalation = _escalate(incident, dispatcher)
    [message] = escalation.outbox.all()
    assert (message.kind, message.state, escalation.state) == ("requestForService", "pending", "pending")
    validate_message("requestForService", message.body)
    assert message.body["requestId"] == escalation.request_id
    assert message.body["eido"]["incidentComponent"]["internalIncidentId"] == incident.folio
    assert message.body["reason"] == "cruza a CDMX"  # for the peer's dispatcher
    assert any(cb.__qualname__.startswith("enqueue") for cb in callbacks)  # delivery only after commit

    class Rollback(Exception):
        pass

    other = _inside(center, dispatcher, accident_type)
    with pytest.raises(Rollback), transaction.atomic():
        _escalate(other, dispatcher)
        raise Rollback
    assert not Escalation.objects.filter(incident=other).exists()
    assert OutboxMessage.objects.count() == 1  # the rolled-back escalation left no message


def test_changes_to_a_shared_incident_become_ordered_updates(cdmx, center, dispatcher, accident_type):
    incident = _inside(center, dispatcher, accident_type)
    escalation = _escalate(incident, dispatcher)
    incident_services.add_note(
        folio=incident.folio, center_id=center.id, text="Sospechoso huye al norte", by=dispatcher
    )
    unit = UnitFactory(center=center)
    incident_services.assign_unit(folio=incident.folio, center_id=center.id, unit_id=unit.id, by=dispatcher)
    updates = list(escalation.outbox.filter(kind="update").order_by("id"))
    assert [m.seq for m in updates] == list(range(1, len(updates) + 1)) and len(updates) >= 2
    texts = [n["notesActionComments"] for n in updates[0].body["eido"]["notesComponent"]]
    assert "Sospechoso huye al norte" in texts
    assert not any("cruza a CDMX" in text for text in texts)  # the note about CDMX is not sent to CDMX
    assert (
        updates[-1].body["eido"]["emergencyResourceComponent"][0]["primaryUnitStatusRegistryText"]
        == "Dispatched"
    )
    for message in updates:
        validate_message("event", message.body)


def test_the_snapshot_is_built_from_the_incident_the_writer_locked(cdmx, center, dispatcher, accident_type):
    """Escalating and updating read the incident once (the writer's locked read, with what the EIDO needs),
    and the snapshot still carries the change just made."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def incident_reads(queries) -> int:
        return sum(
            q["sql"].startswith("SELECT") and re.search(r'FROM "?incidents_incident"? ', q["sql"]) is not None
            for q in queries.captured_queries
        )

    incident = _inside(center, dispatcher, accident_type)
    with CaptureQueriesContext(connection) as escalating:
        escalation = _escalate(incident, dispatcher)
    with CaptureQueriesContext(connection) as updating:
        incident_services.add_note(folio=incident.folio, center_id=center.id, text="ya llegó", by=dispatcher)
    assert (incident_reads(escalating), incident_reads(updating)) == (1, 1)
    request, update = escalation.outbox.order_by("id")
    notes = [n["notesActionComments"] for n in update.body["eido"]["notesComponent"]]
    assert notes[-1] == "ya llegó" and "ya llegó" not in str(request.body)


def test_an_unshared_incident_writes_nothing(
    cdmx, center, dispatcher, accident_type, django_assert_max_num_queries
):
    incident = open_incident(
        center=center, by=dispatcher, incident_type=accident_type, lat=FAR_FROM_CDMX[0], lon=FAR_FROM_CDMX[1]
    )
    with django_assert_max_num_queries(12):
        incident_services.add_note(folio=incident.folio, center_id=center.id, text="nota", by=dispatcher)
    assert not OutboxMessage.objects.exists()


def test_the_queue_reads_the_flags_and_shares_of_open_incidents(
    cdmx, center, dispatcher, accident_type, api_client_for, django_assert_max_num_queries
):
    """A console that reloads (or a dispatcher who logs in) sees every flag and share in the queue, not only
    those that arrive live afterwards."""
    shared = _inside(center, dispatcher, accident_type)
    _escalate(shared, dispatcher)
    flagged = open_incident(
        center=center, by=dispatcher, incident_type=accident_type, lat=NEAR_CDMX[0], lon=NEAR_CDMX[1]
    )
    open_incident(
        center=center, by=dispatcher, incident_type=accident_type, lat=FAR_FROM_CDMX[0], lon=FAR_FROM_CDMX[1]
    )
    closed = _inside(center, dispatcher, accident_type)
    incident_services.close_incident(folio=closed.folio, center_id=center.id, disposition="x", by=dispatcher)
    client = api_client_for(dispatcher)
    facts = {entry["folio"]: entry for entry in client.get("/api/v1/interstate/queue").json()["incidents"]}
    assert set(facts) == {shared.folio, flagged.folio}
    [escalation] = facts[shared.folio]["escalations"]
    assert (escalation["peer"]["code"], escalation["state"], escalation["attempts"]) == ("CDMX", "pending", 0)
    assert [flag["reason"] for flag in facts[flagged.folio]["flags"]] == ["near_border"]
    assert facts[flagged.folio]["escalations"] == []
    for _ in range(5):  # more open incidents, no more queries
        _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    with django_assert_max_num_queries(12):
        assert len(client.get("/api/v1/interstate/queue").json()["incidents"]) == 7


def test_detection_flags_inside_and_near_the_border(cdmx, center, call_taker, accident_type):
    inside = _inside(center, call_taker, accident_type)
    near = open_incident(
        center=center, by=call_taker, incident_type=accident_type, lat=NEAR_CDMX[0], lon=NEAR_CDMX[1]
    )
    far = open_incident(
        center=center, by=call_taker, incident_type=accident_type, lat=FAR_FROM_CDMX[0], lon=FAR_FROM_CDMX[1]
    )
    flagged = {
        e.payload["folio"]: e.payload["peers"] for e in Event.objects.filter(type="interstate.flagged")
    }
    assert flagged[inside.folio] == [
        {"peer": "CDMX", "name": "C5 Ciudad de México", "reason": "inside", "distance_km": 0.0}
    ]
    [flag] = flagged[near.folio]
    assert flag["reason"] == "near_border" and 2.5 < flag["distance_km"] < 4.5
    assert far.folio not in flagged
    # relocated out of reach: the flag is cleared
    incident_services.update_incident(
        folio=inside.folio,
        center_id=center.id,
        by=call_taker,
        expected_version=None,
        lat=FAR_FROM_CDMX[0],
        lon=FAR_FROM_CDMX[1],
    )
    last = (
        Event.objects.filter(type="interstate.flagged", payload__folio=inside.folio).order_by("-seq").first()
    )
    assert last.payload["peers"] == []


def test_policies_escalate_flagged_incidents_of_their_type(cdmx, center, call_taker, accident_type):
    AutoEscalationPolicy.objects.create(peer=None, type_prefix="101", kind="request_for_service")
    incident = _inside(center, call_taker, accident_type)
    escalation = Escalation.objects.get(incident=incident)
    assert (escalation.peer.code, escalation.kind, escalation.direction) == (
        "CDMX",
        "request_for_service",
        "outbound",
    )
    kinds = list(escalation.outbox.values_list("kind", flat=True))
    assert kinds[0] == "requestForService"
    far = open_incident(
        center=center, by=call_taker, incident_type=accident_type, lat=FAR_FROM_CDMX[0], lon=FAR_FROM_CDMX[1]
    )
    assert not Escalation.objects.filter(incident=far).exists()


def test_a_request_policy_wins_over_a_broader_notice_policy_and_no_rule_overrides_a_rejection(
    cdmx, center, call_taker, dispatcher, accident_type
):
    AutoEscalationPolicy.objects.create(peer=None, type_prefix="1", kind="request_awareness")
    AutoEscalationPolicy.objects.create(peer=cdmx, type_prefix="10104", kind="request_for_service")
    incident = _inside(center, call_taker, accident_type)
    (escalation,) = Escalation.objects.filter(incident=incident)
    assert escalation.kind == "request_for_service"
    # CDMX rejects it; a location fix later (still in CDMX) must not ask again.
    Escalation.objects.filter(pk=escalation.pk).update(state=Escalation.State.REJECTED)
    incident_services.update_incident(
        folio=incident.folio,
        center_id=center.id,
        by=dispatcher,
        expected_version=None,
        confirm_outside_area=True,
        lat=INSIDE_CDMX[0] + 0.0001,
        lon=INSIDE_CDMX[1],
    )
    assert Escalation.objects.filter(incident=incident).count() == 1


@pytest.mark.parametrize("prefix", ["ABC", "1010", "101041", ""])
def test_a_policy_prefix_that_could_never_match_is_refused(prefix):
    policy = AutoEscalationPolicy(peer=None, type_prefix=prefix, kind="request_awareness")
    with pytest.raises(ValidationError) as refused:
        policy.full_clean()
    assert "type_prefix" in refused.value.message_dict


def test_a_notice_becomes_a_request_for_service_on_the_same_share(
    cdmx, center, dispatcher, accident_type, peer_http
):
    """Notify first (V), then ask CDMX to take it (X): it was a 409 already_shared, and only a supervisor's
    cancel got round it. Now the share becomes a request for service under the same request id (CDMX turns
    its copy into a request: one incident there), sent after the notice on the same stream."""
    incident = _inside(center, dispatcher, accident_type)
    notice = _escalate(incident, dispatcher, kind="request_awareness")
    delivery.drain_escalation(escalation_id=notice.id)
    notice.refresh_from_db()
    request = _escalate(incident, dispatcher)
    assert (request.pk, request.request_id) == (notice.pk, notice.request_id)
    assert (request.kind, request.state, request.delivered_at, request.answered_at) == (
        "request_for_service",
        "pending",
        None,
        None,
    )
    assert request.requested_at > notice.requested_at
    sent = list(request.outbox.order_by("seq", "id").values_list("kind", "body__requestId", "state"))
    assert sent == [
        ("requestAwareness", notice.request_id, "delivered"),
        ("requestForService", notice.request_id, "pending"),
    ]
    validate_message("requestForService", request.outbox.get(kind="requestForService").body)
    delivery.drain_escalation(escalation_id=request.id)
    request.refresh_from_db()
    assert request.state == "sent" and request.delivered_at is not None
    # A request for service is not asked twice.
    with pytest.raises(services.Conflict):
        _escalate(incident, dispatcher)


def test_delivery_sends_in_order_and_a_failure_stops_the_drain(
    cdmx, center, dispatcher, accident_type, peer_http
):
    incident = _inside(center, dispatcher, accident_type)
    escalation = _escalate(incident, dispatcher)
    for text in ("uno", "dos"):
        incident_services.add_note(folio=incident.folio, center_id=center.id, text=text, by=dispatcher)
    peer_http.answers = [202, 200, 503]
    with pytest.raises(delivery.PeerUnavailable):
        delivery.drain_escalation(escalation_id=escalation.id)
    escalation.refresh_from_db()
    assert (escalation.state, escalation.remote_folio) == ("sent", "CDMX-2026-000007")
    assert "HTTP 503" in escalation.last_error
    [pending] = escalation.outbox.filter(state="pending")
    assert (pending.seq, pending.attempts) == (2, 1)
    assert escalation.stream.lease_until is None  # released: the embedded sweeper may retry it
    assert delivery.drain_escalation(escalation_id=escalation.id) == 0  # the peer's circuit is open
    # The same error again: the console still hears of the attempt (its count), not only of a new error.
    Peer.objects.update(probe_after="2000-01-01T00:00Z")
    peer_http.answers = [503]
    with pytest.raises(delivery.PeerUnavailable):
        delivery.drain_escalation(escalation_id=escalation.id)
    told = Event.objects.filter(type="interstate.escalation").order_by("-id").first()
    assert told.payload["escalation"]["attempts"] == 2
    assert "HTTP 503" in told.payload["escalation"]["last_error"]
    Peer.objects.update(probe_after="2000-01-01T00:00Z")  # the backoff passed: this drain is the probe
    assert delivery.drain_escalation(escalation_id=escalation.id) == 1
    sent = [(r["body"].get("sequence"), r["headers"]["idempotency-key"]) for r in peer_http.requests]
    assert [seq for seq, _ in sent] == [None, 1, 2, 2, 2]
    assert sent[2][1] == sent[3][1] == sent[4][1]  # a retry reuses the message's idempotency key
    escalation.refresh_from_db()
    assert escalation.last_error == "" and not escalation.outbox.filter(state="pending").exists()
    outbound = PeerRequestLog.objects.filter(direction="outbound")
    assert outbound.count() == 5 and outbound.filter(result="refused", status_code=503).count() == 2
    assert set(outbound.values_list("incident_folio", flat=True)) == {incident.folio}


def test_a_refused_message_fails_the_escalation_until_a_supervisor_retries(
    cdmx, center, dispatcher, supervisor, accident_type, peer_http
):
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    peer_http.answers = [400]
    assert delivery.drain_escalation(escalation_id=escalation.id) == 0
    escalation.refresh_from_db()
    # What the peer said, not its raw JSON.
    assert (escalation.state, escalation.last_error) == ("failed", "HTTP 400: no (refused)")
    assert escalation.outbox.get().state == "dead"
    # The console counts the attempt of a message given up too (it read "intento 0").
    assert escalations_for_incident(incident_id=escalation.incident_id)[0]["attempts"] == 1
    told = Event.objects.filter(type="interstate.escalation").order_by("-seq").first()
    assert told.payload["escalation"]["attempts"] == 1
    services.escalation_retry(escalation_id=escalation.id, center_id=center.id, by=supervisor)
    assert delivery.drain_escalation(escalation_id=escalation.id) == 1
    escalation.refresh_from_db()
    assert escalation.state == "sent"


def test_a_supervisors_retry_is_sent_at_once_while_the_peers_circuit_is_open(
    cdmx, center, dispatcher, supervisor, accident_type, peer_http
):
    """It used to wait for the backoff (or for another share's probe) and to wipe the error from the screen:
    the supervisor saw a quiet "Pendiente" and nothing was sent."""
    incident = _inside(center, dispatcher, accident_type)
    escalation = _escalate(incident, dispatcher)
    peer_http.answers = [503]
    with pytest.raises(delivery.PeerUnavailable):
        delivery.drain_escalation(escalation_id=escalation.id)
    assert Peer.objects.get().probe_after > timezone.now()  # the circuit is open
    assert delivery.drain_escalation(escalation_id=escalation.id) == 0
    services.escalation_retry(escalation_id=escalation.id, center_id=center.id, by=supervisor)
    escalation.refresh_from_db()
    assert "HTTP 503" in escalation.last_error  # still said until a send succeeds
    peer_http.answers = [202]
    assert delivery.drain_escalation(escalation_id=escalation.id) == 1
    escalation.refresh_from_db()
    assert (escalation.state, escalation.last_error) == ("sent", "")


def test_the_lease_keeps_a_second_drainer_out(cdmx, center, dispatcher, accident_type, peer_http):
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    assert delivery._acquire(escalation.stream_id, "worker-a")
    assert not delivery._acquire(escalation.stream_id, "worker-b")
    assert delivery.drain_escalation(escalation_id=escalation.id, owner="worker-b") == 0
    assert (
        delivery.drain_escalation(escalation_id=escalation.id, owner="worker-a") == 1
    )  # its own retry goes on
    assert peer_http.requests and len(peer_http.requests) == 1


def test_a_drainer_that_lost_its_lease_stops(cdmx, center, dispatcher, accident_type, peer_http):
    incident = _inside(center, dispatcher, accident_type)
    escalation = _escalate(incident, dispatcher)
    incident_services.add_note(folio=incident.folio, center_id=center.id, text="uno", by=dispatcher)

    def stolen_while_sending(request):  # e.g. the drainer stalled past its lease and a sweep took over
        OutboxStream.objects.filter(pk=escalation.stream_id).update(lease_owner="someone-else")
        return 202

    peer_http.answers = [stolen_while_sending]
    assert delivery.drain_escalation(escalation_id=escalation.id, owner="slow") == 1
    assert escalation.outbox.filter(state="pending").count() == 1  # left to the new owner


def test_a_message_written_while_a_drain_sends_goes_in_the_same_drain_and_the_lease_is_freed(
    cdmx, center, dispatcher, accident_type, peer_http
):
    """The drain records each delivery and, in that transaction, gives the lease up or keeps it for the next
    pending message: an update written while the request was on the wire goes out in the same drain (not
    after the sweeper's delay), and the drain ends with the lease free for the next enqueued drain."""
    incident = _inside(center, dispatcher, accident_type)
    escalation = _escalate(incident, dispatcher)

    def note_while_sending(request):
        incident_services.add_note(folio=incident.folio, center_id=center.id, text="uno", by=dispatcher)
        return 202

    peer_http.answers = [note_while_sending]
    assert delivery.drain_escalation(escalation_id=escalation.id, owner="worker-a") == 2
    assert [r["body"].get("sequence") for r in peer_http.requests] == [None, 1]
    stream = OutboxStream.objects.get(pk=escalation.stream_id)
    assert (stream.lease_until, stream.lease_owner) == (None, "")
    incident_services.add_note(folio=incident.folio, center_id=center.id, text="dos", by=dispatcher)
    assert delivery.drain_escalation(escalation_id=escalation.id, owner="worker-b") == 1


def test_a_failed_drain_releases_its_lease_for_the_sweepers_probe(
    cdmx, center, dispatcher, accident_type, peer_http
):
    """A worker killed during its retry's backoff must not leave the stream leased until the broker
    redelivers the retry: the circuit breaker paces the retries, the probe takes the stream."""
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    peer_http.answers = [httpx.ConnectError("refused")]
    with pytest.raises(delivery.PeerUnavailable):
        delivery.drain_escalation(escalation_id=escalation.id, owner="task-1")
    stream = OutboxStream.objects.get(pk=escalation.stream_id)
    assert (stream.lease_until, stream.lease_owner) == (None, "")
    assert delivery.due_streams() == []  # not due yet: the peer's circuit is open
    OutboxMessage.objects.update(next_attempt_at="2000-01-01T00:00Z")  # due
    Peer.objects.update(probe_after="2000-01-01T00:00Z")  # and the peer's probe too
    assert delivery.due_streams() == [escalation.stream_id]
    OutboxStream.objects.update(lease_until="2999-01-01T00:00Z", lease_owner="task-2")  # a drain mid-send
    assert delivery.due_streams() == []
    assert PeerRequestLog.objects.get(direction="outbound").result == "network_error"


def test_sweeper_reenqueues_due_messages_of_enabled_peers(
    cdmx, center, dispatcher, accident_type, monkeypatch
):
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    enqueued = []
    monkeypatch.setattr("cad.tasks.enqueue", lambda task, **kwargs: enqueued.append((task.name, kwargs)))
    assert sweep_outbox() == 0  # written just now: the on-commit enqueue delivers it
    OutboxMessage.objects.update(next_attempt_at="2000-01-01T00:00Z")
    assert sweep_outbox() == 1
    assert enqueued == [("interstate.tasks.deliver_stream", {"stream_id": escalation.stream_id})]
    services.peer_set_enabled(code="CDMX", enabled=False)
    assert sweep_outbox() == 0  # paused, kept
    assert escalation.outbox.get().state == "pending"


def test_nothing_goes_to_a_peer_we_hold_no_credential_for_until_it_is_set(
    center, dispatcher, accident_type, peer_http, django_capture_on_commit_callbacks
):
    """Registered without the key the peer issued us (interstate_peer add without --outbound-*): its messages
    wait, unsent — they went out at once, signed with an empty key and secret."""
    register_cdmx(outbound_key_id="", outbound_secret="")
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    assert delivery.drain_escalation(escalation_id=escalation.id) == 0 and not peer_http.requests
    assert delivery.due_streams() == []
    assert escalation.outbox.get().state == "pending"
    with django_capture_on_commit_callbacks() as callbacks:
        services.peer_set_outbound_credentials(code="CDMX", key_id="mex-at-cdmx", secret="s" * 40)
    assert callbacks  # what waited is enqueued at once
    assert delivery.drain_escalation(escalation_id=escalation.id) == 1
    assert peer_http.requests[0]["headers"]["X-CAD-Key-Id"] == "mex-at-cdmx"


def test_a_disabled_peer_pauses_delivery_and_enabling_resumes(
    cdmx, center, dispatcher, accident_type, peer_http, django_capture_on_commit_callbacks
):
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    services.peer_set_enabled(code="CDMX", enabled=False)
    assert delivery.drain_escalation(escalation_id=escalation.id) == 0 and not peer_http.requests
    # The console says why nothing moves (it read "pending" with no error).
    (shown,) = escalations_for_incident(incident_id=escalation.incident_id)
    assert shown["peer"]["enabled"] is False
    with django_capture_on_commit_callbacks() as callbacks:
        services.peer_set_enabled(code="CDMX", enabled=True)
    assert callbacks  # a drain is enqueued for the waiting escalation
    assert delivery.drain_escalation(escalation_id=escalation.id) == 1
    assert escalations_for_incident(incident_id=escalation.incident_id)[0]["peer"]["enabled"] is True


def test_cancel_before_and_after_the_peer_got_the_request(
    cdmx, center, dispatcher, supervisor, accident_type, peer_http
):
    never_sent = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    services.escalation_cancel(
        escalation_id=never_sent.id, center_id=center.id, reason="error de captura", by=supervisor
    )
    assert list(never_sent.outbox.values_list("kind", "state")) == [("requestForService", "dead")]
    sent = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    delivery.drain_escalation(escalation_id=sent.id)
    services.escalation_cancel(
        escalation_id=sent.id, center_id=center.id, reason="ya no se requiere", by=supervisor
    )
    assert list(sent.outbox.order_by("id").values_list("kind", "state")) == [
        ("requestForService", "delivered"),
        ("cancel", "pending"),
    ]
    validate_message("cancelREequest", sent.outbox.get(kind="cancel").body)
    sent.refresh_from_db()
    assert sent.state == "cancelled"
    # A request tried and timed out may still be applied there: the cancel goes after it.
    tried = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    peer_http.answers = [httpx.ReadTimeout("CDMX no respondió")]
    with pytest.raises(delivery.PeerUnavailable):  # a task would retry it later
        delivery.drain_escalation(escalation_id=tried.id)
    assert tried.outbox.get().attempts == 1
    services.escalation_cancel(escalation_id=tried.id, center_id=center.id, reason="", by=supervisor)
    assert list(tried.outbox.order_by("id").values_list("kind", "state")) == [
        ("requestForService", "dead"),
        ("cancel", "pending"),
    ]


def test_response_times_count_every_request_once(cdmx, center, dispatcher, supervisor, accident_type):
    """Accepted, rejected, withdrawn (cancelled or failed before an answer) and unanswered add up to the
    requests: a supervisor's table did not add up (a cancelled request was counted nowhere)."""
    since = timezone.now() - timezone.timedelta(hours=1)
    waiting = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    cancelled = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    services.escalation_cancel(escalation_id=cancelled.id, center_id=center.id, by=supervisor)
    _escalate(_inside(center, dispatcher, accident_type), dispatcher, kind="request_awareness")
    (row,) = response_times(center_id=center.id, since=since)
    assert (row["escalations"], row["requests"], row["withdrawn"], row["unanswered"]) == (3, 2, 1, 1)
    assert row["accepted"] + row["rejected"] + row["withdrawn"] + row["unanswered"] == row["requests"]
    assert waiting.state == "pending"


def test_an_acceptance_after_our_cancel_is_flagged_on_the_incident(
    cdmx, center, dispatcher, supervisor, accident_type, peer_http
):
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    delivery.drain_escalation(escalation_id=escalation.id)
    services.escalation_cancel(escalation_id=escalation.id, center_id=center.id, by=supervisor)
    answer = {
        "requestId": escalation.request_id,
        "response": {"requestId": escalation.request_id, "responseCode": 200, "responseText": "ok"},
        "incident": "CDMX-2026-000007",
    }
    status, _body = services.receive_message(
        peer=cdmx, idempotency_key="late-accept", wire_key="response", message=answer
    )
    assert status == 200
    escalation.refresh_from_db()
    escalation.incident.refresh_from_db()
    assert escalation.state == "cancelled" and escalation.incident.handled_by_center == ""
    note = escalation.incident.timeline.filter(kind="note").order_by("-id").first()
    assert "aceptó la solicitud ya cancelada (folio CDMX-2026-000007)" in note.text


def test_task_is_configured_to_survive_workers_and_outages(settings):
    assert deliver_stream.acks_late and deliver_stream.reject_on_worker_lost
    assert deliver_stream.max_retries is None
    assert deliver_stream.retry_jitter and deliver_stream.retry_backoff
    assert deliver_stream.retry_backoff_max < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert settings.CELERY_BEAT_SCHEDULE["interstate.sweep_outbox"]["task"] == "interstate.tasks.sweep_outbox"


def test_console_api_and_its_permissions(
    cdmx, center, call_taker, dispatcher, supervisor, accident_type, api_client_for
):
    incident = _inside(center, call_taker, accident_type)
    taker = api_client_for(call_taker)
    assert taker.get("/api/v1/interstate/peers").json() == [
        {"code": "CDMX", "name": "C5 Ciudad de México", "kind": "state", "enabled": True}
    ]
    created = taker.post(
        f"/api/v1/incidents/{incident.folio}/escalations", {"peer": "CDMX", "reason": "pide apoyo"}
    )
    assert created.status_code == 201, created.content
    escalation = created.json()
    assert (escalation["state"], escalation["direction"], escalation["peer"]["code"]) == (
        "pending",
        "outbound",
        "CDMX",
    )
    again = taker.post(f"/api/v1/incidents/{incident.folio}/escalations", {"peer": "CDMX"})
    assert again.status_code == 409 and again.json()["code"] == "already_shared"
    unknown = taker.post(f"/api/v1/incidents/{incident.folio}/escalations", {"peer": "JAL"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_peer"
    view = taker.get(f"/api/v1/incidents/{incident.folio}/interstate").json()
    assert [e["id"] for e in view["escalations"]] == [escalation["id"]]
    assert view["flags"][0]["reason"] == "inside"
    retry = f"/api/v1/escalations/{escalation['id']}/retry"
    assert taker.post(retry).status_code == 403
    assert api_client_for(dispatcher).post(retry).status_code == 403
    assert api_client_for(supervisor).post(retry).status_code == 200
    assert (
        api_client_for(dispatcher).post(f"/api/v1/escalations/{escalation['id']}/accept").status_code == 409
    )  # outbound
    assert taker.get("/api/v1/interstate/audit").status_code == 403
    audit = api_client_for(supervisor).get("/api/v1/interstate/audit?direction=inbound")
    assert audit.status_code == 200 and audit.json()["count"] == 0
    assert (
        api_client_for(supervisor).post(f"/api/v1/escalations/{escalation['id']}/cancel", {}).json()["state"]
        == "cancelled"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["ZZ Z"], "letras mayúsculas"),
        (["JAL", "--border-km", "-3"], "border_km"),
        (["JAL", "--outbound-key-id", "k", "--outbound-secret-file", "/nonexistent"], "No se pudo leer"),
    ],
)
def test_peer_command_refuses_bad_input_with_a_message(center, args, says):
    """An operator's typo gets a sentence, not a traceback, and nothing is written."""
    with pytest.raises(CommandError) as refused:
        call_command(
            "interstate_peer",
            "add",
            *args,
            "--name",
            "C4 Jalisco",
            "--base-url",
            "http://jal.invalid",
            stdout=io.StringIO(),
        )
    assert says in str(refused.value)
    assert not Peer.objects.exists()


def test_peer_command_registers_lists_rotates_and_refreshes(center, monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("issued-by-cdmx\n")
    out = io.StringIO()
    call_command(
        "interstate_peer",
        "add",
        "cdmx",
        "--name",
        "C5 CDMX",
        "--base-url",
        "http://cdmx.invalid",
        "--outbound-key-id",
        "mex-1",
        "--outbound-secret-file",
        str(secret_file),
        stdout=out,
    )
    peer = Peer.objects.get(code="CDMX")
    text = out.getvalue()
    assert peer.inbound_key_id in text and peer.inbound_secret in text  # shown once, at creation
    assert peer.outbound_secret == "issued-by-cdmx" and "issued-by-cdmx" not in text
    assert "issued-by-cdmx" not in peer.outbound_secret_encrypted  # encrypted at rest
    out = io.StringIO()
    call_command("interstate_peer", "list", stdout=out)
    assert "CDMX" in out.getvalue() and peer.inbound_secret not in out.getvalue()
    old_secret = peer.inbound_secret
    call_command("interstate_peer", "rotate-secret", "CDMX", stdout=io.StringIO())
    peer.refresh_from_db()
    assert peer.inbound_secret != old_secret
    call_command("interstate_peer", "disable", "CDMX", stdout=io.StringIO())
    assert not Peer.objects.get(code="CDMX").enabled

    def well_known(request):
        assert request.headers["x-cad-key-id"] == "mex-1"
        return httpx.Response(
            200,
            json={
                "center": "CDMX",
                "name": "C5 de la CDMX",
                "kind": "state",
                "service_area": {
                    "type": "Polygon",
                    "coordinates": [[[-99.3, 19.1], [-99.0, 19.1], [-99.0, 19.5], [-99.3, 19.1]]],
                },
            },
        )

    monkeypatch.setattr(delivery, "_http_client", httpx.Client(transport=httpx.MockTransport(well_known)))
    out = io.StringIO()
    call_command("interstate_peer", "refresh", "CDMX", stdout=out)
    peer.refresh_from_db()
    assert peer.name == "C5 de la CDMX" and peer.max_lat == 19.5 and peer.refreshed_at


def test_a_bad_peer_address_is_a_clear_error_and_nothing_is_written(center):
    """It printed a traceback ending in ValidationError, and left the peer's service account behind."""
    from django.core.management.base import CommandError

    from accounts.models import User

    with pytest.raises(CommandError, match="base_url: Introduzca una URL válida."):
        call_command("interstate_peer", "add", "JAL", "--name", "Jalisco", "--base-url", "notaurl")
    assert not Peer.objects.exists() and not User.objects.filter(username="peer-jal").exists()


def test_admin_never_shows_secrets(cdmx, client, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", password="x-pass-1234")
    client.force_login(admin_user)
    page = client.get(f"/admin/interstate/peer/{cdmx.id}/change/").content.decode()
    assert "••••" in page
    assert cdmx.inbound_secret not in page and cdmx.outbound_secret not in page
    response = client.post(
        "/admin/interstate/peer/",
        {"action": "rotate_inbound_secret", "_selected_action": [cdmx.id]},
        follow=True,
    )
    cdmx.refresh_from_db()
    assert cdmx.inbound_secret in response.content.decode()  # shown once, right after rotating


def test_the_interstate_admin_speaks_spanish_and_times_the_audit_to_the_second(
    cdmx, center, dispatcher, accident_type, client, django_user_model
):
    """Its columns and filters read "AT, DIRECTION, PEER CODE…", "Por direction", and its times had no
    seconds."""
    _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    entry = PeerRequestLog.objects.create(
        peer=cdmx,
        peer_code="CDMX",
        direction="inbound",
        method="POST",
        path="/x",
        action="update",
        result="ok",
    )
    client.force_login(django_user_model.objects.create_superuser("root", password="x-pass-1234"))
    audit = client.get("/admin/interstate/peerrequestlog/").content.decode()
    for heading in ("Hora", "Sentido", "Clave del centro", "Acción", "Código HTTP", "Resultado"):
        assert heading in audit, heading
    assert "Peer code" not in audit and "Direction" not in audit
    assert timezone.localtime(entry.at, center.zone).strftime("%d/%m/%Y %H:%M:%S") in audit
    outbox = client.get("/admin/interstate/outboxmessage/").content.decode()
    assert "Intentos" in outbox and "Attempts" not in outbox
    escalations = client.get("/admin/interstate/escalation/").content.decode()
    assert "Sentido" in escalations and "Updated at" not in escalations


def test_supervisors_page_shows_shares_in_trouble_peers_and_the_audit_with_seconds(
    cdmx, center, dispatcher, supervisor, accident_type, peer_http, client
):
    """The audit was raw JSON only (the admin is for administrators): supervisors get a page."""
    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    peer_http.answers = [400]
    delivery.drain_escalation(escalation_id=escalation.id)
    client.force_login(dispatcher)
    assert client.get("/dashboard/interstate/").status_code == 403
    client.force_login(supervisor)
    page = client.get("/dashboard/interstate/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-escalation="{escalation.id}"' in html and "HTTP 400: no (refused)" in html
    assert 'data-peer="CDMX"' in html
    entry = PeerRequestLog.objects.get()
    local = timezone.localtime(entry.at, center.zone).strftime("%d/%m/%Y %H:%M:%S")
    assert f'data-audit="{entry.id}"' in html and local in html  # the centre's time, to the second
    only_inbound = client.get("/dashboard/interstate/", {"direction": "inbound"}).content.decode()
    assert f'data-audit="{entry.id}"' not in only_inbound
    older = client.get("/dashboard/interstate/", {"before": entry.id}).content.decode()
    assert f'data-audit="{entry.id}"' not in older
    assert ">Solicitud de servicio</td>" in html  # the protocol's "requestForService", as a person reads it
    for garbage in ("²", "-1", "abc", "9" * 30):  # "²".isdigit() is True, and int() refuses it: it was a 500
        assert client.get("/dashboard/interstate/", {"before": garbage}).status_code == 200, garbage


def test_a_hand_written_row_loads_what_the_orm_would(cdmx, center, dispatcher, accident_type):
    """cad.db.RowShape (the delivery path's next message, the peer by key): every field equal to the ORM's
    instance, JSON, times and UUIDs converted alike, the excluded field deferred."""
    from interstate.peer_api import _peer_by_key

    escalation = _escalate(_inside(center, dispatcher, accident_type), dispatcher)
    message = delivery._next_pending(escalation.stream_id)
    expected = OutboxMessage.objects.get(pk=message.pk)
    for field in OutboxMessage._meta.concrete_fields:
        assert getattr(message, field.attname) == getattr(expected, field.attname), field.name
    assert isinstance(message.body, dict) and message.incident_folio == escalation.incident.folio
    assert message.peer.code == "CDMX" and "service_area" in message.peer.get_deferred_fields()
    peer = _peer_by_key(cdmx.inbound_key_id)
    orm = Peer.objects.select_related("service_user__center").get(pk=cdmx.pk)
    for field in Peer._meta.concrete_fields:
        if field.name != "service_area":
            assert getattr(peer, field.attname) == getattr(orm, field.attname), field.name
    assert peer.service_user.username == orm.service_user.username
    assert peer.service_user.center == orm.service_user.center
    assert _peer_by_key("no-such-key") is None
    from cad.db import RowShape
    from cad.models import Center

    shape = RowShape((Peer, ("service_area",)), (Center, ()))
    sql = f"SELECT {shape.columns('p', 0)}, {shape.columns('c', 1)} FROM interstate_peer p"  # noqa: S608
    found, nothing = shape.one(sql + " LEFT JOIN cad_center c ON 1 = 0 WHERE p.id = %s", [cdmx.pk])
    assert found.code == "CDMX" and nothing is None  # a LEFT JOIN that matched no row, as select_related

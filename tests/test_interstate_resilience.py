"""Interstate under stress: a peer outage behind the per-peer circuit breaker (one probe per backoff interval,
everything drained once and in order when the peer returns), durable replay protection (nonces in the database
every web process shares), audit and nonce retention, and two identical messages racing (PostgreSQL, threads).
The peer's HTTP endpoint is the edge (httpx.MockTransport)."""

import json
import threading
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from cad import periodic
from incidents import services as incident_services
from incidents.models import Incident
from interstate import delivery, services
from interstate.models import InboundMessage, OutboxMessage, Peer, PeerNonce, PeerRequestLog
from interstate.tasks import prune
from tests.factories import IncidentTypeFactory, open_incident
from tests.interstate_support import INSIDE_CDMX, cdmx_incident, message, register_cdmx, signed

QUEUED = 8  # escalations waiting for the peer (each with an update behind its request)


@pytest.fixture
def peer_down(monkeypatch):
    """CDMX's endpoint: unreachable while `state["down"]`, else 202; records what arrives."""
    state = {"down": True, "received": []}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["down"]:
            raise httpx.ConnectError("connection refused")
        body = json.loads(request.content)
        state["received"].append(
            (body["requestId"], body.get("sequence"), request.headers["idempotency-key"])
        )
        return httpx.Response(202, json={"requestId": body["requestId"], "incident": "CDMX-2026-000001"})

    monkeypatch.setattr(delivery, "_http_client", httpx.Client(transport=httpx.MockTransport(handler)))
    return state


@pytest.mark.django_db
def test_a_down_peer_costs_one_probe_per_interval_and_gets_everything_once_in_order(
    center, dispatcher, accident_type, peer_down, monkeypatch
):
    register_cdmx()
    escalations = []
    for index in range(QUEUED):
        incident = open_incident(
            center=center, by=dispatcher, incident_type=accident_type, lat=INSIDE_CDMX[0], lon=INSIDE_CDMX[1]
        )
        escalations.append(
            services.escalate_incident(
                folio=incident.folio,
                center_id=center.id,
                peer_code="CDMX",
                kind="request_for_service",
                by=dispatcher,
            )
        )
        incident_services.add_note(
            folio=incident.folio, center_id=center.id, text=f"nota {index}", by=dispatcher
        )
    streams = [e.stream_id for e in escalations]
    enqueued = []
    monkeypatch.setattr("cad.tasks.enqueue", lambda task, **kwargs: enqueued.append(kwargs["stream_id"]))

    # Outage: every stream's drain runs (on commit, retries, sweeps…) but only the first reaches the network.
    with pytest.raises(delivery.PeerUnavailable):
        delivery.drain_stream(stream_id=streams[0])
    assert sum(delivery.drain_stream(stream_id=s) for s in streams[1:]) == 0
    peer = Peer.objects.get(code="CDMX")
    assert peer.unavailable_since and peer.failures == 1 and peer.probe_after > timezone.now()
    assert PeerRequestLog.objects.filter(direction="outbound").count() == 1
    OutboxMessage.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))  # all due
    assert delivery.due_streams() == []  # circuit open: nothing until the probe time

    # Each backoff interval: the sweeper hands the peer ONE stream, the probe (audited); still down.
    for failures in (2, 3):
        Peer.objects.update(probe_after=timezone.now() - timedelta(seconds=1))
        [probe] = delivery.due_streams()
        with pytest.raises(delivery.PeerUnavailable):
            delivery.drain_stream(stream_id=probe)
        assert Peer.objects.get().failures == failures
        assert delivery.backoff_s(failures) <= settings.CAD_INTERSTATE_RETRY_BACKOFF_MAX_S * 1.2
    assert PeerRequestLog.objects.filter(direction="outbound").count() == 3

    # Back: the probe goes through, closes the circuit and enqueues every waiting stream at once.
    peer_down["down"] = False
    Peer.objects.update(probe_after=timezone.now() - timedelta(seconds=1))
    [probe] = delivery.due_streams()
    assert delivery.drain_stream(stream_id=probe) == 2
    peer = Peer.objects.get()
    assert (peer.failures, peer.probe_after, peer.unavailable_since) == (0, None, None)
    assert probe == streams[0] and set(enqueued) == set(streams)  # the probe's own rest included
    for stream_id in enqueued:
        delivery.drain_stream(stream_id=stream_id)
    assert delivery.drain_stream(stream_id=streams[0]) == 0  # a duplicate drain finds nothing left

    received = peer_down["received"]
    assert len(received) == 2 * QUEUED == len({key for _, _, key in received})  # everything, once
    for escalation in escalations:
        mine = [sequence for request_id, sequence, _ in received if request_id == escalation.request_id]
        assert mine == [None, 1]  # the request, then its update: in order
    assert not OutboxMessage.objects.filter(state="pending").exists()


@pytest.mark.django_db
def test_replayed_nonces_are_refused_from_the_shared_table_and_pruned_with_the_audit(client, center):
    peer, secret = register_cdmx()
    headers = signed(peer, secret, "GET", "/.well-known/cad-peer")
    assert client.get("/.well-known/cad-peer", **headers).status_code == 200
    assert PeerNonce.objects.filter(key_id=peer.inbound_key_id).count() == 1
    replay = client.get("/.well-known/cad-peer", **headers)
    assert replay.status_code == 409 and replay.json()["code"] == "replayed"
    assert PeerRequestLog.objects.filter(result="replayed").count() == 1

    old = timezone.now() - timedelta(days=settings.CAD_INTERSTATE_AUDIT_RETENTION_DAYS + 1)
    PeerRequestLog.objects.filter(result="ok").update(at=old)
    PeerNonce.objects.update(
        seen_at=timezone.now() - timedelta(seconds=2 * settings.CAD_INTERSTATE_CLOCK_SKEW_S + 2)
    )
    assert prune() == {"audit": 1, "nonces": 1}
    assert list(PeerRequestLog.objects.values_list("result", flat=True)) == ["replayed"]
    assert periodic.REGISTRY["interstate.prune"].task == "interstate.tasks.prune"
    assert settings.CELERY_BEAT_SCHEDULE["interstate.prune"]["task"] == "interstate.tasks.prune"


@pytest.mark.django_db(transaction=True)
def test_two_identical_messages_racing_make_one_incident_and_get_the_same_answer(center, monkeypatch):
    if not settings.IS_POSTGRES:
        pytest.skip("concurrent writers: PostgreSQL")
    peer, secret = register_cdmx()
    source, _user = cdmx_incident(IncidentTypeFactory(code="10104"))
    body = message("requestForService", "urn:uuid:race", source=source)
    key = str(uuid.uuid4())
    apply = services._apply

    def slow_apply(*args):  # the first one holds its transaction open while the second arrives
        time.sleep(0.5)
        return apply(*args)

    monkeypatch.setattr(services, "_apply", slow_apply)
    start, answers = threading.Barrier(2), []

    def post():
        try:
            data = json.dumps(body).encode()
            headers = signed(peer, secret, "POST", "/api/v1/interstate/messages", data)  # its own nonce
            start.wait(10)
            response = Client().post(
                "/api/v1/interstate/messages",
                data=data,
                content_type="application/json",
                HTTP_IDEMPOTENCY_KEY=key,
                **headers,
            )
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 2 and answers[0] == answers[1]
    assert answers[0][0] == 202 and answers[0][1]["responseCode"] == 182
    assert Incident.objects.filter(origin_center="CDMX", origin_folio=source.folio).count() == 1
    assert InboundMessage.objects.filter(peer=peer, idempotency_key=key).count() == 1

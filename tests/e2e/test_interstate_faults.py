"""Faults between two real instances (tests/interstate_harness.py): a peer down during an escalation, a Celery
worker SIGKILLed mid-delivery, a message posted twice, forged/unknown/stale/replayed/unshared/disabled peer
requests, and an invalid EIDO. Each ends with every process running again (the fixture heals the pair)."""

import json
import secrets
import time
import uuid
from pathlib import Path

import pytest

from tests.interstate_harness import escalation_of, open_call, timeline_texts, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

MESSAGES = "/api/v1/interstate/messages"
WELL_KNOWN = "/.well-known/cad-peer"


def escalate(mex, folio: str, kind: str = "request_for_service") -> dict:
    response = mex.session("operador").post(
        f"/api/v1/incidents/{folio}/escalations", json={"peer": "CDMX", "kind": kind, "reason": "prueba"}
    )
    assert response.status_code == 201, response.text
    return response.json()


def linked_folios(cdmx, folio: str) -> list[str]:
    """CDMX's incidents opened from MEX's `folio` (there must never be more than one)."""
    rows = cdmx.sql(
        "SELECT folio FROM incidents_incident WHERE origin_center = 'MEX' AND origin_folio = %s", folio
    )
    return [row[0] for row in rows]


def outbox_states(mex, escalation_id: int) -> list[tuple[str, int, str]]:
    return mex.sql(
        "SELECT kind, seq, state FROM interstate_outboxmessage WHERE escalation_id = %s ORDER BY id",
        escalation_id,
    )


def all_delivered(mex, escalation_id: int) -> bool:
    states = outbox_states(mex, escalation_id)
    return bool(states) and all(state == "delivered" for _kind, _seq, state in states)


def unread_bytes(port: int) -> int:
    """Bytes received on established connections to `port` that the server has not read yet (Linux)."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, local port
                total += int(fields[4].split(":")[1], 16)  # rx_queue
    return total


def audited(cdmx, *, path: str, status: int, code: str) -> bool:
    """CDMX's audit has a refused request on `path` with that status and result code."""
    rows = cdmx.sql(
        "SELECT 1 FROM interstate_peerrequestlog WHERE direction = 'inbound' AND path = %s "
        "AND status_code = %s AND result = %s",
        path,
        status,
        code,
    )
    return bool(rows)


def test_peer_down_during_escalation_gets_everything_once_in_order_when_back(two_centres):
    mex, cdmx = two_centres.mex, two_centres.cdmx
    cdmx.kill("web")  # CDMX goes down (connections refused)
    folio = open_call(mex)
    escalation = escalate(mex, folio)
    notes = [f"nota {i} durante la caída" for i in range(1, 4)]
    for text in notes:
        response = mex.session("despachador").post(f"/api/v1/incidents/{folio}/notes", json={"text": text})
        assert response.status_code == 201, response.text
    # The console shows the escalation still pending, with the delivery error.
    failing = wait_until(
        lambda: (e := escalation_of(mex, folio))["last_error"] and e, timeout=30, what="a delivery error"
    )
    assert failing["state"] == "pending", failing
    assert linked_folios(cdmx, folio) == []

    cdmx.start("web")
    wait_until(lambda: all_delivered(mex, escalation["id"]), timeout=60, what="the outbox drained")
    (cdmx_folio,) = linked_folios(cdmx, folio)
    texts = timeline_texts(cdmx, cdmx_folio)
    positions = [[i for i, t in enumerate(texts) if note in t] for note in notes]
    assert all(len(p) == 1 for p in positions), texts  # once each
    assert [p[0] for p in positions] == sorted(p[0] for p in positions), texts  # in order
    assert escalation_of(mex, folio)["state"] == "sent"
    (out_seq,) = mex.sql("SELECT out_seq FROM interstate_escalation WHERE id = %s", escalation["id"])[0]
    (in_seq,) = cdmx.sql(
        "SELECT e.in_seq FROM interstate_escalation e JOIN incidents_incident i ON i.id = e.incident_id "
        "WHERE i.folio = %s",
        cdmx_folio,
    )[0]
    assert in_seq == out_seq >= len(notes)


def test_worker_killed_mid_delivery_delivers_once(two_centres):
    """The worst moment: CDMX applied the request and answered, but the MEX worker dies before it reads the
    answer. Nothing was acknowledged, so the message is delivered again; CDMX applies it once."""
    mex, cdmx = two_centres.mex, two_centres.cdmx
    cdmx.freeze("web")  # the kernel accepts MEX's connection, nothing answers: the delivery waits
    folio = open_call(mex)
    escalation = escalate(mex, folio)
    wait_until(lambda: unread_bytes(cdmx.port), timeout=30, what="MEX's request waiting in CDMX's socket")
    mex.freeze("worker")  # mid-delivery: request sent, answer not read
    cdmx.thaw("web")
    wait_until(lambda: linked_folios(cdmx, folio), timeout=30, what="CDMX to apply the request")
    mex.kill("worker")  # SIGKILL, pool children included: the answer is lost, nothing acknowledged
    assert not all_delivered(mex, escalation["id"])
    mex.start("worker")
    wait_until(lambda: all_delivered(mex, escalation["id"]), timeout=60, what="redelivery after the kill")
    assert len(linked_folios(cdmx, folio)) == 1  # delivered twice, applied once
    posts = cdmx.sql(
        "SELECT count(*) FROM interstate_peerrequestlog WHERE direction = 'inbound' AND path = %s "
        "AND request_id = %s AND status_code = 202",
        MESSAGES,
        escalation["request_id"],
    )
    assert posts[0][0] >= 2, posts  # the original and the redelivery, answered alike
    assert escalation_of(mex, folio)["state"] == "sent"


@pytest.fixture(scope="module")
def delivered_request(two_centres_session):
    """A request for service MEX delivered to CDMX: (its outbox body, idempotency key, CDMX folio)."""
    pair = two_centres_session
    pair.heal()
    mex, cdmx = pair.mex, pair.cdmx
    folio = open_call(mex)
    escalation = escalate(mex, folio)
    wait_until(lambda: all_delivered(mex, escalation["id"]), timeout=60, what="the request delivered")
    ((body, key),) = mex.sql(
        "SELECT body, idempotency_key FROM interstate_outboxmessage "
        "WHERE escalation_id = %s AND kind = 'requestForService'",
        escalation["id"],
    )
    (cdmx_folio,) = linked_folios(cdmx, folio)
    return body, str(key), folio, cdmx_folio


def test_same_message_posted_twice_is_one_incident(two_centres, delivered_request):
    mex, cdmx = two_centres.mex, two_centres.cdmx
    body, key, folio, cdmx_folio = delivered_request
    raw = json.dumps(body).encode()
    again = two_centres.signed("POST", MESSAGES, sender=mex, receiver=cdmx, body=raw, idempotency_key=key)
    assert again.status_code == 202, again.text
    assert again.json()["incident"] == cdmx_folio  # the original answer
    other_key = two_centres.signed(
        "POST", MESSAGES, sender=mex, receiver=cdmx, body=raw, idempotency_key=str(uuid.uuid4())
    )
    assert other_key.status_code == 409, other_key.text
    assert other_key.json()["code"] == "duplicate_request"
    assert linked_folios(cdmx, folio) == [cdmx_folio]


def test_invalid_eido_is_refused_with_the_schema_reasons_and_nothing_written(two_centres, delivered_request):
    mex, cdmx = two_centres.mex, two_centres.cdmx
    body, _key, _folio, _cdmx_folio = delivered_request
    request_id = f"urn:uuid:{uuid.uuid4()}"
    forged = json.loads(json.dumps(body))
    forged["requestId"] = forged["requestForService"]["requestId"] = request_id
    forged["eido"]["incidentComponent"] = "no es un objeto"
    forged["eido"]["locationComponent"] = [{"locationByValue": 42}]
    counts = cdmx.sql(
        "SELECT (SELECT count(*) FROM incidents_incident), (SELECT count(*) FROM interstate_inboundmessage)"
    )
    key = str(uuid.uuid4())
    response = two_centres.signed(
        "POST", MESSAGES, sender=mex, receiver=cdmx, body=json.dumps(forged).encode(), idempotency_key=key
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == "invalid_message"
    reasons = answer["fields"]["schema"]
    assert reasons and all(isinstance(reason, str) for reason in reasons)
    assert any("incidentComponent" in reason for reason in reasons), reasons
    assert (
        cdmx.sql(
            "SELECT (SELECT count(*) FROM incidents_incident), (SELECT count(*) FROM interstate_inboundmessage)"
        )
        == counts
    )
    assert not cdmx.sql("SELECT 1 FROM interstate_escalation WHERE request_id = %s", request_id)
    assert audited(cdmx, path=MESSAGES, status=400, code="invalid_message")


def test_forged_unknown_stale_replayed_and_unshared_requests_are_refused_and_audited(two_centres):
    mex, cdmx = two_centres.mex, two_centres.cdmx

    def get(path: str, **forge):
        return two_centres.signed("GET", path, sender=mex, receiver=cdmx, **forge)

    cases = {
        "bad_signature": (get(WELL_KNOWN, secret="not-the-secret"), 401),
        "unknown_key": (get(WELL_KNOWN, key_id="mex-nobody-0000"), 401),
        "stale_timestamp": (get(WELL_KNOWN, timestamp=int(time.time()) - 3600), 401),
    }
    nonce = secrets.token_urlsafe(16)
    first = get(WELL_KNOWN, nonce=nonce)
    assert first.status_code == 200, first.text
    assert first.json()["center"] == "CDMX"
    cases["replayed"] = (get(WELL_KNOWN, nonce=nonce), 409)
    not_shared = f"/api/v1/interstate/incidents/urn:uuid:{uuid.uuid4()}"
    cases["not_shared"] = (get(not_shared), 404)
    for code, (response, status) in cases.items():
        assert response.status_code == status, (code, response.text)
        assert response.json()["code"] == code, response.text
        assert response.json()["message"]
    for code, (_response, status) in cases.items():
        path = not_shared if code == "not_shared" else WELL_KNOWN
        assert audited(cdmx, path=path, status=status, code=code), code
    # Supervisors read the same audit through the API.
    refused = cdmx.session("supervisor").get("/api/v1/interstate/audit", params={"result": "bad_signature"})
    assert refused.status_code == 200 and refused.json()["count"] >= 1


def test_disabled_peer_is_cut_off_at_once_and_audited(two_centres):
    """Access is checked against the peer row on every request: disabling it (here directly in CDMX's database,
    as the admin action does) refuses MEX's very next request."""
    mex, cdmx = two_centres.mex, two_centres.cdmx
    cdmx.sql("UPDATE interstate_peer SET enabled = false WHERE code = 'MEX'")
    try:
        refused = two_centres.signed("GET", WELL_KNOWN, sender=mex, receiver=cdmx)
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "peer_disabled"
        assert audited(cdmx, path=WELL_KNOWN, status=403, code="peer_disabled")
    finally:
        cdmx.sql("UPDATE interstate_peer SET enabled = true WHERE code = 'MEX'")
    assert two_centres.signed("GET", WELL_KNOWN, sender=mex, receiver=cdmx).status_code == 200

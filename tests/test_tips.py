"""089 follow-up: folio + code, call-back look-ups, classification, routing, permissions, audit, and the
anonymity acceptance test (the caller's number is nowhere after a batch of tips)."""

import json
import logging
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from accounts.models import Role
from cad.logging import JsonFormatter
from cad.models import Event
from tips.models import Authority, Tip, TipAccess, TipStatus

pytestmark = pytest.mark.django_db

CALLER_NUMBER = "7225550199"


@pytest.fixture
def operator_089(make_user):
    return make_user(Role.TIPS_089, "op089")


@pytest.fixture
def fiscalia(center):
    return Authority.objects.create(
        center=center, code="FGJEM", name="Fiscalía General de Justicia", due_days=10
    )


@pytest.fixture
def client_089(api_client_for, operator_089):
    return api_client_for(operator_089)


def _tip(client, **extra):
    body = {"narrative": "Venta de droga en la esquina de la escuela", "address": "Av. Juárez 10", **extra}
    response = client.post("/api/v1/tips/", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_tip_gets_random_folio_and_code_and_callback_reads_status(client_089, accident_type, fiscalia):
    first, second = _tip(client_089), _tip(client_089)
    assert first["folio"] != second["folio"]
    assert first["folio"].startswith("089-") and len(first["code"]) == 6
    tip = Tip.objects.get(folio=first["folio"])
    assert first["code"] not in tip.code_hash and tip.call.line == "089"
    assert tip.call.caller_name is None and tip.call.callback_number is None

    routed = client_089.post(
        f"/api/v1/tips/{first['folio']}/route", {"authority": fiscalia.id}, format="json"
    )
    assert routed.status_code == 200 and routed.json()["status"] == TipStatus.ROUTED
    due = timezone.datetime.fromisoformat(routed.json()["due_at"])
    assert timedelta(days=9) < due - timezone.now() <= timedelta(days=10)

    status = client_089.post("/api/v1/tips/callback", {"folio": first["folio"], "code": first["code"]})
    assert status.status_code == 200
    assert status.json()["status"] == "routed" and status.json()["authority"] == fiscalia.name
    assert "narrative" not in status.json()

    # The other tip's code does not open this one; a wrong folio answers the same way.
    wrong = client_089.post("/api/v1/tips/callback", {"folio": first["folio"], "code": second["code"]})
    missing = client_089.post("/api/v1/tips/callback", {"folio": "089-00000-00000", "code": first["code"]})
    assert wrong.status_code == missing.status_code == 404
    assert wrong.json()["message"] == missing.json()["message"]


def test_callback_lookups_lock_after_repeated_failures(client_089, settings):
    settings.CAD = {**settings.CAD, "TIPS_LOOKUP_MAX_FAILURES": 3}
    tip = _tip(client_089)
    wrong = "000000" if tip["code"] != "000000" else "111111"
    for _ in range(3):
        assert (
            client_089.post("/api/v1/tips/callback", {"folio": tip["folio"], "code": wrong}).status_code
            == 404
        )
    locked = client_089.post("/api/v1/tips/callback", {"folio": tip["folio"], "code": tip["code"]})
    assert locked.status_code == 429 and locked.json()["code"] == "too_many_attempts"
    assert TipAccess.objects.filter(folio=tip["folio"], action="lookup_failed").count() == 4


def test_classify_route_and_status_transitions(client_089, accident_type, fiscalia, center):
    folio = _tip(client_089)["folio"]
    classified = client_089.post(f"/api/v1/tips/{folio}/classify", {"incident_type_code": "10104"})
    assert classified.status_code == 200 and classified.json()["type_code"] == "10104"
    # Received → resolved skips routing: refused.
    skip = client_089.post(f"/api/v1/tips/{folio}/status", {"status": "resolved"})
    assert skip.status_code == 409
    inactive = Authority.objects.create(center=center, code="OLD", name="Extinta", active=False)
    assert client_089.post(f"/api/v1/tips/{folio}/route", {"authority": inactive.id}).status_code == 400
    past = (timezone.now() - timedelta(days=1)).isoformat()
    assert (
        client_089.post(f"/api/v1/tips/{folio}/route", {"authority": fiscalia.id, "due_at": past}).status_code
        == 400
    )
    assert client_089.post(f"/api/v1/tips/{folio}/route", {"authority": fiscalia.id}).status_code == 200
    assert client_089.post(f"/api/v1/tips/{folio}/status", {"status": "in_progress"}).status_code == 200
    done = client_089.post(f"/api/v1/tips/{folio}/status", {"status": "resolved", "note": "Detenidos 2"})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert client_089.post(f"/api/v1/tips/{folio}/route", {"authority": fiscalia.id}).status_code == 409
    detail = client_089.get(f"/api/v1/tips/{folio}/").json()
    assert [u["status"] for u in detail["updates"]] == [
        "received",
        "received",
        "routed",
        "in_progress",
        "resolved",
    ]
    assert client_089.get("/api/v1/tips/not-a-folio/").status_code == 404
    # Events carry the folio and state only, never the contents.
    payloads = [e.payload for e in Event.objects.filter(type__startswith="tip.")]
    assert payloads and all(set(p) == {"folio", "status", "authority", "due_at"} for p in payloads)


def test_overdue_queue(client_089, fiscalia):
    folio = _tip(client_089)["folio"]
    client_089.post(f"/api/v1/tips/{folio}/route", {"authority": fiscalia.id})
    Tip.objects.filter(folio=folio).update(due_at=timezone.now() - timedelta(hours=1))
    _tip(client_089)
    overdue = client_089.get("/api/v1/tips/queue?overdue=true").json()
    assert [t["folio"] for t in overdue] == [folio]
    assert len(client_089.get("/api/v1/tips/queue").json()) == 2


@pytest.mark.parametrize(
    "role", [Role.CALL_TAKER, Role.DISPATCHER, Role.ADMINISTRATOR, Role.DEVICE, Role.PEER]
)
def test_tip_contents_only_for_089_role_and_supervisors(role, make_user, api_client_for, client_089):
    folio = _tip(client_089)["folio"]
    other = api_client_for(make_user(role, f"u-{role}"))
    assert other.get(f"/api/v1/tips/{folio}/").status_code == 403
    assert other.get("/api/v1/tips/queue").status_code == 403
    assert other.post("/api/v1/tips/", {"narrative": "x"}).status_code == 403
    # The access log (no contents) is for supervision: administrators audit it too.
    assert other.get("/api/v1/tips/audit").status_code == (200 if role == Role.ADMINISTRATOR else 403)


def test_every_read_is_audited_and_supervisors_see_the_log(
    client_089, supervisor, api_client_for, operator_089
):
    folio = _tip(client_089)["folio"]
    boss = api_client_for(supervisor)
    assert boss.get(f"/api/v1/tips/{folio}/").status_code == 200
    client_089.get(f"/api/v1/tips/{folio}/")
    client_089.get("/api/v1/tips/queue")
    log = boss.get(f"/api/v1/tips/audit?folio={folio}").json()
    assert [(e["action"], e["user"]) for e in log] == [
        ("read", operator_089.username),
        ("read", supervisor.username),
        ("create", operator_089.username),
    ]
    assert TipAccess.objects.filter(action="list", user=operator_089).count() == 1


def test_tip_input_is_strict_and_never_echoes_values(client_089):
    for body in (
        {"narrative": "x", "callback_number": CALLER_NUMBER},
        {"narrative": "x", "caller_name": "Juana"},
        {"narrative": "x", CALLER_NUMBER: "ani"},
        {"narrative": "x", "lat": 19.3},
        {"narrative": ""},
        ["not", "an", "object"],
    ):
        response = client_089.post("/api/v1/tips/", body, format="json")
        assert response.status_code == 400, body
        assert CALLER_NUMBER not in response.content.decode() and "Juana" not in response.content.decode()
    assert Tip.objects.count() == 0


def test_anonymity_caller_number_is_nowhere_after_a_batch_of_tips(client_089, fiscalia, caplog, capsys):
    """The acceptance test of issue 11: identity offered in every way a client could is refused, and
    afterwards no table, no event payload and no log line holds the caller's number."""
    caplog.set_level(logging.DEBUG)
    ani = {"HTTP_X_CALLER_ID": CALLER_NUMBER, "HTTP_X_ANI": CALLER_NUMBER}
    for n in range(8):
        refused = client_089.post(
            "/api/v1/tips/",
            {"narrative": f"denuncia {n}", "callback_number": CALLER_NUMBER},
            format="json",
            **ani,
        )
        assert refused.status_code == 400
        intake = client_089.post(
            "/api/v1/calls/",
            {"line": "089", "disposition": "informational", "callback_number": CALLER_NUMBER},
            format="json",
        )
        assert intake.status_code in (400, 403)
        tip = _tip(client_089, **({"lat": 19.3, "lon": -99.6} if n % 2 else {}))
        client_089.post(
            f"/api/v1/tips/{tip['folio']}/route", {"authority": fiscalia.id}, format="json", **ani
        )
        client_089.post("/api/v1/tips/callback", {"folio": tip["folio"], "code": tip["code"]}, **ani)
        client_089.post("/api/v1/tips/callback", {"folio": tip["folio"], "code": CALLER_NUMBER[:6]}, **ani)
        client_089.get(f"/api/v1/tips/{tip['folio']}/?caller={CALLER_NUMBER}", **ani)
    assert Tip.objects.count() == 8

    found = []
    for model in apps.get_models(include_auto_created=True):
        for row in model.objects.all().values_list():
            if CALLER_NUMBER in json.dumps(row, default=str):
                found.append((model._meta.label, row))
    assert found == []
    assert all(CALLER_NUMBER not in json.dumps(e.payload) for e in Event.objects.all())
    formatter = JsonFormatter()
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    captured = capsys.readouterr()
    assert CALLER_NUMBER not in logged + captured.out + captured.err

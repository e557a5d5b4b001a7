"""A REAL Celery worker (Redis broker, the test PostgreSQL database) delivers an escalation over REAL HTTP to a
second instance (CDMX: Daphne via `python -m cad.serve` on its own database, embedded layout: no broker, the
local task runner), whose dispatcher accepts through its API; CDMX's answer comes back over HTTP to this
instance's own Daphne. Both layouts of cad.tasks.enqueue, one scenario.

Needs REDIS_URL and PostgreSQL: skipped otherwise, except under CI=true where that is a failure. The full
two-instance end-to-end, fault and browser tests live with the interstate harness (tests/e2e)."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection

from incidents import services as incident_services
from interstate import services
from interstate.models import Escalation, PeerRequestLog
from tests.factories import open_incident
from tests.interstate_support import CDMX_AREA, INSIDE_CDMX
from tests.processes import start_logged

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.worker, pytest.mark.timeout(180)]

SEED_PEER = """
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from accounts.tokens import issue_token
from accounts.models import Role, User
from cad.models import Center, EventStream
from incidents.models import IncidentType
from interstate.services import peer_register
args = json.loads(sys.argv[1])
center = Center.objects.create(code="CDMX", name="C5 Ciudad de México", cve_ent="09")
for name in EventStream.Name.values:
    EventStream.objects.get_or_create(center=center, name=name)
IncidentType.objects.create(code="10104", name="Accidente de vehículo automotor con lesionados", tipo_code="1",
    tipo_name="Médico", subtipo_code="101", subtipo_name="Accidentes", priority="ALTA")
peer_register(code="MEX", name="C5 Estado de México", base_url=args["mex_url"], inbound_key_id=args["mex_key"],
    inbound_secret=args["mex_secret"], outbound_key_id=args["cdmx_key"], outbound_secret=args["cdmx_secret"])
user = User.objects.create(username="cdmx-despacho", role=Role.DISPATCHER, center=center)
print(json.dumps({"token": issue_token(user)}))
"""


def _require_services():
    missing = [
        name
        for name, ok in (("REDIS_URL", settings.REDIS_URL), ("PostgreSQL", settings.IS_POSTGRES))
        if not ok
    ]
    if missing:
        message = f"a real Celery worker and a second instance need {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _db_url(name: str) -> str:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{name}"


def _admin_sql(statement: str) -> None:
    db = connection.settings_dict
    with psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(statement)


def _wait(predicate, *, what: str, timeout: float = 60.0, logs: tuple[Path, ...] = ()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    tails = "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2500:]}" for log in logs if log.exists()
    )
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/login/", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.django_db(transaction=True)  # the worker and both servers must see committed rows
def test_worker_delivers_to_a_real_peer_and_its_acceptance_comes_back(
    center, make_user, accident_type, tmp_path
):
    _require_services()
    mex_port, cdmx_port = _free_port(), _free_port()
    mex_url, cdmx_url = f"http://127.0.0.1:{mex_port}", f"http://127.0.0.1:{cdmx_port}"
    keys = {
        "mex_url": mex_url,
        "mex_key": "mex-key",
        "mex_secret": secrets.token_urlsafe(24),  # MEX signs with it, CDMX verifies
        "cdmx_key": "cdmx-key",
        "cdmx_secret": secrets.token_urlsafe(24),  # CDMX signs with it, MEX verifies
    }
    services.peer_register(
        code="CDMX",
        name="C5 Ciudad de México",
        base_url=cdmx_url,
        service_area=CDMX_AREA,
        outbound_key_id=keys["mex_key"],
        outbound_secret=keys["mex_secret"],
        inbound_key_id=keys["cdmx_key"],
        inbound_secret=keys["cdmx_secret"],
    )
    peer_db = f"{connection.settings_dict['NAME']}_peer"
    _admin_sql(f'DROP DATABASE IF EXISTS "{peer_db}" WITH (FORCE)')
    _admin_sql(f'CREATE DATABASE "{peer_db}"')
    base_env = {**os.environ, "LOG_LEVEL": "INFO", "CAD_INTERSTATE_HTTP_TIMEOUT_S": "10"}
    cdmx_env = {
        **base_env,
        "DATABASE_URL": _db_url(peer_db),
        "CAD_CENTER_CODE": "CDMX",
        "CAD_PUBLIC_URL": cdmx_url,
    }
    cdmx_env.pop("REDIS_URL", None)  # embedded layout: the local task runner delivers CDMX's outbox
    mex_env = {
        **base_env,
        "DATABASE_URL": _db_url(connection.settings_dict["NAME"]),
        "REDIS_URL": settings.REDIS_URL,
        "CAD_CENTER_CODE": "MEX",
    }
    logs = {name: tmp_path / f"{name}.log" for name in ("seed", "cdmx-web", "mex-web", "mex-worker")}
    with ExitStack() as stack:
        stack.callback(_admin_sql, f'DROP DATABASE IF EXISTS "{peer_db}" WITH (FORCE)')
        worker = start_logged(
            stack,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "cad",
                "worker",
                "-P",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            mex_env,
            logs["mex-worker"],
        )
        start_logged(
            stack,
            [sys.executable, "-m", "cad.serve", "--port", str(mex_port), "--procs", "1"],
            mex_env,
            logs["mex-web"],
        )
        # Daphne does not touch the database before a request: CDMX's server starts while its database is made.
        start_logged(
            stack,
            [sys.executable, "-m", "cad.serve", "--port", str(cdmx_port), "--procs", "1"],
            cdmx_env,
            logs["cdmx-web"],
        )
        seed = subprocess.run(  # noqa: S603
            [sys.executable, "-c", SEED_PEER, json.dumps(keys)],
            cwd=ROOT,
            env=cdmx_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert seed.returncode == 0, seed.stderr[-3000:]
        token = json.loads(seed.stdout.strip().splitlines()[-1])["token"]
        every_log = tuple(logs.values())
        _wait(lambda: _answers(cdmx_url) and _answers(mex_url), what="both web servers", logs=every_log)
        _wait(
            lambda: b" ready." in logs["mex-worker"].read_bytes() or worker.poll() is not None,
            what="worker",
            logs=every_log,
        )

        taker = make_user("call_taker")
        incident = open_incident(
            center=center, by=taker, incident_type=accident_type, lat=INSIDE_CDMX[0], lon=INSIDE_CDMX[1]
        )
        escalation = services.escalate_incident(
            folio=incident.folio,
            center_id=center.id,
            peer_code="CDMX",
            kind="request_for_service",
            reason="en CDMX",
            by=taker,
        )

        def refreshed():
            escalation.refresh_from_db()
            return escalation

        _wait(lambda: refreshed().state == "sent", what="delivery of the request for service", logs=every_log)
        remote_folio = escalation.remote_folio
        assert remote_folio.startswith("CDMX-")
        incident_services.add_note(
            folio=incident.folio, center_id=center.id, text="La víctima es menor de edad", by=taker
        )

        cdmx = httpx.Client(base_url=cdmx_url, headers={"Authorization": f"Token {token}"}, timeout=15)
        view = cdmx.get(f"/api/v1/incidents/{remote_folio}/interstate").json()
        assert (view["origin_center"], view["origin_folio"]) == ("MEX", incident.folio)
        [inbound] = view["escalations"]
        assert (inbound["direction"], inbound["state"], inbound["request_id"]) == (
            "inbound",
            "pending",
            escalation.request_id,
        )

        def cdmx_notes():
            timeline = cdmx.get(f"/api/v1/incidents/{remote_folio}/").json()["timeline"]
            return [entry["text"] for entry in timeline if entry["kind"] == "note"]

        _wait(
            lambda: "La víctima es menor de edad" in cdmx_notes(),
            what="the update with MEX's note at CDMX",
            logs=every_log,
        )
        accepted = cdmx.post(f"/api/v1/escalations/{inbound['id']}/accept")
        assert accepted.status_code == 200, accepted.text
        _wait(lambda: refreshed().state == "accepted", what="CDMX's acceptance back at MEX", logs=every_log)

    assert Escalation.objects.get(pk=escalation.pk).remote_folio == remote_folio
    sent = PeerRequestLog.objects.filter(direction="outbound", peer_code="CDMX", status_code__lt=300)
    assert set(sent.values_list("action", flat=True)) == {"requestForService", "update"}
    received = PeerRequestLog.objects.get(direction="inbound", action="response")
    assert (received.status_code, received.result, received.incident_folio) == (200, "ok", incident.folio)
    assert "succeeded" in logs["mex-worker"].read_text()

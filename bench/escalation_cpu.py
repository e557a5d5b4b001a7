"""CPU of the three steps of an interstate escalation, each in one process (no HTTP server, no broker): where
bench/escalation.py measures the whole pipeline under load, this one measures each step's own cost, quietly
enough to compare two versions of the code (the multi-process run moves ±10 % with the host's other tenants).

    DATABASE_URL=postgres://… python bench/escalation_cpu.py [--count 300] [--runs 3]

Two PostgreSQL databases (`<DATABASE_URL name>_bench_cpu_mex` / `_cdmx`, recreated, dropped at the end), each
migrated and seeded as `python3 run.py interstate` seeds them, MEX registered in CDMX and CDMX in MEX. Per run,
in a fresh process each (time.process_time, after a warm-up of 20):

* `escalate_cpu_ms`: interstate.services.escalate_incident on an open MEX incident located in CDMX (the lock, the
  EIDO snapshot and its validation, the escalation, its outbox message and events), per escalation;
* `drain_cpu_ms`: interstate.delivery.drain_stream of that escalation's stream, the peer's answer canned at the
  HTTP client (the lease, the signed request and its audit, the delivered mark and its event);
* `inbound_cpu_ms`: the signed request for service those escalations sent, POSTed to CDMX through Django's test
  client (signature and nonce, validation, the linked incident, its events, the audit);
* `*_statements`: SQL statements per step; `raw_statement_cpu_ms`: one round trip on a raw psycopg cursor, the
  floor each statement's ORM or SQL cost is to be read against.

Medians of `--runs`. Prints `key=value` lines last and appends a row to docs/benchmarks.md (bench/common.py).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import run  # noqa: E402
from bench.common import progress, report  # noqa: E402
from tests.interstate_harness import _admin_url, _recreate_database  # noqa: E402

SECRET = "bench-cpu-secret-" + "s" * 32  # an HMAC secret for this run's two databases only
SETUP_MEX = f"""
from geo.models import Jurisdiction
from interstate import services
from interstate.models import Peer
area = Jurisdiction.objects.get(kind="state", cve_ent="09").geometry
services.peer_register(code="CDMX", name="C5 CDMX", base_url="http://cdmx.invalid", service_area=area,
                       outbound_key_id="bench-mex", outbound_secret={SECRET!r})
"""
SETUP_CDMX = f"""
from interstate import services
services.peer_register(code="MEX", name="C5 MEX", base_url="http://mex.invalid", inbound_key_id="bench-mex",
                       inbound_secret={SECRET!r})
"""
SENDER = """
import cProfile, json, os, sys, time
import httpx
from django.db import connection
from django.test.utils import CaptureQueriesContext
import cad.tasks
from accounts.models import User
from incidents import services as incident_services
from incidents.models import CallDisposition, IncidentType, Line
from interstate import delivery, services
from interstate.models import OutboxMessage

count, out = int(sys.argv[1]), sys.argv[2]
cad.tasks.enqueue = lambda *args, **kwargs: None  # no broker: the drains are called here
by = User.objects.get(username="operador")
kind = IncidentType.objects.get(code="10104")
folios = [
    incident_services.take_call(
        center=by.center, by=by, line=Line.EMERGENCY, disposition=CallDisposition.NEW_INCIDENT,
        incident_type=kind, lat=19.4326, lon=-99.1332, address="Plaza de la Constitución, CDMX",
        confirm_outside_area=True,
    ).incident.folio
    for _ in range(count + 21)
]


class CannedPeer:  # the edge of the world: CDMX's answer to a request for service
    def request(self, method, url, content=None, headers=None):
        answer = {"requestId": "x", "responseCode": 182, "responseText": "ok", "incident": "CDMX-1"}
        return httpx.Response(202, json=answer, request=httpx.Request(method, url))


delivery._http_client = CannedPeer()


def escalate(folio):
    return services.escalate_incident(
        folio=folio, center_id=by.center_id, peer_code="CDMX", kind="request_for_service", reason="bench", by=by
    )


for folio in folios[:20]:
    delivery.drain_stream(stream_id=escalate(folio).stream_id)
with CaptureQueriesContext(connection) as escalating:
    one = escalate(folios[20])
with CaptureQueriesContext(connection) as draining:
    delivery.drain_stream(stream_id=one.stream_id)
profiles = os.environ.get("BENCH_PROFILE_DIR")
profiler = cProfile.Profile(time.process_time) if profiles else None
started = time.process_time()
if profiler: profiler.enable()
escalations = [escalate(folio) for folio in folios[21:]]
if profiler: profiler.disable(); profiler.dump_stats(f"{profiles}/escalate.prof"); profiler = cProfile.Profile(time.process_time); profiler.enable()
escalated = time.process_time()
for escalation in escalations:
    delivery.drain_stream(stream_id=escalation.stream_id)
drained = time.process_time()
if profiler: profiler.disable(); profiler.dump_stats(f"{profiles}/drain.prof")
body = OutboxMessage.objects.filter(escalation=escalations[-1]).order_by("id").first().body
with open(out, "w") as fh:
    json.dump(body, fh)
print("RESULT " + json.dumps({
    "escalate_cpu_ms": (escalated - started) / count * 1000,
    "drain_cpu_ms": (drained - escalated) / count * 1000,
    "escalate_statements": len(escalating.captured_queries),
    "drain_statements": len(draining.captured_queries),
}))
"""
RECEIVER = """
import cProfile, json, os, sys, time, uuid
from django.db import connection
from django.test import Client
from tests.interstate_harness import peer_headers

count, template, secret = int(sys.argv[1]), open(sys.argv[2]).read(), sys.argv[3]
client = Client()
PATH = "/api/v1/interstate/messages"


def post():
    body = json.loads(template)
    body["requestId"] = body["requestForService"]["requestId"] = f"urn:uuid:{uuid.uuid4()}"
    raw = json.dumps(body).encode()
    headers = peer_headers("POST", PATH, raw, key_id="bench-mex", secret=secret, idempotency_key=str(uuid.uuid4()))
    headers.pop("Content-Type")
    response = client.post(PATH, raw, content_type="application/json", headers=headers)
    assert response.status_code == 202, response.content[:300]


for _ in range(20):
    post()
statements = []  # (the test client's request_started signal resets a CaptureQueriesContext's log)
with connection.execute_wrapper(lambda execute, sql, *args: statements.append(sql) or execute(sql, *args)):
    post()
profiles = os.environ.get("BENCH_PROFILE_DIR")
profiler = cProfile.Profile(time.process_time) if profiles else None
started = time.process_time()
if profiler: profiler.enable()
for _ in range(count):
    post()
if profiler: profiler.disable(); profiler.dump_stats(f"{profiles}/inbound.prof")
received = time.process_time()
cursor = connection.connection.cursor()
raw_started = time.process_time()
for _ in range(2000):
    cursor.execute("SELECT id FROM interstate_peer WHERE inbound_key_id = %s", ["bench-mex"]).fetchone()
raw_done = time.process_time()
print("RESULT " + json.dumps({
    "inbound_cpu_ms": (received - started) / count * 1000,
    "inbound_statements": len(statements),
    "raw_statement_cpu_ms": (raw_done - raw_started) / 2000 * 1000,
}))
"""


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def shell(env: dict, code: str, *argv: str) -> dict:
    script = f"import sys; sys.argv = ['bench', *{list(argv)!r}]; sys.path.insert(0, {str(ROOT)!r})\n{code}"
    output = manage(env, "shell", "-c", script)
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def drop_database(url: str) -> None:
    import psycopg

    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=300, help="escalations measured per run (300)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (3)")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="also write cProfile stats of each step of the last run (escalate/drain/inbound.prof) to DIR "
        "(the profiler slows the steps: read their times from a run without it)",
    )
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith("postgres"):
        raise SystemExit(
            "Set DATABASE_URL to a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/cad)."
        )
    base = {**run.served_env(), "DATABASE_URL": database_url, "REDIS_URL": "", "DJANGO_SECRET_KEY": SECRET}
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        base["BENCH_PROFILE_DIR"] = str(Path(args.profile).resolve())
    centres = {
        code: run.instance_env(base, code=code, public_url=f"http://{code.lower()}.invalid")
        for code in ("MEX", "CDMX")
    }
    for code, env in centres.items():
        env["DATABASE_URL"] = run.instance_database_url(database_url, f"bench_cpu_{code.lower()}")
    results: dict[str, list[float]] = {}
    try:
        for code, env in centres.items():
            progress(f"{code}: database, migrations, demo seed")
            _recreate_database(env["DATABASE_URL"])
            manage(env, "migrate", "--noinput")
            manage(env, "seed_demo", "--center", code, "--units", "5")
            manage(env, "shell", "-c", SETUP_MEX if code == "MEX" else SETUP_CDMX)
        body = Path(run.ROOT / "var" / "bench-cpu-body.json")
        body.parent.mkdir(exist_ok=True)
        for index in range(args.runs):
            progress(f"run {index + 1}/{args.runs}: {args.count} escalations, drains and inbound requests")
            sent = shell(centres["MEX"], SENDER, str(args.count), str(body))
            received = shell(centres["CDMX"], RECEIVER, str(args.count), str(body), SECRET)
            for key, value in {**sent, **received}.items():
                results.setdefault(key, []).append(value)
    finally:
        for env in centres.values():
            drop_database(env["DATABASE_URL"])
    medians = {key: statistics.median(values) for key, values in results.items()}
    steps = ("escalate_cpu_ms", "drain_cpu_ms", "inbound_cpu_ms")
    medians["total_cpu_ms"] = sum(medians[key] for key in steps)
    order = [*steps, "total_cpu_ms", "escalate_statements", "drain_statements", "inbound_statements"]
    report(
        "escalation_cpu",
        {"count": args.count, "runs": args.runs},
        {key: medians[key] for key in [*order, "raw_statement_cpu_ms"]},
    )


if __name__ == "__main__":
    main()

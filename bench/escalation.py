"""Interstate escalation benchmark: two real centres on the production path, MEX escalating to CDMX.

    DATABASE_URL=postgres://… REDIS_URL=redis://… python bench/escalation.py [--rate 50] [--seconds 20]
        [--kill-worker] [--outage S] [--web-procs 1] [--concurrency 4]

Starts MEX and CDMX exactly as the end-to-end tests do (tests/interstate_harness.py, the layout of
`python3 run.py interstate`): a PostgreSQL database each (`<DATABASE_URL name>_bench_esc_mex/_cdmx`, dropped
at the end), one Redis namespace each, Daphne (`cad.serve --procs N`), a Celery worker (prefork,
`--concurrency`, by default run.py's) and Celery beat per centre, production settings (no shortened timeouts), registered as each other's peers.
Then, open-loop at `--rate` per second for `--seconds`, a MEX call-taker escalates prepared incidents to CDMX
through the REST API (request for service):

* `escalation_p50_ms` / `escalation_p99_ms`: commit in MEX (the time of the escalation's event row, written in
  the escalating transaction) → the linked incident's `incident.created` received on a CDMX console websocket
  (CDMX has committed it, so its API shows it). Same host, same clock.
* `escalations_per_s`: escalations visible in CDMX per second over the run.
* Where the time goes: `to_peer_incident_p50/p99_ms` (MEX commit → CDMX opens the linked incident: enqueue,
  worker, signed POST, the receiver up to its insert) and `peer_incident_to_console_p50/p99_ms` (→ on the CDMX
  console: the receiver's commit, broadcast and fan-out).
* In the same run, the baseline: the same number of requests for service signed and POSTed straight to CDMX at
  the same rate, no outbox, no worker (`direct_p99_ms`: request → 202, CDMX committed), and
  `escalation_vs_direct_p99` = escalation_p99 / direct_p99.
* And the physical limit, the raw stack without the product at the same rate (bench/raw_stack.py: commit →
  Celery on threads → a bare Django view under Daphne commits the peer's row): `raw_p50_ms`, `raw_p99_ms`,
  `raw_per_s` and `escalation_vs_raw_p99`. A slow host moves both; `--no-raw` skips it.

`--kill-worker`: SIGKILLs MEX's Celery worker (with its pool) halfway through and starts it again (as a
supervisor would), then waits for everything: `escalations_lost` (committed in MEX, never in CDMX) and
`escalations_duplicated` (CDMX incidents beyond one per escalation).
`--outage S`: stops CDMX's web server a third of the way through for S seconds. Each escalation is followed by
two notes (two `update` messages, sequence 1 and 2): `outage_drain_s` (CDMX back → MEX's outbox empty) and
`updates_out_of_order` (escalations whose notes are missing, doubled or out of order in CDMX).

Floors: escalation p99 < 1000 ms at 50 escalations/s; 0 lost, 0 duplicated, 0 out of order. Prints
`key=value` lines last and appends a row to docs/benchmarks.md (bench/common.py).
"""

import argparse
import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import run  # noqa: E402
from bench import raw_stack  # noqa: E402
from bench.common import percentile, production_urls, progress, report  # noqa: E402
from tests.interstate_harness import TwoCentres, peer_headers, wait_until  # noqa: E402

MESSAGES = "/api/v1/interstate/messages"
DRAIN_TIMEOUT_S = 180  # after the run: long enough for a redelivery after the broker visibility timeout
FLOOR_RATE = 50  # escalations per second at which the p99 floor (< 1000 ms) is set (issue 8)
PREPARE = """
import json, sys
from accounts.models import User
from incidents import services
from incidents.models import CallDisposition, IncidentType, Line
by = User.objects.get(username="operador")
kind = IncidentType.objects.get(code="10104")
folios = [
    services.take_call(
        center=by.center, by=by, line=Line.EMERGENCY, disposition=CallDisposition.NEW_INCIDENT,
        incident_type=kind, lat=19.4326, lon=-99.1332, address="Plaza de la Constitución, CDMX",
        confirm_outside_area=True,
    ).incident.folio
    for _ in range(int(sys.stdin.read()))
]
print(json.dumps(folios))
"""


def prepare_incidents(pair: TwoCentres, count: int) -> list[str]:
    """`count` open incidents in MEX located in CDMX (made in one process: not part of the measurement)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", PREPARE],
        cwd=ROOT,
        env=pair.mex.env,
        input=str(count),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


async def listen(pair: TwoCentres, seen: dict, ready: asyncio.Event, stop: asyncio.Event) -> None:
    """CDMX's console: the receipt time of each linked incident, by MEX folio (the first receipt kept). Like
    the real console it resubscribes after a reconnect with the last seq it had, so what CDMX committed while
    the socket was down is replayed, not missed."""
    import websockets

    cdmx = pair.cdmx
    client = cdmx.session("despachador")
    cookie = f"{cdmx.cookie}={client.cookies[cdmx.cookie]}"
    url = f"ws://127.0.0.1:{cdmx.port}/ws/console/"
    last = None
    while not stop.is_set():  # reconnect across the outage of CDMX's web server
        try:
            async with websockets.connect(
                url, additional_headers={"Cookie": cookie}, origin=cdmx.base, max_size=2**24, open_timeout=10
            ) as ws:
                await ws.send(json.dumps({"type": "subscribe", "streams": {"console": last}}))
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    now = time.time()
                    message = json.loads(raw)
                    if message.get("stream") == "console" and isinstance(message.get("seq"), int):
                        last = max(last or 0, message["seq"])
                    if message.get("type") == "hello":
                        ready.set()
                    elif message.get("type") == "incident.created":
                        origin = message["payload"].get("origin_folio")
                        if origin:
                            seen.setdefault(origin, now)
        except (OSError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(0.5)


async def escalate_all(pair: TwoCentres, folios: list[str], rate: float, notes: bool, events: dict) -> list:
    """POST an escalation for each folio at `rate` per second (open loop); with `notes`, two notes after it."""
    import httpx

    mex = pair.mex
    session = mex.session("operador")
    failures = []
    async with httpx.AsyncClient(
        base_url=mex.base, cookies=session.cookies, headers=dict(session.headers), timeout=60
    ) as client:

        async def one(folio: str) -> None:
            response = await client.post(
                f"/api/v1/incidents/{folio}/escalations",
                json={"peer": "CDMX", "kind": "request_for_service", "reason": "bench"},
            )
            if response.status_code != 201:
                failures.append((folio, response.status_code, response.text[:200]))
                return
            if notes:
                for n in (1, 2):
                    await client.post(f"/api/v1/incidents/{folio}/notes", json={"text": f"bench nota {n}"})

        started = time.monotonic()
        tasks = []
        for i, folio in enumerate(folios):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            if i in events:
                events[i]()
            tasks.append(asyncio.create_task(one(folio)))
        await asyncio.gather(*tasks)
    return failures


async def direct_posts(pair: TwoCentres, template: dict, folio: str, count: int, rate: float) -> list[float]:
    """The baseline: `count` requests for service signed and POSTed straight to CDMX, no outbox (ms each)."""
    import httpx

    credentials = pair.credentials[("CDMX", "MEX")]
    template_text = json.dumps(template)
    latencies: list[float] = []

    async with httpx.AsyncClient(base_url=pair.cdmx.base, timeout=60) as client:

        async def one(i: int) -> None:
            body = json.loads(template_text.replace(folio, f"{folio[:-6]}9{i:05d}"))
            request_id = f"urn:uuid:{uuid.uuid4()}"
            body["requestId"] = body["requestForService"]["requestId"] = request_id
            raw = json.dumps(body).encode()
            headers = peer_headers("POST", MESSAGES, raw, idempotency_key=str(uuid.uuid4()), **credentials)
            sent = time.perf_counter()
            response = await client.post(MESSAGES, content=raw, headers=headers)
            if response.status_code == 202:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                progress(f"direct POST {i}: {response.status_code} {response.text[:200]}")

        started = time.monotonic()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies


def undelivered(pair: TwoCentres) -> int:
    return pair.mex.sql("SELECT count(*) FROM interstate_outboxmessage WHERE state <> 'delivered'")[0][0]


def out_of_order(pair: TwoCentres) -> int:
    """Escalations whose two bench notes are not in CDMX exactly once each, in order."""
    rows = pair.cdmx.sql(
        "SELECT i.origin_folio, t.text FROM incidents_timelineentry t JOIN incidents_incident i "
        "ON i.id = t.incident_id WHERE i.origin_center = 'MEX' AND t.text LIKE %s ORDER BY t.id",
        "%bench nota%",
    )
    notes: dict[str, list[int]] = {}
    for origin, text in rows:
        notes.setdefault(origin, []).append(1 if "bench nota 1" in text else 2)
    linked = {
        row[0]
        for row in pair.cdmx.sql("SELECT origin_folio FROM incidents_incident WHERE origin_center = 'MEX'")
    }
    return sum(1 for origin in linked if notes.get(origin) != [1, 2])


def main() -> None:
    # SIGTERM (e.g. `timeout`) unwinds through the teardown below instead of orphaning both centres.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="escalations per second (50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run (20)")
    parser.add_argument("--kill-worker", action="store_true", help="SIGKILL MEX's worker halfway")
    parser.add_argument("--outage", type=float, default=0.0, metavar="S", help="stop CDMX for S seconds")
    parser.add_argument("--web-procs", type=int, default=1, help="Daphne processes per centre (1)")
    parser.add_argument(
        "--concurrency", type=int, default=run.WORKER_CONCURRENCY, help="Celery pool per centre (as run.py)"
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw stack's run (bench/raw_stack.py)")
    args = parser.parse_args()
    database_url, redis_url = production_urls("escalation")
    count = int(args.rate * args.seconds)
    pair = TwoCentres(
        database_url,
        redis_url,
        Path(tempfile.mkdtemp(prefix="bench-escalation-")),
        name="bench_esc",
        timings={"LOG_LEVEL": "WARNING"},
        web_procs=args.web_procs,
        concurrency=args.concurrency,
    )
    try:
        progress(f"starting MEX and CDMX (logs in {pair.workdir})")
        pair.setup()
        progress(f"preparing {count} incidents in MEX")
        folios = prepare_incidents(pair, count)
        results = measure(pair, folios, args)
    finally:
        pair.teardown()
    if not args.no_raw:
        results.update(
            raw_stack.measure(database_url, redis_url, rate=args.rate, count=count, workdir=pair.workdir)
        )
        results["escalation_vs_raw_p99"] = round(
            results["escalation_p99_ms"] / max(results["raw_p99_ms"], 1e-3), 2
        )
    results["floors"] = results.pop("floors")  # last, after the raw stack's numbers
    report(
        "escalation",
        {
            "rate": args.rate,
            "seconds": args.seconds,
            "kill_worker": args.kill_worker,
            "outage_s": args.outage,
            "web_procs": args.web_procs,
            "concurrency": args.concurrency,
            "server_side_binding": os.environ.get("DB_SERVER_SIDE_BINDING", "true"),
            "prepare_threshold": os.environ.get("DB_PREPARE_THRESHOLD", "5"),
        },
        results,
    )


def measure(pair: TwoCentres, folios: list[str], args) -> dict:
    seen: dict[str, float] = {}
    events: dict[int, Callable[[], None]] = {}
    marks: dict[str, float] = {}
    if args.kill_worker:

        def kill_and_restart() -> None:
            progress("SIGKILL MEX's Celery worker; starting it again")
            pair.mex.kill("worker")
            pair.mex.spawn("worker")

        events[len(folios) // 2] = kill_and_restart
    if args.outage:

        def outage() -> None:
            progress(f"CDMX down for {args.outage} s")
            pair.cdmx.kill("web")
            marks["down"] = time.monotonic()

        events[len(folios) // 3] = outage

    async def drive() -> list:
        stop, ready = asyncio.Event(), asyncio.Event()
        listener = asyncio.create_task(listen(pair, seen, ready, stop))
        await asyncio.wait_for(ready.wait(), timeout=30)
        progress(f"escalating {len(folios)} incidents at {args.rate}/s")
        driver = asyncio.create_task(escalate_all(pair, folios, args.rate, bool(args.outage), events))
        if args.outage:
            while "down" not in marks:
                await asyncio.sleep(0.1)
            await asyncio.sleep(args.outage)
            await asyncio.to_thread(pair.cdmx.start, "web")
            marks["up"] = time.monotonic()
            progress("CDMX back")
        failures = await driver
        if args.outage:  # measured on MEX's outbox alone, before waiting for CDMX's console
            await asyncio.to_thread(
                wait_until,
                lambda: undelivered(pair) == 0,
                timeout=DRAIN_TIMEOUT_S,
                interval=0.2,
                what="drain",
            )
            marks["drained"] = time.monotonic()
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while len(seen) < len(folios) - len(failures) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if len(seen) < len(folios) - len(failures):
            progress(f"CDMX's console showed {len(seen)} of {len(folios) - len(failures)} linked incidents")
        stop.set()
        await listener
        return failures

    failures = asyncio.run(drive())
    if failures:
        progress(f"{len(failures)} escalations refused by MEX's API, e.g. {failures[0]}")
    if args.kill_worker:
        pair.mex.wait_ready("worker")

    committed = dict(
        pair.mex.sql(
            "SELECT payload->>'folio', extract(epoch FROM min(created_at)) FROM cad_event "
            "WHERE type = 'interstate.escalation' GROUP BY 1"
        )
    )
    latencies = [(seen[folio] - float(at)) * 1000 for folio, at in committed.items() if folio in seen]
    linked = pair.cdmx.sql(
        "SELECT origin_folio, count(*) FROM incidents_incident WHERE origin_center = 'MEX' GROUP BY 1"
    )
    in_cdmx = dict(linked)
    first, last = min(committed.values(), default=0), max(seen.values(), default=0)
    results = {
        "escalations": len(committed),
        "escalation_p50_ms": round(percentile(latencies, 50), 1),
        "escalation_p99_ms": round(percentile(latencies, 99), 1),
        "escalations_per_s": round(len(latencies) / max(float(last) - float(first), 1e-3), 1),
    }
    # Where the time goes: MEX commit → CDMX opens the linked incident (enqueue, worker, signed POST, the
    # receiver up to its insert), then → the CDMX console has it (receiver's commit, broadcast, fan-out).
    opened = {
        folio: float(at)
        for folio, at in pair.cdmx.sql(
            "SELECT origin_folio, extract(epoch FROM min(opened_at)) FROM incidents_incident "
            "WHERE origin_center = 'MEX' GROUP BY 1"
        )
    }
    delivering = [(opened[f] - float(at)) * 1000 for f, at in committed.items() if f in opened]
    showing = [(seen[f] - opened[f]) * 1000 for f in opened if f in seen]
    results["to_peer_incident_p50_ms"] = round(percentile(delivering, 50), 1)
    results["to_peer_incident_p99_ms"] = round(percentile(delivering, 99), 1)
    results["peer_incident_to_console_p50_ms"] = round(percentile(showing, 50), 1)
    results["peer_incident_to_console_p99_ms"] = round(percentile(showing, 99), 1)
    if args.kill_worker or args.outage:
        results["escalations_lost"] = sum(1 for folio in committed if folio not in in_cdmx)
        results["escalations_duplicated"] = sum(n - 1 for n in in_cdmx.values())
    if args.outage:
        results["outage_drain_s"] = round(marks["drained"] - marks["up"], 1)
        results["updates_out_of_order"] = out_of_order(pair)

    progress(f"baseline: {len(folios)} signed requests for service straight to CDMX at {args.rate}/s")
    ((template,),) = pair.mex.sql(
        "SELECT body FROM interstate_outboxmessage WHERE kind = 'requestForService' ORDER BY id LIMIT 1"
    )
    template_folio = template["eido"]["incidentComponent"]["internalIncidentId"]
    direct = asyncio.run(direct_posts(pair, copy.deepcopy(template), template_folio, len(folios), args.rate))
    results["direct_p50_ms"] = round(percentile(direct, 50), 1)
    results["direct_p99_ms"] = round(percentile(direct, 99), 1)
    results["escalation_vs_direct_p99"] = round(
        results["escalation_p99_ms"] / max(results["direct_p99_ms"], 1e-3), 2
    )
    floors_ok = results["escalation_p99_ms"] < 1000 and all(
        results.get(key, 0) == 0
        for key in ("escalations_lost", "escalations_duplicated", "updates_out_of_order")
    )
    # The latency floor is set at 50 escalations/s: a slower run shows the shape, not the floor.
    results["floors"] = ("pass" if floors_ok else "FAIL") if args.rate >= FLOOR_RATE else "n/a"
    return results


if __name__ == "__main__":
    main()

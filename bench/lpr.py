"""LPR ingest benchmark (production path): reads posted in batches through the HTTP API against a
1,000,000-plate hotlist, and the alert latency on a dispatcher's console websocket.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cad_x REDIS_URL=redis://127.0.0.1:6379/N \\
        python bench/lpr.py --hotlist 1000000 [--seconds 30] [--batch 5000] [--concurrency 2] [--procs N]

Recreates a dedicated database (default `<db>_bench_lpr`), seeds 85 arches, a device token and a
dispatcher, writes a CSV of `--hotlist` random plates and loads it with `manage.py import_hotlist`
(timed: `lpr_hotlist_import_s`), measures the bare membership lookup in the same run (PostgreSQL
`= ANY` in batches of 1,000: `lpr_membership_baseline_per_s`), starts `python -m cad.serve`, prepares the
request bodies (random reads, one listed plate per batch so each POST raises one alert) and posts them
from `--concurrency` clients for `--seconds`. Prints `lpr_reads_per_s` (reads accepted per second) and `lpr_alert_p50_ms`/`lpr_alert_p99_ms`
(POST sent → `lpr.hit` received on the console socket). Floors: ≥ 20,000 reads/s, alert p99 < 500 ms.
Stops its processes and drops its database.
"""

import argparse
import asyncio
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import (  # noqa: E402
    Server,
    bench_database,
    console_login,
    console_socket,
    drop_bench_database,
    median,
    percentile,
    production_urls,
    progress,
    report,
)

PASSWORD = "bench-lpr-2026"
READERS = 85
SEED = """
from accounts.tokens import issue_token
from accounts.models import Role, User
from cad.models import Center, EventStream
from sensors.models import Hotlist, LprReader
center = Center.objects.create(code="MEX", name="Estado de México C5", cve_ent="15")
for name in EventStream.Name.values:
    EventStream.objects.get_or_create(center=center, name=name)
LprReader.objects.bulk_create([
    LprReader(center=center, code=f"ARCO-{i:03d}", name=f"Arco {i}", lat=19.0 + i * 0.01, lon=-99.9 + i * 0.01,
              direction="E")
    for i in range({readers})
])
device = User.objects.create(username="lpr-bench", role=Role.DEVICE, center=center)
dispatcher = User.objects.create(username="desp-bench", role=Role.DISPATCHER, center=center)
dispatcher.set_password("{password}")
dispatcher.save()
owner = User.objects.create(username="sup-bench", role=Role.SUPERVISOR, center=center)
hotlist = Hotlist.objects.create(center=center, kind="stolen", name="Robados", source="bench", owner=owner)
print(hotlist.id, issue_token(device))
"""
LETTERS = "ACDEFGHJKLMNPRSTUVWXYZ"  # no O/I/B: listed and random plates never collide by folding


def _plate(rng: random.Random) -> str:
    return "".join(rng.choices(LETTERS, k=3)) + "".join(rng.choices(string.digits, k=4))


BASELINE = """
import json, random, sys, time
from django.db import connection
sample = json.loads(sys.stdin.read())
keys = sample + ["ZZZ%04d" % i for i in range(len(sample) * 9)]
random.Random(3).shuffle(keys)
with connection.cursor() as cur:
    start = time.perf_counter()
    for i in range(0, len(keys), {batch}):
        cur.execute("SELECT plate_key FROM sensors_hotlistentry WHERE plate_key = ANY(%s)", [keys[i:i + {batch}]])
        cur.fetchall()
    print(len(keys) / (time.perf_counter() - start))
"""


def _baseline(env: dict, sample: list[str], batch: int) -> float:
    """Bare membership lookups per second: PostgreSQL `= ANY` on the indexed key, batches of `batch`
    (10 % of the keys listed, as in the ingest run)."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", BASELINE.replace("{batch}", str(batch))],
        input=json.dumps(sample),
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


async def _listen(base, cookies, alerts: dict, stop: asyncio.Event, ready: asyncio.Event) -> None:
    async with console_socket(base, cookies) as ws:
        await ws.send(json.dumps({"type": "subscribe", "streams": {"console": None}}))
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
            except TimeoutError:
                continue
            if message.get("type") == "hello":
                ready.set()
            elif message.get("type") == "lpr.hit":
                alerts.setdefault(message["payload"]["read_plate"], time.time())


def _bodies(listed: list[str], count: int, batch: int) -> list[tuple[str, bytes]]:
    """Request bodies built before the clock starts (the client must not compete with the server for
    the CPU while measuring): (the listed plate hidden in the batch, JSON body)."""
    rng = random.Random(11)
    now = datetime.now(tz=UTC).isoformat()
    bodies = []
    for _ in range(min(count, len(listed))):
        reads = [
            {"reader": f"ARCO-{rng.randrange(READERS):03d}", "plate": _plate(rng), "read_at": now}
            for _ in range(batch)
        ]
        hit_plate = listed.pop()  # each listed plate once: one alert per POST to time
        reads[rng.randrange(batch)]["plate"] = hit_plate
        bodies.append((hit_plate, json.dumps({"reads": reads}).encode()))
    return bodies


async def _balanced_clients(base, headers, concurrency: int, server) -> list:
    """One HTTP client (one keep-alive connection) per posting loop, spread evenly over the Daphne
    processes: the kernel places connections by hash, so two connections often land on one process
    while the other idles, and a request then waits behind its neighbour's whole batch. A client whose
    connection lands on a process that already has its share is reopened (a few tries)."""
    import httpx

    share = -(-concurrency // max(1, len(server.pids)))
    placed = dict.fromkeys(server.pids, 0)
    clients = []
    for _ in range(concurrency):
        for attempt in range(30):
            before = server.connections()
            client = httpx.AsyncClient(
                base_url=base, headers=headers, timeout=60, limits=httpx.Limits(max_connections=1)
            )
            await client.get("/api/v1/lpr/readers")  # opens the connection (403 for a device: cheap)
            after = server.connections()
            gained = [pid for pid in after if after[pid] > before.get(pid, 0)]
            pid = gained[0] if len(gained) == 1 else None
            if pid is None or placed.get(pid, 0) < share or attempt == 29:
                if pid is not None:
                    placed[pid] += 1
                clients.append(client)
                break
            await client.aclose()
    progress("posting connections per Daphne process: " + ", ".join(f"{n}" for n in placed.values()))
    return clients


async def _drive(base, token, bodies, seconds, concurrency, sent_at: dict, stats: dict, server) -> float:
    """Post the bodies until the deadline; returns the seconds spent posting."""
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    clients = await _balanced_clients(base, headers, concurrency, server)
    started = time.monotonic()
    deadline = started + seconds
    queue = list(reversed(bodies))

    async def client_loop(client):
        while time.monotonic() < deadline and queue:
            hit_plate, body = queue.pop()
            began = time.time()
            sent_at[hit_plate] = began
            response = await client.post("/api/v1/lpr/reads", content=body)
            stats["post_ms"].append((time.time() - began) * 1000)
            if response.status_code == 202:
                stats["accepted"] += response.json()["accepted"]
            else:
                stats["failed"] += 1
                progress(f"ingest failed: {response.status_code} {response.text[:200]}")

    try:
        await asyncio.gather(*(client_loop(client) for client in clients))
    finally:
        for client in clients:
            await client.aclose()
    if not queue:
        progress("ran out of prepared bodies before the deadline; raise --max-requests")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hotlist", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=5000, help="reads per POST (CAD_LPR_MAX_BATCH)")
    parser.add_argument("--concurrency", type=int, default=2, help="clients posting at once")
    parser.add_argument("--max-requests", type=int, default=400, help="request bodies prepared in advance")
    parser.add_argument("--procs", type=int, default=max(1, os.cpu_count() or 1))
    args = parser.parse_args()
    base_db, redis_url = production_urls("lpr")
    url = bench_database("lpr")
    progress(f"fresh database {urlsplit(url).path.lstrip('/')}")
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SECURE_COOKIES": "false", "LOG_LEVEL": "WARNING"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
    seed = SEED.replace("{readers}", str(READERS)).replace("{password}", PASSWORD)
    seeded = subprocess.run(
        [*manage, "shell", "-c", seed], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    hotlist_id, token = seeded.stdout.strip().splitlines()[-1].split()
    rng = random.Random(7)
    csv_file = tempfile.NamedTemporaryFile("w", prefix="hotlist-", suffix=".csv", delete=False)  # noqa: SIM115
    plates = set()
    with csv_file:
        csv_file.write("plate,reason,make,model,color\n")
        while len(plates) < args.hotlist:
            plate = _plate(rng)
            if plate not in plates:
                plates.add(plate)
                csv_file.write(f"{plate[:3]}-{plate[3:]},robo,Nissan,NP300,blanco\n")
    listed = rng.sample(sorted(plates), min(20000, len(plates)))
    progress(f"importing {args.hotlist:,} plates")
    began = time.monotonic()
    subprocess.run(
        [*manage, "import_hotlist", csv_file.name, "--hotlist", hotlist_id, "--chunk", "10000"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    import_s = time.monotonic() - began
    os.unlink(csv_file.name)
    subprocess.run(
        [*manage, "shell", "-c", "from django.db import connection; connection.cursor().execute('ANALYZE')"],
        env=env,
        cwd=ROOT,
        check=True,
    )
    progress(f"imported in {import_s:.1f} s; measuring the bare membership lookup")
    baseline = _baseline(env, listed[:1000], 1000)
    bodies = _bodies(listed, args.max_requests, args.batch)
    log = tempfile.NamedTemporaryFile(prefix="lpr-serve-", suffix=".log", delete=False)  # noqa: SIM115
    log.close()
    stats = {"accepted": 0, "failed": 0, "post_ms": []}
    sent_at: dict = {}
    alerts: dict = {}
    try:
        with Server(args.procs, env, Path(log.name)) as server:
            base, procs_used = server.base, len(server.pids)
            cookies = console_login(base, "desp-bench", PASSWORD)

            async def run() -> float:
                stop, ready = asyncio.Event(), asyncio.Event()
                listener = asyncio.create_task(_listen(base, cookies, alerts, stop, ready))
                await asyncio.wait_for(ready.wait(), timeout=15)
                progress(
                    f"posting batches of {args.batch} from {args.concurrency} clients for {args.seconds} s "
                    f"through {procs_used} Daphne process(es)"
                )
                elapsed = await _drive(
                    base, token, bodies, args.seconds, args.concurrency, sent_at, stats, server
                )
                await asyncio.sleep(2)
                stop.set()
                await listener
                return elapsed

            elapsed = asyncio.run(run())
    finally:
        drop_bench_database(url)

    latencies = [(alerts[p] - t) * 1000 for p, t in sent_at.items() if p in alerts]
    reads_per_s = stats["accepted"] / elapsed
    p99 = percentile(latencies, 99)
    report(
        "lpr",
        {
            "hotlist": args.hotlist,
            "seconds": args.seconds,
            "batch": args.batch,
            "concurrency": args.concurrency,
            "procs": procs_used,
        },
        {
            "daphne_procs": procs_used,
            "lpr_hotlist_import_s": round(import_s, 1),
            "lpr_membership_baseline_per_s": round(baseline),
            "lpr_post_p50_ms": round(median(stats["post_ms"]), 1),
            "lpr_alerts": f"{len(latencies)}/{len(sent_at)}",
            "lpr_alert_p50_ms": round(percentile(latencies, 50), 1),
            "lpr_alert_p99_ms": round(p99, 1),
            "lpr_reads_per_s": round(reads_per_s),
            "floor_reads_per_s_ge_20000": "pass" if reads_per_s >= 20000 else "FAIL",
            "floor_alert_p99_lt_500": "pass" if p99 < 500 else "FAIL",
        },
    )


if __name__ == "__main__":
    main()

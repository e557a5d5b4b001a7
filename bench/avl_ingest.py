"""Benchmark: AVL ingest throughput through the HTTP API, batched.

    python bench/avl_ingest.py [--units 5000] [--batches 100] [--batch-size 1000] [--clients 3]

Runs against a dedicated bench database derived from DATABASE_URL (PostgreSQL: `<db>_bench_avl`; SQLite:
a temporary file) and whatever REDIS_URL is set (the AVL event is broadcast on the channel layer). Seeds
the fleet with `seed_demo --units N`, starts Daphne (cad.asgi:application) on a free port, and posts
`--batches` batches of `--batch-size` fixes from `--clients` concurrent httpx clients with the device
token of `avl-gateway` to POST /api/v1/avl/positions → avl_positions_per_s (floor: ≥ 5000).
Baseline in the same run: the same batches through units.services.record_positions directly (no HTTP,
no JSON, no auth), serially → direct_positions_per_s and the ratio.
"""

import argparse
import json
import logging
import os
import random
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_database, percentile, progress, report, setup_django  # noqa: E402

FLOOR_PER_S = 5000.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_batches(
    *, unit_ids: list[int], batches: int, size: int, start, rng: random.Random
) -> list[list[dict]]:
    """Batches of fixes for distinct random units, timestamps increasing batch by batch."""
    out = []
    for b in range(batches):
        at = start + timedelta(milliseconds=b)
        chosen = rng.sample(unit_ids, min(size, len(unit_ids)))
        out.append(
            [
                {
                    "unit_id": uid,
                    "lat": round(19.0 + rng.uniform(-0.8, 0.8), 6),
                    "lon": round(-99.4 + rng.uniform(-0.9, 0.9), 6),
                    "recorded_at": at,
                    "speed_kmh": round(rng.uniform(0, 90), 1),
                    "heading": round(rng.uniform(0, 359), 1),
                }
                for uid in chosen
            ]
        )
    return out


def start_daphne(port: int) -> subprocess.Popen:
    env = dict(os.environ, DJANGO_DEBUG="false", LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "cad.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"daphne exited with {proc.returncode}:\n{proc.stderr.read()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/units/", timeout=2)
            return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.terminate()
    sys.exit("daphne did not start within 60 s")


def post_all(
    *, url: str, token: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float], list[str]]:
    """POST every body from `clients` threads; returns (wall seconds, per-request ms, errors)."""
    import httpx

    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def worker():
        with httpx.Client(timeout=120, headers=headers) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    index, body = queue.pop(0)
                started = time.perf_counter()
                response = client.post(url, content=body)
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    latencies.append(elapsed)
                    if response.status_code not in (200, 201, 202):
                        errors.append(f"batch {index}: HTTP {response.status_code} {response.text[:300]}")

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()

    database = bench_database("avl")
    os.environ["DATABASE_URL"] = database
    progress(f"bench database {database.rsplit('/', 1)[-1]}")
    os.environ.setdefault("DJANGO_DEBUG", "false")
    setup_django()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command
    from django.db import close_old_connections, connection
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from cad.models import Center
    from units.models import AvlPosition, Unit
    from units.services import record_positions

    progress("migrate")
    call_command("migrate", verbosity=0)
    progress(f"seed_demo --units {args.units}")
    call_command("seed_demo", units=args.units, stdout=open(os.devnull, "w"))  # noqa: SIM115
    center = Center.objects.get(code="MEX")
    token = Token.objects.get(user__username="avl-gateway").key
    unit_ids = list(Unit.objects.filter(center=center).values_list("id", flat=True))
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    progress(f"{len(unit_ids)} units; {AvlPosition.objects.count()} stored fixes before this run")

    rng = random.Random(args.seed)
    start = timezone.now()
    http_batches = make_batches(
        unit_ids=unit_ids, batches=args.batches, size=args.batch_size, start=start, rng=rng
    )
    bodies = [
        json.dumps(
            {"positions": [dict(fix, recorded_at=fix["recorded_at"].isoformat()) for fix in batch]}
        ).encode()
        for batch in http_batches
    ]
    total = sum(len(batch) for batch in http_batches)

    port = free_port()
    progress(f"starting daphne on :{port}")
    daphne = start_daphne(port)
    try:
        url = f"http://127.0.0.1:{port}/api/v1/avl/positions"
        # Warm-up: one small batch (auth, imports, connection) not counted.
        warm = json.dumps({"positions": [dict(http_batches[0][0], recorded_at=start.isoformat())]}).encode()
        post_all(url=url, token=token, bodies=[warm], clients=1)
        progress(f"posting {args.batches} batches × {args.batch_size} from {args.clients} clients")
        wall, latencies, errors = post_all(url=url, token=token, bodies=bodies, clients=args.clients)
    finally:
        daphne.terminate()
        try:
            daphne.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daphne.kill()
    if errors:
        sys.exit("HTTP errors:\n" + "\n".join(errors[:10]))
    http_rate = total / wall

    progress("baseline: the same batches through record_positions directly")
    later = timezone.now() + timedelta(seconds=1)
    direct_batches = make_batches(
        unit_ids=unit_ids,
        batches=args.batches,
        size=args.batch_size,
        start=later,
        rng=random.Random(args.seed),
    )
    close_old_connections()
    started = time.perf_counter()
    for batch in direct_batches:
        record_positions(center_id=center.id, positions=batch)
    direct_wall = time.perf_counter() - started
    direct_rate = total / direct_wall

    report(
        "avl_ingest",
        {
            "units": len(unit_ids),
            "batches": args.batches,
            "batch_size": args.batch_size,
            "clients": args.clients,
        },
        {
            "avl_positions_per_s": http_rate,
            "avl_batch_p50_ms": percentile(latencies, 50),
            "avl_batch_p99_ms": percentile(latencies, 99),
            "direct_positions_per_s": direct_rate,
            "http_vs_direct_ratio": http_rate / direct_rate,
            "floor_per_s": FLOOR_PER_S,
            "over_floor": http_rate >= FLOOR_PER_S,
        },
    )


if __name__ == "__main__":
    main()

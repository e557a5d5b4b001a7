"""Benchmark: AVL ingest through the HTTP API, against raw COPY + UPDATE … FROM in the same run.

    python bench/avl_ingest.py [--units 5000] [--batches 150] [--batch-size 1000] [--clients 3] [--sweep]

Production path (PostgreSQL + Redis). Recreates `<DATABASE_URL name>_bench_avl`, seeds `--units` units,
starts the server (`python -m cad.serve`, one Daphne process per CPU behind one address) and posts
`--batches` batches of `--batch-size` fixes (distinct random units per batch, later batches newer) from
`--clients` concurrent keep-alive clients with the device token of `avl-gateway` to
POST /api/v1/avl/positions → `avl_positions_per_s` (floor ≥ 20,000 with 1,000-fix batches from 3 clients).

While it posts, one supervisor console socket follows the AVL stream as the consoles do (subscribe, resume
on gaps). Checks, any failure fails the run: every fix stored once (`stored_fixes`), every unit at its
newest fix (`units_at_newest`), and the console's last position of every unit equal to the database's
(`console_stream_matches`).

Baseline in the same run (`copy_positions_per_s`): the same batches straight from psycopg, from the same
number of connections — per batch one transaction: COPY into a temporary staging table, INSERT … SELECT
into the track, one `UPDATE … FROM` moving the units (no HTTP, JSON, validation, event or broadcast).
`http_vs_copy_ratio` is HTTP ÷ raw.

`--sweep` repeats the HTTP run with 1, 2, 3, 6 and 12 clients and writes docs/bench/avl_ingest_sweep.csv
and .png (~2 min).
"""

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Server,
    bench_database,
    percentile,
    progress,
    report,
    session_cookie,
    setup_django,
    write_sweep,
)

FLOOR_PER_S = 20_000.0
SWEEP_CLIENTS = (1, 2, 3, 6, 12)


def make_batches(*, unit_ids: list[int], batches: int, size: int, start, rng: random.Random) -> list[list]:
    """Batches of fixes for distinct random units, timestamps increasing batch by batch."""
    out = []
    for b in range(batches):
        at = start + timedelta(milliseconds=b)
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
                for uid in rng.sample(unit_ids, min(size, len(unit_ids)))
            ]
        )
    return out


def parallel(work: list, clients: int, handle) -> float:
    """Run handle(item) over `work` from `clients` threads (each its own state via handle's closure);
    returns wall seconds."""
    lock = threading.Lock()
    queue = list(enumerate(work))

    failures: list[BaseException] = []

    def worker(state):
        while True:
            with lock:
                if not queue or failures:
                    return
                index, item = queue.pop(0)
            try:
                handle(state, index, item)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the other threads stop
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=({},)) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def post_all(*, url: str, token: str, bodies: list[bytes], clients: int) -> tuple[float, list[float]]:
    import httpx

    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors: list[str] = []
    opened: list = []

    def handle(state, index, body):
        if "client" not in state:
            state["client"] = httpx.Client(timeout=120, headers=headers)
            opened.append(state["client"])
        started = time.perf_counter()
        response = state["client"].post(url, content=body)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 202:
            errors.append(f"batch {index}: HTTP {response.status_code} {response.text[:300]}")

    try:
        wall = parallel(bodies, clients, handle)
    finally:
        for client in opened:
            client.close()
    if errors:
        sys.exit("HTTP errors:\n" + "\n".join(errors[:10]))
    return wall, latencies


def copy_all(*, url: str, batches: list[list], clients: int) -> float:
    """The raw baseline: per batch, COPY → temp staging, INSERT … SELECT, lock the units in id order, UPDATE …
    FROM (psycopg; batches hold distinct units, so no newest-per-unit step)."""
    import psycopg

    opened: list = []

    def handle(state, index, batch):
        if "conn" not in state:
            state["conn"] = psycopg.connect(url)
            opened.append(state["conn"])
            state["conn"].execute(
                "CREATE TEMP TABLE raw_staging (unit_id bigint, recorded_at timestamptz, lat float8, "
                "lon float8, speed_kmh float8, heading float8) ON COMMIT DELETE ROWS"
            )
            state["conn"].commit()
        conn = state["conn"]
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy("COPY raw_staging FROM STDIN") as copy:
                for f in batch:
                    copy.write_row(
                        (f["unit_id"], f["recorded_at"], f["lat"], f["lon"], f["speed_kmh"], f["heading"])
                    )
            cursor.execute(
                "INSERT INTO units_avlposition (unit_id, recorded_at, lat, lon, speed_kmh, heading) "
                "SELECT * FROM raw_staging"
            )
            cursor.execute(  # lock in id order, as the service does: concurrent batches never deadlock
                "SELECT id FROM units_unit WHERE id IN (SELECT unit_id FROM raw_staging) ORDER BY id FOR UPDATE"
            )
            cursor.execute(
                "UPDATE units_unit u SET lat = s.lat, lon = s.lon, position_at = s.recorded_at "
                "FROM raw_staging s WHERE u.id = s.unit_id AND (u.position_at IS NULL OR u.position_at < s.recorded_at)"
            )

    try:
        return parallel(batches, clients, handle)
    finally:
        for conn in opened:
            conn.close()


async def follow_avl(
    base: str, cookie: str, last: dict, stop: threading.Event, ready: threading.Event
) -> None:
    """A console on the AVL stream: applies coalesced messages in seq order, resumes on gaps; keeps the last
    position of each unit."""
    import websockets

    async with websockets.connect(
        base.replace("http://", "ws://") + "/ws/console/",
        additional_headers={"Cookie": f"sessionid={cookie}", "Origin": base},
        max_size=2**24,
        open_timeout=20,
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "streams": {"avl": None}}))
        seq, resuming = None, None
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
            except TimeoutError:
                continue
            kind = message.get("type")
            if kind == "hello":
                seq = message["seq"]
                ready.set()
            elif kind == "resync":
                sys.exit("the AVL console was told to resync (fell too far behind)")
            elif kind == "units.positions" and seq is not None:
                if message["seq"] <= seq:
                    continue
                if message.get("first_seq", message["seq"]) > seq + 1:
                    if resuming != seq:
                        resuming = seq
                        await ws.send(json.dumps({"type": "resume", "stream": "avl", "seq": seq}))
                    continue
                seq, resuming = message["seq"], None
                for uid, lat, lon, iso in message["payload"]["positions"]:
                    last[uid] = (lat, lon, datetime.fromisoformat(iso))


def check(*, batches: list[list], console: dict, posted: int, before: int) -> dict:
    from units.models import AvlPosition, Unit

    newest: dict[int, tuple] = {}
    for batch in batches:
        for f in batch:
            if f["unit_id"] not in newest or f["recorded_at"] > newest[f["unit_id"]][2]:
                newest[f["unit_id"]] = (f["lat"], f["lon"], f["recorded_at"])
    stored = AvlPosition.objects.count() - before
    units = {
        uid: (lat, lon, at)
        for uid, lat, lon, at in Unit.objects.values_list("id", "lat", "lon", "position_at")
    }
    at_newest = all(units[uid] == value for uid, value in newest.items())
    matches = all(console.get(uid) == units[uid] for uid in newest)
    return {
        "stored_fixes": f"{stored}/{posted}",
        "units_at_newest": at_newest,
        "console_stream_matches": matches,
    }


def http_run(*, server, token, cookie, bodies, clients) -> tuple[float, list[float], dict]:
    console: dict = {}
    stop, ready = threading.Event(), threading.Event()
    listener = threading.Thread(
        target=lambda: asyncio.run(follow_avl(server.base, cookie, console, stop, ready))
    )
    listener.start()
    if not ready.wait(30):
        stop.set()
        sys.exit("the AVL console socket did not connect")
    try:
        wall, latencies = post_all(
            url=f"{server.base}/api/v1/avl/positions", token=token, bodies=bodies, clients=clients
        )
        time.sleep(2.5)  # the console's coalesced flush (≤ 1 s) and any resume
    finally:
        stop.set()
        listener.join(10)
    return wall, latencies, console


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--procs", type=int, default=os.cpu_count() or 1, help="Daphne processes")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--sweep", action="store_true", help=f"also {SWEEP_CLIENTS} clients (~2 min)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        sys.exit("avl_ingest measures the production path: set DATABASE_URL (PostgreSQL) and REDIS_URL")

    url = bench_database("avl")
    os.environ["DATABASE_URL"] = url
    progress(f"bench database {url.rsplit('/', 1)[-1]}")
    setup_django()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.core.management import call_command
    from django.db import connection, connections

    from accounts.models import User
    from accounts.tokens import issue_token
    from cad.models import Center
    from units.models import AvlPosition, Unit

    call_command("migrate", verbosity=0)
    progress(f"seed_demo --units {args.units}")
    call_command("seed_demo", units=args.units, stdout=open(os.devnull, "w"))  # noqa: SIM115
    center = Center.objects.get(code="MEX")
    token = issue_token(User.objects.get(username="avl-gateway"))
    cookie = session_cookie("supervisor")
    unit_ids = list(Unit.objects.filter(center=center).values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    rng = random.Random(args.seed)

    def batches_from(start):
        return make_batches(
            unit_ids=unit_ids, batches=args.batches, size=args.batch_size, start=start, rng=rng
        )

    def encode(batches):
        return [
            json.dumps({"positions": [dict(f, recorded_at=f["recorded_at"].isoformat()) for f in b]}).encode()
            for b in batches
        ]

    http_batches = batches_from(datetime.now(tz=UTC))
    total = sum(len(b) for b in http_batches)
    before = AvlPosition.objects.count()
    connections.close_all()
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SECURE_COOKIES": "false", "LOG_LEVEL": "WARNING"}
    sweep_rows = []
    log = Path(tempfile.mkdtemp(prefix="cad-bench-")) / "serve.log"
    progress(f"server log: {log}")
    with Server(args.procs, env, log, start_timeout=90) as server:
        warm = batches_from(datetime.now(tz=UTC) - timedelta(hours=1))[:6]  # older: moves nothing later
        post_all(
            url=f"{server.base}/api/v1/avl/positions", token=token, bodies=encode(warm), clients=args.clients
        )
        before = AvlPosition.objects.count()
        progress(
            f"posting {args.batches} × {args.batch_size} fixes from {args.clients} clients to {server.base}"
        )
        wall, latencies, console = http_run(
            server=server, token=token, cookie=cookie, bodies=encode(http_batches), clients=args.clients
        )
        checks = check(batches=http_batches, console=console, posted=total, before=before)
        progress(f"HTTP: {total / wall:,.0f} fixes/s; {checks}")
        if args.sweep:
            for clients in SWEEP_CLIENTS:
                batches = batches_from(datetime.now(tz=UTC))
                sweep_wall, sweep_latencies = post_all(
                    url=f"{server.base}/api/v1/avl/positions",
                    token=token,
                    bodies=encode(batches),
                    clients=clients,
                )
                row = {
                    "clients": clients,
                    "avl_positions_per_s": round(total / sweep_wall),
                    "avl_batch_p99_ms": round(percentile(sweep_latencies, 99), 1),
                }
                progress(f"sweep {row}")
                sweep_rows.append(row)

    progress(f"baseline: the same batches by raw COPY + UPDATE … FROM from {args.clients} connections")
    copy_batches = batches_from(datetime.now(tz=UTC) + timedelta(seconds=5))
    copy_wall = copy_all(url=url, batches=copy_batches, clients=args.clients)
    http_rate, copy_rate = total / wall, total / copy_wall
    results = {
        "avl_positions_per_s": http_rate,
        "avl_batch_p50_ms": percentile(latencies, 50),
        "avl_batch_p99_ms": percentile(latencies, 99),
        "copy_positions_per_s": copy_rate,
        "http_vs_copy_ratio": http_rate / copy_rate,
        **checks,
        "floor_per_s": FLOOR_PER_S,
        "over_floor": http_rate >= FLOOR_PER_S,
    }
    if sweep_rows:
        results["sweep_csv"], _png = write_sweep(
            "avl_ingest_sweep",
            sweep_rows,
            x="clients",
            series={"avl_positions_per_s": "HTTP fixes/s"},
            xlabel=f"concurrent clients ({args.batch_size}-fix batches)",
            ylabel="fixes per second",
            floor=FLOOR_PER_S,
        )
    report(
        "avl_ingest",
        {
            "units": len(unit_ids),
            "batches": args.batches,
            "batch_size": args.batch_size,
            "clients": args.clients,
            "daphne_procs": args.procs,
        },
        results,
    )
    if (
        checks["stored_fixes"] != f"{total}/{total}"
        or not checks["units_at_newest"]
        or not checks["console_stream_matches"]
    ):
        sys.exit(f"AVL ingest stored or streamed something wrong: {checks}")


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_DEBUG", "false")
    main()

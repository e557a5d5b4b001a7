"""Map feed benchmark (production path): 5,000 units reporting once a second through the AVL HTTP API, one
supervisor map socket subscribed to the avl stream.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cad_d REDIS_URL=redis://127.0.0.1:6379/4 \\
        python bench/map_feed.py --units 5000 --seconds 20 [--batch 1000] [--procs N]

Recreates a dedicated database (default `cad_bench_map`), seeds the units, a device token and a supervisor,
starts its own server (`python -m cad.serve --procs N`, default one Daphne process per CPU behind one
address, Redis channel layer; each process runs sync views on one thread, so N processes run N batches at
once), drives every unit at one fix per second in batches (default one POST of 5,000 per second, as a
gateway would; /api/v1/avl/positions with the device token), and on one websocket measures:

* `map_feed_positions_per_s`: unit positions received per second (the socket coalesces to at most one per
  unit per second, so keeping up means ≈ units);
* `map_feed_lag_p99_ms`: recorded_at → receipt, p99 (includes the ≤ 1 s coalescing interval);
* `map_feed_sent_per_s` and `map_feed_post_p50_ms` for the sending side.
Floor: positions/s ≥ 90 % of units and lag p99 < 2000 ms. Stops its processes and drops its database.
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import Server, median, percentile, production_urls, progress, report  # noqa: E402

PASSWORD = "bench-map-2026"
SEED = """
import random
from django.utils import timezone
from accounts.tokens import issue_token
from accounts.models import Role, User
from cad.models import Center, EventStream
from units.models import Agency, Unit
center = Center.objects.create(code="MEX", name="Estado de México C5", cve_ent="15")
for name in EventStream.Name.values:
    EventStream.objects.get_or_create(center=center, name=name)
agency = Agency.objects.create(center=center, code="PE", name="Policía Estatal", kind="police")
now = timezone.now()
rng = random.Random(5)
Unit.objects.bulk_create([
    Unit(center=center, agency=agency, callsign=f"P-{i:05d}", status_changed_at=now,
         lat=19.25 + rng.random() * 0.4, lon=-99.75 + rng.random() * 0.7, position_at=now)
    for i in range({units})
], batch_size=2000)
device = User.objects.create(username="avl-bench", role=Role.DEVICE, center=center)
supervisor = User.objects.create(username="sup-bench", role=Role.SUPERVISOR, center=center)
supervisor.set_password("{password}")
supervisor.save()
print(issue_token(device))
"""


def _admin(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def _recreate(url: str, *, drop_only: bool = False) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


async def _listen(
    base: str, cookies: dict, received: list, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    import websockets

    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    url = base.replace("http://", "ws://") + "/ws/console/"
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie, "Origin": base}, max_size=2**24, open_timeout=10
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "streams": {"avl": None}}))
        last, resuming = None, None
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            now = time.time()
            message = json.loads(raw)
            if message.get("type") == "hello":
                last = message["seq"]
                ready.set()
            elif message.get("type") == "resync":  # too far behind: a map reloads its snapshot here
                last, resuming = message["seq"], None
            elif message.get("type") == "units.positions" and last is not None:
                # Like the console's realtime.js: skip what was applied, resume on a gap (several server
                # processes may publish events out of seq order; the server replays them in order).
                seq = message["seq"]
                if seq <= last:
                    continue
                if message.get("first_seq", seq) > last + 1:
                    if resuming != last:
                        resuming = last
                        await ws.send(json.dumps({"type": "resume", "stream": "avl", "seq": last}))
                    continue
                last, resuming = seq, None
                for _uid, _lat, _lon, iso in message["payload"]["positions"]:
                    received.append((now, iso))


async def _drive(base, token, unit_ids, seconds, batch, sent, post_ms) -> None:
    import httpx

    headers = {"Authorization": f"Token {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        start = time.monotonic()
        for tick in range(seconds):
            due = start + tick
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            recorded = datetime.now(tz=UTC).isoformat()
            jitter = (tick % 10) * 1e-4

            async def post(chunk, recorded=recorded, jitter=jitter):
                body = {
                    "positions": [
                        {
                            "unit_id": uid,
                            "lat": 19.3 + jitter + (uid % 100) * 1e-3,
                            "lon": -99.6 - (uid % 37) * 1e-3,
                            "recorded_at": recorded,
                        }
                        for uid in chunk
                    ]
                }
                began = time.monotonic()
                response = await client.post("/api/v1/avl/positions", json=body)
                post_ms.append((time.monotonic() - began) * 1000)
                if response.status_code == 202:
                    sent.append(len(chunk))
                else:
                    progress(f"AVL post failed: {response.status_code} {response.text[:200]}")

            await asyncio.gather(*(post(unit_ids[i : i + batch]) for i in range(0, len(unit_ids), batch)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5000, help="fixes per POST (the API maximum by default)")
    parser.add_argument(
        "--procs", type=int, default=max(1, os.cpu_count() or 1), help="Daphne processes (cad.serve --procs)"
    )
    parser.add_argument("--db", default="cad_bench_map")
    args = parser.parse_args()
    base_db, redis_url = production_urls("map_feed")
    url = urlunsplit(urlsplit(base_db)._replace(path=f"/{args.db}"))
    progress(f"recreating database {args.db}")
    _recreate(url)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "DJANGO_SECURE_COOKIES": "false",
        "LOG_LEVEL": "WARNING",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
    seeded = subprocess.run(
        [*manage, "shell", "-c", SEED.replace("{units}", str(args.units)).replace("{password}", PASSWORD)],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    token = seeded.stdout.strip().splitlines()[-1]
    progress(f"seeded {args.units} units")
    log = tempfile.NamedTemporaryFile(prefix="map-feed-serve-", suffix=".log", delete=False)  # noqa: SIM115
    log.close()
    try:
        import httpx

        with Server(args.procs, env, Path(log.name)) as server:
            base = server.base
            procs_used = len(server.pids)
            progress(f"cad.serve: {procs_used} Daphne process(es) {server.pids} behind {base}")
            with httpx.Client(base_url=base, timeout=10) as client:
                client.get("/login/")
                client.post(
                    "/login/",
                    data={
                        "username": "sup-bench",
                        "password": PASSWORD,
                        "csrfmiddlewaretoken": client.cookies["csrftoken"],
                    },
                    headers={"Referer": f"{base}/login/"},
                )
                cookies = dict(client.cookies)
                assert "sessionid" in cookies, "supervisor login failed"
                unit_ids = [u["id"] for u in client.get("/api/v1/units/").json()]

            received: list = []
            sent: list = []
            post_ms: list = []
            spread: dict = {}

            async def run():
                stop, ready = asyncio.Event(), asyncio.Event()
                listener = asyncio.create_task(_listen(base, cookies, received, stop, ready))
                await asyncio.wait_for(ready.wait(), timeout=15)
                progress(
                    f"driving {len(unit_ids)} units for {args.seconds} s in batches of {args.batch} "
                    f"through {procs_used} Daphne process(es)"
                )
                started = time.time()
                asyncio.get_running_loop().call_later(3, lambda: spread.update(server.connections()))
                await _drive(base, token, unit_ids, args.seconds, args.batch, sent, post_ms)
                await asyncio.sleep(2.5)  # let the last coalesced flush arrive
                stop.set()
                await listener
                return started

            started = asyncio.run(run())
            progress(
                "connections per Daphne process 3 s into the run: "
                + ", ".join(f"pid {pid}: {n}" for pid, n in spread.items())
            )
    finally:
        _recreate(url, drop_only=True)

    warmup = 2.0
    measured = [(t, iso) for t, iso in received if t >= started + warmup]
    lags = [(t - datetime.fromisoformat(iso).timestamp()) * 1000 for t, iso in measured]
    window = max(args.seconds - warmup, 1.0)
    per_s = len(measured) / window
    lag_p99 = percentile(lags, 99)
    keeps_up = per_s >= 0.9 * len(unit_ids)
    report(
        "map_feed",
        {"units": len(unit_ids), "seconds": args.seconds, "batch": args.batch, "procs": procs_used},
        {
            "daphne_procs": procs_used,
            "map_feed_sent_per_s": round(sum(sent) / args.seconds, 1),
            "map_feed_post_p50_ms": round(median(post_ms), 1),
            "map_feed_positions_per_s": round(per_s, 1),
            "map_feed_lag_p50_ms": round(percentile(lags, 50), 1),
            "map_feed_lag_p99_ms": round(lag_p99, 1),
            "floor_keeps_up": "pass" if keeps_up else "FAIL",
            "floor_lag_p99_lt_2000": "pass" if lag_p99 < 2000 else "FAIL",
        },
    )


if __name__ == "__main__":
    main()

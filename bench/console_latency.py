"""Console websocket latency under load: API call start → receipt on every connected console.

    DATABASE_URL=postgres://… REDIS_URL=redis://… python bench/console_latency.py \
        --clients 500 --rate 10 [--duration 20] [--daphne-procs N] [--sweep]

Production path only (PostgreSQL + Redis). Recreates `<DATABASE_URL name>_bench_console` (dropped at the
end), migrates and seeds it, starts the server itself (`python -m cad.serve --procs N`: N Daphne processes
behind one address, so every client uses the same URL), opens the websocket clients (session cookie made
with Django's session engine), then offers an open-loop load of `rate` API operations per second — a mix
of new 9-1-1 calls (incident.created), notes (incident.note_added), unit status changes
(unit.status_changed) and AVL batches (units.positions) — through the real REST API, and measures the time
from each API call's start to its event's receipt on each client (`console_p50_ms`, `console_p99_ms`,
`delivered_fraction`).

Baselines in the same run:
* a bare Channels consumer (joins the group, forwards; no auth, replay or dedup) on the same server under
  the same load (`baseline_p99_ms`, `console_vs_baseline_p99`);
* raw Redis pub/sub to as many subscribers at the same rate, from this process (`raw_pubsub_p99_ms`,
  `console_vs_raw_p99`): the physical floor of fan-out on this machine.
AVL is coalesced to ≤ 1 message/s by the console by design, so it is reported separately (`avl_p99_ms`)
and the floors apply to console events. Floors: 500 clients × 10/s → console p99 < 250 ms, 100 %
delivered. `--sweep` tries 50 … 1,000 clients, prints the largest that holds (`console_max_clients`) and
writes docs/bench/console_latency_sweep.csv and .png (~6 min).
"""

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Server,
    bench_database,
    drop_bench_database,
    percentile,
    production_urls,
    progress,
    report,
    session_cookie,
    setup_django,
    write_sweep,
)

SWEEP = (50, 100, 200, 500, 1000)
P99_FLOOR_MS = 250.0
CONNECT_ATTEMPTS = 3
TOLUCA = (19.2826, -99.6557)
HARD_LIMIT_S = 900  # the whole run, whatever the parameters


def prepare(units: int) -> dict:
    """Migrate, seed, and mint credentials: a dispatcher session cookie and API tokens."""
    from django.core.management import call_command

    from accounts.models import User
    from accounts.tokens import issue_token
    from demo.seed import seed_demo
    from units.models import Unit, UnitStatus

    call_command("migrate", verbosity=0, interactive=False)
    seed_demo(units=units, progress=lambda *a, **k: None)
    dispatcher = User.objects.get(username="despachador")
    device = User.objects.get(username="avl-gateway")
    unit_ids = list(
        Unit.objects.filter(center=dispatcher.center, status=UnitStatus.AVAILABLE).values_list(
            "id", flat=True
        )
    )
    return {
        "center_id": dispatcher.center_id,
        "session": session_cookie("despachador"),
        "dispatcher_token": issue_token(dispatcher),
        "device_token": issue_token(device),
        "unit_ids": unit_ids,
        "unit_state": dict.fromkeys(unit_ids, "available"),
    }


# --- Load -------------------------------------------------------------------------------------
class Load:
    """Open-loop API load; remembers when each operation started, keyed as its event will show it."""

    def __init__(self, creds: dict, base: str, rate: float):
        self.creds, self.base, self.rate = creds, base, rate
        self.unit_state: dict[int, str] = creds["unit_state"]  # shared by every phase of the run
        self.started: dict[str, float] = {}  # console event key -> API call start (monotonic)
        self.avl_started: dict[str, float] = {}
        self.ok: set[str] = set()
        self.avl_ok: set[str] = set()
        self.failures = 0
        self.folios: list[str] = []
        self.counter = itertools.count()
        pool = list(creds["unit_ids"])
        random.Random(7).shuffle(pool)
        split = len(pool) // 2
        self.toggle_units = pool[:split]  # available ↔ out_of_service
        self.avl_units = pool[split:] or pool
        self.unit_busy: set[int] = set()
        self.avl_cursor = 0
        self.pending_unit_keys: dict[tuple[int, str], str] = {}
        self.tasks: set[asyncio.Task] = set()

    async def run(self, client, duration: float) -> int:
        mix = ["call"] * 3 + ["note"] * 2 + ["status"] * 3 + ["avl"] * 2
        rng = random.Random(2026)
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / self.rate
            if due - start >= duration:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            kind = rng.choice(mix)
            if kind == "note" and not self.folios:
                kind = "call"
            task = asyncio.ensure_future(getattr(self, f"_{kind}")(client, rng))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            n += 1
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=15)
        return n

    def _url(self, path: str) -> str:
        return f"{self.base}/api/v1/{path}"

    async def _post(self, client, path, body, token) -> dict | None:
        try:
            response = await client.post(
                self._url(path), json=body, headers={"Authorization": f"Token {token}"}
            )
        except Exception:  # noqa: BLE001 - a load generator counts every failure the same way
            self.failures += 1
            return None
        if response.status_code >= 300:
            self.failures += 1
            return None
        return response.json()

    async def _call(self, client, rng):
        key = f"bench:{next(self.counter)}"
        self.started[key] = time.monotonic()
        body = {
            "line": "911",
            "disposition": "new_incident",
            "incident_type_code": "10104",
            "lat": TOLUCA[0] + rng.uniform(-0.2, 0.2),
            "lon": TOLUCA[1] + rng.uniform(-0.2, 0.2),
            "address": key,
        }
        data = await self._post(client, "calls/", body, self.creds["dispatcher_token"])
        if data:
            self.ok.add(key)
            self.folios.append(data["call"]["incident"])

    async def _note(self, client, rng):
        key = f"bench:{next(self.counter)}"
        folio = rng.choice(self.folios[-50:])
        self.started[key] = time.monotonic()
        if await self._post(
            client, f"incidents/{folio}/notes", {"text": key}, self.creds["dispatcher_token"]
        ):
            self.ok.add(key)

    async def _status(self, client, rng):
        free = [u for u in self.toggle_units if u not in self.unit_busy]
        if not free:
            return await self._note(client, rng) if self.folios else None
        unit = rng.choice(free)
        self.unit_busy.add(unit)
        to = "out_of_service" if self.unit_state[unit] == "available" else "available"
        key = f"unit:{unit}:{to}:{next(self.counter)}"
        # The event shows (unit, status); one request per unit in flight keeps that unambiguous.
        self.started[key] = time.monotonic()
        self.pending_unit_keys[(unit, to)] = key
        if await self._post(client, f"units/{unit}/status", {"status": to}, self.creds["dispatcher_token"]):
            self.ok.add(key)
            self.unit_state[unit] = to
        await asyncio.sleep(2.0)  # let every client see it before the unit is reused
        self.unit_busy.discard(unit)

    async def _avl(self, client, rng):
        batch = [self.avl_units[(self.avl_cursor + i) % len(self.avl_units)] for i in range(20)]
        self.avl_cursor += 20
        recorded = datetime.now(tz=UTC)
        key = recorded.isoformat()
        self.avl_started[key] = time.monotonic()
        positions = [
            {
                "unit_id": unit,
                "lat": TOLUCA[0] + rng.uniform(-0.2, 0.2),
                "lon": TOLUCA[1] + rng.uniform(-0.2, 0.2),
                "recorded_at": key,
            }
            for unit in batch
        ]
        if await self._post(client, "avl/positions", {"positions": positions}, self.creds["device_token"]):
            self.avl_ok.add(key)


def event_key(envelope: dict, load: Load) -> str | None:
    payload = envelope.get("payload") or {}
    kind = envelope.get("type")
    if kind == "incident.created":
        return payload.get("address")
    if kind == "incident.note_added":
        return payload.get("text")
    if kind == "unit.status_changed":
        return load.pending_unit_keys.get((payload.get("id"), payload.get("status")))
    return None


class Client:
    """One websocket console: subscribes, resumes on gaps, records receipt times of known events."""

    def __init__(self, url: str, cookie: str | None, load: Load, console: bool):
        self.url, self.cookie, self.load, self.console = url, cookie, load, console
        self.received: dict[str, float] = {}
        self.avl_received: dict[str, float] = {}
        self.last: dict[str, int] = {}
        self.ready = asyncio.Event()
        self.stop = asyncio.Event()

    async def run(self):
        import websockets

        headers = {"Origin": self.url.replace("ws://", "http://").split("/ws/")[0]}
        if self.cookie:
            headers["Cookie"] = f"sessionid={self.cookie}"
        # As a console does, retry a connection the server turned away (on a loaded machine the handshake
        # may exceed Daphne's connect timeout while hundreds of consoles open at once).
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                ws = await websockets.connect(
                    self.url, additional_headers=headers, max_queue=None, open_timeout=30
                )
                break
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(1.0 + random.random())
        async with ws:
            if self.console:
                await ws.send(json.dumps({"type": "subscribe", "streams": {"console": None, "avl": None}}))
            else:
                self.ready.set()
            receiver = asyncio.ensure_future(self._receive(ws))
            await self.stop.wait()
            receiver.cancel()

    async def _receive(self, ws):
        async for raw in ws:
            now = time.monotonic()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "hello":
                self.last[message["stream"]] = message["seq"]
                if len(self.last) == 2:
                    self.ready.set()
                continue
            stream, seq = message.get("stream"), message.get("seq")
            if self.console and stream in self.last and isinstance(seq, int):
                first = message.get("first_seq", seq)
                if seq <= self.last[stream]:
                    continue
                if first > self.last[stream] + 1:
                    await ws.send(json.dumps({"type": "resume", "stream": stream, "seq": self.last[stream]}))
                    continue
                self.last[stream] = seq
            if kind == "units.positions":
                for position in (message.get("payload") or {}).get("positions", ()):
                    self.avl_received.setdefault(position[3], now)
                continue
            key = event_key(message, self.load)
            if key:
                self.received.setdefault(key, now)


async def phase(
    *, name: str, creds: dict, server: Server, clients: int, rate: float, duration: float, console: bool
):
    import httpx

    load = Load(creds, server.base, rate)
    ws_base = server.base.replace("http://", "ws://")
    path = "/ws/console/" if console else f"/ws/bench-baseline/{creds['center_id']}/"
    urls = [ws_base + path] * clients
    sockets = [Client(url, creds["session"] if console else None, load, console) for url in urls]
    runners = []
    for i in range(0, len(sockets), 50):  # connect in waves
        runners += [asyncio.ensure_future(s.run()) for s in sockets[i : i + 50]]
        await asyncio.sleep(0.2)
    try:
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in sockets)), timeout=60)
    except TimeoutError:
        failed = [r for r in runners if r.done() and r.exception()]
        raise RuntimeError(
            f"{name}: only {sum(s.ready.is_set() for s in sockets)}/{clients} clients ready; {failed[:1]}"
        ) from None
    spread = ", ".join(f"pid {pid}: {n}" for pid, n in server.connections().items())
    progress(f"{name}: {clients} clients connected ({spread}); offering {rate}/s for {duration}s")
    # The load generator and every client share this one process: a full collection walking their objects
    # (~220,000 once the connections are open) stops all of them for ~130 ms every few seconds, which would be
    # counted as server latency. Freeze what exists now; collections then walk only what the phase adds.
    gc.collect()
    gc.freeze()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        offered = await load.run(client, duration)
    await asyncio.sleep(3.0)  # drain (AVL flushes within 1 s)
    for s in sockets:
        s.stop.set()
    await asyncio.wait(runners, timeout=10)
    gc.unfreeze()

    latencies, avl_latencies, delivered, expected = [], [], 0, 0
    for s in sockets:
        for key in load.ok:
            expected += 1
            if key in s.received:
                delivered += 1
                latencies.append((s.received[key] - load.started[key]) * 1000)
        for key in load.avl_ok:
            if key in s.avl_received:
                avl_latencies.append((s.avl_received[key] - load.avl_started[key]) * 1000)
    avl_expected = len(load.avl_ok) * len(sockets)
    return {
        "offered": offered,
        "failures": load.failures,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "delivered": delivered / expected if expected else 0.0,
        "avl_p99": percentile(avl_latencies, 99) if console else None,
        "avl_delivered": (len(avl_latencies) / avl_expected if avl_expected else 0.0) if console else None,
    }


async def raw_pubsub(*, redis_url: str, subscribers: int, rate: float, duration: float) -> dict:
    """The physical floor of fan-out: redis-py pub/sub to `subscribers` connections (one each, as each
    console is one socket) at `rate` messages/s in this same process; publish → receipt on every one."""
    import redis.asyncio as aioredis

    channel = f"cad-bench-raw-{uuid.uuid4().hex}"  # pub/sub channels are server-wide: make ours unique
    client = aioredis.from_url(redis_url, max_connections=subscribers + 8)
    received: list[dict] = [{} for _ in range(subscribers)]

    async def listen(index: int, pubsub) -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                received[index].setdefault(message["data"], time.monotonic())

    pubsubs = []
    for _ in range(subscribers):
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        pubsubs.append(pubsub)
    listeners = [asyncio.ensure_future(listen(i, p)) for i, p in enumerate(pubsubs)]
    while (await client.pubsub_numsub(channel))[0][1] < subscribers:
        await asyncio.sleep(0.1)
    sent: dict[bytes, float] = {}
    start = time.monotonic()
    for n in itertools.count():
        due = start + n / rate
        if due - start >= duration:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        key = str(n).encode()
        sent[key] = time.monotonic()
        await client.publish(channel, key)
    await asyncio.sleep(2.0)
    for listener in listeners:
        listener.cancel()
    for pubsub in pubsubs:
        await pubsub.aclose()
    await client.aclose()
    latencies = [(got[key] - at) * 1000 for got in received for key, at in sent.items() if key in got]
    return {
        "p99": percentile(latencies, 99),
        "delivered": len(latencies) / (len(sent) * subscribers) if sent else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="API operations per second (open loop)")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--daphne-procs",
        type=int,
        default=max(1, min(4, os.cpu_count() or 1)),
        help="Daphne processes behind the one address (cad.serve --procs); default: cpus, max 4",
    )
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument(
        "--sweep", action="store_true", help=f"find the largest of {SWEEP} meeting the floors"
    )
    args = parser.parse_args()

    database_url, redis_url = production_urls("console_latency")
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("benchmark hard limit")))
    signal.alarm(HARD_LIMIT_S)

    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    bench_url = bench_database("console")
    os.environ["DATABASE_URL"] = bench_url
    logdir = Path(tempfile.mkdtemp(prefix="cad-bench-"))
    try:
        setup_django()
        logging.getLogger("httpx").setLevel(logging.WARNING)
        progress(f"seeding {bench_url.rsplit('/', 1)[-1]} with {args.units} units")
        creds = prepare(args.units)
        from django.db import connections

        connections.close_all()
        env = {
            **os.environ,
            "DATABASE_URL": bench_url,
            "CAD_BENCH_BASELINE": "1",
            "DJANGO_SECURE_COOKIES": "false",
            "LOG_LEVEL": "WARNING",
        }
        with Server(args.daphne_procs, env, logdir / "serve.log") as server:
            procs_used = len(server.pids)
            progress(f"cad.serve: {procs_used} Daphne process(es) {server.pids} behind {server.base}")
            run = lambda clients, console, duration=args.duration: asyncio.run(  # noqa: E731
                phase(
                    name="console" if console else "baseline",
                    creds=creds,
                    server=server,
                    clients=clients,
                    rate=args.rate,
                    duration=duration,
                    console=console,
                )
            )
            console = run(args.clients, True)
            progress(f"console: {console}")
            baseline = run(args.clients, False)
            progress(f"baseline: {baseline}")

            def raw(clients):
                return asyncio.run(
                    raw_pubsub(
                        redis_url=redis_url, subscribers=clients, rate=args.rate, duration=args.duration
                    )
                )

            raw_result = raw(args.clients)
            progress(f"raw pub/sub: {raw_result}")
            max_clients, sweep_rows = None, []
            if args.sweep:
                # The largest size meeting the floors. Shared machines are noisy: keep going past a failing
                # size, and stop after two failures in a row once something larger than it failed too.
                failures_in_row = 0
                for clients in SWEEP:
                    result = console if clients == args.clients else run(clients, True, args.duration)
                    raw_point = raw_result if clients == args.clients else raw(clients)
                    sweep_rows.append(
                        {
                            "clients": clients,
                            "console_p99_ms": round(result["p99"], 1),
                            "raw_pubsub_p99_ms": round(raw_point["p99"], 1),
                            "delivered_fraction": round(result["delivered"], 4),
                        }
                    )
                    passed = result["p99"] < P99_FLOOR_MS and result["delivered"] == 1.0
                    progress(
                        f"sweep {clients}: p99={result['p99']:.1f} ms delivered={result['delivered']:.4f}"
                    )
                    if passed:
                        max_clients, failures_in_row = clients, 0
                    else:
                        failures_in_row += 1
                        if failures_in_row == 2:
                            break
    finally:
        signal.alarm(0)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001, S110 - best effort before dropping the database
            pass
        drop_bench_database(bench_url)

    ratio = console["p99"] / baseline["p99"] if baseline["p99"] else float("nan")
    print(
        f"daphne_processes={procs_used} (cad.serve, one address; one event loop and one sync thread each; "
        f"{os.cpu_count()} cpu shared with the load generator and clients)",
        flush=True,
    )
    results = {
        "daphne_procs": procs_used,
        "offered_ops": console["offered"],
        "api_failures": console["failures"] + baseline["failures"],
        "avl_p99_ms": console["avl_p99"],
        "avl_delivered_fraction": console["avl_delivered"],
        "baseline_delivered_fraction": baseline["delivered"],
        "console_p50_ms": console["p50"],
        "console_p99_ms": console["p99"],
        "baseline_p99_ms": baseline["p99"],
        "console_vs_baseline_p99": ratio,
        "raw_pubsub_p99_ms": raw_result["p99"],
        "raw_pubsub_delivered_fraction": raw_result["delivered"],
        "console_vs_raw_p99": console["p99"] / raw_result["p99"] if raw_result["p99"] else float("nan"),
        "delivered_fraction": console["delivered"],
        "console_max_clients": max_clients if args.sweep else "n/a (use --sweep)",
        "p99_floor_ms": P99_FLOOR_MS,
        "p99_under_floor": console["p99"] < P99_FLOOR_MS and console["delivered"] == 1.0,
    }
    if sweep_rows:
        results["sweep_csv"], _png = write_sweep(
            "console_latency_sweep",
            sweep_rows,
            x="clients",
            series={"console_p99_ms": "console p99", "raw_pubsub_p99_ms": "raw Redis pub/sub p99"},
            xlabel=f"connected consoles ({args.rate:g} API operations/s, {procs_used} Daphne processes)",
            ylabel="ms (API call → every console)",
            floor=P99_FLOOR_MS,
        )
    report(
        "console_latency",
        {
            "clients": args.clients,
            "rate": args.rate,
            "duration": args.duration,
            "daphne_procs": args.daphne_procs,
        },
        results,
    )


if __name__ == "__main__":
    main()

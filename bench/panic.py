"""Panic-button benchmark (production path): 2,000 buttons pressed over SIA DC-09 within a minute, each
press timed from the frame sent to the incident on a dispatcher's console websocket.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cad_x REDIS_URL=redis://127.0.0.1:6379/N \\
        python bench/panic.py [--buttons 2000] [--seconds 60] [--encrypted 0.5] [--procs N]

Recreates a dedicated database (default `<db>_bench_panic`), loads the CNIE catalogue and `--buttons`
buttons (a share of them AES-encrypted), starts `python -m cad.serve` and the DC-09 receiver
(`manage.py dc09_receiver`, its own process, as `run.py` runs it), subscribes a dispatcher console, and
dials one SIA-DCS or ADM-CID press per button at an even pace over `--seconds` (a new TCP connection per
press, as a panel does; a NAK or a silent receiver is retried up to 3 times with the same sequence number,
as a panel would). Prints
`panic_to_console_p50_ms` / `panic_to_console_p99_ms` (frame sent → `panic.pressed` with the incident's
folio received on the socket), `panic_lost` (presses that never reached the console) and the baseline of a
bare DC-09 round trip to the same receiver for a heartbeat (`panic_dc09_heartbeat_p50_ms`).
Floor: p99 < 1000 ms, none lost. Stops its processes and drops its database.
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
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
    percentile,
    production_urls,
    progress,
    report,
)
from sensors.dialler import build_frame, send_frame  # noqa: E402 - no Django needed

PASSWORD = "bench-panic-2026"
AES_KEY = "0123456789ABCDEF"
SEED = """
from accounts.models import Role, User
from cad.models import Center, EventStream
from sensors.models import PanicButton
center = Center.objects.create(code="MEX", name="Estado de México C5", cve_ent="15")
for name in EventStream.Name.values:
    EventStream.objects.get_or_create(center=center, name=name)
encrypted = int({buttons} * {encrypted})
PanicButton.objects.bulk_create([
    PanicButton(center=center, account=f"{i:06X}", name=f"Botón {i}", lat=19.0 + (i % 100) * 0.005,
                lon=-99.9 + (i // 100) * 0.01, address=f"Calle {i}", aes_key="{key}" if i <= encrypted else "")
    for i in range(1, {buttons} + 1)
])
dispatcher = User.objects.create(username="desp-bench", role=Role.DISPATCHER, center=center)
dispatcher.set_password("{password}")
dispatcher.save()
"""


async def _listen(base, cookies, seen: dict, stop: asyncio.Event, ready: asyncio.Event) -> None:
    async with console_socket(base, cookies) as ws:
        await ws.send(json.dumps({"type": "subscribe", "streams": {"console": None}}))
        last = None
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=0.5))
            except TimeoutError:
                continue
            kind = message.get("type")
            if kind == "hello":
                last = message["seq"]
                ready.set()
            elif kind == "panic.pressed":
                seen.setdefault(message["payload"]["button"]["account"], time.time())
            if "seq" in message and kind not in ("hello", "resync") and last is not None:
                if message["seq"] > last + 1:  # a gap: ask the server to replay (none is lost)
                    await ws.send(json.dumps({"type": "resume", "stream": "console", "seq": last}))
                last = max(last, message["seq"])


async def _press(port: int, account: str, index: int, encrypted: bool, sent: dict, answers: dict) -> None:
    for _attempt in range(4):
        if index % 2:
            frame = build_frame(
                account, code="PA", sequence=index % 9999 + 1, key=AES_KEY if encrypted else None
            )
        else:
            frame = build_frame(
                account,
                code="1120",
                protocol="ADM-CID",
                sequence=index % 9999 + 1,
                key=AES_KEY if encrypted else None,
            )
        sent.setdefault(account, time.time())
        try:
            answer = await send_frame("127.0.0.1", port, frame, timeout=5)
        except OSError:
            answer = None
        answers[account] = answer
        if answer == "ACK":
            return
        await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--buttons", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--encrypted", type=float, default=0.5, help="share of AES-encrypted accounts")
    parser.add_argument("--procs", type=int, default=max(1, os.cpu_count() or 1))
    args = parser.parse_args()
    base_db, redis_url = production_urls("panic")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
    url = bench_database("panic")
    progress(f"fresh database {urlsplit(url).path.lstrip('/')}")
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SECURE_COOKIES": "false", "LOG_LEVEL": "WARNING"}
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([*manage, "import_cnie"], env=env, cwd=ROOT, check=True, capture_output=True)
    seed = (
        SEED.replace("{buttons}", str(args.buttons))
        .replace("{encrypted}", str(args.encrypted))
        .replace("{key}", AES_KEY)
        .replace("{password}", PASSWORD)
    )
    subprocess.run([*manage, "shell", "-c", seed], env=env, cwd=ROOT, check=True, capture_output=True)
    accounts = [f"{i:06X}" for i in range(1, args.buttons + 1)]
    encrypted = set(accounts[: int(args.buttons * args.encrypted)])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dc09_port = probe.getsockname()[1]
    log = tempfile.NamedTemporaryFile(prefix="panic-serve-", suffix=".log", delete=False)  # noqa: SIM115
    log.close()
    receiver_log = open(log.name + ".dc09", "wb")  # noqa: SIM115 - closed below
    receiver = subprocess.Popen(
        [*manage, "dc09_receiver", "--host", "127.0.0.1", "--port", str(dc09_port)],
        env=env,
        cwd=ROOT,
        stdout=receiver_log,
        stderr=subprocess.STDOUT,
    )
    sent: dict = {}
    answers: dict = {}
    seen: dict = {}
    beats: list = []
    try:
        with Server(args.procs, env, Path(log.name)) as server:
            base, procs_used = server.base, len(server.pids)
            cookies = console_login(base, "desp-bench", PASSWORD)

            async def run() -> None:
                for _ in range(100):  # the receiver is up when a heartbeat is acknowledged
                    try:
                        if (
                            await send_frame(
                                "127.0.0.1", dc09_port, build_frame(accounts[-1], code="RP"), timeout=2
                            )
                            == "ACK"
                        ):
                            break
                    except OSError:
                        await asyncio.sleep(0.2)
                for seq in range(2, 22):  # baseline: bare DC-09 round trips (heartbeats: no incident)
                    began = time.time()
                    frame = build_frame(accounts[-1], code="RP", sequence=seq)
                    await send_frame("127.0.0.1", dc09_port, frame, timeout=5)
                    beats.append((time.time() - began) * 1000)
                stop, ready = asyncio.Event(), asyncio.Event()
                listener = asyncio.create_task(_listen(base, cookies, seen, stop, ready))
                await asyncio.wait_for(ready.wait(), timeout=15)
                progress(
                    f"pressing {len(accounts)} buttons over DC-09 in {args.seconds:.0f} s ({procs_used} Daphne process(es))"
                )
                start = time.monotonic()
                tasks = []
                for index, account in enumerate(accounts):
                    await asyncio.sleep(
                        max(0.0, start + index * args.seconds / len(accounts) - time.monotonic())
                    )
                    tasks.append(
                        asyncio.create_task(
                            _press(dc09_port, account, index, account in encrypted, sent, answers)
                        )
                    )
                await asyncio.gather(*tasks)
                deadline = time.monotonic() + 15
                while len(seen) < len(accounts) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                stop.set()
                await listener

            asyncio.run(run())
    finally:
        receiver.terminate()
        receiver.wait(timeout=20)
        receiver_log.close()
        drop_bench_database(url)

    latencies = [(seen[a] - sent[a]) * 1000 for a in accounts if a in seen and a in sent]
    lost = len(accounts) - len(latencies)
    p99 = percentile(latencies, 99)
    report(
        "panic",
        {"buttons": args.buttons, "seconds": args.seconds, "encrypted": args.encrypted, "procs": procs_used},
        {
            "daphne_procs": procs_used,
            "panic_dc09_heartbeat_p50_ms": round(percentile(beats, 50), 1),
            "panic_acked": sum(1 for a in accounts if answers.get(a) == "ACK"),
            "panic_lost": lost,
            "panic_to_console_p50_ms": round(percentile(latencies, 50), 1),
            "panic_to_console_p99_ms": round(p99, 1),
            "floor_p99_lt_1000": "pass" if p99 < 1000 else "FAIL",
            "floor_none_lost": "pass" if lost == 0 else "FAIL",
        },
    )


if __name__ == "__main__":
    main()

"""The raw stack's escalation, without the product: the physical limit the product is compared against.

    DATABASE_URL=postgres://… REDIS_URL=redis://… python bench/raw_stack.py [--rate 50] [--seconds 20]

What an escalation must do at the least, on the same stack and host: commit a row (the outbox), hand its id
to a Celery worker on threads through Redis (acks_late), the worker POSTs it to a Django view under Daphne,
which commits the peer's row and answers 201 (bench/raw_stack_app.py). Open loop at `--rate` per second:

* `raw_p50_ms` / `raw_p99_ms`: the sender's commit → the receiver's commit (both rows' clock_timestamp(), one
  PostgreSQL clock).
* `raw_per_s`: rows received per second over the run.

bench/escalation.py runs this in the same run, after the product, at the same rate (`raw_*`,
`escalation_vs_raw_p99`): on a slower host both move, the ratio much less. Tables `bench_raw_out` and
`bench_raw_in` live in DATABASE_URL's database for the run and are dropped at the end.
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import percentile, production_urls, progress, report  # noqa: E402

QUEUE, OUT_TABLE, IN_TABLE = "bench-raw", "bench_raw_out", "bench_raw_in"
START_TIMEOUT_S, DRAIN_TIMEOUT_S = 60, 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg(database_url: str):
    import environ
    import psycopg

    cfg = environ.Env.db_url_config(database_url)
    return psycopg.connect(
        dbname=cfg["NAME"],
        host=cfg["HOST"] or None,
        port=cfg["PORT"] or None,
        user=cfg["USER"] or None,
        password=cfg["PASSWORD"] or None,
        autocommit=True,
    )


def _wait(condition, what: str, timeout: float, processes=()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes:
            if process.poll() is not None:
                raise RuntimeError(f"raw stack: {what}: a process exited ({process.args[:3]})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"raw stack: {what} did not happen in {timeout} s")
        time.sleep(0.1)


def _accepts(port: int) -> bool:
    """The receiver listens (the warm-up task is not retried: sent before Daphne listens, it was lost)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _received(conn) -> int:
    return conn.execute(f"SELECT count(*) FROM {IN_TABLE}").fetchone()[0]  # noqa: S608 - constant


def measure(database_url: str, redis_url: str, *, rate: float, count: int, workdir: Path) -> dict:
    """Start the raw receiver and worker, send `count` rows at `rate`/s, stop them; the raw_* results."""
    from celery import Celery

    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAW_DATABASE_URL": database_url,
        "RAW_REDIS_URL": redis_url,
        "RAW_RECEIVER_URL": f"http://127.0.0.1:{port}",
    }
    bin_dir = Path(sys.executable).parent
    conn = _pg(database_url)
    conn.execute(
        f"DROP TABLE IF EXISTS {OUT_TABLE}, {IN_TABLE}; "
        f"CREATE TABLE {OUT_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp()); "
        f"CREATE TABLE {IN_TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())"
    )
    producer = Celery("raw", broker=redis_url)
    producer.conf.task_default_queue = QUEUE
    processes = []
    try:
        with open(workdir / "raw-stack.log", "wb") as log:
            processes.append(
                subprocess.Popen(
                    [
                        bin_dir / "daphne",
                        "-b",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "bench.raw_stack_app:application",
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "bench.raw_stack_app:celery_app", "worker",
                     "-P", "threads", "-c", "4", "-Q", QUEUE, "-n", f"raw{port}@%h",
                     "--without-gossip", "--without-mingle", "-l", "warning"],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
            with producer.connection_for_write() as broker:
                broker.default_channel.queue_purge(QUEUE)
            _wait(lambda: _accepts(port), "the receiver's port", START_TIMEOUT_S, processes)
            # Warm-up: one row end to end proves both are up (and loads their code) before the clock starts.
            warm = conn.execute(f"INSERT INTO {OUT_TABLE} DEFAULT VALUES RETURNING id").fetchone()[0]  # noqa: S608
            producer.send_task("raw.deliver", [warm])
            _wait(lambda: _received(conn) == 1, "the warm-up row", START_TIMEOUT_S, processes)
            conn.execute(f"TRUNCATE {OUT_TABLE}, {IN_TABLE}")

            progress(f"raw stack: {count} rows at {rate}/s, no product")
            start = time.monotonic()
            for n in range(count):
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                ident = conn.execute(f"INSERT INTO {OUT_TABLE} DEFAULT VALUES RETURNING id").fetchone()[0]  # noqa: S608
                producer.send_task("raw.deliver", [ident])
            _wait(lambda: _received(conn) >= count, f"{count} rows received", DRAIN_TIMEOUT_S, processes)
        rows = conn.execute(
            f"SELECT extract(epoch FROM i.at - o.at) * 1000, extract(epoch FROM o.at), extract(epoch FROM i.at) "  # noqa: S608
            f"FROM {OUT_TABLE} o JOIN {IN_TABLE} i USING (id)"
        ).fetchall()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        conn.execute(f"DROP TABLE IF EXISTS {OUT_TABLE}, {IN_TABLE}")
        conn.close()
    latencies = [float(row[0]) for row in rows]
    span = max(float(row[2]) for row in rows) - min(float(row[1]) for row in rows)
    return {
        "raw_p50_ms": round(percentile(latencies, 50), 1),
        "raw_p99_ms": round(percentile(latencies, 99), 1),
        "raw_per_s": round(len(rows) / max(span, 1e-3), 1),
    }


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=50.0, help="rows per second (50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run (20)")
    args = parser.parse_args()
    database_url, redis_url = production_urls("raw_stack")
    count = int(args.rate * args.seconds)
    results = measure(
        database_url,
        redis_url,
        rate=args.rate,
        count=count,
        workdir=Path(tempfile.mkdtemp(prefix="bench-raw-")),
    )
    report("raw_stack", {"rate": args.rate, "seconds": args.seconds}, {"rows": count, **results})


if __name__ == "__main__":
    main()

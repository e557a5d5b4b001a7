"""Shared plumbing for benchmarks: Django setup, percentiles, and the results table in docs/benchmarks.md.

Every benchmark prints its `key=value` results last and appends one dated row to docs/benchmarks.md.
"""

import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Rows are appended by the scripts in `bench/` (newest last). Machines are shared and noisy: compare\n"
    "medians and the ratio against the baseline measured in the same run, not absolute numbers across rows.\n\n"
    "| date (UTC) | benchmark | backend | parameters | results |\n|---|---|---|---|---|\n"
)


class Server:
    """`python -m cad.serve --procs N` on one free 127.0.0.1 port (one address for every client), stopped on
    exit. `pids` are its Daphne processes; `connections()` counts established connections per process."""

    def __init__(self, procs: int, env: dict, log_path: Path, *, start_timeout: float = 60.0):
        self.procs, self.env, self.log_path, self.start_timeout = procs, env, log_path, start_timeout
        self.port = 0
        self.base = ""
        self.pids: list[int] = []
        self.process: subprocess.Popen | None = None
        self.log = None

    def __enter__(self) -> "Server":
        import httpx

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cad.serve", "--port", str(self.port), "--procs", str(self.procs)],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                if httpx.get(f"{self.base}/login/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"cad.serve --procs {self.procs} did not start; see {self.log_path}")
            time.sleep(0.2)
        self.pids = child_pids(self.process.pid)
        time.sleep(1.0)  # the first process answered; give the others a moment to finish loading the app
        return self

    def connections(self) -> dict[int, int]:
        """Established TCP connections on our port held by each Daphne process (Linux /proc)."""
        return connections_per_process(self.pids, self.port)

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log:
            self.log.close()


def child_pids(parent: int) -> list[int]:
    """Direct children of `parent`, from /proc/<pid>/stat (Linux; no psutil)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # fields after "(comm)": state, ppid, …
        if ppid == parent:
            children.append(int(entry.name))
    return sorted(children)


def connections_per_process(pids: list[int], port: int) -> dict[int, int]:
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, local port
                established.add(fields[9])
    counts = {}
    for pid in pids:
        count = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in established:
                    count += 1
        except OSError:
            pass
        counts[pid] = count
    return counts


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
    import django

    django.setup()


def backend() -> str:
    db = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    layer = "redis" if os.environ.get("REDIS_URL") else "in-memory"
    return (
        f"{db}+{layer} ({platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cpu)"
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def progress(message: str) -> None:
    print(f"[{datetime.now(tz=UTC).strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def report(name: str, parameters: dict, results: dict) -> None:
    """Print `key=value` lines (last in the output) and append a dated row to docs/benchmarks.md."""
    RESULTS.parent.mkdir(exist_ok=True)
    if not RESULTS.exists():
        RESULTS.write_text(HEADER, encoding="utf-8")
    params = ", ".join(f"{k}={v}" for k, v in parameters.items())
    values = ", ".join(f"{k}={_fmt(v)}" for k, v in results.items())
    row = f"| {datetime.now(tz=UTC):%Y-%m-%d %H:%M} | {name} | {backend()} | {params} | {values} |\n"
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write(row)
    for key, value in results.items():
        print(f"{key}={_fmt(value)}", flush=True)


def _fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)

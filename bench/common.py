"""Shared plumbing for benchmarks: Django setup, percentiles, and the results table in docs/benchmarks.md.

Every benchmark prints its `key=value` results last and appends one dated row to docs/benchmarks.md.
"""

import contextlib
import csv
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"
SWEEPS = ROOT / "docs" / "bench"  # sweep points (CSV) and charts (PNG), linked from docs/benchmarks.md
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
        # Servers refuse to start with DEBUG off and no secret key: a throwaway one for this run.
        env = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), **self.env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cad.serve", "--port", str(self.port), "--procs", str(self.procs)],
            env=env,
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
                self.process.wait(timeout=40)  # cad.serve's own stop timeout is the drain timeout + 5 s
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pid in self.pids:  # never leave a Daphne child behind to load the next run
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
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


def bench_database(suffix: str, *, fresh: bool = True) -> str:
    """The URL of a dedicated bench database named after DATABASE_URL's (`<name>_bench_<suffix>`, so each
    developer's benches stay under their own prefix), recreated when `fresh`. Without PostgreSQL: a
    temporary SQLite file."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        path = Path(tempfile.gettempdir()) / f"cad_bench_{suffix}.sqlite3"
        if fresh:
            path.unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'cad'}_bench_{suffix}"
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if fresh and exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if fresh or not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_bench_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")
    # One throwaway key for this run, shared with the servers it starts (a session made here must verify
    # there; servers refuse DEBUG off without a key).
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    import django

    django.setup()


def session_cookie(username: str) -> str:
    """A logged-in session key for `username` made with Django's session engine (for console sockets)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.models import User

    user = User.objects.get(username=username)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "accounts.backends.CenterModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


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


def production_urls(benchmark: str) -> tuple[str, str]:
    """(DATABASE_URL, REDIS_URL) of the production path, or exit saying what to set."""
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        sys.exit(f"{benchmark} needs the production path: set DATABASE_URL (PostgreSQL) and REDIS_URL")
    return database_url, redis_url


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


def write_sweep(
    name: str, rows: list[dict], *, x: str, series: dict[str, str], xlabel: str, ylabel: str, floor=None
) -> tuple[Path, Path | None]:
    """Write a sweep's points to docs/bench/<name>.csv and draw docs/bench/<name>.png (log-scaled x): one
    line per `series` column (label by column), a dashed line at `floor`. The chart needs matplotlib
    (`pip install -e .[bench]`); without it only the CSV is written. Returns the paths written, relative to
    the repository."""
    SWEEPS.mkdir(parents=True, exist_ok=True)
    csv_path = SWEEPS / f"{name}.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        progress("matplotlib is not installed (pip install -e .[bench]): CSV only, no chart")
        return csv_path.relative_to(ROOT), None
    figure, axes = pyplot.subplots(figsize=(7, 4.2), dpi=110)
    xs = [float(row[x]) for row in rows]
    for column, label in series.items():
        axes.plot(xs, [float(row[column]) for row in rows], marker="o", label=label)
    if floor is not None:
        axes.axhline(floor, color="grey", linestyle="--", linewidth=1, label=f"floor {floor:g}")
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(f"{name} ({backend()}, {datetime.now(tz=UTC):%Y-%m-%d})", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    png_path = SWEEPS / f"{name}.png"
    figure.savefig(png_path)
    pyplot.close(figure)
    return csv_path.relative_to(ROOT), png_path.relative_to(ROOT)


def console_login(base: str, username: str, password: str) -> dict:
    """Log a console user in through the login page; returns the session cookies for a websocket."""
    import httpx

    with httpx.Client(base_url=base, timeout=10) as client:
        client.get("/login/")
        client.post(
            "/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": f"{base}/login/"},
        )
        cookies = dict(client.cookies)
    if "sessionid" not in cookies:
        raise RuntimeError(f"login of {username} failed")
    return cookies


def console_socket(base: str, cookies: dict):
    """A websocket to /ws/console/ with the session cookies (subscribe after connecting)."""
    import websockets

    cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
    url = base.replace("http://", "ws://") + "/ws/console/"
    return websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base}, max_size=2**24)

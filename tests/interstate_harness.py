"""Two real CAD instances on this host — Estado de México (MEX) and Ciudad de México (CDMX) — for the
end-to-end, fault and browser tests of interstate escalation (tests/e2e, tests/browser).

Laid out exactly as `python3 run.py interstate` lays them out (run.instance_env, run.register_peers): each
instance has its own PostgreSQL database (`<DATABASE_URL name>_e2e_mex` / `_e2e_cdmx`, recreated), its own
Redis namespace on the suite's REDIS_URL (CAD_INSTANCE: a random prefix whose keys are deleted at the end),
Daphne (`python -m cad.serve`), a Celery worker and Celery beat as subprocesses, and they are registered as
each other's peers with fresh secrets. Between them: real HTTP, signed.

One pair per test session (tests/conftest.py `two_centres`), shared by every test that asks for it. Fault
tests stop, freeze, kill and restart processes through it; `heal()` (called before each test by the
fixture) brings back whatever a previous test left down. Timings (sweeper, lease, broker visibility) are
shortened so that recoveries take seconds, not the production minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

import run

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "c4-demo-2026"
UNITS = 20  # per centre: enough to assign, quick to seed
# Short recovery timings (production defaults are in cad/settings.py and docs/interstate.md).
FAST = {
    "CELERY_VISIBILITY_TIMEOUT_S": "6",
    "CAD_INTERSTATE_SWEEP_AFTER_S": "2",
    "CAD_INTERSTATE_SWEEP_EVERY_S": "1",
    "CAD_INTERSTATE_LEASE_S": "5",
    "CAD_INTERSTATE_RETRY_BACKOFF_MAX_S": "2",
    "CAD_INTERSTATE_HTTP_TIMEOUT_S": "3",
}


class HarnessError(RuntimeError):
    pass


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def peer_headers(
    method: str,
    path: str,
    body: bytes,
    *,
    key_id: str,
    secret: str,
    idempotency_key: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict:
    """The headers of a signed peer request, built from docs/interstate.md section 2 alone (independently of
    interstate.signing: a conformance check of the document too)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = secrets.token_urlsafe(16) if nonce is None else nonce
    canonical = "\n".join([method.upper(), path, str(timestamp), nonce, hashlib.sha256(body).hexdigest()])
    headers = {
        "X-CAD-Key-Id": key_id,
        "X-CAD-Timestamp": str(timestamp),
        "X-CAD-Nonce": nonce,
        "X-CAD-Signature": hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable, *, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def login(
    base: str, username: str, *, cookie: str, csrf_cookie: str = "csrftoken", password: str = PASSWORD
) -> httpx.Client:
    """An httpx client logged in through the real login form (session cookie `cookie`, CSRF cookie
    `csrf_cookie`: both per instance), CSRF header set."""
    client = httpx.Client(base_url=base, timeout=15)
    client.get("/login/")
    response = client.post(
        "/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": client.cookies[csrf_cookie]},
        headers={"Referer": f"{base}/login/"},
    )
    if response.status_code not in (200, 302) or cookie not in client.cookies:
        raise HarnessError(
            f"login of {username} at {base} failed: {response.status_code} {response.text[:200]}"
        )
    client.headers["X-CSRFToken"] = client.cookies[csrf_cookie]
    client.headers["Referer"] = f"{base}/"
    return client


class Console:
    """A console's websocket (the real protocol: subscribe, then event envelopes), read synchronously."""

    def __init__(self, socket_, code: str):
        self.ws, self.code = socket_, code
        self.seen: list[dict] = []

    def wait_for(self, predicate: Callable[[dict], bool], *, timeout: float = 10.0) -> dict:
        """The first envelope (already seen or arriving within `timeout`) for which `predicate` holds."""
        for message in self.seen:
            if predicate(message):
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                break
            self.seen.append(message)
            if predicate(message):
                return message
        types = [m.get("type") for m in self.seen][-20:]
        raise AssertionError(f"{self.code} console: no matching event within {timeout} s; last types {types}")


class Centre:
    """One running instance: its processes, its database, and clients for its users."""

    PROCESSES = ("web", "worker", "beat")

    def __init__(self, code: str, env: dict, port: int, workdir: Path, *, web_procs: int, concurrency: int):
        self.code, self.tag = code, code.lower()
        self.env, self.port, self.workdir = env, port, workdir
        self.web_procs, self.concurrency = web_procs, concurrency
        self.base = f"http://127.0.0.1:{port}"
        self.instance = env["CAD_INSTANCE"]
        self.cookie = f"{self.instance}_sessionid"
        self.csrf_cookie = f"{self.instance}_csrftoken"
        self.procs: dict[str, subprocess.Popen] = {}
        self.frozen: set[str] = set()
        self._clients: dict[str, httpx.Client] = {}
        self._log_marks: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<Centre {self.code} {self.base}>"

    # --- processes ----------------------------------------------------------------------------
    def command(self, name: str) -> list[str]:
        python = sys.executable
        if name == "web":
            serve = ["-m", "cad.serve", "--host", "127.0.0.1", "--port", str(self.port)]
            return [python, *serve, "--procs", str(self.web_procs)]
        if name == "worker":
            pool = [
                "--concurrency",
                str(self.concurrency),
            ]  # the pool of settings.CELERY_WORKER_POOL, as run.py
            return [
                python,
                *("-m", "celery", "-A", "cad", "worker", *pool, "-n", f"{self.tag}@%h"),
                *("--without-gossip", "--without-mingle", "-l", "info"),
            ]
        schedule = self.workdir / f"beat-{self.tag}"
        return [python, "-m", "celery", "-A", "cad", "beat", "-s", str(schedule), "-l", "info"]

    def log(self, name: str) -> Path:
        return self.workdir / f"{self.tag}-{name}.log"

    def start(self, name: str) -> None:
        self.spawn(name)
        self.wait_ready(name)

    def spawn(self, name: str) -> None:
        """Start one process, in its own session (away from the terminal's signals to pytest)."""
        if self.running(name):
            return
        self._log_marks[name] = self.log(name).stat().st_size if self.log(name).exists() else 0
        with self.log(name).open("ab") as log:
            self.procs[name] = subprocess.Popen(  # noqa: S603
                self.command(name),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, name: str) -> None:
        """Web answers /login/; a worker logged "ready." since it was started; beat is ready at once."""
        if name == "web":
            wait_until(self._answers, timeout=60, interval=0.1, what=f"{self.code} web on {self.base}")
        elif name == "worker":
            mark = self._log_marks.get(name, 0)
            wait_until(
                lambda: self._check_alive(name) or b" ready." in self.log(name).read_bytes()[mark:],
                timeout=60,
                interval=0.1,
                what=f"{self.code} celery worker ready",
            )
        self._check_alive(name)

    def _answers(self) -> bool:
        self._check_alive("web")
        try:
            return httpx.get(f"{self.base}/login/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _check_alive(self, name: str) -> None:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is not None:
            tail = self.log(name).read_text(errors="replace")[-3000:]
            raise HarnessError(f"{self.code} {name} exited with {proc.returncode}:\n{tail}")

    def running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def signal(self, name: str, signum: int) -> None:
        """Signal the process itself (cad.serve forwards SIGTERM to its Daphne processes; Celery's main
        process stops its pool)."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            self.thaw(name)
            proc.send_signal(signum)

    def stop(self, name: str, *, timeout: float = 20) -> None:
        """Stop gracefully (SIGTERM: cad.serve and Celery finish what they are doing)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        self.signal(name, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(name)

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything it started (a worker's pool children, cad.serve's Daphne
        processes, which run in their own process group): a crash."""
        proc = self.procs.get(name)
        if proc is None:
            return
        for pid in [proc.pid, *descendants(proc.pid)]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.frozen.discard(name)

    def freeze(self, name: str) -> None:
        """SIGSTOP the process and its descendants: the listening socket still accepts connections (the
        kernel does that) but nothing answers — a hung peer."""
        self._signal_tree(name, signal.SIGSTOP)
        self.frozen.add(name)

    def thaw(self, name: str) -> None:
        if name in self.frozen:
            self._signal_tree(name, signal.SIGCONT)
            self.frozen.discard(name)

    def _signal_tree(self, name: str, signum: int) -> None:
        proc = self.procs[name]
        for pid in [proc.pid, *descendants(proc.pid)]:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)

    def heal(self) -> None:
        for name in self.PROCESSES:
            self.thaw(name)
            if not self.running(name):
                self.start(name)

    def close_clients(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # --- clients ------------------------------------------------------------------------------
    def session(self, username: str) -> httpx.Client:
        """A client logged in as `username` (one per user, reused; sessions live in the database, so they
        survive a web restart)."""
        if username not in self._clients:
            self._clients[username] = login(
                self.base, username, cookie=self.cookie, csrf_cookie=self.csrf_cookie
            )
        return self._clients[username]

    @contextmanager
    def console(self, username: str = "despachador"):
        """The console websocket of `username`, subscribed to the console stream from now on."""
        from websockets.sync.client import connect

        client = self.session(username)
        cookie = f"{self.cookie}={client.cookies[self.cookie]}"
        url = f"ws://127.0.0.1:{self.port}/ws/console/"
        with connect(url, additional_headers={"Cookie": cookie}, origin=self.base, open_timeout=15) as ws:
            console = Console(ws, self.code)
            ws.send(json.dumps({"type": "subscribe", "streams": {"console": None}}))
            console.wait_for(lambda m: m.get("type") == "hello")
            yield console

    def sql(self, query: str, *params) -> list[tuple]:
        """Run SQL on this instance's database: rows of a query (writes go through the API, except where a
        test says why not)."""
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


class TwoCentres:
    """MEX and CDMX, registered as each other's peers. `mex` and `cdmx` are the Centres."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        workdir: Path,
        *,
        name: str = "e2e",
        timings: dict | None = None,
        web_procs: int = 1,
        concurrency: int = 1,
        units: int = UNITS,
    ):
        """`name` goes into the database names and the Redis prefix; `timings` override settings (default
        FAST); `web_procs` Daphne processes and `concurrency` worker pool size per centre."""
        self.workdir, self.units = workdir, units
        run_id = secrets.token_hex(3)
        base_env = {
            **run.served_env(),
            **(FAST if timings is None else timings),
            "DATABASE_URL": _sibling_database_url(database_url, name),
            "REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": "cad.settings",
            # Servers refuse DEBUG off without a key: a throwaway one unless the caller set one.
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
            "PYTHONUNBUFFERED": "1",
        }
        self.centres: dict[str, Centre] = {}
        for code, _cve_ent in run.PEER_CENTRES:
            port = free_port()
            env = run.instance_env(base_env, code=code, public_url=f"http://127.0.0.1:{port}")
            env["CAD_INSTANCE"] = f"{name}{run_id}{code.lower()}"  # unique on a Redis shared with other runs
            self.centres[code] = Centre(
                code, env, port, workdir, web_procs=web_procs, concurrency=concurrency
            )
        self.mex, self.cdmx = self.centres["MEX"], self.centres["CDMX"]
        self.credentials: dict = {}  # (receiver, sender) -> {key_id, secret} the receiver issued to the sender

    def __iter__(self):
        return iter(self.centres.values())

    def setup(self) -> None:
        # Migrate once; CDMX's database starts as a copy of MEX's (CREATE DATABASE … TEMPLATE).
        _recreate_database(self.mex.env["DATABASE_URL"])
        _run_in_parallel([(self.mex, ["migrate", "--noinput"])], what="migrate")
        _recreate_database(self.cdmx.env["DATABASE_URL"], template=self.mex.env["DATABASE_URL"])
        _run_in_parallel(
            [(c, ["seed_demo", "--center", c.code, "--units", str(self.units)]) for c in self],
            what="seed_demo",
        )
        self.credentials = run.register_peers(
            [
                (c.code, cve_ent, c.base, c.env)
                for c, (_code, cve_ent) in zip(self, run.PEER_CENTRES, strict=True)
            ]
        )
        for centre in self:
            for name in Centre.PROCESSES:
                centre.spawn(name)
        for centre in self:
            for name in Centre.PROCESSES:
                centre.wait_ready(name)

    def heal(self) -> None:
        for centre in self:
            centre.heal()

    def signed(
        self, method: str, path: str, *, sender: Centre, receiver: Centre, body: bytes = b"", **forge
    ) -> httpx.Response:
        """A peer request from `sender` to `receiver`, signed with the credentials `receiver` issued to
        `sender`; `forge` overrides any part of the signature (see `peer_headers`)."""
        credentials = {**self.credentials[(receiver.code, sender.code)], **forge}
        headers = peer_headers(method, path, body, **credentials)
        return httpx.request(method, f"{receiver.base}{path}", content=body, headers=headers, timeout=15)

    def teardown(self) -> None:
        """Kill every process of both centres (their databases and Redis keys go next, so nothing needs a
        graceful stop), delete their Redis keys and drop their databases. The drops run detached: each DROP
        DATABASE waits for a checkpoint (seconds on a busy server) and nothing here needs to wait for it."""
        for centre in self:
            centre.close_clients()
            for name in Centre.PROCESSES:
                centre.kill(name)
        for centre in self:
            _delete_redis_namespace(centre.env["REDIS_URL"], centre.instance)
        urls = [centre.env["DATABASE_URL"] for centre in self]
        subprocess.Popen(  # noqa: S603
            [sys.executable, "-c", DROP_DATABASES, *urls],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# --- scenario helpers (API calls a console makes) ----------------------------------------------
ZOCALO = {
    "lat": 19.4326,
    "lon": -99.1332,
    "address": "Plaza de la Constitución s/n, Centro, Ciudad de México",
}


def open_call(centre, *, username="operador", **location) -> str:
    """A 9-1-1 call that opens an accident incident (CNIE 10104) at `location`; returns the folio."""
    body = {
        "line": "911",
        "disposition": "new_incident",
        "incident_type_code": "10104",
        "narrative": "Choque con lesionados",
        "location_source": "caller",
        "confirm_outside_area": True,  # MEX's call-taker confirms a location in CDMX
        **(location or ZOCALO),
    }
    response = centre.session(username).post("/api/v1/calls/", json=body)
    assert response.status_code == 201, response.text
    return response.json()["call"]["incident"]


def interstate_of(centre, folio: str, username: str = "despachador") -> dict:
    response = centre.session(username).get(f"/api/v1/incidents/{folio}/interstate")
    assert response.status_code == 200, response.text
    return response.json()


def escalation_of(centre, folio: str) -> dict:
    (escalation,) = interstate_of(centre, folio)["escalations"]
    return escalation


def timeline_texts(centre, folio: str) -> list[str]:
    response = centre.session("despachador").get(f"/api/v1/incidents/{folio}/")
    assert response.status_code == 200, response.text
    return [entry["text"] for entry in response.json()["timeline"]]


def is_escalation(folio: str, **expected):
    def match(message: dict) -> bool:
        if message.get("type") != "interstate.escalation" or message["payload"]["folio"] != folio:
            return False
        escalation = message["payload"]["escalation"]
        return all(escalation.get(key) == value for key, value in expected.items())

    return match


# --- plumbing ---------------------------------------------------------------------------------
def _sibling_database_url(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{parts.path.lstrip('/') or 'cad'}_{suffix}"))


def _admin_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def _recreate_database(url: str, *, template: str = "") -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    copy = f' TEMPLATE "{urlsplit(template).path.lstrip("/")}"' if template else ""
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"{copy}')


DROP_DATABASES = """
import sys
from urllib.parse import urlsplit, urlunsplit
import psycopg
for url in sys.argv[1:]:
    parts = urlsplit(url)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
"""


def _delete_redis_namespace(url: str, instance: str) -> None:
    """Delete this instance's keys (channel layer, broker, cache): all start with `<instance>:`."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{instance}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def _run_in_parallel(jobs: list[tuple[Centre, list[str]]], *, what: str) -> None:
    """Run `manage.py <args>` for several centres at once (the machine has more than one core)."""
    running = [
        (
            centre,
            subprocess.Popen(  # noqa: S603
                [sys.executable, str(ROOT / "manage.py"), *args],
                cwd=ROOT,
                env=centre.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            ),
        )
        for centre, args in jobs
    ]
    for centre, proc in running:
        output, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise HarnessError(f"{what} for {centre.code} failed:\n{output.decode(errors='replace')[-3000:]}")

"""Realtime self-repair on the production path: a real server (`python -m cad.serve`) on a Redis this module
starts, freezes (SIGSTOP), kills and restarts itself; never the machine's Redis.

One server and one idle console serve the whole module: the idle console (its own centre, so no event
reaches it) is checked last, 45 s after it connected, while the other scenarios run meanwhile.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.test_serve import _children, _wait_gone

ROOT = Path(__file__).resolve().parents[2]
REDIS_PORTS = range(6400, 6421)
SERVER_PORTS = range(8300, 8320)
IDLE_S = 45.0

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed"),
    pytest.mark.django_db,  # so pytest-django creates the test database the server's database copies
]

SEED = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from accounts.tokens import issue_token
from accounts.models import Role
from tests.factories import CenterFactory, IncidentTypeFactory, SubtypeResponsePlanFactory, UserFactory

def session_for(user):
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "accounts.backends.CenterModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key

center, quiet = CenterFactory(code="MEX"), CenterFactory(code="QRO", name="Quieto")
SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1})
IncidentTypeFactory(code="10104")
dispatcher = UserFactory(username="despacho", role=Role.DISPATCHER, center=center)
UserFactory(username="operador", role=Role.CALL_TAKER, center=center, password="clave-de-prueba-1")
idle = UserFactory(username="quieto", role=Role.DISPATCHER, center=quiet)
supervisor = UserFactory(username="super", role=Role.SUPERVISOR, center=center)
print(json.dumps({
    "dispatcher": session_for(dispatcher),
    "idle": session_for(idle),
    "call_taker_token": issue_token(UserFactory(username="api", role=Role.CALL_TAKER, center=center)),
    "supervisor_token": issue_token(supervisor),
}))
"""


def _free_port(ports) -> int:
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip(f"no free port in {ports}")


class OwnRedis:
    """A redis-server of this test module (port 6400-6420): start, freeze, thaw, kill, restart."""

    def __init__(self):
        self.port = _free_port(REDIS_PORTS)
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("own redis-server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait()

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


def _database_url(tmpdir: Path, django_db_blocker) -> str:
    """A database for the server: on PostgreSQL a copy of the (migrated, empty) test database, which is
    much faster than migrating a new one; on SQLite a migrated temporary file."""
    from django.db import connections

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return f"sqlite:///{tmpdir / 'faults.sqlite3'}"
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'cad'}_faults"
    template = f"test_{parts.path.lstrip('/')}"  # pytest-django's test database
    with django_db_blocker.unblock():  # a template database must have no open connection (pooled ones too)
        for conn in connections.all():
            conn.close()
            if getattr(conn, "pool", None) is not None:
                conn.close_pool()
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


class Server:
    def __init__(self, base: str, redis: OwnRedis, creds: dict, log: Path):
        self.base, self.redis, self.creds, self.log = base, redis, creds, log
        self.ws_url = base.replace("http", "ws") + "/ws/console/"
        self.http = httpx.Client(base_url=base, timeout=30)

    def console(self, who: str = "dispatcher", **subscribe):
        ws = connect(
            self.ws_url,
            additional_headers={"Cookie": f"sessionid={self.creds[who]}", "Origin": self.base},
            ping_interval=None,  # like a browser: only the server pings
            legacy=True,  # kept open across tests, not as a context manager
        )
        ws.send(json.dumps({"type": "subscribe", "streams": subscribe or {"console": None}}))
        return ws

    def take_call(self) -> tuple[float, str]:
        """POST a 9-1-1 call that opens an incident; (seconds the request took, folio)."""
        from tests.factories import new_incident_call

        started = time.monotonic()
        response = self.http.post(
            "/api/v1/calls/",
            json=new_incident_call(),
            headers={"Authorization": f"Token {self.creds['call_taker_token']}"},
        )
        assert response.status_code == 201, response.text
        return time.monotonic() - started, response.json()["call"]["incident"]

    def metrics(self) -> dict:
        response = self.http.get(
            "/api/v1/realtime/metrics", headers={"Authorization": f"Token {self.creds['supervisor_token']}"}
        )
        assert response.status_code == 200, response.text
        return response.json()


def next_message(ws, wanted, timeout: float, what: str) -> tuple[dict, float]:
    """The next message on `ws` for which `wanted(message)`, and the seconds it took (fails after `timeout`)."""
    started = time.monotonic()
    while (left := timeout - (time.monotonic() - started)) > 0:
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if wanted(message):
            return message, time.monotonic() - started
    pytest.fail(f"no {what} within {timeout} s")


def wait_for_folio(ws, folio: str, timeout: float) -> float:
    """Seconds until an event about `folio` arrives on `ws` (fails after `timeout`)."""
    return next_message(
        ws, lambda m: m.get("payload", {}).get("folio") == folio, timeout, f"event for {folio}"
    )[1]


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    tmpdir = Path(tempfile.mkdtemp(prefix="cad-faults-"))
    redis = OwnRedis()
    database_url = _database_url(tmpdir, django_db_blocker)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "DJANGO_SETTINGS_MODULE": "cad.settings",
        "DJANGO_SECURE_COOKIES": "false",
        "CAD_HEARTBEAT_S": "1",
        "CAD_BROADCAST_TIMEOUT_S": "0.5",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    if not database_url.startswith("postgres"):
        subprocess.run([*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
    seeded = subprocess.run(
        [*manage, "shell", "-c", SEED], env=env, cwd=ROOT, check=True, capture_output=True
    )
    creds = json.loads(seeded.stdout.decode().strip().splitlines()[-1])
    port = _free_port(SERVER_PORTS)
    log = tmpdir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cad.serve", "--procs", "1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/login/", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"server did not start:\n{log.read_text()[-3000:]}")
    srv = Server(base, redis, creds, log)
    # The idle console: its own centre (no events), connected now and checked by the last test.
    srv.idle = srv.console("idle")
    assert json.loads(srv.idle.recv(timeout=10))["type"] == "hello"
    srv.idle_since = time.monotonic()
    yield srv
    srv.idle.close()
    srv.http.close()
    children = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()  # a supervisor that gives up before cad.serve does: its Daphne child must go all the same
    left = _wait_gone(children, 10)
    redis.kill()
    if database_url.startswith("postgres"):
        import psycopg

        parts = urlsplit(database_url)
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
    shutil.rmtree(tmpdir, ignore_errors=True)
    assert not left, f"Daphne child {left} outlived cad.serve (it would serve nobody, forever)"


def test_a_frozen_redis_never_delays_writes_and_consoles_catch_up_after_it_thaws(server):
    ws = server.console()
    assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    server.redis.freeze()
    try:
        took = [server.take_call() for _ in range(3)]
        time.sleep(1.5)  # longer than CAD_BROADCAST_TIMEOUT_S: the broadcasts are given up
    finally:
        server.redis.thaw()
    durations = [seconds for seconds, _ in took]
    print(f"write latency with a frozen Redis: {[round(d, 3) for d in durations]} s")
    assert max(durations) < 2.0  # before: 5 s per event (the socket timeout) on the request path
    for _, folio in took:
        wait_for_folio(ws, folio, timeout=30)  # dropped broadcasts repaired by heartbeat + replay
    assert server.metrics()["broadcast_failed"] >= 1
    ws.close()


def test_after_a_redis_restart_every_later_event_reaches_the_connected_console(server):
    ws = server.console()
    assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    server.redis.kill()
    server.redis.start()
    restarted = time.monotonic()
    _, folio = server.take_call()
    wait_for_folio(ws, folio, timeout=15)
    recovery = time.monotonic() - restarted
    latencies = []
    for _ in range(3):
        started = time.monotonic()
        _, folio = server.take_call()
        wait_for_folio(ws, folio, timeout=10)
        latencies.append(time.monotonic() - started)
    print(
        f"after a Redis restart: first event after {recovery:.2f} s; then {[round(x, 3) for x in latencies]} s"
    )
    assert max(latencies) < 3.0  # live again, not only through heartbeat repair
    assert server.metrics()["hub_rejoins"] >= 1
    ws.close()


def next_notice(ws, code: str, timeout: float) -> dict:
    """The next notice `code` on `ws` (fails after `timeout`)."""
    return next_message(
        ws, lambda m: m.get("type") == "notice" and m.get("code") == code, timeout, f"{code} notice"
    )[0]


def test_a_console_is_told_when_live_updates_stop_and_when_they_resume(server):
    """Redis down: the console keeps filling from the table on every heartbeat, and SAYS it is no longer
    live (never stale in silence); Redis back: it says live updates resumed, and they do."""
    ws = server.console()
    told = []
    while (first := json.loads(ws.recv(timeout=10)))["type"] != "hello":
        told.append(first["code"])  # connected while the hub still re-joins after the previous restart
    if told:
        assert told == ["live_degraded"]
        next_notice(ws, "live_restored", timeout=10)
    server.redis.kill()
    notice = next_notice(ws, "live_degraded", timeout=10)
    assert notice["level"] == "warning" and "base de datos" in notice["message"]
    _, folio = server.take_call()
    wait_for_folio(ws, folio, timeout=15)  # still updated, from the table (heartbeat every second here)
    server.redis.start()
    assert next_notice(ws, "live_restored", timeout=20)["level"] == "info"
    _, folio = server.take_call()
    assert wait_for_folio(ws, folio, timeout=10) < 3.0  # live again
    ws.close()


def test_hundreds_of_bad_frames_leak_no_connection(server):
    open_before = server.metrics()["connections_open"]
    deep = "[" * 1000 + "]" * 1000
    for _ in range(40):
        ws = server.console()
        ws.recv(timeout=10)  # hello
        for frame in (b"\x00\xff", "{not json", deep, "[]" * 40_000):
            ws.send(frame)
        codes = []
        while len(codes) < 4:
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "error":
                codes.append(message["code"])
        assert codes == ["bad_frame", "bad_json", "bad_json", "too_big"]
        ws.close()
    deadline = time.monotonic() + 10
    while server.metrics()["connections_open"] != open_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.metrics()["connections_open"] == open_before


def test_logout_closes_the_console_socket(server):
    with httpx.Client(base_url=server.base, timeout=10) as browser:
        browser.get("/login/")
        response = browser.post(
            "/login/",
            data={"username": "operador", "password": "clave-de-prueba-1"},
            headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": f"{server.base}/login/"},
        )
        assert response.status_code == 302, response.text[:500]
        ws = connect(
            server.ws_url,
            additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid']}", "Origin": server.base},
            legacy=True,
        )
        ws.send(json.dumps({"type": "subscribe", "streams": {"console": None}}))
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        browser.post(
            "/logout/", headers={"X-CSRFToken": browser.cookies["csrftoken"], "Referer": server.base}
        )
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd.code == 4401


def test_an_idle_console_stays_open_45_s_without_errors(server):
    """Last: the module's idle console connected before the other scenarios (Redis frozen, killed and
    restarted meanwhile); 45 s later it is still open, and the server logged no ERROR."""
    time.sleep(max(0.0, IDLE_S - (time.monotonic() - server.idle_since)))
    server.idle.send(json.dumps({"type": "ping", "t": 1}))
    notices = []
    while (message := json.loads(server.idle.recv(timeout=10)))["type"] != "pong":
        if message["type"] == "notice":
            notices.append(message["code"])
        else:
            assert message["type"] == "heartbeat"
    # Told each time Redis went away and came back, and nothing else.
    assert notices and set(notices) == {"live_degraded", "live_restored"} and notices[-1] == "live_restored"
    log = server.log.read_text()
    assert '"level": "ERROR"' not in log and "Traceback" not in log, log[-3000:]

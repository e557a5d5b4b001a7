"""`python -m cad.serve`: N Daphne processes behind one address (SO_REUSEPORT on Linux).

The multi-process tests need REDIS_URL (a shared channel layer): skipped without it, except under CI=true
where that is a failure. They read /proc (Linux) to find the Daphne children of the parent.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(60)


def _require_redis():
    if not settings.REDIS_URL:
        message = "cad.serve --procs 2 needs REDIS_URL (shared channel layer)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict:
    env = {**os.environ, "REDIS_URL": settings.REDIS_URL, "LOG_LEVEL": "WARNING"}
    if settings.IS_POSTGRES:  # the test database, like the worker test
        db = connection.settings_dict
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        env["DATABASE_URL"] = (
            f"postgres://{db.get('USER') or 'postgres'}{password}@{db.get('HOST') or '127.0.0.1'}:"
            f"{db.get('PORT') or 5432}/{db['NAME']}"
        )
    return env


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _inodes(port: int, state: str) -> set[str]:
    """Inodes of the IPv4 sockets on local `port` in `state` (0A: LISTEN, 01: ESTABLISHED)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
            found.add(fields[9])
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _start(tmp_path, port: int, procs: int = 2) -> subprocess.Popen:
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "cad.serve", "--port", str(port), "--procs", str(procs)],
        env=_env(),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/login/", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"cad.serve did not answer:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.kill()
        server.wait()


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if _alive(pid)]


@pytest.mark.django_db
def test_two_daphne_processes_share_one_socket_and_stop_on_sigterm(tmp_path):
    _require_redis()
    port = _free_port()
    server = _start(tmp_path, port)
    try:
        children = _children(server.pid)
        assert len(children) == 2, children
        assert all(b"daphne" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children)
        listening = _inodes(port, "0A")
        for pid in children:  # both listen on the one address (SO_REUSEPORT: a socket each)
            assert listening & _socket_inodes(pid), f"pid {pid} does not listen on :{port}"
        # Twenty connections at once: the kernel spreads them, so both processes serve some.
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) for _ in range(20)]
        try:
            for client in clients:
                assert client.get("/login/").status_code == 200
            established = _inodes(port, "01")
            served = {pid: len(established & _socket_inodes(pid)) for pid in children}
        finally:
            for client in clients:
                client.close()
        assert sum(served.values()) == 20 and all(served.values()), served
        assert f"2 proceso(s) Daphne sirven http://127.0.0.1:{port}/" in (tmp_path / "serve.log").read_text()

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert _wait_gone(children, 5) == [], "Daphne children still running after SIGTERM"
        assert not _inodes(port, "0A")
    finally:
        _stop(server)


@pytest.mark.django_db
def test_a_dead_child_is_restarted_and_the_others_keep_serving(tmp_path):
    _require_redis()
    port = _free_port()
    server = _start(tmp_path, port)
    try:
        first, second = _children(server.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (
            first in (children := _children(server.pid)) or len(children) < 2
        ) and time.monotonic() < deadline:
            assert httpx.get(f"http://127.0.0.1:{port}/login/", timeout=5).status_code == 200  # still served
            time.sleep(0.2)
        assert second in children and first not in children and len(children) == 2
        log = (tmp_path / "serve.log").read_text()
        assert f"(pid {first}) terminó" in log and "reiniciado" in log
        for _ in range(10):
            assert httpx.get(f"http://127.0.0.1:{port}/login/", timeout=5).status_code == 200
        assert server.poll() is None
    finally:
        _stop(server)


@pytest.mark.django_db(transaction=True)
def test_sigterm_drains_requests_in_flight_every_committed_call_is_acknowledged(tmp_path):
    """Writes keep arriving while the server is told to stop: each call either committed AND answered, or
    never committed (before: the cut requests committed without an answer)."""
    import threading

    from accounts.models import Role
    from accounts.tokens import issue_token
    from incidents.models import Call
    from tests.factories import (
        CenterFactory,
        IncidentTypeFactory,
        SubtypeResponsePlanFactory,
        UserFactory,
        new_incident_call,
    )

    _require_redis()
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1})
    IncidentTypeFactory(code="10104")
    token = issue_token(UserFactory(role=Role.CALL_TAKER, center=CenterFactory()))
    port = _free_port()
    server = _start(tmp_path, port, procs=1)
    acknowledged, stop = [], threading.Event()

    def post_calls():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        "/api/v1/calls/",
                        json=new_incident_call(),
                        headers={"Authorization": f"Token {token}"},
                    )
                except httpx.TransportError:
                    return  # refused or closed before an answer: must not have committed
                if response.status_code == 201:
                    acknowledged.append(response.json()["call"]["uid"])

    threads = [threading.Thread(target=post_calls) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        _stop(server)
    assert acknowledged
    assert sorted(str(uid) for uid in Call.objects.values_list("uid", flat=True)) == sorted(acknowledged)


def test_more_than_one_process_needs_redis():
    env = {**os.environ, "REDIS_URL": ""}
    result = subprocess.run(
        [sys.executable, "-m", "cad.serve", "--port", str(_free_port()), "--procs", "2"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "necesita REDIS_URL" in result.stderr


def test_a_server_process_imports_every_view_before_its_first_request():
    """Django imports the URLconf on the first request (100-300 ms for the first caller of each process);
    the server imports it at start, before freezing start-up objects out of the collector."""
    code = (
        "import gc, sys, django; django.setup(); "
        "from cad.daphne_drain import load_before_serving; "
        "assert 'incidents.api' not in sys.modules; "
        "load_before_serving(); "
        "assert 'cad.urls' in sys.modules and 'incidents.api' in sys.modules, 'URLconf not imported'; "
        "assert gc.get_freeze_count() > 0, 'nothing frozen'"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]

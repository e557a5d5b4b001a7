"""A real server for browser tests: a dedicated database seeded with `seed_demo`, served by Daphne in a
subprocess (pytest-django's live_server is WSGI-only: no websockets).

SQLite (default): a temporary file. PostgreSQL (DATABASE_URL set): a database `<name>_browser`, recreated.
REDIS_URL is passed through (one Daphne process, so the in-memory layer is fine without it).
Browser tests skip when /usr/bin/chromium is missing, unless CI=true, where they fail.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CAD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "c4-demo-2026"
# Extra accounts the scenarios need besides seed_demo's: a second dispatcher, and a device account with a
# password (seed_demo's service accounts are token-only) to prove a session login still cannot open the socket.
EXTRA_USERS = """
from accounts.models import Role, User
from cad.models import Center
center = Center.objects.get(code="MEX")
for username, role in (("despachador2", Role.DISPATCHER), ("avl-sesion", Role.DEVICE)):
    user, _ = User.objects.get_or_create(username=username, defaults={"role": role, "center": center})
    user.role, user.center, user.is_active = role, center, True
    user.set_password("c4-demo-2026")
    user.save()
# A mass-casualty day in its own centre: more open incidents than one API page holds.
from django.utils import timezone
from incidents.models import Incident, IncidentType
masivo = Center.objects.create(code="MAS", name="Centro masivo")
dispatcher = User.objects.create_user("despachador-masivo", "", "c4-demo-2026", role=Role.DISPATCHER, center=masivo)
kind = IncidentType.objects.get(code="10104")
now = timezone.now()
Incident.objects.bulk_create(
    Incident(folio=f"MAS-2026-{n:06d}", center=masivo, incident_type=kind, type_code=kind.code,
             type_name=kind.name, priority=kind.priority, priority_rank=1, opened_at=now, created_by=dispatcher)
    for n in range(1, 651)
)
"""


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        return  # the `browser` fixture fails loudly instead
    skip = pytest.mark.skip(
        reason=f"Chromium not found at {CHROMIUM}: browser tests skipped (set CI=true to fail)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _browser_database_url(tmpdir: Path) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        return f"sqlite:///{tmpdir / 'browser.sqlite3'}"
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'cad'}_browser"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def _drop_browser_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


@contextmanager
def daphne_server(env: dict) -> Iterator[str]:
    """A Daphne process serving cad.asgi with `env` on a free port; yields its base URL, stops it after."""
    port = _free_port()
    log = tempfile.NamedTemporaryFile(prefix="cad-daphne-", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "cad.asgi:application"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/login/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Daphne did not start:\n{Path(log.name).read_text()[-3000:]}")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def cad_server_env():
    """The environment of the test servers: a freshly migrated and seeded database (dropped at the end)."""
    tmpdir = Path(tempfile.mkdtemp(prefix="cad-browser-"))
    database_url = _browser_database_url(tmpdir)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "cad.settings",
        "DJANGO_SECURE_COOKIES": "false",
        "PYTHONUNBUFFERED": "1",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    try:
        subprocess.run([*manage, "migrate", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
        subprocess.run(
            [*manage, "seed_demo", "--units", "200"], env=env, cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(
            [*manage, "shell", "-c", EXTRA_USERS], env=env, cwd=ROOT, check=True, capture_output=True
        )
        yield env
    finally:
        _drop_browser_database(database_url)
        shutil.rmtree(tmpdir, ignore_errors=True)


@pytest.fixture(scope="session")
def cad_server(cad_server_env):
    """Base URL of a Daphne server over the seeded database; stopped at the end of the session."""
    with daphne_server(cad_server_env) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    path = Path(os.environ.get("CAD_SCREENSHOT_DIR") or ROOT / "screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def login_page(browser, base_url: str, username: str, *, password: str = PASSWORD, viewport=(1366, 768)):
    """A new browser context on `base_url` and a Page logged in there through the real login form."""
    context = browser.new_context(
        base_url=base_url,
        viewport={"width": viewport[0], "height": viewport[1]},
        locale="es-MX",
        timezone_id="America/Mexico_City",
    )
    page = context.new_page()
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_navigation():
        page.click("form[action='/login/'] button[type=submit]")
    return context, page


@pytest.fixture
def login(browser, cad_server):
    """login(username) → a Page logged in through the real login form (its own browser context)."""
    contexts = []

    def make(username: str, **options):
        context, page = login_page(browser, cad_server, username, **options)
        contexts.append(context)
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def api_session(cad_server):
    """api_session(username) → an httpx.Client logged in by session (CSRF header set) against the server."""
    clients = []

    def make(username: str) -> httpx.Client:
        client = httpx.Client(base_url=cad_server, timeout=10)
        clients.append(client)
        client.get("/login/")
        response = client.post(
            "/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
            headers={"Referer": f"{cad_server}/login/"},
        )
        assert response.status_code in (200, 302), response.text[:300]
        assert "sessionid" in client.cookies
        client.headers["X-CSRFToken"] = client.cookies["csrftoken"]
        client.headers["Referer"] = f"{cad_server}/"
        return client

    yield make
    for client in clients:
        client.close()

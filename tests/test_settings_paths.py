"""The two runtime paths: embedded default (SQLite, in-memory layer, local task threads) and the
production path (PostgreSQL + Redis layer + Celery broker), chosen only by DATABASE_URL / REDIS_URL."""

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from celery import shared_task
from django.db import connection, transaction

from cad.models import Center
from cad.tasks import _pool, enqueue

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "cad.settings"
import django
django.setup()
from django.conf import settings
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "is_postgres": settings.IS_POSTGRES,
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_hosts": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts"),
    "broker": settings.CELERY_BROKER_URL,
    "cache": settings.CACHES["default"]["BACKEND"],
    "layer_prefix": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix"),
    "cache_prefix": settings.CACHES["default"].get("KEY_PREFIX"),
    "broker_options": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "session_cookie": settings.SESSION_COOKIE_NAME,
    "secure_cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


def settings_with(**env_vars) -> dict:
    """Load cad.settings in a fresh interpreter with exactly these DATABASE_URL / REDIS_URL values."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CAD_INSTANCE")}
    env.update(env_vars)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_embedded_default_uses_sqlite_in_var_memory_layer_and_no_broker():
    loaded = settings_with()
    assert loaded["engine"] == "django.db.backends.sqlite3"
    assert loaded["name"] == str(ROOT / "var" / "cad.sqlite3")
    assert loaded["is_postgres"] is False
    assert loaded["layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["broker"] == ""
    assert loaded["cache"].endswith("LocMemCache")


def test_production_path_uses_postgres_redis_layer_and_celery_broker():
    loaded = settings_with(
        DATABASE_URL="postgres://cad:secret@db.internal:5432/cad_prod",
        REDIS_URL="redis://cache.internal:6379/3",
    )
    assert loaded["engine"] == "django.db.backends.postgresql"
    assert loaded["name"] == "cad_prod"
    assert loaded["is_postgres"] is True
    assert loaded["layer"] == "channels_redis.core.RedisChannelLayer"
    hosts = [h["address"] if isinstance(h, dict) else h for h in loaded["layer_hosts"]]
    assert hosts == ["redis://cache.internal:6379/3"]
    assert loaded["broker"] == "redis://cache.internal:6379/3"
    assert loaded["cache"].endswith("RedisCache")
    # Reads outlast channels_redis's blocking pop, or an idle websocket consumer dies of a read timeout.
    from channels_redis.core import RedisChannelLayer

    assert loaded["layer_hosts"][0]["socket_timeout"] > RedisChannelLayer.brpop_timeout


def test_cad_instance_namespaces_redis_keys_and_the_session_cookie():
    """Two instances on one host (run.py interstate) share a Redis server and a browser: each one's channel
    groups, Celery queues, cache entries and login cookie are its own."""
    shared = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cad_x", "REDIS_URL": "redis://r:6379/0"}
    plain = settings_with(**shared)
    assert (plain["layer_prefix"], plain["cache_prefix"]) == ("asgi", "")
    assert "global_keyprefix" not in plain["broker_options"]
    assert plain["session_cookie"] == "sessionid"
    mex, cdmx = settings_with(**shared, CAD_INSTANCE="mex"), settings_with(**shared, CAD_INSTANCE="cdmx")
    assert (mex["layer_prefix"], mex["cache_prefix"], mex["session_cookie"]) == (
        "mex:asgi",
        "mex",
        "mex_sessionid",
    )
    assert mex["broker_options"]["global_keyprefix"] == "mex:"
    assert cdmx["broker_options"]["global_keyprefix"] == "cdmx:"
    assert cdmx["session_cookie"] == "cdmx_sessionid"


def test_run_py_serves_plain_http_so_its_cookies_are_not_secure_unless_told(monkeypatch):
    """The production path's settings mark the cookies Secure by default; run.py serves plain HTTP, where a
    browser reaching it by any address but localhost would drop them and every login fail the CSRF check."""
    import run

    monkeypatch.delenv("DJANGO_SECURE_COOKIES", raising=False)
    production = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/cad_x", "REDIS_URL": "redis://r:6379/0"}
    assert settings_with(**production)["secure_cookies"] == [True, True]
    for told, secure in ((None, False), ("true", True)):  # "true": behind a TLS proxy
        if told:
            monkeypatch.setenv("DJANGO_SECURE_COOKIES", told)
        served = run.served_env()["DJANGO_SECURE_COOKIES"]
        assert settings_with(**production, DJANGO_SECURE_COOKIES=served)["secure_cookies"] == [secure, secure]


def test_run_py_warns_that_serving_beyond_this_machine_needs_allowed_hosts():
    """--host 0.0.0.0 alone: every request from another machine would be a bare "Bad Request (400)"."""
    import run

    assert run.allowed_hosts_notice("127.0.0.1", {}) is None
    assert "DJANGO_ALLOWED_HOSTS" in run.allowed_hosts_notice("0.0.0.0", {})  # noqa: S104
    assert run.allowed_hosts_notice("0.0.0.0", {"DJANGO_ALLOWED_HOSTS": "cad.c4.local"}) is None  # noqa: S104


def test_database_url_alone_keeps_the_in_process_layer():
    loaded = settings_with(DATABASE_URL="postgres://postgres@127.0.0.1:5432/cad_x")
    assert loaded["is_postgres"] is True
    assert loaded["layer"] == "channels.layers.InMemoryChannelLayer"
    assert loaded["broker"] == ""


@pytest.mark.django_db
def test_on_postgresql_a_statement_run_five_times_is_prepared():
    """PostgreSQL parses and plans a repeated statement once (DB_PREPARE_THRESHOLD); Django alone would not."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    marker = f"prepared-{uuid.uuid4().hex}"
    for _ in range(6):
        assert not Center.objects.filter(code=marker).exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s", ["%cad_center%"]
        )
        assert cursor.fetchall(), "a statement run six times on this connection should be prepared"


# --- cad.tasks.enqueue on the embedded path -------------------------------------------------
_runs: dict[str, dict] = {}


@shared_task(name="tests.record_run")
def record_run(*, key: str, center_code: str) -> None:
    """Notes which thread ran it and whether the enqueuing transaction's row was visible (committed)."""
    try:
        _runs[key] = {
            "thread": threading.current_thread().name,
            "saw_committed_row": Center.objects.filter(code=center_code).exists(),
        }
    finally:
        connection.close()  # pool threads keep connections (CONN_MAX_AGE); let the test DB be dropped
        _events[key].set()


_events: dict[str, threading.Event] = {}


def _new_key() -> str:
    key = uuid.uuid4().hex
    _events[key] = threading.Event()
    return key


@pytest.mark.django_db(transaction=True)
def test_enqueue_runs_on_local_pool_only_after_commit(settings):
    settings.CELERY_BROKER_URL = ""  # embedded path whatever REDIS_URL the suite runs with
    key = _new_key()
    with transaction.atomic():
        Center.objects.create(code="TSK", name="Centro de prueba")
        enqueue(record_run, key=key, center_code="TSK")
        # Still inside the transaction: nothing may have been submitted yet.
        assert not _events[key].wait(0.3)
        assert key not in _runs
    assert _events[key].wait(10), "the task never ran after commit"
    assert _runs[key]["thread"].startswith("cad-task")
    assert _runs[key]["saw_committed_row"] is True


@pytest.mark.django_db(transaction=True)
def test_enqueue_never_runs_when_rolled_back(settings):
    settings.CELERY_BROKER_URL = ""
    key = _new_key()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        Center.objects.create(code="RBK", name="Centro revertido")
        enqueue(record_run, key=key, center_code="RBK")
        raise Abort
    # Drain the pool: anything submitted before this sentinel has started by the time it finishes.
    for _ in range(4):
        _pool().submit(lambda: None).result(timeout=10)
    assert not _events[key].wait(0.5)
    assert key not in _runs
    assert not Center.objects.filter(code="RBK").exists()


@pytest.mark.django_db(transaction=True)
def test_enqueue_outside_a_transaction_runs_immediately_on_the_pool(settings):
    settings.CELERY_BROKER_URL = ""
    Center.objects.create(code="NOW", name="Centro inmediato")
    key = _new_key()
    enqueue(record_run, key=key, center_code="NOW")
    assert _events[key].wait(10)
    assert _runs[key]["thread"].startswith("cad-task")
    assert _runs[key]["saw_committed_row"] is True


@pytest.mark.django_db(transaction=True)
def test_enqueue_with_the_broker_down_keeps_the_commit_and_warns(settings, caplog):
    """Redis down: the note or escalation is committed, so the request must not answer 500 (its user would
    send it again); the interstate sweeper re-sends what was not enqueued. A real broker address nobody
    listens on, no mock."""
    from celery import Celery

    dead = "redis://127.0.0.1:1/0"
    app = Celery("dead-broker", broker=dead, set_as_current=False)
    app.conf.update(broker_connection_timeout=0.5, task_publish_retry=False)

    @app.task(name="tests.dead_broker_task")
    def task(key):
        return key

    settings.CELERY_BROKER_URL = dead
    with transaction.atomic():
        Center.objects.create(code="DWN", name="Centro sin broker")
        enqueue(task, key="k")
    assert Center.objects.filter(code="DWN").exists()
    [warning] = [r for r in caplog.records if r.getMessage().startswith("task not sent")]
    assert warning.levelname == "WARNING" and warning.task == "tests.dead_broker_task"
    assert "Error" in warning.error or "refused" in warning.error.lower()

"""refresh_kpi_rollups through a REAL Celery worker (Redis broker, the test PostgreSQL database), and the same
task body called eagerly.

The worker test needs REDIS_URL and PostgreSQL: skipped otherwise, except under CI=true where a missing
service is a failure (CI must run it)."""

import os
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import Role
from dashboard.models import KpiRollup, RollupWatermark
from dashboard.tasks import refresh_kpi_rollups
from incidents.models import Call, CallDisposition
from tests.processes import start_logged

ROOT = Path(__file__).resolve().parent.parent


def _require_services():
    missing = []
    if not settings.REDIS_URL:
        missing.append("REDIS_URL")
    if not settings.IS_POSTGRES:
        missing.append("PostgreSQL (DATABASE_URL)")
    if missing:
        message = f"a real Celery worker needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _some_calls(center, user, count=5):
    now = timezone.now()
    for i in range(count):
        Call.objects.create(
            center=center,
            line="911",
            arrived_at=now - timedelta(minutes=i),
            answered_at=now - timedelta(minutes=i) + timedelta(seconds=5 + i),
            disposition=CallDisposition.INFORMATIONAL,
            call_taker=user,
        )


def _test_database_url() -> str:
    db = connection.settings_dict
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return (
        f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)  # the worker must see committed rows
def test_real_worker_builds_the_rollups(center, make_user, tmp_path):
    _require_services()
    _some_calls(center, make_user(Role.CALL_TAKER))
    queue = f"test-kpi-{uuid.uuid4().hex[:8]}"
    with _worker(queue, tmp_path / "worker.log", pool="solo") as worker:
        refresh_kpi_rollups.apply_async(queue=queue)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not KpiRollup.objects.exists():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        assert KpiRollup.objects.exists(), (tmp_path / "worker.log").read_text()[-3000:]
        answer = KpiRollup.objects.get(
            grain="h",
            metric="answer",
            line="*",
            tipo="*",
            state="*",
            municipality="*",
            hour=timezone.now().replace(minute=0, second=0, microsecond=0),
        )
        assert answer.n >= 1
        assert sum(r.n for r in KpiRollup.objects.filter(grain="h", metric="answer", line="911")) == 5
        assert RollupWatermark.objects.get(name="kpi").last_run_at is not None
        assert "succeeded" in (tmp_path / "worker.log").read_text()


@pytest.mark.django_db
def test_task_body_runs_eagerly_and_is_idempotent(center, make_user):
    _some_calls(center, make_user(Role.CALL_TAKER), count=3)
    first = refresh_kpi_rollups()  # the task body, in this process
    assert first["hours"] >= 1 and first["rows"] > 0
    rows = sorted(KpiRollup.objects.values_list("hour", "metric", "line", "n", "hist"))
    result = refresh_kpi_rollups.apply(kwargs={})  # eager apply, as Celery would run it
    assert result.successful()
    assert sorted(KpiRollup.objects.values_list("hour", "metric", "line", "n", "hist")) == rows
    assert refresh_kpi_rollups.acks_late is True


def _sessions() -> int:
    """PostgreSQL backends ever started on the test database (pg_stat_database, flushed within a second)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_keeps_its_database_connection_across_tasks(tmp_path):
    """Celery's Django fixup would close the connection pool around every task (a new PostgreSQL backend per
    task); cad.celery recycles the connection as Django does around requests instead."""
    _require_services()
    from cad.tasks import prune_events

    queue = f"test-conn-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "worker.log"
    with _worker(queue, log_path) as worker:
        prune_events.apply_async(queue=queue)  # the child's first connection
        deadline = time.monotonic() + 90
        while log_path.read_text().count("succeeded") < 1:
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1.5)  # backends report their connection to the statistics within a second
        before = _sessions()
        for _ in range(12):
            prune_events.apply_async(queue=queue)
        while log_path.read_text().count("succeeded") < 13:
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(1.5)
        assert _sessions() - before <= 2, "a new database connection per task"


@contextmanager
def _worker(queue: str, log_path: Path, *, pool: str | None = "prefork", children: int = 1):
    """A real worker on `queue` over the test database, its output in `log_path`; stopped at the end. `pool`
    None: the configured one (settings.CELERY_WORKER_POOL), as run.py and compose start it."""
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "REDIS_URL": settings.REDIS_URL}
    if pool:
        env["CELERY_POOL"] = pool  # Celery takes `-P prefork` for its default and lets the setting win
    celery = [sys.executable, "-m", "celery", "-A", "cad", "worker", "-c", str(children)]
    quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    with ExitStack() as stack:
        yield start_logged(stack, [*celery, "-Q", queue, *quiet, "-l", "info"], env, log_path)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_prefork_child_warms_up_on_its_own_database_connection(tmp_path):
    """The warm-up thread of a worker child starts after Celery's Django fixup has closed the connections and
    pool inherited from the parent: it used to take that pool and have it closed under it (PoolClosed at
    once, or PoolTimeout 10 s later), logging "warm-up failed" in every child at every start."""
    _require_services()
    log_path = tmp_path / "worker.log"
    with _worker(f"test-warm-{uuid.uuid4().hex[:8]}", log_path, children=2) as worker:
        deadline = time.monotonic() + 60
        while (text := log_path.read_text()).count("warm-up done") + text.count("warm-up failed") < 2:
            assert worker.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.2)
        assert "warm-up failed" not in text, text[-3000:]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_default_worker_runs_its_tasks_on_threads_warmed_up_once(tmp_path):
    """The configured pool (threads: an interstate delivery mostly waits for the peer) warms up in the worker's
    own process, once, and runs tasks."""
    _require_services()
    from cad.tasks import prune_events

    queue = f"test-threads-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "worker.log"
    with _worker(queue, log_path, pool=None, children=2) as worker:
        prune_events.apply_async(queue=queue)
        deadline = time.monotonic() + 60
        while "succeeded" not in (text := log_path.read_text()) or "warm-up done" not in text:
            assert worker.poll() is None and time.monotonic() < deadline, text[-3000:]
            time.sleep(0.2)
        time.sleep(1)
        text = log_path.read_text()
        assert "(thread)" in text, text[-3000:]  # the banner's "concurrency: 2 (thread)"
        assert text.count("warm-up done") == 1 and "warm-up failed" not in text, text[-3000:]

"""Periodic jobs: one registry, two runners.

Apps register their periodic Celery tasks here (from `AppConfig.ready()`):

    from cad import periodic
    periodic.register("dashboard.refresh_kpi_rollups", task="dashboard.tasks.refresh_kpi_rollups", every=60)

* Production path (a broker is configured): `register` also writes the entry into
  `settings.CELERY_BEAT_SCHEDULE`, which `celery -A cad beat` runs; workers execute the task.
* Embedded default (no broker, no beat): the process that serves requests calls `cad.periodic.start()`
  once after Django is set up (the run command does this; call it from the serving process, not from an
  autoreloader parent). It starts one daemon thread that runs every registered task's function in-process
  on its interval, with fresh DB connections, logging (never raising) failures, like a worker would.
  `start()` is idempotent and returns False without starting anything when a broker is configured
  (beat owns the schedule then) unless `force=True`. `stop()` ends the thread (tests, shutdown).

Jobs must be idempotent (they may run late, twice, or concurrently with a beat elsewhere).
"""

import importlib
import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    name: str
    task: str  # dotted path of a Celery task (or plain function)
    every: float  # seconds
    next_run: float = field(default=0.0)
    runs: int = 0
    failures: int = 0


REGISTRY: dict[str, PeriodicJob] = {}
_thread: threading.Thread | None = None
_stop = threading.Event()
_lock = threading.Lock()


def register(name: str, *, task: str, every: float) -> PeriodicJob:
    """Declare `task` to run every `every` seconds (by beat, or by the embedded scheduler)."""
    job = REGISTRY.get(name)
    if job is None:
        job = REGISTRY[name] = PeriodicJob(name=name, task=task, every=float(every))
    else:
        job.task, job.every = task, float(every)
    settings.CELERY_BEAT_SCHEDULE[name] = {"task": task, "schedule": float(every)}
    return job


def _resolve(dotted: str):
    module, _, attr = dotted.rpartition(".")
    target = getattr(importlib.import_module(module), attr)
    return getattr(target, "run", target)  # a Celery task's body, or a plain function


def run_job(job: PeriodicJob) -> None:
    """Run one job now in this thread (fresh DB connections; failures logged, counted, not raised)."""
    close_old_connections()
    try:
        _resolve(job.task)()
        job.runs += 1
    except Exception:  # noqa: BLE001 - a scheduler thread must log and survive, as a worker would
        job.failures += 1
        logger.exception("periodic job failed", extra={"job": job.name})
    finally:
        close_old_connections()


def run_due(*, now: float | None = None) -> list[str]:
    """Run every job whose time has come; returns their names. The scheduler thread loops on this."""
    now = time.monotonic() if now is None else now
    ran = []
    for job in list(REGISTRY.values()):
        if now >= job.next_run:
            job.next_run = now + job.every
            run_job(job)
            ran.append(job.name)
    return ran


def _loop(tick: float) -> None:
    while not _stop.is_set():
        run_due()
        _stop.wait(tick)


def start(*, force: bool = False, tick: float = 1.0) -> bool:
    """Start the embedded scheduler thread (see module docstring). Returns True if it is running."""
    global _thread
    if settings.CELERY_BROKER_URL and not force:
        return False
    with _lock:
        if _thread is not None and _thread.is_alive():
            return True
        _stop.clear()
        _thread = threading.Thread(target=_loop, args=(tick,), name="cad-periodic", daemon=True)
        _thread.start()
    logger.info("embedded periodic scheduler started", extra={"jobs": sorted(REGISTRY)})
    return True


def stop(timeout: float = 5.0) -> None:
    global _thread
    _stop.set()
    with _lock:
        if _thread is not None:
            _thread.join(timeout)
            _thread = None


def is_running() -> bool:
    return _thread is not None and _thread.is_alive()

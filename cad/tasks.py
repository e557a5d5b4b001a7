"""The one way to run work outside the request: `enqueue`.

Production path (a broker is configured): the Celery task is sent after the transaction commits.
Embedded default (no broker): the task runs on a small local thread pool after commit, so a slow task
never blocks a request and rolled-back work never runs a task.
"""

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings
from django.db import close_old_connections, transaction

logger = logging.getLogger(__name__)
_local_pool: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _local_pool
    if _local_pool is None:
        _local_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cad-task")
    return _local_pool


def _run_locally(task, kwargs: dict) -> None:
    close_old_connections()
    try:
        task.run(**kwargs)
    except Exception:  # noqa: BLE001 - a task thread must log and survive, as a Celery worker would
        logger.exception("local task failed", extra={"task": task.name})
    finally:
        close_old_connections()


def enqueue(task, **kwargs) -> None:
    """Run `task(**kwargs)` in the background once the current transaction commits.

    With the broker down the commit stands and the request succeeds: the task is not sent, and a warning says
    so. What must happen anyway is written down before the commit and swept again (the interstate outbox's
    sweeper re-sends every undelivered message) — a request that answered 500 after committing would be sent
    again by its user, twice."""

    def send():
        if not settings.CELERY_BROKER_URL:
            _pool().submit(_run_locally, task, kwargs)
            return
        try:
            task.apply_async(kwargs=kwargs)
        except Exception as exc:  # noqa: BLE001 - kombu's and redis-py's connection errors alike
            logger.warning(
                "task not sent: the broker is unavailable; the commit stands",
                extra={
                    "task": task.name,
                    "task_kwargs": kwargs,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                },
            )

    transaction.on_commit(send)


@shared_task(acks_late=True, name="cad.tasks.prune_events")
def prune_events() -> dict:
    """Event-table retention (cad.events.prune_events); idempotent, scheduled hourly."""
    from cad.events import prune_events as prune

    return prune()

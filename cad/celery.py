"""Celery app. Used only on the production path (REDIS_URL set); see cad.tasks.enqueue."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")

app = Celery("cad")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    """Each worker child builds what apps registered in cad.warmup (e.g. schema validators) at start."""
    from cad import warmup

    warmup.start()


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(task=None, **_kwargs) -> None:
    """Around each task, as Django does around each request: the connection goes back to the pool, or is closed
    when unusable or older than CONN_MAX_AGE (settings.CELERY_DB_REUSE_MAX keeps Celery from closing the pool).
    Not for an eager task: it runs inside its caller's transaction."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()

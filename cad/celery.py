"""Celery app. Used only on the production path (REDIS_URL set); see cad.tasks.enqueue."""

import os

from celery import Celery
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")

app = Celery("cad")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _warm_up(**_kwargs) -> None:
    """Each worker child builds what apps registered in cad.warmup (e.g. schema validators) at start."""
    from cad import warmup

    warmup.start()


@worker_init.connect
def _warm_up_children_after_the_django_fixup(sender=None, **_kwargs) -> None:
    """A worker whose pool runs tasks in its own process (threads, the default: settings.CELERY_WORKER_POOL)
    warms up now; a prefork worker warms up each child instead.

    Receivers run in the order they were connected. Celery's Django fixup connects its worker_process_init
    receiver (which closes the database connections and pool a child inherits from the parent) in its own
    worker_init receiver, connected when `app` was created above; connecting the warm-up from here puts it
    after that one. Connected at import, the warm-up thread took the inherited pool and the fixup closed it
    under it: "warm-up failed" (PoolClosed or PoolTimeout) in every child at every start."""
    pool = get_implementation(getattr(sender, "pool_cls", None) or app.conf.worker_pool)
    if isinstance(pool, type) and issubclass(pool, PreforkPool):
        worker_process_init.connect(_warm_up, dispatch_uid="cad.celery.warm_up", weak=False)
    else:
        _warm_up()


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

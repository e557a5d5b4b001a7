"""Celery app. Used only on the production path (REDIS_URL set); see cad.tasks.enqueue."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")

app = Celery("cad")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_up(**_kwargs) -> None:
    """Each worker child builds what apps registered in cad.warmup (e.g. schema validators) at start."""
    from cad import warmup

    warmup.start()

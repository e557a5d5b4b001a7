"""Celery app. Used only on the production path (REDIS_URL set); see cad.tasks.enqueue."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cad.settings")

app = Celery("cad")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

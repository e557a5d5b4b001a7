"""The raw stack, without the product: the receiving Django view and the delivering Celery task that
bench/raw_stack.py drives. Nothing of ours runs here: no middleware, no session, no signature, no schema,
no outbox, no events. It is the physical limit of the chosen stack (Daphne + Django + psycopg 3 +
PostgreSQL, Celery on threads + Redis, httpx) on this host, measured in the same run as the product.

    daphne bench.raw_stack_app:application           # the receiver (RAW_DATABASE_URL)
    celery -A bench.raw_stack_app:celery_app worker  # the deliverer (RAW_REDIS_URL, RAW_RECEIVER_URL)
"""

import json
import os
import threading

import django
import environ
import httpx
from celery import Celery
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.db import connection
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

QUEUE = "bench-raw"
IN_TABLE = "bench_raw_in"


@csrf_exempt
def receive(request):
    """The peer's row, committed (autocommit), then 201: what a receiver must do at the least."""
    ident = int(json.loads(request.body)["id"])
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {IN_TABLE} (id) VALUES (%s) ON CONFLICT DO NOTHING", [ident])  # noqa: S608
    return JsonResponse({"id": ident}, status=201)


urlpatterns = [path("in", receive)]

database = environ.Env.db_url_config(os.environ.get("RAW_DATABASE_URL", "sqlite:///:memory:"))
# As the product's settings do on PostgreSQL: server-side binding, prepared statements, a small pool per process.
database.setdefault("OPTIONS", {}).update(
    {"server_side_binding": True, "prepare_threshold": 5, "pool": {"min_size": 1, "max_size": 4}}
    if database["ENGINE"].endswith("postgresql")
    else {}
)
settings.configure(
    DEBUG=False,
    SECRET_KEY="raw-stack-bench-only",  # noqa: S106 - a benchmark's throwaway process, no sessions
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={"default": database},
    USE_TZ=True,
)
django.setup()
application = get_asgi_application()

celery_app = Celery("raw", broker=os.environ.get("RAW_REDIS_URL", "memory://"))
# The delivery guarantees the product's outbox uses (acks_late, reject_on_worker_lost, a short visibility
# timeout): the raw stack pays for them too.
celery_app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=4,
    broker_transport_options={"visibility_timeout": 30},
    worker_hijack_root_logger=False,
)
_local = threading.local()


@celery_app.task(name="raw.deliver")
def deliver(ident: int) -> None:
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(base_url=os.environ["RAW_RECEIVER_URL"], timeout=10)
    client.post("/in", json={"id": ident}).raise_for_status()

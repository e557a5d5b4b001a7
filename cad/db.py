"""Database routing: dashboard and export reads may go to a PostgreSQL read replica.

With DATABASE_REPLICA_URL set, settings define a `replica` alias and install ReplicaRouter. Reads inside
`replica_reads()` (supervisor dashboards, KPI reports, exports: minutes-old data is fine there) go to the
replica; everything else, and every write, goes to `default`. Without a replica nothing changes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

REPLICA = "replica"
_replica_reads: ContextVar[bool] = ContextVar("cad_replica_reads", default=False)


@contextmanager
def replica_reads() -> Iterator[str]:
    """Route the ORM reads of the block to the replica (when there is one); yields the alias to use for raw
    SQL (`connections[alias]`)."""
    token = _replica_reads.set(True)
    try:
        yield read_alias()
    finally:
        _replica_reads.reset(token)


def read_alias() -> str:
    return REPLICA if _replica_reads.get() and REPLICA in settings.DATABASES else DEFAULT_DB_ALIAS


class ReplicaRouter:
    """Reads in replica_reads() go to the replica; writes and migrations only ever to default."""

    def db_for_read(self, model, **hints):
        return read_alias()

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the same data on both

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS

"""Database routing: dashboard and export reads may go to a PostgreSQL read replica.

With DATABASE_REPLICA_URL set, settings define a `replica` alias and install ReplicaRouter. Reads inside
`replica_reads()` (supervisor dashboards, KPI reports, exports: minutes-old data is fine there) go to the
replica; everything else, and every write, goes to `default`. Without a replica nothing changes.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Model
from django.db.models.sql import Query

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


class RowShape:
    """How the columns of a hand-written SELECT become model instances: for each model in turn, the
    columns of `fields` (its concrete fields, by default all but `exclude`), then any `extra` columns, as-is.

    For a hot path where the ORM's query building costs several times the statement itself (delivery of the
    interstate outbox: docs/benchmarks.md, escalation). The values go through the same converters as an ORM
    query (Django's compiler), so what comes back is what `.get()` would give, on PostgreSQL and SQLite.
    `columns(alias, part)` spells the select list of one of them."""

    def __init__(self, *models: tuple[type[Model], tuple[str, ...]], extra: int = 0):
        self.parts = []
        for model, exclude in models:
            fields = [field for field in model._meta.concrete_fields if field.name not in exclude]
            primary_key = next((i for i, field in enumerate(fields) if field.primary_key), None)
            self.parts.append((model, fields, primary_key))
        self.extra = extra
        self._converters: dict[str, list] = {}

    def columns(self, alias: str, part: int) -> str:
        """The select list of the `part`-th model (0-based), its table aliased `alias` in the statement."""
        _model, fields, _primary_key = self.parts[part]
        return ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in fields)

    def _converters_for(self) -> list:
        vendor = connection.vendor
        if vendor not in self._converters:
            found = []
            for model, fields, _primary_key in self.parts:
                compiler = connection.ops.compiler("SQLCompiler")(Query(model), connection, DEFAULT_DB_ALIAS)
                columns = [field.get_col(model._meta.db_table) for field in fields]
                found.append(compiler.get_converters(columns))
            self._converters[vendor] = found
        return self._converters[vendor]

    def one(self, sql: str, params: list) -> tuple | None:
        """Run `sql` (at most one row expected) and return (instance, …, extra, …), or None without a row; a
        model whose primary key came back NULL (a LEFT JOIN that matched nothing) is None."""
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        result, start = [], 0
        for (model, fields, primary_key), converters in zip(self.parts, self._converters_for(), strict=True):
            values = list(row[start : start + len(fields)])
            for index, (functions, expression) in converters.items():
                for function in functions:
                    values[index] = function(values[index], expression, connection)
            if primary_key is not None and values[primary_key] is None:
                result.append(None)  # a LEFT JOIN that found no row, as select_related gives None
            else:
                result.append(model.from_db(DEFAULT_DB_ALIAS, [field.attname for field in fields], values))
            start += len(fields)
        return (*result, *row[start : start + self.extra])

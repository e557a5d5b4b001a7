"""Hotlist writes: one entry at a time (API) and bulk CSV import (management command, 1,000,000 rows
in chunks with progress). Plates are stored normalised, keyed by the confusion-tolerant `plate_key`."""

import csv
import json
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from cad.errors import DomainError, NotFound
from sensors import shared
from sensors.models import Hotlist, HotlistEntry
from sensors.plates import normalize_plate, plate_key, valid_plate
from sensors.staging import copy_into_staging

CSV_COLUMNS = ("plate", "reason", "valid_until", "owner", "source_ref", "make", "model", "color", "year")
VEHICLE_COLUMNS = ("make", "model", "color", "year")
_UPDATE_FIELDS = [
    "plate",
    "reason",
    "source_ref",
    "owner",
    "valid_from",
    "valid_until",
    "vehicle",
    "remote_id",
]


def _hotlist(*, hotlist_id: int, center_id: int) -> Hotlist:
    """One of our own lists (a peer's shared list changes only by the peer's messages)."""
    hotlist = Hotlist.objects.filter(pk=hotlist_id, center_id=center_id, peer="").first()
    if hotlist is None:
        raise NotFound(_("No existe la lista %(id)s.") % {"id": hotlist_id})
    return hotlist


def _plate(raw: str) -> str:
    plate = normalize_plate(raw)
    if not valid_plate(plate):
        raise DomainError(_("Placa inválida: de 4 a 10 letras y dígitos."), fields={"plate": [raw[:20]]})
    return plate


@transaction.atomic
def add_entry(
    *,
    hotlist_id: int,
    center_id: int,
    by,
    plate: str,
    reason: str = "",
    owner: str = "",
    source_ref: str = "",
    valid_until: datetime | None = None,
    vehicle: dict | None = None,
) -> HotlistEntry:
    hotlist = _hotlist(hotlist_id=hotlist_id, center_id=center_id)
    plate = _plate(plate)
    now = timezone.now()
    if valid_until is not None and valid_until <= now:
        raise DomainError(
            _("La vigencia debe terminar en el futuro."), fields={"valid_until": [_("Fecha pasada.")]}
        )
    entry, _created = HotlistEntry.objects.update_or_create(
        hotlist=hotlist,
        plate_key=plate_key(plate),
        defaults={
            "plate": plate,
            "reason": reason,
            "owner": owner or by.get_username(),
            "source_ref": source_ref,
            "valid_from": now,
            "valid_until": valid_until,
            "vehicle": {
                k: str(v)[:60] for k, v in (vehicle or {}).items() if k in VEHICLE_COLUMNS + ("type",)
            },
        },
    )
    shared.publish_entries(hotlist, [entry])
    return entry


@transaction.atomic
def remove_entry(*, hotlist_id: int, center_id: int, plate: str, by) -> None:
    hotlist = _hotlist(hotlist_id=hotlist_id, center_id=center_id)
    entries = HotlistEntry.objects.filter(hotlist=hotlist, plate_key=plate_key(plate))
    ids = list(entries.values_list("id", flat=True))
    if not ids:
        raise NotFound(_("La placa no está en la lista."))
    entries.delete()
    shared.withdraw_entries(ids)


def _text(value, limit: int) -> str:
    return (value or "").replace("\x00", "")[:limit]  # NUL cannot be stored in PostgreSQL text


def _row_entry(hotlist: Hotlist, row: dict, now: datetime) -> tuple:
    """A CSV row → the entry's values in _COPY_COLUMNS order (plain values: a million model instances
    cost most of an import's time), or ValueError."""
    plate = normalize_plate(row.get("plate") or "")
    if not valid_plate(plate):
        raise ValueError(_("placa inválida"))
    valid_until = None
    if row.get("valid_until"):
        valid_until = parse_datetime(row["valid_until"].strip())
        if valid_until is None:
            raise ValueError(_("vigencia inválida"))
        if timezone.is_naive(valid_until):
            valid_until = timezone.make_aware(valid_until)
    return (
        hotlist.id,
        plate_key(plate),
        plate,
        _text(row.get("reason"), 300),
        _text(row.get("source_ref"), 120),
        _text(row.get("owner"), 120),
        now,
        valid_until,
        {k: _text(row[k], 60) for k in VEHICLE_COLUMNS if row.get(k)},
        "",
    )


_COPY_COLUMNS = ("hotlist_id", "plate_key", *_UPDATE_FIELDS)
_STAGING_DDL = (
    "hotlist_id bigint, plate varchar(16), plate_key varchar(16), reason varchar(300), "
    "source_ref varchar(120), owner varchar(120), valid_from timestamptz, valid_until timestamptz, "
    "vehicle jsonb, remote_id varchar(100)"
)


def _copy_value(value) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        value = json.dumps(value)
    value = str(value)
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def upsert_entries(entries: list[HotlistEntry]) -> None:
    """Insert or update entries by (hotlist, plate_key). See `upsert_rows`."""
    upsert_rows(
        [(e.hotlist_id, e.plate_key, *(getattr(e, name) for name in _UPDATE_FIELDS)) for e in entries]
    )


def upsert_rows(rows: list[tuple]) -> None:
    """Insert or update entries given as values in _COPY_COLUMNS order, by (hotlist, plate_key).
    PostgreSQL: one COPY (text format, built as one string) into a per-connection temporary table and one
    INSERT … SELECT … ON CONFLICT DO UPDATE; elsewhere bulk_create with update_conflicts."""
    if connection.vendor != "postgresql":
        HotlistEntry.objects.bulk_create(
            [HotlistEntry(**dict(zip(_COPY_COLUMNS, row, strict=True))) for row in rows],
            update_conflicts=True,
            unique_fields=["hotlist", "plate_key"],
            update_fields=_UPDATE_FIELDS,
        )
        return
    columns = ", ".join(_COPY_COLUMNS)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in _UPDATE_FIELDS)
    text = "".join("\t".join(map(_copy_value, row)) + "\n" for row in rows)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's cursor, for COPY
        copy_into_staging(raw, table="hotlist_incoming", ddl=_STAGING_DDL, columns=columns, text=text)
        raw.execute(
            f"INSERT INTO {HotlistEntry._meta.db_table} ({columns}) SELECT {columns} FROM hotlist_incoming "  # noqa: S608
            "ORDER BY plate_key "  # index insertions in key order: better locality on large loads
            f"ON CONFLICT (hotlist_id, plate_key) DO UPDATE SET {updates}"
        )


def import_csv(
    *,
    hotlist: Hotlist,
    lines: Iterable[str],
    chunk: int = 5000,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[str]]:
    """Upsert the CSV's rows into `hotlist` (header required; columns CSV_COLUMNS, only `plate` mandatory).
    Each chunk is one transaction; a plate repeated in the file keeps its last row. Returns (rows stored,
    errors as "line N: why"). `progress(stored, errors)` is called after every chunk."""
    reader = csv.DictReader(lines)
    if not reader.fieldnames or "plate" not in reader.fieldnames:
        raise DomainError(_("El CSV necesita encabezado con la columna «plate»."), code="csv_header")
    now = timezone.now()
    stored, errors, pending = 0, [], {}

    def flush():
        nonlocal stored
        with transaction.atomic():
            upsert_rows(list(pending.values()))
            if shared.publishes(hotlist):
                stored_entries = HotlistEntry.objects.filter(hotlist=hotlist, plate_key__in=list(pending))
                shared.publish_entries(hotlist, stored_entries.order_by("id"))
        stored += len(pending)
        pending.clear()
        if progress:
            progress(stored, len(errors))

    for line_no, row in enumerate(reader, start=2):
        try:
            entry = _row_entry(hotlist, row, now)
        except ValueError as exc:
            errors.append(f"line {line_no}: {exc}")
            continue
        pending[entry[1]] = entry
        if len(pending) >= chunk:
            flush()
    if pending:
        flush()
    return stored, errors

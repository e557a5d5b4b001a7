"""LPR writes: read ingest (batched), hits, incidents from hits, hotlist entries, retention purge.

Ingest is built for throughput (tens of thousands of reads per second): items are validated by hand,
readers and hotlist membership are looked up once per batch (one `IN` query on the indexed plate key),
reads go in with one multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` per chunk (a re-sent read is
stored once and never alerts twice), and only hits touch the console stream. Reader heartbeats are
moved after the batch commits, throttled, so concurrent batches never queue on reader rows.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from cad.errors import Conflict, DomainError, NotFound
from cad.events import record_event
from incidents.models import CallDisposition, Channel, IncidentStatus, IncidentType, Line, LocationSource
from incidents.services import add_note, take_call
from interstate.vehicles import report_vehicle_sighting
from sensors.models import Hotlist, HotlistEntry, LprHit, LprRead, LprReader
from sensors.plates import fold_plate, normalize_plate, valid_plate
from sensors.staging import copy_into_staging
from sensors.supervision import mark_seen

VEHICLE_KEYS = ("make", "model", "color", "type", "year")
SEEN_THROTTLE_S = 10
_CHUNK = 1000


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    hits: list[LprHit] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)


def _item_error(index: int, status: int, code: str, message: str, fields: dict | None = None) -> dict:
    return {"index": index, "status": status, "code": code, "message": message, "fields": fields or {}}


def _vehicle(raw) -> dict:
    if not isinstance(raw, dict):
        return {}
    return {k: str(raw[k])[:60] for k in VEHICLE_KEYS if raw.get(k) not in (None, "")}


def _datetime(value) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _parse(
    index: int, item, window: tuple[datetime, datetime], readers: dict[str, LprReader]
) -> tuple[dict | None, dict | None]:
    """One read → (row, None) or (None, per-item error). `window` is the accepted (oldest, newest)."""
    if not isinstance(item, dict):
        return None, _item_error(index, 400, "invalid", _("Cada lectura es un objeto JSON."))
    fields = {}
    code = item.get("reader")
    raw_plate = item.get("plate")
    plate = normalize_plate(raw_plate) if isinstance(raw_plate, str) and len(raw_plate) <= 20 else ""
    if not valid_plate(plate):
        fields["plate"] = [_("Placa inválida: de 4 a 10 letras y dígitos.")]
    read_at = _datetime(item.get("read_at"))
    if read_at is None or read_at.tzinfo is None:
        fields["read_at"] = [_("Fecha y hora ISO 8601 con zona horaria.")]
    elif not window[0] <= read_at <= window[1]:
        fields["read_at"] = [_("Fuera del periodo aceptado (futuro o más antigua que la retención).")]
    confidence = item.get("confidence")
    if confidence is not None and (not isinstance(confidence, int | float) or not 0 <= confidence <= 1):
        fields["confidence"] = [_("Entre 0 y 1.")]
    image_ref = item.get("image_ref") or ""
    if not isinstance(image_ref, str) or len(image_ref) > 300:
        fields["image_ref"] = [_("Texto de hasta 300 caracteres.")]
    if not isinstance(code, str) or not code:
        fields["reader"] = [_("Clave del arco requerida.")]
    if fields:
        return None, _item_error(index, 400, "invalid", _("Lectura inválida."), fields)
    reader = readers.get(code)
    if reader is None:
        return None, _item_error(
            index, 404, "unknown_reader", _("Arco desconocido o inactivo: %(code)s.") % {"code": code[:32]}
        )
    return {
        "reader": reader,
        "plate": plate,
        "plate_key": fold_plate(plate),
        "read_at": read_at,
        "confidence": confidence,
        "vehicle": _vehicle(item.get("vehicle")),
        "image_ref": image_ref,
    }, None


def _listed_keys(keys: list[str]) -> list[str]:
    """The batch's keys present in any hotlist: one index probe per key in one query (PostgreSQL binds the
    batch as one array, `= ANY`; elsewhere an IN list)."""
    if connection.vendor != "postgresql":
        return list(HotlistEntry.objects.filter(plate_key__in=keys).values_list("plate_key", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT plate_key FROM {HotlistEntry._meta.db_table} WHERE plate_key = ANY(%s)",  # noqa: S608
            [keys],
        )
        return [row[0] for row in cursor.fetchall()]


def _active_entries(*, center_id: int, keys: set[str], now: datetime) -> dict[str, list[HotlistEntry]]:
    """Hotlist membership of a batch: the bare key look-up first (fast, almost always empty), then the
    few listed keys' entries with their list, validity and centre checked."""
    entries: dict[str, list[HotlistEntry]] = {}
    listed = _listed_keys(list(keys)) if keys else []
    if not listed:
        return entries
    rows = (
        HotlistEntry.objects.filter(plate_key__in=listed, hotlist__center_id=center_id, hotlist__active=True)
        .filter(valid_from__lte=now)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        .select_related("hotlist")
    )
    for entry in rows:
        entries.setdefault(entry.plate_key, []).append(entry)
    return entries


_COLUMNS = "reader_id, plate, plate_key, read_at, confidence, vehicle, image_ref"


def _json(value: dict) -> str:
    return json.dumps(value) if value else "{}"


def _row_values(r: dict) -> tuple:
    return (
        r["reader"].id,
        r["plate"],
        r["plate_key"],
        r["read_at"],
        r["confidence"],
        _json(r["vehicle"]),
        r["image_ref"],
    )


def _insert_reads(rows: list[dict], *, returning: bool) -> tuple[int, dict[tuple, int]]:
    """Insert reads, skipping ones already stored. Returns the number inserted and, with `returning`, the
    new rows' ids as {(reader_id, plate_key, read_at): id} (hits need them). PostgreSQL: COPY into a
    per-connection temporary table, then INSERT … SELECT … ON CONFLICT DO NOTHING (several times cheaper
    than a bound multi-row INSERT). SQLite: multi-row INSERT … ON CONFLICT DO NOTHING RETURNING."""
    table = LprRead._meta.db_table
    tail = "ON CONFLICT DO NOTHING RETURNING id, reader_id, plate_key, read_at"
    returned = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            raw = cursor.cursor  # psycopg's cursor, for COPY
            copy_into_staging(
                raw,
                table="lpr_incoming",
                ddl="reader_id bigint, plate varchar(16), plate_key varchar(16), read_at timestamptz, "
                "confidence double precision, vehicle jsonb, image_ref varchar(300)",
                columns=_COLUMNS,
                rows=(_row_values(r) for r in rows),
            )
            raw.execute(
                f"INSERT INTO {table} ({_COLUMNS}) SELECT {_COLUMNS} FROM lpr_incoming "  # noqa: S608
                + (tail if returning else "ON CONFLICT DO NOTHING")
            )
            if returning:
                returned = raw.fetchall()
            count = len(returned) if returning else raw.rowcount
        else:
            for start in range(0, len(rows), _CHUNK):
                chunk = rows[start : start + _CHUNK]
                params = [v for r in chunk for v in _row_values(r)]
                params[3::7] = [connection.ops.adapt_datetimefield_value(v) for v in params[3::7]]
                values = ",".join(["(%s,%s,%s,%s,%s,%s,%s)"] * len(chunk))
                cursor.execute(f"INSERT INTO {table} ({_COLUMNS}) VALUES {values} {tail}", params)  # noqa: S608
                returned += cursor.fetchall()
            count = len(returned)
    inserted = {}
    for read_id, reader_id, key, read_at in returned if returning else ():
        if isinstance(read_at, str):  # SQLite returns naive UTC text
            read_at = parse_datetime(read_at)
        if timezone.is_naive(read_at):
            read_at = timezone.make_aware(read_at, UTC)
        inserted[(reader_id, key, read_at)] = read_id
    return count, inserted


def hit_summary(hit: LprHit) -> dict:
    return {
        "id": hit.id,
        "plate": hit.plate,
        "read_plate": hit.read_plate,
        "hotlist_kind": hit.hotlist_kind,
        "reason": hit.reason,
        "vehicle": hit.vehicle,
        "reader": hit.reader.code if hit.reader_id else None,
        "place": hit.place,
        "lat": hit.lat,
        "lon": hit.lon,
        "read_at": hit.read_at.isoformat(),
        "origin": hit.origin,
        "list_owner": hit.list_owner,
        "status": hit.status,
        "folio": hit.incident.folio if hit.incident_id else None,
    }


def _follow_open_incident(hit: LprHit, *, by) -> None:
    """A new hit of an entry whose earlier hit opened a still-open incident joins that incident."""
    earlier = (
        LprHit.objects.filter(entry_id=hit.entry_id, incident__isnull=False)
        .exclude(incident__status=IncidentStatus.CLOSED)
        .select_related("incident")
        .order_by("-created_at")
        .first()
    )
    if earlier is None:
        return
    hit.incident = earlier.incident
    hit.status = LprHit.Status.INCIDENT
    hit.save(update_fields=["incident", "status"])
    add_note(
        folio=earlier.incident.folio,
        center_id=hit.center_id,
        by=by,
        text=_("Placa %(plate)s leída de nuevo en %(place)s (%(at)s).")
        % {
            "plate": hit.read_plate,
            "place": hit.place,
            "at": timezone.localtime(hit.read_at).strftime("%H:%M:%S"),
        },
    )


def raise_hit(
    *,
    center_id: int,
    entry: HotlistEntry,
    read_plate: str,
    read_at: datetime,
    lat: float,
    lon: float,
    place: str,
    by,
    vehicle: dict | None = None,
    read_id: int | None = None,
    reader: LprReader | None = None,
    origin: str = "",
) -> LprHit:
    """Record a hit and alert the consoles (inside the caller's transaction). The listed vehicle
    description wins over what the reader saw. A hit of our reader on a peer's shared entry is also
    reported to that peer (sensors.shared)."""
    hit = LprHit.objects.create(
        center_id=center_id,
        entry=entry,
        read_id=read_id,
        reader=reader,
        plate=entry.plate,
        read_plate=read_plate,
        hotlist_kind=entry.hotlist.kind,
        reason=entry.reason,
        vehicle=entry.vehicle or vehicle or {},
        read_at=read_at,
        lat=lat,
        lon=lon,
        place=place,
        origin=origin,
        list_owner=entry.hotlist.peer,
        created_at=timezone.now(),
    )
    if entry.hotlist.peer and reader is not None:
        report_vehicle_sighting(
            peer_code=entry.hotlist.peer,
            alert_id=entry.remote_id,
            vehicle={
                "plate": entry.plate,
                "colour": hit.vehicle.get("color", ""),
                "make": hit.vehicle.get("make", ""),
                "model": hit.vehicle.get("model", ""),
            },
            read_plate=read_plate,
            read_at=read_at,
            lat=lat,
            lon=lon,
            place=place,
            reader={"code": reader.code, "name": reader.name, "direction": reader.direction},
        )
    _follow_open_incident(hit, by=by)
    record_event(type="lpr.hit", center_id=center_id, payload=hit_summary(hit))
    return hit


def ingest_reads(*, center_id: int, items: list, by) -> IngestResult:
    """Validate, store and match a batch of reads. Invalid items get a per-item 4xx; valid ones are
    stored in one transaction. Returns counts, per-item errors and the hits raised."""
    if len(items) > settings.CAD["LPR_MAX_BATCH"]:
        raise DomainError(
            _("Lote demasiado grande: máximo %(n)s lecturas.") % {"n": settings.CAD["LPR_MAX_BATCH"]},
            status=413,
            code="batch_too_large",
        )
    now = timezone.now()
    result = IngestResult()
    codes = {
        item.get("reader") for item in items if isinstance(item, dict) and isinstance(item.get("reader"), str)
    }
    readers = {r.code: r for r in LprReader.objects.filter(code__in=codes, center_id=center_id, active=True)}
    window = (now - timedelta(days=settings.CAD["LPR_RETENTION_DAYS"]), now + timedelta(minutes=5))
    rows = []
    for index, item in enumerate(items):
        row, error = _parse(index, item, window, readers)
        if error:
            result.errors.append(error)
        else:
            rows.append(row)
    if not rows:
        return result
    entries = _active_entries(center_id=center_id, keys={r["plate_key"] for r in rows}, now=now)
    listed = [r for r in rows if r["plate_key"] in entries]
    # Hits first, in their own short transaction, so the alert leaves at its commit instead of waiting
    # for the bulk of the batch (a failure after it leaves the rest for the client's retry: duplicates
    # are skipped, nothing alerts twice).
    if listed:
        with transaction.atomic():
            result.accepted, inserted = _insert_reads(listed, returning=True)
            for row in listed:
                read_id = inserted.pop(
                    (row["reader"].id, row["plate_key"], row["read_at"]), None
                )  # once per read
                if read_id is None:
                    continue
                reader = row["reader"]
                for entry in entries[row["plate_key"]]:
                    result.hits.append(
                        raise_hit(
                            center_id=center_id,
                            entry=entry,
                            read_plate=row["plate"],
                            read_at=row["read_at"],
                            lat=reader.lat,
                            lon=reader.lon,
                            place=reader.name,
                            by=by,
                            read_id=read_id,
                            reader=reader,
                            vehicle=row["vehicle"],
                        )
                    )
    others = [r for r in rows if r["plate_key"] not in entries]
    if others:
        with transaction.atomic():
            result.accepted += _insert_reads(others, returning=False)[0]
    result.duplicates = len(rows) - result.accepted
    mark_readers_seen(reader_ids={r["reader"].id for r in rows}, at=now)
    return result


def mark_readers_seen(*, reader_ids: set[int], at: datetime) -> None:
    """Heartbeat of readers, throttled: online readers seen recently are not written again."""
    stale = Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=at - timedelta(seconds=SEEN_THROTTLE_S))
    LprReader.objects.filter(stale, id__in=reader_ids, online=True).update(last_seen_at=at)
    for reader_id in LprReader.objects.filter(id__in=reader_ids, online=False).values_list("id", flat=True):
        with transaction.atomic():
            reader = LprReader.objects.select_for_update().get(pk=reader_id)
            mark_seen(reader, at=at)


@transaction.atomic
def open_incident_from_hit(
    *, hit_id: int, center_id: int, by, incident_type: IncidentType | None = None
) -> LprHit:
    """Open an incident at the read's place carrying the vehicle (plate, list, reason, description)."""
    try:
        hit = (
            LprHit.objects.select_for_update(of=("self",))
            .select_related("center")
            .get(pk=hit_id, center_id=center_id)
        )
    except LprHit.DoesNotExist:
        raise NotFound(_("No existe la alerta %(id)s.") % {"id": hit_id}) from None
    if hit.incident_id:
        raise Conflict(
            _("La alerta ya tiene el incidente %(folio)s.") % {"folio": hit.incident.folio},
            code="hit_has_incident",
        )
    if incident_type is None:
        incident_type = IncidentType.objects.filter(
            code=settings.CAD["LPR_INCIDENT_TYPE"], active=True
        ).first()
        if incident_type is None:
            raise DomainError(
                _("Indique el tipo CNIE del incidente."), fields={"incident_type_code": [_("Requerido.")]}
            )
    vehicle = ", ".join(f"{k}: {v}" for k, v in hit.vehicle.items())
    narrative = _(
        "Placa %(plate)s (leída %(read)s) en lista «%(kind)s»: %(reason)s. Vehículo: %(vehicle)s. "
        "Leída en %(place)s a las %(at)s."
    ) % {
        "plate": hit.plate,
        "read": hit.read_plate,
        "kind": Hotlist.Kind(hit.hotlist_kind).label,
        "reason": hit.reason or "—",
        "vehicle": vehicle or "—",
        "place": hit.place,
        "at": timezone.localtime(hit.read_at).strftime("%Y-%m-%d %H:%M:%S"),
    }
    call = take_call(
        center=hit.center,
        by=by,
        line=Line.EMERGENCY,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=incident_type,
        channel=Channel.LPR_HIT,
        lat=hit.lat,
        lon=hit.lon,
        address=hit.place,
        location_source=LocationSource.SENSOR,
        narrative=narrative,
    )
    hit.incident = call.incident
    hit.status = LprHit.Status.INCIDENT
    hit.save(update_fields=["incident", "status"])
    record_event(type="lpr.hit_updated", center_id=center_id, payload=hit_summary(hit))
    return hit


@transaction.atomic
def set_hit_status(*, hit_id: int, center_id: int, status: str, by) -> LprHit:
    hit = LprHit.objects.select_for_update().filter(pk=hit_id, center_id=center_id).first()
    if hit is None:
        raise NotFound(_("No existe la alerta %(id)s.") % {"id": hit_id})
    if hit.status == LprHit.Status.INCIDENT:
        raise Conflict(_("La alerta ya tiene incidente."), code="hit_has_incident")
    hit.status = status
    hit.save(update_fields=["status"])
    record_event(type="lpr.hit_updated", center_id=center_id, payload=hit_summary(hit))
    return hit


def purge_reads(*, now: datetime | None = None, chunk: int = 10_000) -> int:
    """Delete raw reads older than the retention period, in chunks (hits keep their own copy)."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.CAD["LPR_RETENTION_DAYS"])
    deleted = 0
    while True:
        ids = list(LprRead.objects.filter(read_at__lt=cutoff).values_list("id", flat=True)[:chunk])
        if not ids:
            return deleted
        deleted += LprRead.objects.filter(id__in=ids).delete()[0]

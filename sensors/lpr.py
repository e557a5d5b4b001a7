"""LPR writes: read ingest (batched), hits, incidents from hits, hotlist entries, retention purge.

Ingest is built for throughput (tens of thousands of reads per second, batches of 5,000):

* items are validated in one pass without serializers; the common shape (known reader, plain ASCII
  plate, a timestamp shared with other reads of the batch) takes a fast path, anything else goes through
  `_parse`, which gives the same row or the per-item error;
* readers are looked up once per batch, hotlist membership with one `= ANY` on the indexed plate key;
* hits go first, in their own short transaction (their reads, the hit rows and their console events in
  a handful of queries whatever the number of hits), so the alert leaves at its commit instead of waiting
  behind the bulk of the batch;
* the other reads go in with one COPY (text format, built in one string) into a temporary table and one
  `INSERT … SELECT … ON CONFLICT DO NOTHING`: a re-sent read is stored once and never alerts twice;
* reader heartbeats are written only when a reader of the batch is offline or its last-seen mark is older
  than SEEN_THROTTLE_S (known from the reader rows already loaded), so concurrent batches never queue on
  reader rows.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from cad.errors import Conflict, DomainError, NotFound
from cad.events import record_event, record_events
from incidents.models import CallDisposition, Channel, IncidentStatus, IncidentType, Line, LocationSource
from incidents.services import add_note, take_call
from interstate.vehicles import report_vehicle_sighting
from sensors.models import Hotlist, HotlistEntry, LprHit, LprRead, LprReader
from sensors.plates import PLATE_MAX, PLATE_MIN, fold_plate, normalize_plate, valid_plate
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


class _Read(NamedTuple):
    """A validated read, ready to store."""

    reader: LprReader
    plate: str  # normalised
    plate_key: str  # confusion-folded (sensors.plates)
    read_at: datetime
    stamp: str  # read_at in ISO 8601, as written to COPY
    confidence: float | None
    vehicle: dict
    image_ref: str


def _item_error(index: int, status: int, code: str, message: str, fields: dict | None = None) -> dict:
    return {"index": index, "status": status, "code": code, "message": message, "fields": fields or {}}


def _vehicle(raw) -> dict:
    if not isinstance(raw, dict):
        return {}
    # NUL cannot be stored in PostgreSQL text or jsonb.
    return {k: str(raw[k]).replace("\x00", "")[:60] for k in VEHICLE_KEYS if raw.get(k) not in (None, "")}


def _datetime(value) -> datetime | None:
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _confidence_ok(value) -> bool:
    return value is None or (type(value) in (int, float) and 0 <= value <= 1)  # not bool, not NaN


def _parse(
    index: int, item, window: tuple[datetime, datetime], readers: dict[str, LprReader]
) -> tuple[_Read | None, dict | None]:
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
    if not _confidence_ok(confidence):
        fields["confidence"] = [_("Entre 0 y 1.")]
    image_ref = item.get("image_ref") or ""
    if not isinstance(image_ref, str) or len(image_ref) > 300 or "\x00" in image_ref:
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
    return _Read(
        reader,
        plate,
        fold_plate(plate),
        read_at,
        read_at.isoformat(),
        confidence,
        _vehicle(item.get("vehicle")),
        image_ref,
    ), None


def _stamp(value: str, window: tuple[datetime, datetime]) -> tuple[datetime, str] | None:
    read_at = _datetime(value)
    if read_at is None or read_at.tzinfo is None or not window[0] <= read_at <= window[1]:
        return None
    return read_at, read_at.isoformat()


def _parse_batch(
    items: list, window: tuple[datetime, datetime], readers: dict[str, LprReader]
) -> tuple[list[_Read], list[dict]]:
    """Validate a batch in one pass → (rows, per-item errors in item order).

    Fast path: a dict with a known reader, a plain ASCII letters-and-digits plate of valid length with a
    digit (already normalised but for case), a valid timestamp (parsed once per distinct string: a
    reader's batch shares few), a confidence in [0, 1] or none, and an image reference of at most 300
    characters. Everything else takes `_parse`, so rows and error messages are the same either way."""
    rows: list[_Read] = []
    errors: list[dict] = []
    stamps: dict[str, tuple[datetime, str] | None] = {}
    for index, item in enumerate(items):
        if type(item) is dict:
            code, raw, stamp = item.get("reader"), item.get("plate"), item.get("read_at")
            reader = readers.get(code) if type(code) is str else None
            image_ref = item.get("image_ref") or ""
            if (
                reader is not None
                and type(raw) is str
                and PLATE_MIN <= len(raw) <= PLATE_MAX
                and raw.isascii()
                and raw.isalnum()
                and not raw.isalpha()  # letters and digits only, so: at least one digit
                and type(stamp) is str
                and _confidence_ok(item.get("confidence"))
                and type(image_ref) is str
                and len(image_ref) <= 300
                and "\x00" not in image_ref
            ):
                parsed = stamps.get(stamp, False)
                if parsed is False:
                    parsed = stamps[stamp] = _stamp(stamp, window)
                if parsed is not None:
                    plate = raw.upper()
                    vehicle = item.get("vehicle")
                    rows.append(
                        _Read(
                            reader,
                            plate,
                            fold_plate(plate),
                            parsed[0],
                            parsed[1],
                            item.get("confidence"),
                            _vehicle(vehicle) if vehicle else {},
                            image_ref,
                        )
                    )
                    continue
        row, error = _parse(index, item, window, readers)
        if error:
            errors.append(error)
        else:
            rows.append(row)
    return rows, errors


def _listed_keys(keys: list[str]) -> list[str]:
    """The batch's keys present in any hotlist: one index probe per key in one query. PostgreSQL: the keys
    bound as ONE array literal (keys are only A-Z and 0-9, so no quoting), which the server parses far
    faster than an ARRAY[…] of 5,000 bound strings; elsewhere an IN list."""
    if connection.vendor != "postgresql":
        return list(HotlistEntry.objects.filter(plate_key__in=keys).values_list("plate_key", flat=True))
    literal = "{" + ",".join(keys) + "}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT plate_key FROM {HotlistEntry._meta.db_table} WHERE plate_key = ANY(%s::text[])",  # noqa: S608
            [literal],
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
_STAGING_DDL = (
    "reader_id bigint, plate varchar(16), plate_key varchar(16), read_at timestamptz, "
    "confidence double precision, vehicle jsonb, image_ref varchar(300)"
)


def _json(value: dict) -> str:
    return json.dumps(value) if value else "{}"


def _copy_escape(value: str) -> str:
    """A value for COPY's text format (backslash, tab and line breaks escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


_NULL = "\\N"


def _copy_text(rows: list[_Read]) -> str:
    """The rows as one COPY text-format payload (plates and keys are letters and digits only)."""
    lines = []
    for r in rows:
        confidence = _NULL if r.confidence is None else repr(float(r.confidence))
        vehicle = _copy_escape(json.dumps(r.vehicle)) if r.vehicle else "{}"
        lines.append(
            f"{r.reader.id}\t{r.plate}\t{r.plate_key}\t{r.stamp}\t{confidence}\t{vehicle}\t"
            f"{_copy_escape(r.image_ref)}\n"
        )
    return "".join(lines)


def _row_values(r: _Read) -> tuple:
    return (r.reader.id, r.plate, r.plate_key, r.read_at, r.confidence, _json(r.vehicle), r.image_ref)


def _insert_returning(rows: list[_Read]) -> dict[tuple, int]:
    """Insert a few reads with multi-row `INSERT … ON CONFLICT DO NOTHING RETURNING` (the hits' reads: their
    ids are needed, and for a handful of rows this beats staging). Returns the new rows' ids as
    {(reader_id, plate_key, read_at): id}; a read already stored is absent."""
    table = LprRead._meta.db_table
    inserted = {}
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            params = [v for r in chunk for v in _row_values(r)]
            params[3::7] = [connection.ops.adapt_datetimefield_value(v) for v in params[3::7]]
            values = ",".join(["(%s,%s,%s,%s,%s,%s,%s)"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({_COLUMNS}) VALUES {values} "  # noqa: S608
                "ON CONFLICT DO NOTHING RETURNING id, reader_id, plate_key, read_at",
                params,
            )
            for read_id, reader_id, key, read_at in cursor.fetchall():
                if isinstance(read_at, str):  # SQLite returns naive UTC text
                    read_at = parse_datetime(read_at)
                if timezone.is_naive(read_at):
                    read_at = timezone.make_aware(read_at, UTC)
                inserted[(reader_id, key, read_at)] = read_id
    return inserted


def _store_reads(rows: list[_Read]) -> int:
    """Insert reads, skipping ones already stored; returns how many were inserted. PostgreSQL: one COPY
    (text format, built as one string) into a per-connection temporary table, then one INSERT … SELECT …
    ON CONFLICT DO NOTHING. Elsewhere: multi-row INSERTs."""
    if connection.vendor != "postgresql":
        return len(_insert_returning(rows))
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's cursor, for COPY
        copy_into_staging(
            raw, table="lpr_incoming", ddl=_STAGING_DDL, columns=_COLUMNS, text=_copy_text(rows)
        )
        raw.execute(
            f"INSERT INTO {LprRead._meta.db_table} ({_COLUMNS}) SELECT {_COLUMNS} FROM lpr_incoming "  # noqa: S608
            "ON CONFLICT DO NOTHING"
        )
        return raw.rowcount


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


def _follow_open_incidents(hits: list[LprHit], *, by) -> None:
    """A new hit of an entry whose earlier hit opened a still-open incident joins that incident (one query
    for all the hits; a note on the incident for each that joins)."""
    earlier: dict[int, LprHit] = {}
    for hit in (
        LprHit.objects.filter(entry_id__in={h.entry_id for h in hits}, incident__isnull=False)
        .exclude(incident__status=IncidentStatus.CLOSED)
        .select_related("incident")
        .order_by("entry_id", "-created_at")
    ):
        earlier.setdefault(hit.entry_id, hit)
    for hit in hits:
        previous = earlier.get(hit.entry_id)
        if previous is None:
            continue
        hit.incident = previous.incident
        hit.status = LprHit.Status.INCIDENT
        hit.save(update_fields=["incident", "status"])
        add_note(
            folio=previous.incident.folio,
            center_id=hit.center_id,
            by=by,
            text=_("Placa %(plate)s leída de nuevo en %(place)s (%(at)s).")
            % {
                "plate": hit.read_plate,
                "place": hit.place,
                "at": timezone.localtime(hit.read_at).strftime("%H:%M:%S"),
            },
        )


def _record_hits(*, center_id: int, found: list[dict], by) -> list[LprHit]:
    """Record hits (`found`: raise_hit's keyword arguments but center_id and by) and alert the consoles,
    inside the caller's transaction, in a fixed number of queries (one INSERT for the hits, one look-up of
    open incidents, one seq claim and one INSERT for their `lpr.hit` events) plus the rare follow-ups.
    The listed vehicle description wins over what the reader saw. A hit of our reader on a peer's shared
    entry is also reported to that peer (sensors.shared)."""
    if not found:
        return []
    now = timezone.now()
    hits = LprHit.objects.bulk_create(
        [
            LprHit(
                center_id=center_id,
                entry=f["entry"],
                read_id=f.get("read_id"),
                reader=f.get("reader"),
                plate=f["entry"].plate,
                read_plate=f["read_plate"],
                hotlist_kind=f["entry"].hotlist.kind,
                reason=f["entry"].reason,
                vehicle=f["entry"].vehicle or f.get("vehicle") or {},
                read_at=f["read_at"],
                lat=f["lat"],
                lon=f["lon"],
                place=f["place"],
                origin=f.get("origin", ""),
                list_owner=f["entry"].hotlist.peer,
                created_at=now,
            )
            for f in found
        ]
    )
    for hit, f in zip(hits, found, strict=True):
        entry, reader = f["entry"], f.get("reader")
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
                read_plate=hit.read_plate,
                read_at=hit.read_at,
                lat=hit.lat,
                lon=hit.lon,
                place=hit.place,
                reader={"code": reader.code, "name": reader.name, "direction": reader.direction},
            )
    _follow_open_incidents(hits, by=by)
    record_events(type="lpr.hit", center_id=center_id, payloads=[hit_summary(hit) for hit in hits])
    return hits


def raise_hit(*, center_id: int, by, **found) -> LprHit:
    """Record one hit and alert the consoles (inside the caller's transaction): `entry`, `read_plate`,
    `read_at`, `lat`, `lon`, `place`, and optionally `vehicle`, `read_id`, `reader`, `origin` (a peer's
    code when the sighting came from another state). See `_record_hits`."""
    return _record_hits(center_id=center_id, found=[found], by=by)[0]


def ingest_reads(*, center_id: int, items: list, by) -> IngestResult:
    """Validate, store and match a batch of reads. Invalid items get a per-item 4xx (and nothing of them is
    written); valid ones are stored. Hits first, in their own short transaction, so the alert leaves at its
    commit instead of waiting for the bulk of the batch; then the other reads in one transaction (a failure
    there leaves them for the client's retry: duplicates are skipped, nothing alerts twice). Returns
    counts, per-item errors and the hits raised."""
    if len(items) > settings.CAD["LPR_MAX_BATCH"]:
        raise DomainError(
            _("Lote demasiado grande: máximo %(n)s lecturas.") % {"n": settings.CAD["LPR_MAX_BATCH"]},
            status=413,
            code="batch_too_large",
        )
    now = timezone.now()
    result = IngestResult()
    codes = {item.get("reader") for item in items if type(item) is dict and type(item.get("reader")) is str}
    readers = {r.code: r for r in LprReader.objects.filter(code__in=codes, center_id=center_id, active=True)}
    window = (now - timedelta(days=settings.CAD["LPR_RETENTION_DAYS"]), now + timedelta(minutes=5))
    rows, result.errors = _parse_batch(items, window, readers)
    if not rows:
        return result
    entries = _active_entries(center_id=center_id, keys={r.plate_key for r in rows}, now=now)
    listed = [r for r in rows if r.plate_key in entries] if entries else []
    if listed:
        with transaction.atomic():
            inserted = _insert_returning(listed)
            result.accepted = len(inserted)
            found = []
            for row in listed:
                read_id = inserted.pop((row.reader.id, row.plate_key, row.read_at), None)  # once per read
                if read_id is None:
                    continue
                reader = row.reader
                found += [
                    {
                        "entry": entry,
                        "read_plate": row.plate,
                        "read_at": row.read_at,
                        "lat": reader.lat,
                        "lon": reader.lon,
                        "place": reader.name,
                        "read_id": read_id,
                        "reader": reader,
                        "vehicle": row.vehicle,
                    }
                    for entry in entries[row.plate_key]
                ]
            result.hits = _record_hits(center_id=center_id, found=found, by=by)
    others = [r for r in rows if r.plate_key not in entries] if listed else rows
    if others:
        with transaction.atomic():
            result.accepted += _store_reads(others)
    result.duplicates = len(rows) - result.accepted
    _heartbeat({r.reader.id: r.reader for r in rows}.values(), at=now)
    return result


def _heartbeat(readers, *, at: datetime) -> None:
    """Move the batch's readers' heartbeat when needed, judged from the rows loaded for the batch: an
    offline reader comes back, an online one is written when its mark is older than SEEN_THROTTLE_S.
    Usually nothing to write (no query)."""
    threshold = at - timedelta(seconds=SEEN_THROTTLE_S)
    due = {r.id for r in readers if not r.online or r.last_seen_at is None or r.last_seen_at < threshold}
    if due:
        mark_readers_seen(reader_ids=due, at=at)


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

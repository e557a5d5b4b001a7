"""Unit writes: status bookkeeping and AVL positions. Dispatch rules live in incidents.services."""

from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import DomainError
from cad.events import record_event
from cad.models import EventStream
from units.models import ASSIGNED_STATUSES, AvlPosition, Unit, UnitStatusChange


def unit_summary(unit: Unit, *, incident_folio: str | None = None) -> dict:
    """The unit as consoles and the map see it (event payloads and API lists agree on this shape)."""
    return {
        "id": unit.id,
        "callsign": unit.callsign,
        "agency_id": unit.agency_id,
        "status": unit.status,
        "status_changed_at": unit.status_changed_at.isoformat(),
        "lat": unit.lat,
        "lon": unit.lon,
        "position_at": unit.position_at.isoformat() if unit.position_at else None,
        "incident": incident_folio,
        "version": unit.version,
    }


def set_unit_status(
    *, unit: Unit, to: str, by, incident=None, at: datetime | None = None
) -> UnitStatusChange:
    """Record a status change of a unit already locked by the caller. No transition rules here."""
    at = at or timezone.now()
    change = UnitStatusChange.objects.create(
        unit=unit, from_status=unit.status, to_status=to, at=at, by=by, incident=incident
    )
    unit.status = to
    unit.status_changed_at = at
    unit.version += 1
    unit.save(update_fields=["status", "status_changed_at", "version"])
    record_event(
        type="unit.status_changed",
        center_id=unit.center_id,
        payload=unit_summary(
            unit, incident_folio=incident.folio if incident and to in ASSIGNED_STATUSES else None
        ),
    )
    return change


class AvlBatchTooLarge(DomainError):
    status = 413
    code = "batch_too_large"


def record_positions(*, center_id: int, positions: list[dict]) -> int:
    """Store a batch of AVL fixes and move each unit to its newest fix, in one transaction.

    `positions`: dicts with unit_id, lat, lon, recorded_at (aware datetime), optional speed_kmh, heading.
    Units of other centres are refused (nothing is written). Older fixes than a unit's current position are
    kept in the track but do not move the unit; of several fixes of one unit with the same newest time the
    first counts. One `units.positions` event on the AVL stream carries the moves.

    PostgreSQL: the batch is COPYed into a per-connection staging table, then one INSERT … SELECT writes the
    track and one UPDATE … FROM moves the units. Other databases (SQLite): the ORM, unit by unit.
    """
    limit = settings.CAD["AVL_MAX_BATCH"]
    if len(positions) > limit:
        raise AvlBatchTooLarge(
            _("Lote de %(n)d posiciones; el máximo por solicitud es %(max)d.")
            % {"n": len(positions), "max": limit},
            fields={"positions": [_("Máximo %(max)d posiciones por lote.") % {"max": limit}]},
        )
    if not positions:
        return 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            moved = _store_and_move_by_copy(center_id=center_id, positions=positions)
        else:
            moved = _store_and_move_by_orm(center_id=center_id, positions=positions)
        if moved:
            record_event(
                type="units.positions",
                center_id=center_id,
                stream=EventStream.Name.AVL,
                payload={"positions": [[uid, lat, lon, at.isoformat()] for uid, lat, lon, at in moved]},
            )
    return len(positions)


def _refuse_unknown_units(unknown: list[int]) -> None:
    if unknown:
        raise DomainError(
            _("Unidades desconocidas en este centro: %(ids)s") % {"ids": ", ".join(map(str, unknown[:20]))},
            code="unknown_unit",
            fields={"positions": [_("Unidad desconocida: %(id)s") % {"id": uid} for uid in unknown[:20]]},
        )


_STAGING = "avl_staging"
_STAGING_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (ord integer, unit_id bigint, recorded_at timestamptz, "
    "lat float8, lon float8, speed_kmh float8, heading float8) ON COMMIT DELETE ROWS"
)


def _store_and_move_by_copy(*, center_id: int, positions: list[dict]) -> list[tuple]:
    """PostgreSQL: COPY → staging, refuse foreign units, INSERT the track, lock and UPDATE the units whose
    newest fix is newer than their position. Returns the moves (unit_id, lat, lon, recorded_at)."""
    unit, track = Unit._meta.db_table, AvlPosition._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(_STAGING_DDL)
        with cursor.cursor.copy(
            f"COPY {_STAGING} (ord, unit_id, recorded_at, lat, lon, speed_kmh, heading) FROM STDIN"
        ) as copy:
            for index, p in enumerate(positions):
                copy.write_row(
                    (
                        index,
                        p["unit_id"],
                        p["recorded_at"],
                        p["lat"],
                        p["lon"],
                        p.get("speed_kmh"),
                        p.get("heading"),
                    )
                )
        cursor.execute(
            f"SELECT DISTINCT s.unit_id FROM {_STAGING} s LEFT JOIN {unit} u "  # noqa: S608 - our identifiers
            "ON u.id = s.unit_id AND u.center_id = %s WHERE u.id IS NULL ORDER BY 1 LIMIT 20",
            [center_id],
        )
        _refuse_unknown_units([row[0] for row in cursor.fetchall()])
        cursor.execute(
            f"INSERT INTO {track} (unit_id, recorded_at, lat, lon, speed_kmh, heading) "  # noqa: S608
            f"SELECT unit_id, recorded_at, lat, lon, speed_kmh, heading FROM {_STAGING} ORDER BY ord"
        )
        # Lock in id order first: concurrent batches (and multi-unit closes) then never deadlock.
        cursor.execute(
            f"SELECT u.id FROM {unit} u WHERE u.id IN (SELECT unit_id FROM {_STAGING}) "  # noqa: S608
            "ORDER BY u.id FOR UPDATE"
        )
        cursor.execute(
            f"UPDATE {unit} AS u SET lat = n.lat, lon = n.lon, position_at = n.recorded_at "  # noqa: S608
            f"FROM (SELECT DISTINCT ON (unit_id) unit_id, recorded_at, lat, lon FROM {_STAGING} "
            "      ORDER BY unit_id, recorded_at DESC, ord) AS n "
            "WHERE u.id = n.unit_id AND (u.position_at IS NULL OR u.position_at < n.recorded_at) "
            "RETURNING u.id"
        )
        newest = _newest_per_unit(positions)
        return [newest[unit_id] for (unit_id,) in sorted(cursor.fetchall())]


def _newest_per_unit(positions: list[dict]) -> dict[int, tuple]:
    """unit_id → (unit_id, lat, lon, recorded_at) of its newest fix (the first of equally new ones)."""
    newest: dict[int, tuple] = {}
    for fix in positions:
        current = newest.get(fix["unit_id"])
        if current is None or fix["recorded_at"] > current[3]:
            newest[fix["unit_id"]] = (fix["unit_id"], fix["lat"], fix["lon"], fix["recorded_at"])
    return newest


def _store_and_move_by_orm(*, center_id: int, positions: list[dict]) -> list[tuple]:
    """Embedded SQLite path (small fleets): bulk_create the track, one UPDATE per unit that moves."""
    unit_ids = {p["unit_id"] for p in positions}
    known = set(Unit.objects.filter(center_id=center_id, id__in=unit_ids).values_list("id", flat=True))
    _refuse_unknown_units(sorted(unit_ids - known))
    newest = _newest_per_unit(positions)
    AvlPosition.objects.bulk_create(
        [
            AvlPosition(
                unit_id=p["unit_id"],
                recorded_at=p["recorded_at"],
                lat=p["lat"],
                lon=p["lon"],
                speed_kmh=p.get("speed_kmh"),
                heading=p.get("heading"),
            )
            for p in positions
        ],
        batch_size=2000,
    )
    current = dict(Unit.objects.select_for_update().filter(id__in=newest).values_list("id", "position_at"))
    moved = []
    for unit_id in sorted(newest):
        _unit_id, lat, lon, recorded_at = newest[unit_id]
        if current[unit_id] is None or current[unit_id] < recorded_at:
            Unit.objects.filter(id=unit_id).update(lat=lat, lon=lon, position_at=recorded_at)
            moved.append(newest[unit_id])
    return moved

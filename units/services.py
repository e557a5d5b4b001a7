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
    Units of other centres are refused. Older fixes than a unit's current position are kept in the track
    but do not move the unit. One `units.positions` event on the AVL stream carries the moves.
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
    unit_ids = {p["unit_id"] for p in positions}
    known = set(Unit.objects.filter(center_id=center_id, id__in=unit_ids).values_list("id", flat=True))
    unknown = sorted(unit_ids - known)
    if unknown:
        raise DomainError(
            _("Unidades desconocidas en este centro: %(ids)s") % {"ids": ", ".join(map(str, unknown[:20]))},
            code="unknown_unit",
            fields={"positions": [_("Unidad desconocida: %(id)s") % {"id": uid} for uid in unknown[:20]]},
        )

    newest: dict[int, dict] = {}
    for fix in positions:
        current = newest.get(fix["unit_id"])
        if current is None or fix["recorded_at"] > current["recorded_at"]:
            newest[fix["unit_id"]] = fix

    with transaction.atomic():
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
        moved = _move_units_to_newest(list(newest.values()))
        if moved:
            record_event(
                type="units.positions",
                center_id=center_id,
                stream=EventStream.Name.AVL,
                payload={
                    "positions": [
                        [p["unit_id"], p["lat"], p["lon"], p["recorded_at"].isoformat()] for p in moved
                    ]
                },
            )
    return len(positions)


def _move_units_to_newest(fixes: list[dict]) -> list[dict]:
    """One set-based UPDATE … FROM (VALUES …) (PostgreSQL) moving units whose fix is newer; returns those."""
    if connection.vendor == "postgresql":
        moved_ids: set[int] = set()
        with connection.cursor() as cursor:
            # Lock in id order first: concurrent batches (and multi-unit closes) then never deadlock.
            cursor.execute(
                "SELECT id FROM units_unit WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                [sorted(f["unit_id"] for f in fixes)],
            )
            for start in range(0, len(fixes), 1000):
                chunk = fixes[start : start + 1000]
                values = ", ".join(["(%s::bigint, %s::float8, %s::float8, %s::timestamptz)"] * len(chunk))
                params = [v for f in chunk for v in (f["unit_id"], f["lat"], f["lon"], f["recorded_at"])]
                cursor.execute(
                    f"UPDATE units_unit AS u SET lat = v.lat, lon = v.lon, position_at = v.at "  # noqa: S608
                    f"FROM (VALUES {values}) AS v(id, lat, lon, at) "
                    "WHERE u.id = v.id AND (u.position_at IS NULL OR u.position_at < v.at) RETURNING u.id",
                    params,
                )
                moved_ids.update(row[0] for row in cursor.fetchall())
        return [f for f in fixes if f["unit_id"] in moved_ids]

    current = dict(Unit.objects.filter(id__in=[f["unit_id"] for f in fixes]).values_list("id", "position_at"))
    moved = [
        f for f in fixes if current.get(f["unit_id"]) is None or current[f["unit_id"]] < f["recorded_at"]
    ]
    for f in moved:  # embedded SQLite path: small fleets, one UPDATE per unit
        Unit.objects.filter(id=f["unit_id"]).update(lat=f["lat"], lon=f["lon"], position_at=f["recorded_at"])
    return moved

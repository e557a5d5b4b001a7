"""Dispatch writes: calls, incidents, notes, assignments and the unit status changes that drive them.

Every function here runs in one transaction, locks what it races on, raises domain errors (cad.errors)
and records a domain event (cad.events.record_event) that consoles receive after commit.
"""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cad.errors import Conflict, DomainError, InvalidTransition, NotFound, StaleWrite, UnitNotAvailable
from cad.events import record_event
from cad.models import Center
from geo.validation import PointCheck, check_point
from incidents import lifecycle
from incidents.models import (
    CALLER_DEVICE_SOURCES,
    PRIORITY_RANK,
    Assignment,
    AssignmentStatus,
    Call,
    CallDisposition,
    Channel,
    FolioCounter,
    Incident,
    IncidentStatus,
    IncidentType,
    Line,
    LocationSource,
    TimelineEntry,
)
from incidents.summary import incident_summary
from units.models import UNIT_TRANSITIONS, Unit, UnitStatus
from units.services import set_unit_status, unit_summary


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _timeline(
    incident: Incident, *, kind: str, text: str, by, data: dict | None = None, at=None
) -> TimelineEntry:
    return TimelineEntry.objects.create(
        incident=incident, kind=kind, text=text, by=by, data=data or {}, at=at or timezone.now()
    )


def _check_version(current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise StaleWrite(current_version=current)


# --- Calls and incidents --------------------------------------------------------------------
MACHINE_CHANNELS = frozenset({Channel.PANIC_BUTTON, Channel.LPR_HIT, Channel.INTERSTATE})


def next_folio(*, center: Center, year: int) -> str:
    """MEX-2026-000123: state prefix, year, per-centre yearly sequence. Unique and gap-free under
    concurrency: one UPDATE … RETURNING bumps the counter row and holds its lock until commit (so callers
    should take it as late in their transaction as they can)."""
    table = FolioCounter._meta.db_table
    sql = f"UPDATE {table} SET last = last + 1 WHERE center_id = %s AND year = %s RETURNING last"  # noqa: S608 - table name from the model
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(sql, [center.pk, year])
        row = cursor.fetchone()
        if row is None:  # the centre's first folio of the year: create the counter, then bump it
            FolioCounter.objects.get_or_create(center=center, year=year)
            cursor.execute(sql, [center.pk, year])
            row = cursor.fetchone()
    return f"{center.code}-{year}-{row[0]:06d}"


@transaction.atomic
def take_call(
    *,
    center: Center,
    by,
    line: str,
    disposition: str,
    incident_type: IncidentType | None = None,
    link_to_folio: str | None = None,
    arrived_at: datetime | None = None,
    answered_at: datetime | None = None,
    caller_name: str | None = None,
    callback_number: str | None = None,
    origin_center: str = "",
    origin_folio: str = "",
    confirm_outside_area: bool = False,
    **call_fields,
) -> Call:
    """Record a call and act on its disposition: open an incident, link it to one, or just record it.

    089 tips never carry caller identity: refused here, and by a database check constraint.
    Improcedentes are recorded, never dispatched. `origin_center`/`origin_folio` mark an incident opened on
    behalf of another command centre (its code and folio). Coordinates are checked
    (geo.validation.check_point): a bad one is refused, one outside the service area needs
    `confirm_outside_area`; the check is left on the returned call as `call.location_check` (None without
    coordinates).
    """
    now = timezone.now()
    _refuse_handset_on_089(line, call_fields.get("location_source"))
    location = check_point(
        lat=call_fields.get("lat"),
        lon=call_fields.get("lon"),
        cve_ent=center.cve_ent,
        # A device or a peer state reports where it is: nobody is there to confirm, and the point is
        # not refused for being outside (the incident is flagged, its timeline says so).
        confirm_outside_area=confirm_outside_area or call_fields.get("channel") in MACHINE_CHANNELS,
    )
    if line == Line.ANONYMOUS and (caller_name or callback_number):
        raise DomainError(
            _("Las denuncias 089 son anónimas: no se registran datos de quien llama."),
            code="anonymous_line",
            fields={
                key: [_("No permitido en la línea 089.")]
                for key, value in (("caller_name", caller_name), ("callback_number", callback_number))
                if value
            },
        )
    if (
        incident_type is not None
        and incident_type.is_improcedente
        and disposition == CallDisposition.NEW_INCIDENT
    ):
        raise DomainError(
            _("Un tipo improcedente se registra con resolución «improcedente»; no abre incidente."),
            code="improcedente_not_dispatchable",
            fields={"disposition": [_("Use «improcedente» para este tipo.")]},
        )
    if disposition == CallDisposition.NEW_INCIDENT and incident_type is None:
        raise DomainError(
            _("Clasifique la llamada para abrir un incidente."),
            fields={"incident_type_code": [_("Requerido para abrir un incidente.")]},
        )
    # Built first and inserted once, with its incident when it opens one (no INSERT then UPDATE).
    call = Call(
        center=center,
        line=line,
        disposition=disposition,
        incident_type=incident_type,
        arrived_at=arrived_at or now,
        answered_at=answered_at or now,
        caller_name=caller_name or None,
        callback_number=callback_number or None,
        call_taker=by,
        **call_fields,
    )
    if call.answered_at < call.arrived_at:
        raise DomainError(
            _("La hora de contestación es anterior a la de llegada."),
            fields={"answered_at": [_("Debe ser posterior a la llegada.")]},
        )
    call.location_check = location
    if disposition == CallDisposition.NEW_INCIDENT:
        call.incident = open_incident(
            call=call, by=by, location=location, origin_center=origin_center, origin_folio=origin_folio
        )
        call.save(force_insert=True)
    elif disposition == CallDisposition.LINKED:
        if not link_to_folio:
            raise DomainError(
                _("Indique el folio del incidente a vincular."),
                fields={"incident": [_("Requerido para vincular.")]},
            )
        call.save(force_insert=True)
        link_call(call=call, folio=link_to_folio, by=by)
    else:
        call.save(force_insert=True)
    record_event(
        type="call.created",
        center_id=center.id,
        payload={
            "uid": str(call.uid),
            "line": call.line,
            "channel": call.channel,
            "disposition": call.disposition,
            "incident": call.incident.folio if call.incident_id else None,
            "arrived_at": call.arrived_at.isoformat(),
        },
    )
    return call


def open_incident(
    *, call: Call, by, location: PointCheck | None, origin_center: str = "", origin_folio: str = ""
) -> Incident:
    """Open an incident from a classified call (runs inside take_call's transaction); `location` is the
    checked point of the call."""
    incident_type = call.incident_type
    if not incident_type.active:
        raise DomainError(
            _("La clave %(code)s ya no está vigente en el catálogo.") % {"code": incident_type.code},
            fields={"incident_type_code": [_("Clave retirada del catálogo.")]},
        )
    now = timezone.now()
    incident = Incident.objects.create(
        # The centre's local year (23:00 on 31 December in Tijuana is already 2027 in Mexico City).
        folio=next_folio(center=call.center, year=now.astimezone(call.center.zone).year),
        center=call.center,
        incident_type=incident_type,
        type_code=incident_type.code,
        type_name=incident_type.name,
        priority=incident_type.priority,
        priority_rank=PRIORITY_RANK[incident_type.priority],
        lat=call.lat,
        lon=call.lon,
        address=call.address,
        location_source=call.location_source if location else "",
        outside_service_area=bool(location and not location.inside_service_area),
        state=location.state if location else None,
        municipality=location.municipality if location else None,
        narrative=call.narrative,
        line=call.line,
        call_arrived_at=call.arrived_at,
        # A request for service from another centre is not a call answered here: no call-processing interval
        # (answered → opened would read 0 s and flatter the KPI); its response clock still runs from arrival.
        call_answered_at=None if call.channel == Channel.INTERSTATE else call.answered_at,
        opened_at=now,
        created_by=by,
        origin_center=origin_center,
        origin_folio=origin_folio,
    )
    _timeline(
        incident,
        kind=TimelineEntry.Kind.CREATED,
        by=by,
        at=now,
        text=_("Incidente abierto: %(code)s %(name)s")
        % {"code": incident.type_code, "name": incident.type_name},
        data={"call": str(call.uid), "line": call.line},
    )
    if location and not location.inside_service_area:
        _timeline_outside_area(incident, by=by, at=now)
    record_event(type="incident.created", center_id=incident.center_id, payload=incident_summary(incident))
    return incident


def _incident_for_update(*, folio: str, center_id: int) -> Incident:
    try:
        return (
            Incident.objects.select_for_update(of=("self",))
            .select_related("center", "incident_type")
            .with_places()
            .get(folio=folio, center_id=center_id)
        )
    except Incident.DoesNotExist:
        raise NotFound(_("No existe el incidente %(folio)s.") % {"folio": folio}) from None


def link_call(*, call: Call, folio: str, by) -> Incident:
    incident = _incident_for_update(folio=folio, center_id=call.center_id)
    if incident.status == IncidentStatus.CLOSED:
        raise InvalidTransition(_("El incidente %(folio)s está cerrado.") % {"folio": folio})
    call.incident = incident
    call.save(update_fields=["incident"])
    _timeline(
        incident,
        kind=TimelineEntry.Kind.CALL_LINKED,
        by=by,
        text=_("Llamada %(line)s vinculada") % {"line": call.line},
        data={"call": str(call.uid)},
    )
    _touch(incident)
    return incident


def _touch(incident: Incident, fields: list[str] | None = None) -> None:
    incident.version += 1
    incident.save(update_fields=[*(fields or []), "version", "updated_at"])
    # `changed` names the fields this update wrote, so listeners can tell e.g. a relocation from a status change.
    record_event(
        type="incident.updated",
        center_id=incident.center_id,
        payload={**incident_summary(incident), "changed": sorted(set(fields or []))},
    )


@transaction.atomic
def add_note(
    *, folio: str, center_id: int, text: str, by, data: dict | None = None, locked: Incident | None = None
) -> TimelineEntry:
    """Append a note. `data` is kept with the entry (e.g. where a note received from another centre came
    from), never shown as text. `locked`: the incident, when the caller already holds its row lock in this
    transaction (it is not read again)."""
    incident = locked or _incident_for_update(folio=folio, center_id=center_id)
    entry = _timeline(incident, kind=TimelineEntry.Kind.NOTE, by=by, text=text, data=data)
    record_event(
        type="incident.note_added",
        center_id=center_id,
        payload={"folio": folio, "text": text, "by": by.signature, "at": entry.at.isoformat()},
    )
    return entry


def set_handled_by(*, incident: Incident, center_code: str, text: str, by) -> None:
    """Another centre took charge of the incident (`center_code`), or gave it back (""): `incident` is
    locked by the caller's transaction. A timeline entry says so; the summary carries it to the consoles."""
    if incident.handled_by_center == center_code:
        return
    incident.handled_by_center = center_code
    _timeline(incident, kind=TimelineEntry.Kind.STATUS, by=by, text=text, data={"handled_by": center_code})
    _touch(incident, ["handled_by_center"])


@transaction.atomic
def update_incident(
    *,
    folio: str,
    center_id: int,
    by,
    expected_version: int | None,
    confirm_outside_area: bool = False,
    **changes,
) -> Incident:
    """Edit location, address, narrative or type. A type change re-derives priority (with a timeline
    entry); new coordinates are checked and re-derive the jurisdiction as `set_incident_location` does."""
    incident = _incident_for_update(folio=folio, center_id=center_id)
    _check_version(incident.version, expected_version)
    _refuse_closed(incident)
    fields = []
    new_type = changes.pop("incident_type", None)
    if new_type is not None and new_type.code != incident.type_code:
        if new_type.is_improcedente:
            raise DomainError(
                _("Un incidente no puede reclasificarse como improcedente; ciérrelo con esa resolución."),
                fields={"incident_type_code": [_("Tipo improcedente.")]},
            )
        incident.incident_type = new_type
        incident.type_code, incident.type_name = new_type.code, new_type.name
        incident.priority, incident.priority_rank = new_type.priority, PRIORITY_RANK[new_type.priority]
        fields += ["incident_type", "type_code", "type_name", "priority", "priority_rank"]
    if "lat" in changes or "lon" in changes:
        fields += _apply_location(
            incident,
            lat=changes.pop("lat", None),
            lon=changes.pop("lon", None),
            source=changes.pop("location_source", None) or LocationSource.CALLER,
            confirm_outside_area=confirm_outside_area,
            by=by,
        )
    for key, value in changes.items():
        setattr(incident, key, value)
        fields.append(key)
    _timeline(
        incident,
        kind=TimelineEntry.Kind.UPDATED,
        by=by,
        text=_("Datos actualizados"),
        data={"fields": fields},
    )
    _touch(incident, fields)
    return incident


@transaction.atomic
def set_incident_location(
    *,
    folio: str,
    center_id: int,
    by,
    lat: float,
    lon: float,
    source: str,
    address: str | None = None,
    place: str = "",
    confirm_outside_area: bool = False,
    expected_version: int | None = None,
) -> Incident:
    """Set or correct where an incident is (an address or place picked from the geocoder's candidates, a
    map click, or typed coordinates). The point is checked (geo.validation.check_point), the state and
    municipality follow it, and the timeline says who placed it, where and how. Recommendations read the
    new point on their next request."""
    incident = _incident_for_update(folio=folio, center_id=center_id)
    _check_version(incident.version, expected_version)
    _refuse_closed(incident)
    fields = _apply_location(
        incident,
        lat=lat,
        lon=lon,
        source=source,
        confirm_outside_area=confirm_outside_area,
        by=by,
        place=place,
    )
    if address is not None and address != incident.address:
        incident.address = address
        fields.append("address")
    _touch(incident, fields)
    return incident


def _refuse_handset_on_089(line: str, source) -> None:
    """The tipster's handset position (AML, carrier) would locate an anonymous caller: never on 089, neither
    when the tip is taken nor when its incident is placed again later."""
    if line == Line.ANONYMOUS and source in CALLER_DEVICE_SOURCES:
        raise DomainError(
            _("Las denuncias 089 son anónimas: no se usa la ubicación del teléfono de quien denuncia."),
            code="anonymous_line",
            fields={"location_source": [_("No permitido en la línea 089.")]},
        )


def _apply_location(incident, *, lat, lon, source: str, confirm_outside_area: bool, by, place: str = ""):
    """Check and set the point of a locked incident; returns the changed fields (caller saves them)."""
    _refuse_handset_on_089(incident.line, source)
    check = check_point(
        lat=lat, lon=lon, cve_ent=incident.center.cve_ent, confirm_outside_area=confirm_outside_area
    )
    if check is None:
        raise DomainError(
            _("Indique latitud y longitud."), fields={"lat": [_("Requerido.")], "lon": [_("Requerido.")]}
        )
    incident.lat, incident.lon = check.lat, check.lon
    incident.state, incident.municipality = check.state, check.municipality
    incident.location_source = source
    incident.outside_service_area = not check.inside_service_area
    where = ", ".join(j.name for j in (check.municipality, check.state) if j)
    _timeline(
        incident,
        kind=TimelineEntry.Kind.LOCATED,
        by=by,
        text=_("Ubicación: %(lat).5f, %(lon).5f %(place)s(%(source)s)")
        % {
            "lat": check.lat,
            "lon": check.lon,
            "place": f"{place or where} " if (place or where) else "",
            "source": LocationSource(source).label,
        },
        data={**check.summary(), "source": source, "place": place},
    )
    if not check.inside_service_area:
        _timeline_outside_area(incident, by=by)
    return ["lat", "lon", "state", "municipality", "location_source", "outside_service_area"]


def _timeline_outside_area(incident: Incident, *, by, at=None) -> None:
    _timeline(
        incident,
        kind=TimelineEntry.Kind.LOCATED,
        by=by,
        at=at,
        text=_("Ubicación fuera del área de servicio del centro, confirmada por quien la capturó."),
        data={"outside_service_area": True},
    )


def _refuse_closed(incident: Incident) -> None:
    if incident.status == IncidentStatus.CLOSED:
        raise InvalidTransition(
            _("El incidente %(folio)s está cerrado; reábralo para modificarlo.") % {"folio": incident.folio}
        )


@transaction.atomic
def close_incident(
    *, folio: str, center_id: int, disposition: str, by, expected_version: int | None = None
) -> Incident:
    """Close with a disposition; units still assigned are released (available)."""
    incident = _incident_for_update(folio=folio, center_id=center_id)
    _check_version(incident.version, expected_version)
    if incident.status == IncidentStatus.CLOSED:
        raise InvalidTransition(_("El incidente ya está cerrado."))
    lifecycle.check_transition(incident.status, IncidentStatus.CLOSED)
    now = timezone.now()
    assignments = {a.unit_id: a for a in incident.assignments.filter(active=True)}
    # Units locked in id order, as every multi-unit writer does (AVL batches too): no deadlock cycles.
    for unit in Unit.objects.select_for_update().filter(id__in=assignments).order_by("id"):
        _clear_assignment(assignments[unit.id], at=now)
        set_unit_status(unit=unit, to=UnitStatus.AVAILABLE, by=by, incident=incident, at=now)
    previous = incident.status
    incident.status = IncidentStatus.CLOSED
    incident.closed_at = now
    incident.disposition = disposition
    _timeline(
        incident,
        kind=TimelineEntry.Kind.CLOSED,
        by=by,
        at=now,
        text=_("Cierre: %(d)s") % {"d": disposition},
        data={"from": previous, "to": IncidentStatus.CLOSED},
    )
    incident.version += 1
    incident.save(update_fields=["status", "closed_at", "disposition", "version", "updated_at"])
    record_event(type="incident.closed", center_id=center_id, payload=incident_summary(incident))
    return incident


@transaction.atomic
def reopen_incident(
    *, folio: str, center_id: int, reason: str, by, expected_version: int | None = None
) -> Incident:
    """Reopen a closed incident (explicit and audited: who, when, why in the timeline). It comes back
    pending, its clock restarting now; its first dispatch / on-scene times stay as they were (KPIs)."""
    incident = _incident_for_update(folio=folio, center_id=center_id)
    _check_version(incident.version, expected_version)
    if incident.status != IncidentStatus.CLOSED:
        raise InvalidTransition(_("Solo se reabre un incidente cerrado."))
    if not reason.strip():
        raise DomainError(_("Indique el motivo de la reapertura."), fields={"reason": [_("Requerido.")]})
    lifecycle.check_transition(incident.status, IncidentStatus.PENDING)
    now = timezone.now()
    _timeline(
        incident,
        kind=TimelineEntry.Kind.REOPENED,
        by=by,
        at=now,
        text=_("Reabierto: %(reason)s (cierre anterior: %(disposition)s)")
        % {"reason": reason.strip(), "disposition": incident.disposition or "—"},
        data={
            "from": IncidentStatus.CLOSED,
            "to": IncidentStatus.PENDING,
            "closed_at": _iso(incident.closed_at),
        },
    )
    incident.status = IncidentStatus.PENDING
    incident.reopened_at = now
    incident.closed_at = None
    incident.disposition = ""
    incident.version += 1
    incident.save(
        update_fields=["status", "reopened_at", "closed_at", "disposition", "version", "updated_at"]
    )
    record_event(type="incident.reopened", center_id=center_id, payload=incident_summary(incident))
    return incident


# --- Assignments and unit status ------------------------------------------------------------
_ASSIGNMENT_STAGE = {
    UnitStatus.EN_ROUTE: (AssignmentStatus.EN_ROUTE, "en_route_at"),
    UnitStatus.ON_SCENE: (AssignmentStatus.ON_SCENE, "on_scene_at"),
    UnitStatus.TRANSPORTING: (AssignmentStatus.TRANSPORTING, "transporting_at"),
    UnitStatus.AT_HOSPITAL: (AssignmentStatus.AT_HOSPITAL, "at_hospital_at"),
}


def _refresh_incident(incident: Incident, *, at: datetime, by, extra_fields: list[str]) -> None:
    """Move a locked incident to the status its units give it (incidents.lifecycle), recording the
    transition in the timeline, and publish it."""
    since = incident.reopened_at or incident.opened_at
    rows = list(
        incident.assignments.filter(dispatched_at__gte=since).values_list("active", "status", "on_scene_at")
    )
    new = lifecycle.status_from_units(
        current=incident.status,
        active_stages={stage for active, stage, _at in rows if active},
        reached_scene=any(on_scene_at is not None for _active, _stage, on_scene_at in rows),
    )
    fields = list(extra_fields)
    if new != incident.status:
        lifecycle.check_transition(incident.status, new)
        _timeline(
            incident,
            kind=TimelineEntry.Kind.STATUS,
            by=by,
            at=at,
            text=_("Estado: %(from)s → %(to)s")
            % {"from": IncidentStatus(incident.status).label, "to": IncidentStatus(new).label},
            data={"from": incident.status, "to": new},
        )
        incident.status = new
        fields.append("status")
    _touch(incident, fields)


def _clear_assignment(assignment: Assignment, *, at: datetime) -> None:
    assignment.status = AssignmentStatus.CLEARED
    assignment.active = False
    assignment.cleared_at = at
    assignment.save(update_fields=["status", "active", "cleared_at"])


@transaction.atomic
def assign_units(*, folio: str, center_id: int, unit_ids: list[int], by) -> list[Assignment]:
    """Dispatch one or several units to an incident, all or none. Locks the incident, then the units in id
    order: two dispatchers may race for a unit; exactly one wins (the other gets UnitNotAvailable, a 409,
    and nothing of its request is written). The partial unique index on active assignments backs this."""
    unit_ids = list(dict.fromkeys(unit_ids))
    if not unit_ids:
        raise DomainError(_("Indique al menos una unidad."), fields={"unit_ids": [_("Requerido.")]})
    incident = _incident_for_update(folio=folio, center_id=center_id)
    if incident.status == IncidentStatus.CLOSED:
        raise InvalidTransition(
            _("El incidente %(folio)s está cerrado: no admite asignaciones; reábralo si hace falta.")
            % {"folio": folio}
        )
    if incident.incident_type.is_improcedente:
        raise InvalidTransition(_("Los improcedentes no se despachan."))
    units = {
        u.id: u
        for u in Unit.objects.select_for_update().filter(pk__in=unit_ids, center_id=center_id).order_by("id")
    }
    unknown = [uid for uid in unit_ids if uid not in units]
    if unknown:
        raise NotFound(
            _("No existe la unidad %(id)s.") % {"id": unknown[0]},
            fields={"unit_id": [_("Unidad desconocida.")]},
        )
    busy = [units[uid] for uid in unit_ids if units[uid].status != UnitStatus.AVAILABLE]
    if busy:
        raise UnitNotAvailable(
            _("La unidad %(callsign)s no está disponible (%(status)s).")
            % {"callsign": busy[0].callsign, "status": busy[0].get_status_display()},
            fields={"unit_id": [busy[0].status]},
        )
    now = timezone.now()
    assignments = []
    for uid in unit_ids:
        unit = units[uid]
        try:
            with transaction.atomic():
                assignments.append(
                    Assignment.objects.create(incident=incident, unit=unit, dispatched_at=now, assigned_by=by)
                )
        except IntegrityError:
            raise UnitNotAvailable(
                _("La unidad %(callsign)s ya fue asignada.") % {"callsign": unit.callsign}
            ) from None
        set_unit_status(unit=unit, to=UnitStatus.DISPATCHED, by=by, incident=incident, at=now)
        _timeline(
            incident,
            kind=TimelineEntry.Kind.ASSIGNED,
            by=by,
            at=now,
            text=_("Unidad %(callsign)s despachada") % {"callsign": unit.callsign},
            data={"unit_id": unit.id},
        )
    extra = []
    if incident.first_dispatched_at is None:
        incident.first_dispatched_at = now
        extra.append("first_dispatched_at")
    _refresh_incident(incident, at=now, by=by, extra_fields=extra)
    for assignment in assignments:
        record_event(
            type="assignment.created",
            center_id=center_id,
            payload={
                "folio": incident.folio,
                "unit": unit_summary(assignment.unit, incident_folio=incident.folio),
            },
        )
    return assignments


def assign_unit(*, folio: str, center_id: int, unit_id: int, by) -> Assignment:
    """Dispatch one unit (see assign_units)."""
    return assign_units(folio=folio, center_id=center_id, unit_ids=[unit_id], by=by)[0]


@transaction.atomic
def change_unit_status(
    *, unit_id: int, center_id: int, to: str, by, expected_version: int | None = None
) -> Unit:
    """A unit reports a new status. Validated against UNIT_TRANSITIONS; moves its assignment along
    (recording the incident's first en route / on scene) or clears it when the unit becomes free.

    Locks the incident before the unit, in the same order as assign_unit and close_incident."""
    working_on = (
        Assignment.objects.filter(unit_id=unit_id, active=True, unit__center_id=center_id)
        .values_list("incident__folio", flat=True)
        .first()
    )
    incident = _incident_for_update(folio=working_on, center_id=center_id) if working_on else None
    try:
        unit = Unit.objects.select_for_update().get(pk=unit_id, center_id=center_id)
    except Unit.DoesNotExist:
        raise NotFound(_("No existe la unidad %(id)s.") % {"id": unit_id}) from None
    _check_version(unit.version, expected_version)
    if to == UnitStatus.DISPATCHED:
        raise InvalidTransition(
            _("Una unidad se despacha asignándola a un incidente."),
            fields={"status": [_("Use una asignación.")]},
        )
    if to not in UNIT_TRANSITIONS.get(unit.status, ()):
        raise InvalidTransition(
            _("Cambio no permitido: %(from)s → %(to)s.")
            % {"from": unit.get_status_display(), "to": UnitStatus(to).label},
            fields={
                "status": [_("Desde %(from)s no se puede pasar a %(to)s.") % {"from": unit.status, "to": to}]
            },
        )
    now = timezone.now()
    assignment = Assignment.objects.filter(unit=unit, active=True).first()
    if (assignment.incident_id if assignment else None) != (incident.id if incident else None):
        raise Conflict(_("La unidad cambió de asignación mientras tanto; intente de nuevo."))
    if assignment is not None:
        extra = []
        if to in _ASSIGNMENT_STAGE:
            stage, stamp = _ASSIGNMENT_STAGE[to]
            assignment.status = stage
            setattr(assignment, stamp, now)
            assignment.save(update_fields=["status", stamp])
            first_field = {"en_route_at": "first_en_route_at", "on_scene_at": "first_on_scene_at"}.get(stamp)
            if first_field and getattr(incident, first_field) is None:
                setattr(incident, first_field, now)
                extra.append(first_field)
        else:
            _clear_assignment(assignment, at=now)
        _timeline(
            incident,
            kind=TimelineEntry.Kind.UNIT_STATUS,
            by=by,
            at=now,
            text=_("%(callsign)s: %(status)s") % {"callsign": unit.callsign, "status": UnitStatus(to).label},
            data={"unit_id": unit.id, "status": to},
        )
        _refresh_incident(incident, at=now, by=by, extra_fields=extra)
    set_unit_status(
        unit=unit,
        to=to,
        by=by,
        incident=incident if to in _ASSIGNMENT_STAGE else None,
        at=now,
    )
    return unit


@transaction.atomic
def release_call(*, uid, center_id: int, by) -> Call:
    """The call-taker releases the line. Idempotent: a released call keeps its first release time."""
    try:
        call = Call.objects.select_for_update().get(uid=uid, center_id=center_id)
    except Call.DoesNotExist:
        raise NotFound(_("No existe la llamada %(uid)s.") % {"uid": uid}) from None
    if call.released_at is None:
        call.released_at = timezone.now()
        call.save(update_fields=["released_at"])
        record_event(
            type="call.released",
            center_id=center_id,
            payload={"uid": str(call.uid), "released_at": call.released_at.isoformat()},
        )
    return call

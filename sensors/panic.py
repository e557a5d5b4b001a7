"""Panic-button writes: a signal from a button (SIA DC-09 receiver or HTTP device endpoint).

A press opens a high-priority incident at the button's location (through incidents.services.take_call,
channel `panic_button`), or joins the incident the same button opened within the merge window while it
is still open. The button row is locked first, so simultaneous presses of one button never open two
incidents. Other codes are kept in the button's history; every signal is a heartbeat.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Role
from cad.errors import DomainError, NotFound
from cad.events import deferred_events, record_event
from incidents.models import CallDisposition, Channel, IncidentStatus, IncidentType, Line, LocationSource
from incidents.services import take_call
from sensors.models import PanicButton, PanicSignal
from sensors.supervision import device_summary, mark_seen

HEARTBEAT_CODES = frozenset({"RP", "RX", "YN"})


def press_codes() -> frozenset[str]:
    return frozenset(settings.CAD["PANIC_PRESS_CODES"])


def service_user(*, center, name: str):
    """The account a device's writes are attributed to (timeline "by")."""
    user, created = get_user_model().objects.get_or_create(
        username=f"{name}-{center.code.lower()}", defaults={"role": Role.DEVICE, "center": center}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def _incident_type(button: PanicButton) -> IncidentType:
    if button.incident_type_id:
        return button.incident_type
    code = settings.CAD["PANIC_INCIDENT_TYPE"]
    incident_type = IncidentType.objects.filter(code=code, active=True).first()
    if incident_type is None:
        raise DomainError(
            _("El tipo CNIE %(code)s configurado para botones de pánico no existe o no está vigente.")
            % {"code": code},
            code="panic_type_missing",
            status=503,
        )
    return incident_type


def _open_incident_of(button: PanicButton, *, now: datetime) -> str | None:
    """The folio of the open incident this button's last press within the merge window opened or joined
    (its latest such press), None when there is none. Only the folio is read: take_call locks the incident
    and re-checks that it is not closed when it links the call."""
    window = now - timedelta(seconds=settings.CAD["PANIC_MERGE_WINDOW_S"])
    return (
        PanicSignal.objects.filter(
            button=button, kind=PanicSignal.Kind.PRESS, received_at__gte=window, incident__isnull=False
        )
        .exclude(incident__status=IncidentStatus.CLOSED)
        .order_by("-received_at", "-id")
        .values_list("incident__folio", flat=True)
        .first()
    )


@transaction.atomic
def receive_panic_signal(
    *, account: str, code: str, transport: str, by=None, device_time: datetime | None = None, center_id=None
) -> PanicSignal | None:
    """Apply one signal of button `account`. Returns the history row (None for a plain heartbeat).
    `center_id` restricts the look-up (HTTP devices act for their centre only).

    A press records three events (incident.created or incident.updated, call.created, panic.pressed); they
    are written together at the end (cad.events.deferred_events), so the centre's event counter is locked
    only for the last statements of the transaction. Inside a caller's `deferred_events()` block (the DC-09
    receiver's group commit) they join the caller's batch; a press that fails leaves nothing behind."""
    with deferred_events():
        return _receive(
            account=account,
            code=code,
            transport=transport,
            by=by,
            device_time=device_time,
            center_id=center_id,
        )


def _receive(*, account, code, transport, by, device_time, center_id) -> PanicSignal | None:
    buttons = PanicButton.objects.select_for_update(of=("self",)).select_related("center", "incident_type")
    if center_id is not None:
        buttons = buttons.filter(center_id=center_id)
    button = buttons.filter(account=account.upper(), active=True).first()
    if button is None:
        raise NotFound(
            _("Botón desconocido o inactivo."), code="unknown_button", fields={"account": [account]}
        )
    now = timezone.now()
    mark_seen(button, at=now)
    code = code.upper()
    if code not in press_codes():
        if code in HEARTBEAT_CODES:
            return None
        return PanicSignal.objects.create(
            button=button,
            kind=PanicSignal.Kind.SIGNAL,
            code=code,
            transport=transport,
            received_at=now,
            device_time=device_time,
        )
    by = by or service_user(center=button.center, name="panic")
    open_folio = _open_incident_of(button, now=now)
    common = {
        "center": button.center,
        "by": by,
        "line": Line.EMERGENCY,
        "channel": Channel.PANIC_BUTTON,
        "arrived_at": now,
        "answered_at": now,
        "lat": button.lat,
        "lon": button.lon,
        "address": button.address,
        "location_source": LocationSource.SENSOR,
        "narrative": _("Botón de pánico «%(name)s» (cuenta %(account)s), código %(code)s.")
        % {"name": button.name, "account": button.account, "code": code},
    }
    if open_folio is None:
        call = take_call(
            disposition=CallDisposition.NEW_INCIDENT, incident_type=_incident_type(button), **common
        )
    else:
        call = take_call(disposition=CallDisposition.LINKED, link_to_folio=open_folio, **common)
    signal = PanicSignal.objects.create(
        button=button,
        kind=PanicSignal.Kind.PRESS,
        code=code,
        transport=transport,
        received_at=now,
        device_time=device_time,
        incident=call.incident,
        merged=open_folio is not None,
    )
    record_event(
        type="panic.pressed",
        center_id=button.center_id,
        payload={
            "button": {**device_summary(button), "account": button.account, "camera_ref": button.camera_ref},
            "folio": call.incident.folio,
            "merged": signal.merged,
            "code": code,
            "at": now.isoformat(),
        },
    )
    return signal

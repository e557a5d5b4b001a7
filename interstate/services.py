"""Interstate writes: peers, escalations (outbound), what the receiver does with a peer's messages (inbound),
the dispatcher's accept/reject, the supervisor's retry/cancel, and the outbox rows all of them produce.

Every function runs in one transaction, locks what it races on (the incident, the escalation row), raises
domain errors and records `interstate.escalation` events. Messages to peers are written to the outbox in the
same transaction and delivered after commit (interstate.delivery); nothing here talks to the network.
"""

import contextvars
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _
from shapely.errors import ShapelyError
from shapely.geometry import shape

from accounts.models import Role, User
from cad.db import RowShape
from cad.errors import Conflict, DomainError, InvalidTransition, NotFound
from cad.events import deferred_events, record_event
from cad.models import Center
from geo.models import Jurisdiction
from incidents import services as incident_services
from incidents.models import CallDisposition, Channel, Incident, IncidentStatus, IncidentType, Line
from interstate import eido, outbox, secrets
from interstate.models import (
    Escalation,
    EscalationKind,
    InboundMessage,
    OutboxMessage,
    OutboxStream,
    Peer,
    PeerNonce,
    PeerRequestLog,
    new_request_id,
)
from interstate.selectors import escalation_summary

# The peer that already has the changes being made (see _no_echo): they are not sent to it as updates.
_no_echo_to: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "interstate_no_echo_to", default=None
)

WIRE_KEY = {
    OutboxMessage.Kind.REQUEST_FOR_SERVICE: "requestForService",
    OutboxMessage.Kind.REQUEST_AWARENESS: "requestAwarenes",  # the published STA-024 spelling
    OutboxMessage.Kind.UPDATE: "event",
    OutboxMessage.Kind.CANCEL: "cancelREequest",  # the published STA-024 spelling
    OutboxMessage.Kind.RESPONSE: "response",
    OutboxMessage.Kind.VEHICLE_ALERT: "vehicleAlert",  # this protocol's own kinds (docs/interstate.md §3.1)
    OutboxMessage.Kind.VEHICLE_SIGHTING: "vehicleSighting",
}
KIND_OF_WIRE_KEY = {key: kind for kind, key in WIRE_KEY.items()}
REQUEST_KIND = {
    EscalationKind.REQUEST_FOR_SERVICE: OutboxMessage.Kind.REQUEST_FOR_SERVICE,
    EscalationKind.REQUEST_AWARENESS: OutboxMessage.Kind.REQUEST_AWARENESS,
}
ACCEPTED, DECLINED, QUEUED = 200, 603, 182
# A peer's note is kept whole up to this many characters: its narrative alone may hold 10,000 (the intake's
# limit) after its "Narrativa: " label; a note typed here is capped at 4,000 by the API.
PEER_NOTE_MAX_CHARS = 20_000
LATE_NOTE_S = 120  # a peer's note arriving this late says when it was written


class MessageRefused(DomainError):
    """A peer's message that cannot be applied (answered with the status and code, nothing written)."""


def no_echo_peer() -> int | None:
    return _no_echo_to.get()


@contextmanager
def _no_echo(peer: Peer):
    """Changes made inside are not sent to `peer` as update snapshots: it is the peer whose message is being
    applied (it has them), or the peer whose request, written in this transaction, already carries them."""
    token = _no_echo_to.set(peer.id)
    try:
        yield
    finally:
        _no_echo_to.reset(token)


def home_center() -> Center:
    """This installation's command centre (CAD_CENTER_CODE)."""
    try:
        return Center.objects.get(code=settings.CAD["CENTER_CODE"])
    except Center.DoesNotExist:
        raise NotFound(
            _("No existe el centro %(code)s (CAD_CENTER_CODE).") % {"code": settings.CAD["CENTER_CODE"]}
        ) from None


# --- Peers ------------------------------------------------------------------------------------
def service_area_fields(geometry: dict | None) -> dict:
    """The service area and its bounding box, validated (Polygon or MultiPolygon GeoJSON, or nothing)."""
    if not geometry:
        return {"service_area": None, "min_lat": None, "min_lon": None, "max_lat": None, "max_lon": None}
    try:
        shaped = shape(geometry)
    except (ValueError, TypeError, AttributeError, KeyError, ShapelyError):
        raise DomainError(
            _("El área de servicio no es una geometría GeoJSON válida."),
            code="invalid_geojson",
            fields={"service_area": [_("Geometría inválida.")]},
        ) from None
    if shaped.is_empty or shaped.geom_type not in ("Polygon", "MultiPolygon"):
        raise DomainError(
            _("El área de servicio debe ser un polígono o multipolígono."),
            code="invalid_geojson",
            fields={"service_area": [_("Se espera Polygon o MultiPolygon.")]},
        )
    min_lon, min_lat, max_lon, max_lat = shaped.bounds
    return {
        "service_area": geometry,
        "min_lat": min_lat,
        "min_lon": min_lon,
        "max_lat": max_lat,
        "max_lon": max_lon,
    }


@transaction.atomic
def peer_register(
    *,
    code: str,
    name: str,
    base_url: str,
    kind: str = Peer.Kind.STATE,
    contact_desk: str = "",
    service_area: dict | None = None,
    border_km: float | None = None,
    enabled: bool = True,
    outbound_key_id: str = "",
    outbound_secret: str = "",
    inbound_key_id: str = "",
    inbound_secret: str = "",
) -> tuple[Peer, str]:
    """Register a peer centre. Returns the peer and the inbound secret (generated unless given): the only time
    it is available in clear; hand it, with `peer.inbound_key_id`, to the peer's administrator."""
    code = code.strip().upper()
    if Peer.objects.filter(code=code).exists():
        raise Conflict(_("Ya existe el centro par %(code)s.") % {"code": code}, code="peer_exists")
    if code == settings.CAD["CENTER_CODE"]:
        raise DomainError(_("Un centro no puede ser su propio par."), fields={"code": [code]})
    user, _created = User.objects.get_or_create(
        username=f"peer-{code.lower()}",
        defaults={"role": Role.PEER, "center": home_center(), "first_name": name[:150]},
    )
    user.set_unusable_password()
    # An account made beforehand (the demo seed's) signs the peer's notes with the peer's name too.
    user.first_name = user.first_name or name[:150]
    user.save(update_fields=["password", "first_name"])
    inbound_secret = inbound_secret or secrets.new_secret()
    peer = Peer(
        code=code,
        name=name,
        base_url=base_url.rstrip("/"),
        kind=kind,
        contact_desk=contact_desk,
        enabled=enabled,
        outbound_key_id=outbound_key_id,
        inbound_key_id=inbound_key_id or secrets.new_key_id(code),
        service_user=user,
        **service_area_fields(service_area),
    )
    if border_km is not None:
        peer.border_km = border_km
    peer.outbound_secret = outbound_secret
    peer.inbound_secret = inbound_secret
    try:
        peer.full_clean(exclude=["service_user", "inbound_secret_encrypted"])
    except ValidationError as exc:  # nothing written: the service account goes with the transaction
        fields = exc.message_dict
        raise DomainError(
            "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items()), fields=fields
        ) from None
    peer.save()
    if enabled:
        _share_vehicle_alerts(peer)
    return peer, inbound_secret


def _share_vehicle_alerts(peer: Peer) -> None:
    """After commit: the vehicle alerts we publish go to this peer too (interstate.vehicles)."""
    from cad.tasks import enqueue
    from interstate.tasks import share_vehicle_alerts

    enqueue(share_vehicle_alerts, peer_id=peer.id)


def _peer_for_update(code: str) -> Peer:
    try:
        return Peer.objects.select_for_update().get(code=code.strip().upper())
    except Peer.DoesNotExist:
        raise NotFound(_("No existe el centro par %(code)s.") % {"code": code}) from None


@transaction.atomic
def peer_set_enabled(*, code: str, enabled: bool) -> Peer:
    """Disabling cuts the peer's access at once (checked on every request) and pauses its outbox; enabling
    resumes the delivery of what waited."""
    peer = _peer_for_update(code)
    peer.enabled = enabled
    peer.save(update_fields=["enabled", "updated_at"])
    if enabled:
        outbox.enqueue_waiting(peer.id)
        _share_vehicle_alerts(peer)
    return peer


@transaction.atomic
def peer_rotate_inbound_secret(*, code: str) -> tuple[str, str]:
    """A new key id and secret for the peer's requests to us (the old ones stop working at once)."""
    peer = _peer_for_update(code)
    secret = secrets.new_secret()
    peer.inbound_key_id = secrets.new_key_id(peer.code)
    peer.inbound_secret = secret
    peer.save(update_fields=["inbound_key_id", "inbound_secret_encrypted", "updated_at"])
    return peer.inbound_key_id, secret


@transaction.atomic
def peer_set_outbound_credentials(*, code: str, key_id: str, secret: str) -> Peer:
    """The key id and secret the peer issued to us for signing our requests to it."""
    if not key_id or not secret:
        raise DomainError(_("Indique la clave y el secreto."), fields={"outbound_key_id": [_("Requerido.")]})
    peer = _peer_for_update(code)
    peer.outbound_key_id = key_id
    peer.outbound_secret = secret
    peer.save(update_fields=["outbound_key_id", "outbound_secret_encrypted", "updated_at"])
    if peer.enabled:  # what waited for a credential goes now
        outbox.enqueue_waiting(peer.id)
    return peer


@transaction.atomic
def peer_set_base_url(*, code: str, base_url: str) -> Peer:
    """Where the peer's CAD answers now (it moved, or a local run picked other ports)."""
    peer = _peer_for_update(code)
    peer.base_url = base_url.rstrip("/")
    peer.full_clean(exclude=["service_user", "inbound_secret_encrypted"])
    peer.save(update_fields=["base_url", "updated_at"])
    return peer


@transaction.atomic
def peer_apply_document(*, code: str, document: dict) -> Peer:
    """Update a peer from its well-known document (name, kind, contact desk, service area)."""
    peer = _peer_for_update(code)
    if document.get("center") and str(document["center"]).upper() != peer.code:
        raise DomainError(
            _("El documento es del centro %(other)s, no de %(code)s.")
            % {"other": document["center"], "code": peer.code},
            code="peer_mismatch",
        )
    for key, value in service_area_fields(document.get("service_area")).items():
        setattr(peer, key, value)
    peer.name = str(document.get("name") or peer.name)[:160]
    if document.get("kind") in Peer.Kind.values:
        peer.kind = document["kind"]
    peer.contact_desk = str(document.get("contact_desk") or peer.contact_desk)[:300]
    peer.refreshed_at = timezone.now()
    peer.save()
    return peer


# --- Outbox -----------------------------------------------------------------------------------
def message_body(
    escalation: Escalation, kind: str, *, key, eido_document=None, sequence=None, **extra
) -> dict:
    """One STA-024 message as published (docs/interstate.md, section 3)."""
    request_id = escalation.request_id
    if kind == OutboxMessage.Kind.REQUEST_AWARENESS:
        inner = {
            "requestId": request_id,
            "subscriptionId": request_id,
            "statusCode": 200,
            "statusText": "awareness",
        }
    elif kind == OutboxMessage.Kind.UPDATE:
        inner = {"subscriptionId": request_id, "transactionId": str(key)}
    elif kind == OutboxMessage.Kind.RESPONSE:
        inner = {
            "requestId": request_id,
            "responseCode": extra.pop("code"),
            "responseText": extra.pop("text"),
        }
    else:
        inner = {"requestId": request_id}
    body = {WIRE_KEY[kind]: inner, "requestId": request_id, **extra}
    if eido_document is not None:
        body["eido"] = eido_document
    if sequence is not None:
        body["sequence"] = sequence
    return body


def _escalation_stream(escalation: Escalation) -> OutboxStream:
    """The escalation's outbox stream (created with its first message)."""
    if escalation.stream_id is None:
        escalation.stream = _new_stream(escalation)
        escalation.save(update_fields=["stream"])
    return escalation.stream


def _new_stream(escalation: Escalation) -> OutboxStream:
    # Keyed by the request id (unique per peer, known before the escalation is saved). Streams made before
    # 2026-11-28 are keyed by the escalation's id; the key is only unique, never looked up.
    return OutboxStream.objects.create(peer=escalation.peer, key=f"escalation:{escalation.request_id}")


def _outbox_append(escalation: Escalation, kind: str, *, with_eido: bool = False, **extra) -> OutboxMessage:
    """Write a message of the escalation in the current transaction; delivery is enqueued for after commit.
    `with_eido`: the snapshot of `escalation.incident`, which the caller read after the change, locked, with
    its centre and places (eido.build_eido's `loaded`)."""
    seq = None
    if kind == OutboxMessage.Kind.UPDATE:
        escalation.out_seq += 1
        escalation.save(update_fields=["out_seq", "updated_at"])
        seq = escalation.out_seq
    document = None
    if with_eido:
        role = eido.PEER_ROLE[
            "inbound" if escalation.direction == Escalation.Direction.INBOUND else escalation.kind
        ]
        document = eido.build_eido(
            escalation.incident, peer_code=escalation.peer.code, peer_role=role, loaded=True
        )
    return outbox.append(
        _escalation_stream(escalation),
        kind,
        lambda key: message_body(escalation, kind, key=key, eido_document=document, sequence=seq, **extra),
        escalation=escalation,
        seq=seq,
    )


def escalation_changed(escalation: Escalation, *fields: str, attempts: int | None = None) -> None:
    """Save the escalation's changed `fields` and tell the centre's consoles (`attempts`: the delivery's attempt
    count, when the caller knows it)."""
    escalation.save(update_fields=[*fields, "updated_at"])
    _announce(escalation, attempts=attempts)


def _announce(escalation: Escalation, *, attempts: int | None = None) -> None:
    """Tell the centre's consoles the escalation's current state (one just created, or just saved)."""
    record_event(
        type="interstate.escalation",
        center_id=escalation.incident.center_id,
        payload={
            "folio": escalation.incident.folio,
            "escalation": escalation_summary(escalation, attempts=attempts),
        },
    )


def _note(
    escalation: Escalation, text: str, *, by=None, data: dict | None = None, locked: bool = False
) -> None:
    """A timeline note about the share, tagged with the peer (never sent back to it), signed by `by` (someone
    here who acted on the share), else by the peer (it did: answered, updated, cancelled). `locked`: this
    transaction holds the incident's row lock already."""
    incident_services.add_note(
        folio=escalation.incident.folio,
        center_id=escalation.incident.center_id,
        text=text,
        by=by or escalation.peer.service_user,
        data={"peer": escalation.peer.code, **(data or {})},
        locked=escalation.incident if locked else None,
    )


def write_update(*, escalation_id: int, peer_id: int) -> OutboxMessage | None:
    """The incident changed: send the peer a new snapshot (called by the event listener, in the transaction
    of the change). Not for the peer that already has the change (_no_echo)."""
    if peer_id == no_echo_peer():
        return None
    # The caller (an incident service) holds the incident's lock: incident → escalation → event counter
    # (listeners run before the counter is bumped, unless an earlier event of this transaction bumped it).
    # Lock the escalation row only: a plain FOR UPDATE would also lock the joined peer row, which every
    # transaction inserting a row that references the peer needs (FOR KEY SHARE), while it may hold the
    # event-stream counter this one waits for: a deadlock under concurrent escalations and deliveries.
    escalation = (
        Escalation.objects.select_for_update(of=("self",))
        # the incident with its centre and places, as with_places() reads them, for the snapshot
        .select_related("peer", "incident__center", "incident__state", "incident__municipality")
        .defer("peer__service_area", "incident__state__geometry", "incident__municipality__geometry")
        .get(pk=escalation_id)
    )
    if escalation.state not in Escalation.SHARED_STATES:
        return None
    return _outbox_append(escalation, OutboxMessage.Kind.UPDATE, with_eido=True)


# --- Escalating (sender side) -----------------------------------------------------------------
_PEER = RowShape((Peer, ("service_area",)))
_PEER_SQL = f"SELECT {_PEER.columns('p', 0)} FROM interstate_peer p WHERE p.code = %s"  # noqa: S608 - model columns


def _enabled_peer(code: str) -> Peer:
    found = _PEER.one(_PEER_SQL, [str(code).strip().upper()])
    peer = found[0] if found else None
    if peer is None or not peer.enabled:
        raise DomainError(
            _("El centro par %(code)s no existe o está deshabilitado.") % {"code": code},
            code="unknown_peer",
            fields={"peer": [_("Centro par desconocido o deshabilitado.")]},
        )
    return peer


@transaction.atomic
def escalate_incident(
    *, folio: str, center_id: int, peer_code: str, kind: str, reason: str = "", by
) -> Escalation:
    """Share an incident with a peer: the escalation and its request message are written in this transaction
    (transactional outbox) and delivered after commit. One live share per incident and peer."""
    peer = _enabled_peer(peer_code)
    # The request carries the snapshot with every change made here, so none goes to the peer as an update
    # (_no_echo); events are written at the end (deferred_events), so the centre's event counter is locked
    # only from there to the commit, not while the EIDO is built.
    with _no_echo(peer), deferred_events():
        return _escalate(peer, folio=folio, center_id=center_id, kind=kind, reason=reason, by=by)


# The incident as eido.build_eido reads it (`loaded`): with its centre and places, not their boundaries.
_SNAPSHOT = RowShape(
    (Incident, ()), (Center, ()), (Jurisdiction, ("geometry",)), (Jurisdiction, ("geometry",))
)
_SNAPSHOT_SQL = (
    f"SELECT {_SNAPSHOT.columns('i', 0)}, {_SNAPSHOT.columns('c', 1)}, {_SNAPSHOT.columns('s', 2)},"  # noqa: S608 - model columns
    f" {_SNAPSHOT.columns('m', 3)} FROM incidents_incident i JOIN cad_center c ON c.id = i.center_id"
    " LEFT JOIN geo_jurisdiction s ON s.id = i.state_id LEFT JOIN geo_jurisdiction m ON m.id = i.municipality_id"
    " WHERE i.folio = %s AND i.center_id = %s"
)


def _lock_for_snapshot(*, folio: str, center_id: int) -> Incident | None:
    """The incident locked, with its centre and places: `select_for_update(of=("self",))
    .select_related("center").with_places()` in one hand-written statement (every escalation starts here;
    cad.db.RowShape)."""
    lock = " FOR UPDATE OF i" if connection.features.has_select_for_update_of else ""
    found = _SNAPSHOT.one(_SNAPSHOT_SQL + lock, [folio, center_id])
    if found is None:
        return None
    incident, center, state, municipality = found
    incident.center = center
    incident.state, incident.municipality = state, municipality
    return incident


def _escalate(peer: Peer, *, folio: str, center_id: int, kind: str, reason: str, by) -> Escalation:
    if kind not in EscalationKind.values:
        raise DomainError(_("Tipo de escalamiento inválido."), fields={"kind": [kind]})
    incident = _lock_for_snapshot(folio=folio, center_id=center_id)
    if incident is None:
        raise NotFound(_("No existe el incidente %(folio)s.") % {"folio": folio})
    if incident.status == IncidentStatus.CLOSED:
        raise InvalidTransition(_("El incidente %(folio)s está cerrado.") % {"folio": folio})
    # The incident's lock (held) orders every writer of its shares: the id and state suffice here.
    shared = (
        Escalation.objects.filter(incident=incident, peer=peer)
        .exclude(state__in=[Escalation.State.REJECTED, Escalation.State.CANCELLED])
        .values_list("pk", "state", "direction", "kind")
        .first()
    )
    upgrade = shared is not None and _upgradable(*shared[1:], kind=kind)
    if shared is not None and shared[1] != Escalation.State.CLOSED and not upgrade:
        raise Conflict(
            _("El incidente %(folio)s ya se compartió con %(code)s.") % {"folio": folio, "code": peer.code},
            code="already_shared",
        )
    label = EscalationKind(kind).label
    incident_services.add_note(
        folio=folio,
        center_id=center_id,
        text=(_("%(kind)s a %(peer)s: %(reason)s") if reason else _("%(kind)s a %(peer)s"))
        % {"kind": label, "peer": peer.name, "reason": reason},
        by=by,
        data={"peer": peer.code, "interstate": "escalated"},
        locked=incident,
    )
    if shared is not None:
        existing = Escalation.objects.select_for_update().get(pk=shared[0])
        existing.incident, existing.peer = incident, peer  # the locked snapshot's incident, the enabled peer
        escalation = (_upgrade if upgrade else _renew)(existing, kind=kind, reason=reason, by=by)
    else:
        escalation = Escalation(
            incident=incident,
            peer=peer,
            direction=Escalation.Direction.OUTBOUND,
            kind=kind,
            reason=reason,
            created_by=by,
        )
        escalation.stream = _new_stream(escalation)  # its request goes out at once: saved with its stream
        escalation.save()
    # Why we ask travels with the request (the envelope's `reason`, as a cancel's), for the peer's dispatcher.
    _outbox_append(escalation, REQUEST_KIND[kind], with_eido=True, **({"reason": reason} if reason else {}))
    _announce(escalation, attempts=0)
    return escalation


# A notice (request for awareness) the peer has or is about to have, which may become a request for service.
UPGRADABLE_STATES = (Escalation.State.PENDING, Escalation.State.SENT, Escalation.State.ACCEPTED)


def _upgradable(state: str, direction: str, shared_kind: str, *, kind: str) -> bool:
    return (
        kind == EscalationKind.REQUEST_FOR_SERVICE
        and shared_kind == EscalationKind.REQUEST_AWARENESS
        and direction == Escalation.Direction.OUTBOUND
        and state in UPGRADABLE_STATES
    )


def _upgrade(escalation: Escalation, *, kind: str, reason: str, by) -> Escalation:
    """We notified the peer, and now ask it to take the incident: a request for service under the same
    request id, so the peer turns the copy it has into a request its dispatchers answer (one incident there,
    not two). Its response times start now."""
    escalation.kind, escalation.created_by = kind, by
    escalation.reason = reason or escalation.reason
    escalation.state, escalation.last_error = Escalation.State.PENDING, ""
    escalation.requested_at, escalation.delivered_at, escalation.answered_at = timezone.now(), None, None
    escalation.save()
    return escalation


def _renew(escalation: Escalation, *, kind: str, reason: str, by) -> Escalation:
    """The peer closed its incident while ours went on (a unit of ours was on it, or it was reopened), and
    we escalate to that peer again: a new request on the same share, under a new request id, so the peer
    opens a new incident. What it said of the old one stays in our timeline; messages still queued for the
    old one go first, on the same stream."""
    escalation.request_id = new_request_id()
    escalation.kind, escalation.reason, escalation.created_by = kind, reason, by
    escalation.state, escalation.last_error, escalation.in_seq = Escalation.State.PENDING, "", 0
    escalation.requested_at, escalation.delivered_at, escalation.answered_at = timezone.now(), None, None
    escalation.remote_incident_id = escalation.remote_folio = escalation.remote_status = ""
    escalation.remote_resources = []
    escalation.save()
    return escalation


def lock_escalation(
    *, related: tuple[str, ...] = ("peer__service_user", "incident"), **lookup
) -> Escalation | None:
    """Lock an escalation the way every writer does: its incident first, then the escalation row (loaded
    with the `related` rows; the peer's service area never).

    Lock order of the whole product: the incident first. Incident services lock the incident before
    recording events; this app's event listener then locks shared escalations (write_update), before or
    after the centre's event counter (record_event) depending on whether an earlier event of the
    transaction bumped it. Whoever locks an escalation must therefore hold its incident first, so that a
    request and a delivery queue on the incident instead of each holding what the other waits for."""
    # One statement finds the escalation's incident and locks it (an escalation never changes incident).
    its_incident = Escalation.objects.filter(**lookup).values("incident_id")[:1]
    if not list(Incident.objects.select_for_update().filter(pk=Subquery(its_incident)).values_list("pk")):
        return None
    escalations = Escalation.objects.select_for_update(of=("self",)).select_related(*related)
    if any(path.startswith("peer") for path in related):
        escalations = escalations.defer("peer__service_area")
    return escalations.filter(**lookup).first()


def _escalation_for_update(*, escalation_id: int, center_id: int) -> Escalation:
    escalation = lock_escalation(pk=escalation_id, incident__center_id=center_id)
    if escalation is None:
        raise NotFound(_("No existe el escalamiento %(id)s.") % {"id": escalation_id})
    return escalation


@transaction.atomic
def escalation_cancel(*, escalation_id: int, center_id: int, reason: str = "", by) -> Escalation:
    """End an outbound share. If the peer never got the request, nothing is sent; otherwise a cancel follows
    the messages already delivered (undelivered updates are dropped)."""
    escalation = _escalation_for_update(escalation_id=escalation_id, center_id=center_id)
    if escalation.direction != Escalation.Direction.OUTBOUND:
        raise InvalidTransition(_("Solo se cancela un escalamiento enviado."))
    if escalation.state in (Escalation.State.CANCELLED, Escalation.State.REJECTED):
        raise InvalidTransition(_("El escalamiento ya terminó."))
    may_have_it = _request_may_have_arrived(escalation)
    escalation.outbox.filter(state=OutboxMessage.State.PENDING).update(
        state=OutboxMessage.State.DEAD, last_error=_("Cancelado")
    )
    escalation.state = Escalation.State.CANCELLED
    escalation.reason = reason or escalation.reason
    escalation.last_error = ""
    if may_have_it:
        _outbox_append(escalation, OutboxMessage.Kind.CANCEL, reason=reason)
    escalation_changed(escalation, "state", "reason", "last_error")
    _note(
        escalation,
        (
            _("Escalamiento a %(peer)s cancelado: %(reason)s")
            if reason
            else _("Escalamiento a %(peer)s cancelado")
        )
        % {"peer": escalation.peer.name, "reason": reason},
        by=by,
    )
    if escalation.incident.handled_by_center == escalation.peer.code:
        _hand_back(escalation, by=by)
    return escalation


def _request_may_have_arrived(escalation: Escalation) -> bool:
    """Whether the peer may hold the request: delivered, or tried (a timed-out attempt may still be applied
    there), or on its way now (its stream is leased to a drain)."""
    tried = escalation.outbox.filter(kind__in=REQUEST_KIND.values()).filter(
        Q(state=OutboxMessage.State.DELIVERED) | Q(attempts__gt=0)
    )
    return (
        tried.exists()
        or OutboxStream.objects.filter(pk=escalation.stream_id, lease_until__gt=timezone.now()).exists()
    )


def _hand_back(escalation: Escalation, *, by) -> None:
    """The peer no longer handles our incident (the share was cancelled, or the peer closed its own while a
    unit of ours stays on it): it is ours alone again, and our dispatch clock runs."""
    # Its dispatch clock runs again only where no unit of ours was ever sent (else it stopped at that dispatch).
    text = (
        _("%(peer)s ya no lo atiende: queda a cargo de este centro")
        if escalation.incident.first_dispatched_at
        else _("%(peer)s ya no lo atiende: corre de nuevo el reloj de despacho")
    )
    incident_services.set_handled_by(
        incident=escalation.incident, center_code="", text=text % {"peer": escalation.peer.name}, by=by
    )


@transaction.atomic
def escalation_retry(*, escalation_id: int, center_id: int, by) -> Escalation:
    """Send again now: dead messages return to the queue in their order, waiting ones are due at once."""
    escalation = _escalation_for_update(escalation_id=escalation_id, center_id=center_id)
    if escalation.state == Escalation.State.CANCELLED:
        raise InvalidTransition(_("El escalamiento fue cancelado."))
    now = timezone.now()
    escalation.outbox.exclude(state=OutboxMessage.State.DELIVERED).update(
        state=OutboxMessage.State.PENDING, next_attempt_at=now, last_error=""
    )
    if escalation.state == Escalation.State.FAILED:
        request_delivered = escalation.outbox.filter(
            kind__in=REQUEST_KIND.values(), state=OutboxMessage.State.DELIVERED
        ).exists()
        outbound = escalation.direction == Escalation.Direction.OUTBOUND
        escalation.state = (
            Escalation.State.SENT if request_delivered or not outbound else Escalation.State.PENDING
        )
    escalation_changed(escalation, "state")
    # A supervisor's retry is sent now, even while the peer's circuit is open (its backoff would otherwise
    # keep it waiting, or hand the probe to another share): this drain is the probe. The last error stays
    # on the share until a send succeeds.
    Peer.objects.filter(pk=escalation.peer_id, probe_after__isnull=False).update(probe_after=now)
    if escalation.stream_id:
        OutboxStream.objects.filter(pk=escalation.stream_id).update(lease_until=None, lease_owner="")
        outbox.enqueue_delivery(escalation.stream_id)
    return escalation


# --- Receiver's decisions ---------------------------------------------------------------------
def _pending_inbound_request(escalation: Escalation) -> None:
    if (
        escalation.direction != Escalation.Direction.INBOUND
        or escalation.kind != EscalationKind.REQUEST_FOR_SERVICE
    ):
        raise InvalidTransition(_("Solo se acepta o rechaza una solicitud de servicio recibida."))
    if escalation.state != Escalation.State.PENDING:
        raise InvalidTransition(
            _("La solicitud ya fue respondida (%(state)s).") % {"state": escalation.get_state_display()}
        )


@transaction.atomic
def escalation_accept(*, escalation_id: int, center_id: int, by) -> Escalation:
    escalation = _escalation_for_update(escalation_id=escalation_id, center_id=center_id)
    _pending_inbound_request(escalation)
    escalation.state, escalation.answered_at = Escalation.State.ACCEPTED, timezone.now()
    _outbox_append(
        escalation,
        OutboxMessage.Kind.RESPONSE,
        code=ACCEPTED,
        text="accepted",
        incident=escalation.incident.folio,
    )
    escalation_changed(escalation, "state", "answered_at")
    _note(
        escalation,
        _("Solicitud de %(peer)s aceptada: este centro lo atiende") % {"peer": escalation.peer.name},
        by=by,
    )
    return escalation


@transaction.atomic
def escalation_reject(*, escalation_id: int, center_id: int, reason: str, by) -> Escalation:
    """Decline a request for service: the requester is told why, and our linked copy is closed."""
    escalation = _escalation_for_update(escalation_id=escalation_id, center_id=center_id)
    _pending_inbound_request(escalation)
    escalation.state, escalation.reason, escalation.answered_at = (
        Escalation.State.REJECTED,
        reason,
        timezone.now(),
    )
    _outbox_append(
        escalation,
        OutboxMessage.Kind.RESPONSE,
        code=DECLINED,
        text=reason,
        incident=escalation.incident.folio,
    )
    escalation_changed(escalation, "state", "reason", "answered_at")
    if escalation.incident.status != IncidentStatus.CLOSED:
        incident_services.close_incident(
            folio=escalation.incident.folio,
            center_id=center_id,
            disposition=_("Rechazado (solicitud de %(peer)s): %(reason)s")
            % {"peer": escalation.peer.code, "reason": reason},
            by=by,
        )
    return escalation


# --- Inbound messages (receiver side) ---------------------------------------------------------
def message_kind(message) -> str:
    """The wire key of a message: exactly one known kind key."""
    keys = [key for key in KIND_OF_WIRE_KEY if isinstance(message, dict) and key in message]
    if len(keys) != 1:
        raise MessageRefused(
            _("El mensaje debe tener exactamente una clase: %(keys)s.")
            % {"keys": ", ".join(KIND_OF_WIRE_KEY)},
            code="unknown_kind",
        )
    return keys[0]


def receive_message(*, peer: Peer, idempotency_key: str, wire_key: str, message: dict) -> tuple[int, dict]:
    """Apply one validated peer message; returns (HTTP status, answer). The same idempotency key again returns
    the original answer and writes nothing. Refusals raise MessageRefused (nothing written)."""
    # No lookup first: the key's unique constraint refuses a message seen before at the INSERT, the first
    # statement (or makes it wait for a concurrent one to commit), and the original answer is read then.
    try:
        with transaction.atomic():
            record = InboundMessage.objects.create(
                peer=peer,
                idempotency_key=idempotency_key,
                kind=KIND_OF_WIRE_KEY[wire_key],
                request_id=str(message.get("requestId", ""))[:100],
                status_code=0,
            )
            # Events are written at the end (deferred_events): the centre's event counter is locked only
            # from there to the commit, not while the message is applied.
            with _no_echo(peer), deferred_events():
                status, answer = _apply(peer, KIND_OF_WIRE_KEY[wire_key], message)
            record.status_code, record.response = status, answer
            record.save(update_fields=["status_code", "response"])
    except IntegrityError:  # the same message again (or concurrently: it committed first)
        original = InboundMessage.objects.filter(peer=peer, idempotency_key=idempotency_key).first()
        if original is None:
            raise
        return original.status_code, original.response
    return status, answer


def _answer(escalation: Escalation, code: int, text: str) -> dict:
    return {
        "requestId": escalation.request_id,
        "responseCode": code,
        "responseText": text,
        "incident": escalation.incident.folio,
    }


def _shared(peer: Peer, request_id: str) -> Escalation:
    escalation = lock_escalation(peer=peer, request_id=request_id)
    if escalation is None:
        raise MessageRefused(
            _("No hay nada compartido con %(peer)s bajo %(id)s.") % {"peer": peer.code, "id": request_id},
            code="not_shared",
            status=404,
        )
    return escalation


def check_envelope(wire_key: str, message: dict) -> None:
    """What our protocol adds to the published STA-024 objects (docs/interstate.md §3): a string `requestId`
    (≤ 100) on every message, an `eido` on requests and updates, an integer `sequence` ≥ 1 on updates."""
    kind = KIND_OF_WIRE_KEY[wire_key]
    problems = {}
    request_id = message.get("requestId")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= 100:
        problems["requestId"] = [
            _("Cadena de 1 a 100 caracteres, igual en todos los mensajes de lo compartido.")
        ]
    needs_eido = kind in (
        *REQUEST_KIND.values(),
        OutboxMessage.Kind.UPDATE,
        OutboxMessage.Kind.VEHICLE_SIGHTING,
    )
    if kind == OutboxMessage.Kind.VEHICLE_ALERT:
        needs_eido = (message.get("vehicleAlert") or {}).get("action") == "publish"
    if needs_eido and not isinstance(message.get("eido"), dict):
        problems["eido"] = [_("Requerido en solicitudes, actualizaciones, avistamientos y publicaciones.")]
    elif kind in (*REQUEST_KIND.values(), OutboxMessage.Kind.UPDATE):
        problems.update(eido.content_errors(message["eido"]))
    sequence = message.get("sequence")
    if kind in (OutboxMessage.Kind.UPDATE, OutboxMessage.Kind.VEHICLE_ALERT) and (
        not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1
    ):
        problems["sequence"] = [_("Una actualización o alerta de vehículo lleva un sequence entero ≥ 1.")]
    if problems:
        raise MessageRefused(_("El mensaje no cumple el protocolo."), code="invalid_message", fields=problems)


def _apply(peer: Peer, kind: str, message: dict) -> tuple[int, dict]:
    from interstate import vehicles  # it builds on this module

    if kind == OutboxMessage.Kind.VEHICLE_ALERT:
        return vehicles.receive_vehicle_alert(peer, message)
    if kind == OutboxMessage.Kind.VEHICLE_SIGHTING:
        return vehicles.receive_vehicle_sighting(peer, message)
    request_id = message["requestId"]
    reason = str(message.get("reason") or "").strip()[:500]
    if kind in (OutboxMessage.Kind.REQUEST_FOR_SERVICE, OutboxMessage.Kind.REQUEST_AWARENESS):
        return _receive_request(peer, kind, request_id, message["eido"], reason)
    if kind == OutboxMessage.Kind.CANCEL:
        _serialize_request_id(peer, request_id)
        escalation = lock_escalation(peer=peer, request_id=request_id)
        if escalation is None:
            # A request that never reached us, or not yet (its sender timed out and cancelled while it was
            # on its way): this cancel is kept (InboundMessage) and the request is refused if it comes.
            return 200, {
                "requestId": request_id,
                "responseCode": ACCEPTED,
                "responseText": "nothing to cancel",
                "incident": "",
            }
        return _receive_cancel(escalation, reason)
    escalation = _shared(peer, request_id)
    if kind == OutboxMessage.Kind.UPDATE:
        return _receive_update(escalation, message)
    return _receive_response(escalation, message)


# --- Retention --------------------------------------------------------------------------------
def prune_audit_and_nonces(*, now=None, chunk: int = 10_000) -> dict:
    """Delete peer audit entries older than CAD_INTERSTATE_AUDIT_RETENTION_DAYS (in chunks) and nonces older
    than the replay window (twice the clock skew: a request signed earlier is refused as stale anyway)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.CAD_INTERSTATE_AUDIT_RETENTION_DAYS)
    audit = 0
    while ids := list(PeerRequestLog.objects.filter(at__lt=cutoff).values_list("id", flat=True)[:chunk]):
        audit += PeerRequestLog.objects.filter(id__in=ids).delete()[0]
    window = timedelta(seconds=2 * settings.CAD_INTERSTATE_CLOCK_SKEW_S + 1)
    nonces = PeerNonce.objects.filter(seen_at__lt=now - window).delete()[0]
    return {"audit": audit, "nonces": nonces}


_TYPE = RowShape((IncidentType, ()))
_TYPE_SQL = f"SELECT {_TYPE.columns('t', 0)} FROM incidents_incidenttype t WHERE t.code = %s AND t.active"  # noqa: S608 - model columns


def _active_type(code: str) -> IncidentType | None:
    found = _TYPE.one(_TYPE_SQL, [code])  # every request for service (cad.db.RowShape)
    return found[0] if found else None


def _incident_type_for(facts: eido.EidoFacts) -> IncidentType:
    found = _active_type(facts.type_code)
    if found is None or found.is_improcedente:
        fallback = eido.FALLBACK_CNIE.get(facts.common_type.split(".")[0]) or eido.FALLBACK_CNIE.get(
            facts.common_type
        )
        found = _active_type(fallback or eido.FALLBACK_CNIE["Other"])
    if found is None:
        raise MessageRefused(
            _("Tipo de incidente desconocido: %(code)s.") % {"code": facts.type_code or facts.common_type},
            code="unknown_incident_type",
            fields={"eido/incidentComponent/incidentTypeInternalCode": [facts.type_code]},
        )
    return found


def _serialize_request_id(peer: Peer, request_id: str) -> None:
    """Until commit, hold a lock on the peer's request id, so that a request and a cancel of it that arrive
    together are applied one after the other (SQLite serializes every write transaction anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [peer.pk, request_id])


def _receive_request(peer: Peer, kind: str, request_id: str, document: dict, reason: str) -> tuple[int, dict]:
    _serialize_request_id(peer, request_id)
    facts = eido.read_eido(document)
    used, cancelled_copies = _earlier_shares(peer, request_id, facts.folio)
    if used is not None:
        upgrade = kind == OutboxMessage.Kind.REQUEST_FOR_SERVICE and _held_notice(*used[1:])
        held = lock_escalation(pk=used[0]) if upgrade else None
        if held is not None and _held_notice(held.state, held.direction, held.kind):  # still, under its lock
            return _receive_upgrade(held, facts, reason)
        raise MessageRefused(
            _("El requestId %(id)s ya se usó.") % {"id": request_id}, code="duplicate_request", status=409
        )
    if InboundMessage.objects.filter(
        peer=peer, kind=OutboxMessage.Kind.CANCEL, request_id=request_id
    ).exists():
        raise MessageRefused(
            _("%(peer)s ya canceló la solicitud %(id)s.") % {"peer": peer.code, "id": request_id},
            code="cancelled",
            status=409,
        )
    is_request = kind == OutboxMessage.Kind.REQUEST_FOR_SERVICE
    copy = _open_copy_of_cancelled_share(cancelled_copies)
    if copy is not None:
        return _receive_again(copy, peer, is_request, request_id, facts, reason)
    anonymous = facts.line == Line.ANONYMOUS
    call = incident_services.take_call(
        center=peer.service_user.center,
        by=peer.service_user,
        line=facts.line,
        channel=Channel.INTERSTATE,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=_incident_type_for(facts),
        lat=facts.lat,
        lon=facts.lon,
        address=facts.address,
        caller_name=None if anonymous else facts.caller_name or None,
        callback_number=None if anonymous else facts.callback_number or None,
        origin_center=peer.code,
        origin_folio=facts.folio,
    )
    return _new_inbound_share(call.incident, peer, is_request, request_id, facts, reason, fresh=True)


def _earlier_shares(peer: Peer, request_id: str, folio: str) -> tuple[tuple | None, list[int]]:
    """In one statement: the share that already used `request_id` (pk, state, direction, kind), if any, and our
    copies (incident ids) of the peer's incident `folio` whose earlier inbound share the peer cancelled."""
    earlier = Q(request_id=request_id)
    if folio:
        earlier |= Q(
            remote_folio=folio, direction=Escalation.Direction.INBOUND, state=Escalation.State.CANCELLED
        )
    used, cancelled_copies = None, []
    for pk, state, direction, kind, row_request_id, incident_id in Escalation.objects.filter(
        earlier, peer=peer
    ).values_list("pk", "state", "direction", "kind", "request_id", "incident_id"):
        if row_request_id == request_id:
            used = (pk, state, direction, kind)
        else:
            cancelled_copies.append(incident_id)
    return used, cancelled_copies


def _open_copy_of_cancelled_share(incident_ids: list[int]) -> Incident | None:
    """Of our copies whose earlier share the peer cancelled, the newest still open one (locked): a new request
    for the peer's incident comes back to that copy, not to a second one."""
    if not incident_ids:
        return None
    return (
        Incident.objects.select_for_update()
        .filter(pk__in=incident_ids)
        .exclude(status=IncidentStatus.CLOSED)
        .order_by("-id")
        .first()
    )


def _receive_again(
    incident: Incident, peer: Peer, is_request: bool, request_id: str, facts: eido.EidoFacts, reason: str
) -> tuple[int, dict]:
    incident_services.add_note(
        folio=incident.folio,
        center_id=incident.center_id,
        text=_("%(peer)s vuelve a compartir su incidente %(folio)s, cuya solicitud anterior canceló")
        % {"peer": peer.name, "folio": facts.folio},
        by=peer.service_user,
        data={"peer": peer.code},
        locked=incident,
    )
    return _new_inbound_share(incident, peer, is_request, request_id, facts, reason)


def _new_inbound_share(
    incident: Incident,
    peer: Peer,
    is_request: bool,
    request_id: str,
    facts: eido.EidoFacts,
    reason: str,
    *,
    fresh: bool = False,
) -> tuple[int, dict]:
    """The peer's share of `facts` on our copy `incident` (`fresh`: just opened from them), its notes merged
    and the consoles told; the answer to the peer."""
    escalation = Escalation.objects.create(
        request_id=request_id,
        incident=incident,
        peer=peer,
        direction=Escalation.Direction.INBOUND,
        kind=EscalationKind.REQUEST_FOR_SERVICE if is_request else EscalationKind.REQUEST_AWARENESS,
        state=Escalation.State.PENDING if is_request else Escalation.State.ACCEPTED,
        remote_incident_id=facts.incident_id[:200],
        remote_folio=facts.folio,
        remote_status=facts.status[:32],
        remote_resources=facts.resources,
        remote_call_at=facts.call_started_at,
        reason=reason,
    )
    _merge_notes(escalation, facts, fresh=fresh)
    _announce(escalation, attempts=0)
    if is_request:
        return 202, _answer(escalation, QUEUED, "queued for a dispatcher")
    return 202, _answer(escalation, ACCEPTED, "awareness recorded")


def _held_notice(state: str, direction: str, kind: str) -> bool:
    """A peer's notice we hold, which its sender may turn into a request for service."""
    return (
        kind == EscalationKind.REQUEST_AWARENESS
        and direction == Escalation.Direction.INBOUND
        and state == Escalation.State.ACCEPTED
    )


def _receive_upgrade(escalation: Escalation, facts: eido.EidoFacts, reason: str) -> tuple[int, dict]:
    """The peer notified us of this incident and now asks us to take it (docs/interstate.md §3): the copy we
    have becomes a request for service, waiting for a dispatcher's answer as a new one would."""
    escalation.kind, escalation.state = EscalationKind.REQUEST_FOR_SERVICE, Escalation.State.PENDING
    escalation.requested_at, escalation.answered_at = timezone.now(), None
    escalation.remote_status, escalation.remote_resources = facts.status[:32], facts.resources
    escalation.remote_call_at = escalation.remote_call_at or facts.call_started_at
    escalation.reason = reason
    escalation.save(
        update_fields=[
            *("kind", "state", "requested_at", "answered_at", "remote_status", "remote_resources"),
            *("remote_call_at", "reason", "updated_at"),
        ]
    )
    _merge_notes(escalation, facts)
    _note(
        escalation,
        _("%(peer)s pide ahora que este centro lo atienda (solicitud de servicio)")
        % {"peer": escalation.peer.name},
    )
    _announce(escalation)
    return 202, _answer(escalation, QUEUED, "queued for a dispatcher")


def _merge_notes(escalation: Escalation, facts: eido.EidoFacts, *, fresh: bool = False) -> int:
    """Notes and vehicles of a snapshot into the local timeline, by EIDO $id: each once, ours never back.
    `fresh`: the incident was opened from this snapshot (it has no notes yet)."""
    incident = escalation.incident
    known = (
        set()
        if fresh
        else {
            eido.note_id(entry, eido.agency_id(incident.center.code))
            # "incident" too: a related manager sets it on each row, and a deferred one is a query per note
            for entry in incident.timeline.filter(kind="note").only("id", "incident", "data")
        }
    )
    added = 0
    now = timezone.now()
    items = [(note["id"], note["text"], note.get("agency", ""), note.get("at")) for note in facts.notes]
    items += [(vehicle["id"], _vehicle_text(vehicle), "", None) for vehicle in facts.vehicles]
    for component_id, text, agency, written in items:
        if component_id in known or not text.strip():
            continue
        text = _bounded(text)
        if not fresh:  # an update: a note that took long to arrive says when it was written
            text += _late(written, now)
        _note(escalation, text, data={"eido_id": component_id, "eido_agency": agency}, locked=fresh)
        known.add(component_id)
        added += 1
    return added


def _late(written: str | None, now) -> str:
    """The marker of a peer's note that arrived LATE_NOTE_S or more after it was written (the peer or the link
    was down): its entry has the arrival time, so the text says "(escrita a las 07:50:47; llegó 3 min
    después)". Empty for a note on time."""
    at = eido.instant(written)
    if at is None or (now - at).total_seconds() < LATE_NOTE_S:
        return ""
    return " " + _("(escrita a las %(time)s; llegó %(minutes)s min después)") % {
        "time": timezone.localtime(at).strftime("%H:%M:%S"),
        "minutes": int((now - at).total_seconds() // 60),
    }


def _bounded(text: str) -> str:
    """A peer's note as it came, up to PEER_NOTE_MAX_CHARS; beyond that cut, and saying so (never silently)."""
    if len(text) <= PEER_NOTE_MAX_CHARS:
        return text
    cut = _("[recortada: %(n)s caracteres más en el centro de origen]") % {
        "n": len(text) - PEER_NOTE_MAX_CHARS
    }
    return f"{text[:PEER_NOTE_MAX_CHARS]} {cut}"


def _vehicle_text(vehicle: dict) -> str:
    labels = (
        ("plate", _("placa")),
        ("vin", "VIN"),
        ("colour", _("color")),
        ("make", _("marca")),
        ("model", _("modelo")),
        ("relationship", _("relación")),
    )
    parts = [f"{label} {vehicle[key]}" for key, label in labels if vehicle.get(key)]
    return _("Vehículo: %(details)s") % {"details": ", ".join(parts)}


def _receive_update(escalation: Escalation, message: dict) -> tuple[int, dict]:
    sequence = message["sequence"]
    if escalation.state in (Escalation.State.CANCELLED, Escalation.State.REJECTED):
        return 200, _answer(escalation, ACCEPTED, "ignored: share ended")
    if sequence <= escalation.in_seq:
        return 200, _answer(escalation, ACCEPTED, "stale")
    facts = eido.read_eido(message["eido"])
    escalation.in_seq = sequence
    escalation.remote_incident_id = facts.incident_id[:200]
    escalation.remote_folio = facts.folio or escalation.remote_folio
    escalation.remote_status = facts.status[:32]
    escalation.remote_resources = facts.resources
    fields = ["in_seq", "remote_incident_id", "remote_folio", "remote_status", "remote_resources"]
    _merge_notes(escalation, facts)
    _follow_relocation(escalation, facts)
    if facts.status == IncidentStatus.CLOSED and escalation.state != Escalation.State.CLOSED:
        escalation.state = Escalation.State.CLOSED
        fields.append("state")
        _note(
            escalation,
            _("%(peer)s cerró su incidente %(folio)s: %(disposition)s")
            % {
                "peer": escalation.peer.name,
                "folio": escalation.remote_folio,
                "disposition": facts.disposition or "—",
            },
        )
        _close_handed_over(escalation, facts)
    escalation_changed(escalation, *fields)
    return 200, _answer(escalation, ACCEPTED, "applied")


def _close_handed_over(escalation: Escalation, facts: eido.EidoFacts) -> None:
    """The peer that took our incident over (it accepted our request for service) closed its own: ours closes
    too, with the peer's disposition, and leaves our queue. Not while a unit of ours is still on it (it was
    helping): then it is ours alone again (the dispatch clock runs) and our dispatcher closes it. A
    supervisor can reopen a closed one; either can be escalated to the peer again (_renew)."""
    incident = escalation.incident
    if (
        escalation.direction != Escalation.Direction.OUTBOUND
        or incident.handled_by_center != escalation.peer.code
        or incident.status == IncidentStatus.CLOSED
    ):
        return
    if incident.assignments.filter(active=True).exists():
        _hand_back(escalation, by=escalation.peer.service_user)
        return
    disposition = _("Atendido por %(peer)s (folio %(folio)s): %(disposition)s") % {
        "peer": escalation.peer.name,
        "folio": escalation.remote_folio,
        "disposition": facts.disposition or "—",
    }
    escalation.incident = incident_services.close_incident(
        folio=incident.folio,
        center_id=incident.center_id,
        disposition=disposition[:200],
        by=escalation.peer.service_user,
    )


def _follow_relocation(escalation: Escalation, facts: eido.EidoFacts) -> None:
    """The requester moved its incident (a pursuit): our linked copy follows."""
    incident = escalation.incident
    if (
        escalation.direction != Escalation.Direction.INBOUND
        or facts.lat is None
        or incident.status == IncidentStatus.CLOSED
    ):
        return
    if (
        incident.lat is not None
        and abs(incident.lat - facts.lat) < 1e-6
        and abs(incident.lon - facts.lon) < 1e-6
    ):
        return
    updated = incident_services.update_incident(
        folio=incident.folio,
        center_id=incident.center_id,
        by=escalation.peer.service_user,
        expected_version=None,
        # The peer reports where its incident is now: followed even outside our area (flagged, not refused;
        # nobody here is there to confirm), or the share would fail on every later update.
        confirm_outside_area=True,
        lat=facts.lat,
        lon=facts.lon,
        address=facts.address or incident.address,
    )
    escalation.incident = updated


def _receive_cancel(escalation: Escalation, reason: str) -> tuple[int, dict]:
    if escalation.direction != Escalation.Direction.INBOUND:
        raise MessageRefused(_("Solo quien pidió puede cancelar."), code="not_shared", status=404)
    if escalation.state != Escalation.State.CANCELLED:
        escalation.state = Escalation.State.CANCELLED
        escalation.reason = reason or escalation.reason
        escalation_changed(escalation, "state", "reason")
        _note(
            escalation,
            (_("%(peer)s canceló la solicitud: %(reason)s") if reason else _("%(peer)s canceló la solicitud"))
            % {"peer": escalation.peer.name, "reason": reason},
        )
    return 200, _answer(escalation, ACCEPTED, "cancelled")


def _receive_response(escalation: Escalation, message: dict) -> tuple[int, dict]:
    if (
        escalation.direction != Escalation.Direction.OUTBOUND
        or escalation.kind != EscalationKind.REQUEST_FOR_SERVICE
    ):
        raise MessageRefused(_("No hay solicitud de servicio que responder."), code="not_shared", status=404)
    response = message["response"]
    code, text = response.get("responseCode"), str(response.get("responseText") or "")[:500]
    recorded = "response recorded"  # (the audit reads these words: dashboard.views.AUDIT_DETAILS)
    if escalation.state in (Escalation.State.PENDING, Escalation.State.SENT, Escalation.State.FAILED):
        recorded = "acceptance recorded" if code == ACCEPTED else "rejection recorded"
        escalation.remote_folio = str(message.get("incident") or escalation.remote_folio)[:64]
        escalation.answered_at = timezone.now()
        if code == ACCEPTED:
            escalation.state = Escalation.State.ACCEPTED
            note = _("%(peer)s aceptó la solicitud (folio %(folio)s)")
        else:
            escalation.state = Escalation.State.REJECTED
            escalation.reason = text
            note = _("%(peer)s rechazó la solicitud: %(reason)s")
        escalation_changed(escalation, "state", "reason", "remote_folio", "answered_at")
        _note(
            escalation,
            note % {"peer": escalation.peer.name, "folio": escalation.remote_folio, "reason": text},
        )
        if escalation.state == Escalation.State.ACCEPTED:
            incident_services.set_handled_by(
                incident=escalation.incident,
                center_code=escalation.peer.code,
                text=_("Lo atiende %(peer)s: aquí no corre el reloj de despacho")
                % {"peer": escalation.peer.name},
                by=escalation.peer.service_user,
            )
    elif escalation.state == Escalation.State.CANCELLED and code == ACCEPTED:
        # It accepted before our cancel reached it (the cancel follows): nobody there may act on it unseen.
        _note(
            escalation,
            _(
                "%(peer)s aceptó la solicitud ya cancelada (folio %(folio)s); se le envió la cancelación. "
                "Confírmelo con su mesa: el incidente sigue a cargo de este centro."
            )
            % {"peer": escalation.peer.name, "folio": str(message.get("incident") or "")[:64]},
        )
    return 200, _answer(escalation, ACCEPTED, recorded)

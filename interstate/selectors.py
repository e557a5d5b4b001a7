"""Interstate reads: what the consoles and the peer endpoints show."""

import math

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import gettext, gettext_lazy

from cad.errors import NotFound
from incidents.models import Incident, IncidentStatus
from interstate import detection
from interstate.models import Escalation, EscalationKind, OutboxMessage, Peer, PeerRequestLog


def with_attempts(escalations: QuerySet[Escalation]) -> QuerySet[Escalation]:
    """Each escalation's `pending_attempts`: the attempts of its first undelivered message, waiting or given up
    (0 when none), read in the same statement (for escalation_summary's `attempts` over a list)."""
    first_pending = (
        OutboxMessage.objects.filter(escalation=OuterRef("pk"))
        .exclude(state=OutboxMessage.State.DELIVERED)
        .order_by("id")
    )
    return escalations.annotate(pending_attempts=Coalesce(Subquery(first_pending.values("attempts")[:1]), 0))


def escalation_summary(escalation: Escalation, *, attempts: int | None = None) -> dict:
    """One escalation as the console shows it (API answers and `interstate.escalation` events agree)."""
    if attempts is None:
        attempts = (
            escalation.outbox.exclude(state=OutboxMessage.State.DELIVERED)
            .order_by("id")
            .values_list("attempts", flat=True)
            .first()
            or 0
        )
    return {
        "id": escalation.id,
        "request_id": escalation.request_id,
        "folio": escalation.incident.folio,
        "peer": {
            "code": escalation.peer.code,
            "name": escalation.peer.name,
            "kind": escalation.peer.kind,
            "enabled": escalation.peer.enabled,
        },
        "direction": escalation.direction,
        "kind": escalation.kind,
        "state": escalation.state,
        "reason": escalation.reason,
        "last_error": escalation.last_error,
        "attempts": attempts,
        "remote_folio": escalation.remote_folio,
        "remote_status": escalation.remote_status,
        "remote_resources": escalation.remote_resources,
        "remote_call_at": escalation.remote_call_at.isoformat() if escalation.remote_call_at else None,
        "created_at": escalation.created_at.isoformat(),
        "updated_at": escalation.updated_at.isoformat(),
    }


def escalations_for_incident(*, incident_id: int) -> list[dict]:
    escalations = (
        Escalation.objects.filter(incident_id=incident_id)
        .select_related("peer", "incident")
        .defer("peer__service_area")
        .order_by("created_at", "id")
    )
    return [escalation_summary(e, attempts=e.pending_attempts) for e in with_attempts(escalations)]


def queue_facts(*, center_id: int) -> list[dict]:
    """What the console's queue shows of the centre's open incidents that are flagged for a peer or shared
    with one (their flags and escalations), read when the queue is loaded; live events keep it current."""
    incidents = Incident.objects.filter(center_id=center_id).exclude(status=IncidentStatus.CLOSED)
    areas = detection.enabled_areas()
    facts = {
        folio: {"folio": folio, "flags": flags, "escalations": []}
        for folio, lat, lon, origin in incidents.values_list("folio", "lat", "lon", "origin_center")
        if (flags := detection.flags_for(lat, lon, exclude_codes=(origin,), areas=areas))
    }
    escalations = (
        Escalation.objects.filter(incident__in=incidents)
        .select_related("peer", "incident")
        .defer("peer__service_area")
        .order_by("created_at", "id")
    )
    for escalation in with_attempts(escalations):
        folio = escalation.incident.folio
        entry = facts.setdefault(folio, {"folio": folio, "flags": [], "escalations": []})
        entry["escalations"].append(escalation_summary(escalation, attempts=escalation.pending_attempts))
    return list(facts.values())


def escalation_shared_with(*, peer: Peer, request_id: str) -> Escalation:
    """The escalation `peer` may read under `request_id` (either direction), else NotFound."""
    escalation = (
        Escalation.objects.select_related("incident", "peer")
        .defer("peer__service_area")
        .filter(peer=peer, request_id=request_id)
        .first()
    )
    if escalation is None:
        raise NotFound(
            gettext("No hay nada compartido con %(peer)s bajo %(id)s.")
            % {"peer": peer.code, "id": request_id},
            code="not_shared",
        )
    return escalation


def peers_for_console() -> QuerySet[Peer]:
    return Peer.objects.filter(enabled=True).order_by("code")


def peer_list_for_admin() -> QuerySet[Peer]:
    """Every peer with its count of undelivered messages (management command `list`)."""
    return Peer.objects.annotate(
        pending=Count("outbox", filter=Q(outbox__state=OutboxMessage.State.PENDING))
    ).order_by("code")


def shares_in_trouble(*, center_id: int, limit: int = 100) -> QuerySet[Escalation]:
    """The centre's outbound shares still live with a delivery error (the last send failed, or was refused
    for good): what a supervisor retries or cancels. Most recent first, with their pending attempts."""
    live = (
        Escalation.State.PENDING,
        Escalation.State.SENT,
        Escalation.State.ACCEPTED,
        Escalation.State.FAILED,
    )
    shares = (
        Escalation.objects.filter(
            incident__center_id=center_id, direction=Escalation.Direction.OUTBOUND, state__in=live
        )
        .exclude(last_error="")
        .select_related("incident", "peer")
        .defer("peer__service_area")
        .order_by("-updated_at", "-id")
    )
    return with_attempts(shares)[:limit]


# The audit's actions (the protocol's words, and this API's own reads) as a person reads them.
AUDIT_ACTIONS = {
    "requestForService": gettext_lazy("Solicitud de servicio"),
    "requestAwareness": gettext_lazy("Aviso"),
    "update": gettext_lazy("Actualización"),
    "cancel": gettext_lazy("Cancelación"),
    "response": gettext_lazy("Respuesta"),
    "vehicleAlert": gettext_lazy("Alerta de vehículo"),
    "vehicleSighting": gettext_lazy("Avistamiento de vehículo"),
    "read": gettext_lazy("Lectura de un incidente compartido"),
    "well-known": gettext_lazy("Documento del centro"),
    "message": gettext_lazy("Mensaje"),
}


def audit_entries(
    *,
    peer: str | None = None,
    direction: str | None = None,
    result: str | None = None,
    before: int | None = None,
):
    """The peer request audit, newest first; `before`: only entries older than that id (the next page)."""
    entries = PeerRequestLog.objects.all()
    if before:
        entries = entries.filter(id__lt=before)
    if peer:
        entries = entries.filter(peer_code=peer.upper())
    if direction:
        entries = entries.filter(direction=direction)
    if result:
        entries = entries.filter(result=result)
    return entries.order_by("-at", "-id")


def _nearest_rank(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def response_times(*, center_id: int, since) -> list[dict]:
    """Response times between centres since `since`, per peer and direction, of escalations requested since
    then: how many; of the requests for service, how many were accepted, rejected, cancelled or failed before an
    answer (`withdrawn`) or not answered yet (so the four add up to `requests`); and in
    seconds (median and p90, nearest rank), from the request to its delivery (outbound: the peer took it) and
    to its answer (outbound: the peer's dispatcher; inbound: ours)."""
    rows = (
        Escalation.objects.filter(incident__center_id=center_id, requested_at__gte=since)
        .order_by("peer__code", "direction")
        .values_list(
            "peer__code",
            "peer__name",
            "direction",
            "kind",
            "state",
            "requested_at",
            "delivered_at",
            "answered_at",
        )
    )
    groups: dict[tuple, dict] = {}
    for code, name, direction, kind, state, requested, delivered, answered in rows:
        group = groups.setdefault(
            (code, direction),
            {"peer": code, "peer_name": name, "direction": direction, "escalations": 0, "requests": 0,
             "accepted": 0, "rejected": 0, "unanswered": 0, "withdrawn": 0, "_delivery": [], "_answer": []},
        )  # fmt: skip
        group["escalations"] += 1
        if delivered:
            group["_delivery"].append((delivered - requested).total_seconds())
        if kind != EscalationKind.REQUEST_FOR_SERVICE:
            continue
        group["requests"] += 1
        if state == Escalation.State.REJECTED:  # final (one rejected before answered_at existed has none)
            group["rejected"] += 1
        elif answered:
            group["accepted"] += 1
        elif state in (Escalation.State.CANCELLED, Escalation.State.FAILED):
            group["withdrawn"] += 1  # cancelled by its sender or never delivered, before any answer
        else:
            group["unanswered"] += 1
        if answered:
            group["_answer"].append((answered - requested).total_seconds())
    result = []
    for group in groups.values():
        delivery, answer = group.pop("_delivery"), group.pop("_answer")
        group.update(
            delivery_p50_s=_nearest_rank(delivery, 0.5),
            delivery_p90_s=_nearest_rank(delivery, 0.9),
            answer_p50_s=_nearest_rank(answer, 0.5),
            answer_p90_s=_nearest_rank(answer, 0.9),
        )
        result.append(group)
    return result
